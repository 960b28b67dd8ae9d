"""The report's charts: matplotlib figures as PNG bytes."""
from __future__ import annotations

import io

import numpy as np

from framelake.report.data import OUTCOMES, ModelTokens, ReportData, SourceCounts, StageTiming

OUTCOME_COLORS = {"fit": "#2e7d32", "trimmed": "#f9a825", "dropped": "#c62828"}


def _figure(height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, height), dpi=100)
    ax.spines[["top", "right"]].set_visible(False)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _png(fig) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def sources_chart(sources: list[SourceCounts]) -> bytes:
    fig, ax = _figure(max(2.0, 0.45 * len(sources) + 1.2))
    names = [s.source for s in sources]
    kept = [s.kept for s in sources]
    ax.barh(names, kept, color=OUTCOME_COLORS["fit"], label="kept")
    ax.barh(names, [s.rejected for s in sources], left=kept, color=OUTCOME_COLORS["dropped"], label="rejected")
    ax.invert_yaxis()
    ax.set_xlabel("records")
    ax.legend(loc="lower right", frameon=False)
    return _png(fig)


def histogram_chart(values: np.ndarray, xlabel: str, color: str) -> bytes:
    fig, ax = _figure()
    if np.issubdtype(values.dtype, np.integer) and values.max() - values.min() <= 60:
        bins = np.arange(values.min() - 0.5, values.max() + 1.5)  # one bar per count
    else:
        bins = min(40, max(5, len(np.unique(values))))
    ax.hist(values, bins=bins, color=color, edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("videos")
    return _png(fig)


def tokens_chart(model: ModelTokens) -> bytes:
    fig, ax = _figure()
    present = [o for o in OUTCOMES if model.total_tokens[o].size]
    everything = np.concatenate([model.total_tokens[o] for o in present])
    upper = max(everything.max(), model.max_tokens or 0) * 1.05
    # The axis runs to max_tokens; bins stay narrow enough to show the shape of the lengths.
    width = max(1.0, min(upper / 40, (everything.max() - everything.min()) / 20 or upper / 40))
    bins = np.linspace(0, upper, min(200, int(np.ceil(upper / width))) + 1)
    ax.hist([model.total_tokens[o] for o in present], bins=bins, stacked=True,
            color=[OUTCOME_COLORS[o] for o in present],
            label=[f"{o} ({model.outcomes[o]:,})" for o in present])
    if model.max_tokens:
        ax.axvline(model.max_tokens, color="black", linestyle="--", linewidth=1.2)
        ax.annotate(f"max_tokens {model.max_tokens:,}", (model.max_tokens, 1), xycoords=("data", "axes fraction"),
                    xytext=(-4, -4), textcoords="offset points", ha="right", va="top", fontsize=9)
    ax.set_xlabel(f"total tokens ({model.model})")
    ax.set_ylabel("samples")
    ax.legend(loc="upper center", frameon=False)
    return _png(fig)


def stages_chart(stages: list[StageTiming]) -> bytes:
    fig, ax = _figure(max(2.0, 0.45 * len(stages) + 1.2))
    ax.barh([s.stage for s in stages], [s.elapsed_s for s in stages], color="#1565c0")
    for i, stage in enumerate(stages):
        ax.annotate(f"{stage.elapsed_s:.1f}s", (stage.elapsed_s, i), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    return _png(fig)


def draw_charts(data: ReportData) -> dict[str, bytes]:
    """PNG bytes by file name; a chart without data is left out."""
    charts = {}
    if data.sources:
        charts["sources.png"] = sources_chart(data.sources)
    if data.frames_per_video.size:
        charts["frames_per_video.png"] = histogram_chart(data.frames_per_video, "frames per video", "#1565c0")
    if data.durations_s.size:
        charts["durations.png"] = histogram_chart(data.durations_s, "video duration (s)", "#6a1b9a")
    for model in data.models:
        if any(model.total_tokens[o].size for o in OUTCOMES):
            charts[f"tokens_{model.model}.png"] = tokens_chart(model)
    if data.stages:
        charts["stages.png"] = stages_chart(data.stages)
    return charts
