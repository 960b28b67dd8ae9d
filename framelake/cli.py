"""The ``framelake`` command: run, validate, inspect, report."""
from __future__ import annotations

import argparse
import os
import sys
import time

from framelake.config import STAGES, Config, ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="framelake", description="Video instruction-tuning data on Spark + Delta")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline (or some stages)")
    run.add_argument("--config", required=True)
    run.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    for name, help_text in (("validate", "check config, paths, tokenizers and ffmpeg"),
                            ("inspect", "row count, version and size of each table, and its history"),
                            ("report", "write the HTML report of the latest run (or --run)")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", required=True)
    commands.choices["inspect"].add_argument("--history", type=int, default=5, metavar="N",
                                             help="versions shown per table (default 5, 0 for none)")
    commands.choices["report"].add_argument("--run", help="run id (a file name under <lake>/runs/, without .json)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"framelake: config error: {err}", file=sys.stderr)
        return 2
    commands_run = {"run": cmd_run, "validate": cmd_validate, "inspect": cmd_inspect, "report": cmd_report}
    return commands_run[args.command](config, args)


def cmd_run(config: Config, args) -> int:
    from framelake.progress import Progress
    from framelake.runtime import Context
    from jobs.pipeline import run_pipeline, summary

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        print(f"framelake: --stages: unknown stage {bad[0]!r} (known: {', '.join(STAGES)})", file=sys.stderr)
        return 2
    ctx = Context.create(config, progress=Progress(sys.stdout))
    results, report = run_pipeline(ctx, stages)
    print(summary(ctx, results))
    print(f"report: {report}")
    return 0


def cmd_validate(config: Config, args) -> int:
    """Check what a run needs, reporting every problem rather than the first."""
    from framelake.storage import Storage, is_s3
    from udfs.tokenizers import load_tokenizer
    from udfs.video import ffmpeg_exe

    storage = Storage(config.storage)
    problems = []

    def check(label: str, test) -> None:
        try:
            detail = test()
            print(f"ok    {label}{': ' + detail if detail else ''}")
        except Exception as err:  # each check reports its own failure and validation goes on
            problems.append(label)
            print(f"FAIL  {label}: {err}")

    def annotations(spec):
        files = storage.list(spec.annotations)
        if not files:
            raise FileNotFoundError(f"no files match {spec.annotations}")
        return f"{len(files)} file(s)"

    def media_root(spec):
        if not is_s3(spec.media_root) and not os.path.isdir(spec.media_root):
            raise FileNotFoundError(f"{spec.media_root} is not a folder")
        return spec.media_root

    for i, spec in enumerate(config.sources):
        check(f"sources[{i}] {spec.name}: annotations", lambda spec=spec: annotations(spec))
        check(f"sources[{i}] {spec.name}: media_root", lambda spec=spec: media_root(spec))
    for i, profile in enumerate(config.model_profiles()):
        check(f"models[{i}] {profile.name}: tokenizer {profile.tokenizer}",
              lambda p=profile: f"vocab {len(load_tokenizer(p.tokenizer))}")
    check("ffmpeg", ffmpeg_exe)
    check(f"lake {config.lake}: writable", lambda: _check_writable(storage, config.lake))
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print("config is valid")
    return 0


def _check_writable(storage, lake: str) -> str:
    probe = f"{lake}/_framelake_probe"
    storage.write_bytes(probe, b"ok")
    storage.delete(probe)
    return ""


def cmd_inspect(config: Config, args) -> int:
    from framelake.lake import Lake
    from framelake.storage import Storage
    from udfs.schemas import TABLES

    lake = Lake(config.lake, Storage(config.storage))
    print(f"lake: {lake.root}")
    print(f"{'table':<14} {'rows':>10} {'version':>8} {'files':>6} {'bytes':>12}")
    for name in TABLES:
        info = lake.info(name)
        version = "-" if info.version is None else str(info.version)
        print(f"{name:<14} {info.rows:>10} {version:>8} {info.files:>6} {info.bytes:>12}")
    if args.history > 0:
        print(f"history, newest first (at most {args.history} versions per table):")
        for name in TABLES:
            commits = lake.history(name, args.history)
            if commits:
                print(f"{name}:")
            for commit in commits:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(commit.timestamp_ms / 1000))
                operation = f"{commit.operation} ({commit.mode})" if commit.mode else commit.operation
                added, rows, removed = ("?" if n is None else f"{n:,}" for n in
                                        (commit.files_added, commit.rows_added, commit.files_removed))
                print(f"  v{commit.version:<5} {when} UTC  {operation:<24} rows +{rows:<10} "
                      f"files +{added} -{removed}")
    return 0


def cmd_report(config: Config, args) -> int:
    """The report of a recorded run, from the lake's tables (no Spark needed)."""
    from framelake.lake import Lake
    from framelake.report import load_run, write_report
    from framelake.storage import Storage

    lake = Lake(config.lake, Storage(config.storage))
    try:
        run = load_run(lake, args.run)
    except FileNotFoundError:
        print(f"framelake: --run: no run {args.run!r} under {lake.uri('runs')}", file=sys.stderr)
        return 2
    if run is None:
        print(f"framelake: no run recorded under {lake.uri('runs')}: the report has no stage timings",
              file=sys.stderr)
    print(f"report: {write_report(config, lake, run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
