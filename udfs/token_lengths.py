"""Model profiles and exact token lengths of samples (text from the real tokenizer + visual rules).

Text accounting: a sample's conversation is rendered with the model's chat template and
tokenized without adding special tokens (the template already writes BOS where the model has
one). The ``<media>`` placeholders are deleted from the text before rendering: their cost, image
wrapper tokens included, is what the visual rule counts. Text around a placeholder, newlines
included, stays as the source wrote it.

T2Vid's estimate, kept next to the exact count because T2Vid filters on it:
``len(tokenizer("\\n".join(turn texts)).input_ids)`` (with the tokenizer's BOS) + ``t2vid_k`` per frame.
The turn texts are taken verbatim, placeholders included, as T2Vid tokenizes its ``<video>`` tag.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from jinja2 import TemplateError

from udfs.sample import MEDIA_TOKEN
from udfs.tokenizers import CHAT_TEMPLATES, TokenCounter
from udfs.visual_tokens import IMAGE_KINDS, VIDEO_KINDS, validate_visual, visual_tokens

_REQUIRED = ("name", "tokenizer", "visual", "max_frames", "max_tokens", "t2vid_k")
_OPTIONAL = ("chat_template", "extra")


class ProfileError(ValueError):
    """A model profile is invalid; the message starts with the offending key."""


@dataclass(frozen=True)
class ModelProfile:
    """What framelake needs to know about a target model to count a sample's tokens.

    ``chat_template`` names a template of ``udfs.tokenizers.CHAT_TEMPLATES`` (llama3, chatml,
    idefics3); None uses the tokenizer's own. ``visual`` is ``{rule, **params}`` for
    ``udfs.visual_tokens``. ``extra`` holds free-form settings other stages may read.
    """

    name: str
    tokenizer: str
    visual: dict[str, Any]
    max_frames: int
    max_tokens: int
    t2vid_k: int
    chat_template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelProfile:
        if not isinstance(data, Mapping):
            raise ProfileError(f"profile: must be a mapping, got {type(data).__name__}")
        for key in data:
            if key not in _REQUIRED + _OPTIONAL:
                raise ProfileError(f"{key}: unknown key (known: {', '.join(_REQUIRED + _OPTIONAL)})")
        for key in _REQUIRED:
            if key not in data:
                raise ProfileError(f"{key}: missing key")
        for key in ("name", "tokenizer"):
            if not isinstance(data[key], str) or not data[key].strip():
                raise ProfileError(f"{key}: must be a non-empty string, got {data[key]!r}")
        for key in ("max_frames", "max_tokens", "t2vid_k"):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ProfileError(f"{key}: must be a positive integer, got {value!r}")
        chat_template = data.get("chat_template")
        if chat_template is not None and chat_template not in CHAT_TEMPLATES:
            raise ProfileError(
                f"chat_template: unknown template {chat_template!r} (known: {', '.join(CHAT_TEMPLATES)}, "
                "or null for the tokenizer's own)"
            )
        extra = data.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise ProfileError(f"extra: must be a mapping, got {type(extra).__name__}")
        try:
            validate_visual(data["visual"])
        except ValueError as err:
            raise ProfileError(str(err)) from None
        return cls(
            name=data["name"],
            tokenizer=data["tokenizer"],
            visual=dict(data["visual"]),
            max_frames=data["max_frames"],
            max_tokens=data["max_tokens"],
            t2vid_k=data["t2vid_k"],
            chat_template=chat_template,
            extra=dict(extra),
        )

    def as_dict(self) -> dict[str, Any]:
        """The profile as a config mapping, which identifies it in the stages' fingerprints:
        the optional keys appear only when set, as in the profile files."""
        data = asdict(self)
        if self.chat_template is None:
            del data["chat_template"]
        if not self.extra:
            del data["extra"]
        return data


def load_profile(name_or_path: str, search_dirs: Iterable[str | Path]) -> dict[str, Any]:
    """The raw mapping of a profile file: a path to a YAML file, or ``<dir>/<name>.yaml`` in
    the first of ``search_dirs`` that has it. Callers merge overrides, then ``ModelProfile.from_dict``."""
    candidates = [Path(name_or_path)] if name_or_path.endswith((".yaml", ".yml")) else []
    candidates += [Path(d) / f"{name_or_path}.yaml" for d in search_dirs]
    for path in candidates:
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as err:
                raise ProfileError(f"{path} is not valid YAML: {err}") from None
            if not isinstance(data, dict):
                raise ProfileError(f"{path} must hold a mapping")
            return data
    searched = ", ".join(str(p) for p in candidates) or "no search folder"
    raise ProfileError(f"no model profile {name_or_path!r} (looked for {searched})")


def _messages(conversations: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"role": turn["role"], "content": turn["content"].replace(MEDIA_TOKEN, "")} for turn in conversations]


def render_text(conversations: Sequence[Mapping[str, Any]], profile: ModelProfile, counter: TokenCounter) -> str:
    """The conversation as the model's chat template writes it, media placeholders deleted."""
    template = CHAT_TEMPLATES[profile.chat_template] if profile.chat_template else counter.tokenizer.chat_template
    if template is None:
        raise ProfileError(
            f"chat_template: profile {profile.name!r} names none and tokenizer {profile.tokenizer!r} has none"
        )
    return counter.render_chat(_messages(conversations), template)


