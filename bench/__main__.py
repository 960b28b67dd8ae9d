"""Run every benchmark (``bench/bench_*.py``) and end with one summary line.

Each module has ``run(quick: bool) -> dict[str, float]``: the ratios and figures it measured,
keyed by the names the issues set. ``--full`` runs the full sizes instead of the quick mode.

    python -m bench [--full] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import time

import bench


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--full", action="store_true", help="full sizes (slow) instead of the quick mode")
    parser.add_argument("--only", nargs="*", default=None, help="module names, e.g. bench_tokens")
    args = parser.parse_args()
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    summary: dict[str, float] = {}
    for name in names:
        if args.only and name not in args.only:
            continue
        started = time.time()
        print(f"== {name}", flush=True)
        figures = importlib.import_module(f"bench.{name}").run(quick=not args.full)
        for key, value in figures.items():
            print(f"   {key} = {value:.4g}", flush=True)
        print(f"   ({time.time() - started:.0f} s)", flush=True)
        summary.update(figures)
    print("bench: " + " ".join(f"{k}={v:.4g}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