def t2vid_text(conversations: Sequence[Mapping[str, Any]]) -> str:
    """T2Vid's text for its token estimate: all turn texts joined by newlines."""
    return "\n".join(turn["content"] for turn in conversations)


def token_lengths(profile: ModelProfile, counter: TokenCounter, batch: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One ``TOKEN_LENGTHS`` row per sample of ``batch``.

    Each sample has ``sample_id``, ``conversations``, ``frame_sizes`` ((width, height) of the
    frames the model sees, already selected for ``max_frames``) and ``media_kind`` ("text",
    "image"/"images", "video"/"frames_dir"). A sample that cannot be used gets ``fits = False`` and
    the reason; counts that cannot be computed (a template or visual rule error) are null.
    """
    rendered, template_problems = [], []
    for sample in batch:
        try:
            rendered.append(render_text(sample["conversations"], profile, counter))
            template_problems.append(None)
        except TemplateError as err:  # e.g. a tokenizer's own template that rejects the role order
            rendered.append("")
            template_problems.append(f"chat template failed: {err}")
    text_counts = counter.count(rendered, add_special_tokens=False)
    t2vid_counts = counter.count([t2vid_text(s["conversations"]) for s in batch], add_special_tokens=True)

    rows = []
    counted = zip(batch, text_counts, t2vid_counts, template_problems)
    for sample, text_tokens, t2vid_tokens, template_problem in counted:
        frame_sizes = list(sample.get("frame_sizes") or [])
        n_frames = len(frame_sizes)
        text = None if template_problem else text_tokens
        visual, visual_problem = visual_cost(profile, frame_sizes, sample.get("media_kind"))
        problem = template_problem or visual_problem
        if problem is None and n_frames > profile.max_frames:
            problem = f"{n_frames} frames > max_frames {profile.max_frames}"
        total = None if text is None or visual is None else text + visual
        if problem is None and total > profile.max_tokens:
            problem = f"over max_tokens ({total} > {profile.max_tokens})"
        rows.append(
            {
                "sample_id": sample["sample_id"],
                "model": profile.name,
                "n_frames": n_frames,
                "text_tokens": text,
                "visual_tokens": visual,
                "total_tokens": total,
                "t2vid_estimate": t2vid_tokens + profile.t2vid_k * n_frames,
                "fits": problem is None,
                "reason": problem,
            }
        )
    return rows


def visual_cost(profile: ModelProfile, frame_sizes: list, media_kind: str | None) -> tuple[int | None, str | None]:
    """Visual tokens of a sample and, when the sample cannot be used as is, why (None: uncountable)."""
    if media_kind in (None, "text"):
        if frame_sizes:
            return None, f"{len(frame_sizes)} frames given for a text-only sample"
        return 0, None
    if media_kind not in VIDEO_KINDS + IMAGE_KINDS:
        return None, f"unknown media kind {media_kind!r}"
    if not frame_sizes:
        return 0, f"no frames for {media_kind} media"  # 0 is exact for what is there; the reason rejects it
    try:
        return visual_tokens(profile.visual, frame_sizes, media_kind), None
    except ValueError as err:
        return None, f"visual tokens: {err}"
