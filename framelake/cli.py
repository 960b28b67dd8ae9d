"""The ``framelake`` command: run, generate, validate, inspect, report, vacuum."""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from framelake.config import STAGES, Config, ConfigError, default_stages, load_config
from framelake.layout import LakeLayoutError
from framelake.lock import LakeConflictError, LakeLockedError, LakeLockLostError, lake_lock
from framelake.runs import new_run_id
from framelake.spark_log import SparkLog

# Exit codes of ``framelake run`` (also in its --help and the README).
EXIT_OK = 0  # done; bad records and videos are rows with reasons, not failures
EXIT_USAGE = 2  # bad arguments or config
EXIT_FAILED = 3  # infrastructure: lake, storage, Spark; tables keep their last commits, rerun to resume
EXIT_REJECTS = 4  # done, but more records were rejected than --max-reject-rate allows
EXIT_LAKE_BUSY = 5  # another run holds the lake, or another writer keeps changing its tables
RUN_EXIT_CODES = f"""exit codes:
  {EXIT_OK}  done (rejected records and failed videos are rows with reasons, not errors)
  {EXIT_USAGE}  bad arguments or config, or a lake made under an older layout (the message
     says how to rebuild it)
  {EXIT_FAILED}  infrastructure failure (lake or storage unreachable, Spark job failed): the
     tables keep their last commits; the same command resumes. Traceback with --debug
     or FRAMELAKE_DEBUG=1
  {EXIT_REJECTS}  done, but the reject rate is over --max-reject-rate
  {EXIT_LAKE_BUSY}  the lake is in use: another run holds its lock (or took it over), or
     another writer kept changing its tables; nothing of this run is lost, rerun later"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="framelake", description="Video instruction-tuning data on Spark + Delta")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline (or some stages)", epilog=RUN_EXIT_CODES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", required=True)
    run.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)} (default: all; generate "
                                      "only with generate.recipes configured)")
    run.add_argument("--max-reject-rate", type=_fraction, metavar="R",
                     help=f"exit {EXIT_REJECTS} when over this fraction (0..1) of the annotation records "
                          "were rejected (the whole samples and rejects tables)")
    run.add_argument("--debug", action="store_true",
                     help="print the traceback of a failure, and Spark's log on stderr (else it goes to "
                          "<lake>/logs/<run_id>/spark.log, or a local temp folder for a lake on S3)")
    generate = commands.add_parser("generate", help="one recipe of the generate stage: a preview, a dry run, or a run")
    generate.add_argument("--config", required=True)
    generate.add_argument("--recipe", required=True, action="append", metavar="NAME",
                          help="a configured recipe's name or a recipe file (repeatable)")
    chosen = generate.add_mutually_exclusive_group()
    chosen.add_argument("--preview", type=int, metavar="N",
                        help="render N prompts, call the endpoint, print prompt, raw reply and parsed pairs; "
                             "write nothing")
    chosen.add_argument("--dry-run", action="store_true",
                        help="print the requests to send and their prompt tokens; send and write nothing")
    generate.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    for name, help_text in (("validate", "check config, paths, tokenizers and ffmpeg"),
                            ("inspect", "row count, version and size of each table, and its history"),
                            ("report", "write the HTML report of the latest run (or --run)"),
                            ("vacuum", "remove files no table references: Parquet of killed writes, "
                                       "orphaned frame JPEGs and shard files")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", required=True)
    commands.choices["inspect"].add_argument("--history", type=int, default=5, metavar="N",
                                             help="versions shown per table (default 5, 0 for none)")
    commands.choices["inspect"].add_argument("--checksum", action="store_true",
                                             help="also an order-independent checksum of each table's rows "
                                                  "(reads every row)")
    commands.choices["vacuum"].add_argument(
        "--retention-hours", type=int, default=None, metavar="H",
        help="keep unreferenced files younger than this: a running write's files are (default 168)")
    commands.choices["vacuum"].add_argument("--dry-run", action="store_true", help="list, do not delete")
    commands.choices["report"].add_argument("--run", help="run id (a file name under <lake>/runs/, without .json)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        if len(err.problems) == 1:
            print(f"framelake: config error: {err}", file=sys.stderr)
        else:
            print(f"framelake: config errors ({len(err.problems)}):", file=sys.stderr)
            for problem in err.problems:
                print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    commands_run = {"run": cmd_run, "generate": cmd_generate, "validate": cmd_validate, "inspect": cmd_inspect,
                    "report": cmd_report, "vacuum": cmd_vacuum}
    return commands_run[args.command](config, args)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def cmd_run(config: Config, args) -> int:
    stages = default_stages(config) if args.stages is None else [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        print(f"framelake: --stages: unknown stage {bad[0]!r} (known: {', '.join(STAGES)})", file=sys.stderr)
        return EXIT_USAGE
    debug = bool(args.debug or os.environ.get("FRAMELAKE_DEBUG"))
    run_id = new_run_id()
    spark_log = SparkLog.for_run(config.lake, run_id, console=debug)
    try:
        from framelake.progress import Progress
        from framelake.runtime import Context
        from jobs.pipeline import run_pipeline, summary

        with spark_log.jvm_stderr():
            ctx = Context.create(config, progress=Progress(sys.stdout), spark_log=spark_log)
        results, report = run_pipeline(ctx, stages, run_id=run_id)
        print(summary(ctx, results))
        print(f"report: {report}")
        print(f"spark log: {spark_log.where}")
        rejected, records = reject_counts(ctx.lake)
    except (LakeLockedError, LakeLockLostError, LakeConflictError) as err:  # their messages say what to do
        print(f"framelake: {err}", file=sys.stderr)
        return EXIT_LAKE_BUSY
    except LakeLayoutError as err:  # a rebuild, which the message says how to do
        print(f"framelake: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # any failure here is the run's, not a record's: those are rows
        if debug:
            traceback.print_exc()
        print(f"framelake: run failed: {one_line(err)}", file=sys.stderr)
        if not debug and os.path.isfile(spark_log.file):  # a run that could not start Spark has none
            print(f"framelake: Spark's log: {spark_log.file}", file=sys.stderr)
        return EXIT_FAILED
    rate = rejected / records if records else 0.0
    if args.max_reject_rate is not None and rate > args.max_reject_rate:
        print(f"framelake: reject rate {rate:.3f} ({rejected} of {records} records) is over "
              f"--max-reject-rate {args.max_reject_rate}", file=sys.stderr)
        return EXIT_REJECTS
    return EXIT_OK


def cmd_generate(config: Config, args) -> int:
    """``--preview N``, ``--dry-run``, or the generate stage with the recipes named only."""
    try:
        from framelake.runtime import Context
        from jobs.generate import dry_run, preview, stage, with_recipes
        from jobs.stage import run_stage

        config = with_recipes(config, args.recipe)
        ctx = Context.create(config)
        for recipe in config.generate.recipes:
            if args.preview is not None:
                preview(ctx, recipe, args.preview)
            elif args.dry_run:
                counts = dry_run(ctx, recipe)
                print(" ".join(f"{key}={value}" for key, value in counts.items()))
        if args.preview is None and not args.dry_run:
            run_stage(stage, ctx)
    except (LakeLockedError, LakeLockLostError, LakeConflictError) as err:
        print(f"framelake: {err}", file=sys.stderr)
        return EXIT_LAKE_BUSY
    except Exception as err:  # the endpoint, the lake or Spark: one line, the traceback with --debug
        if args.debug or os.environ.get("FRAMELAKE_DEBUG"):
            traceback.print_exc()
        print(f"framelake: generate failed: {one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def reject_counts(lake) -> tuple[int, int]:
    """(records rejected, records in) over the whole ``rejects`` and ``samples`` tables."""
    rejected = lake.info("rejects").rows
    return rejected, rejected + lake.info("samples").rows


def one_line(err: BaseException) -> str:
    """The error's type and the first line of its message (Spark's run to pages), at most 300
    characters. py4j's line naming the JVM method called says nothing: the next one is taken;
    a task's Python error is told by the last line of its traceback."""
    message = str(err).strip()
    if "Traceback (most recent call last):" in message:
        message = message.rsplit("Traceback (most recent call last):", 1)[1]
        message = [line for line in message.splitlines() if line.strip() and not line[0].isspace()][-1]
    lines = [line.lstrip(": ") for line in message.splitlines()
             if line.strip() and not line.startswith("An error occurred while calling")]
    text = f"{type(err).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 300 else text[:297] + "..."


def cmd_validate(config: Config, args) -> int:
    """Check what a run needs, reporting every problem rather than the first."""
    from framelake.storage import Storage, is_s3
    from udfs.adapters import get_adapter
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
        return f"{len(files)} file(s): " + describe_annotations(get_adapter(spec.format), files, storage.open_read)

    def media_root(spec):
        if not is_s3(spec.media_root) and not os.path.isdir(spec.media_root):
            raise FileNotFoundError(f"{spec.media_root} is not a folder")
        return spec.media_root

    for i, spec in enumerate(config.sources):
        check(f"sources[{i}] {spec.name}: annotations", lambda spec=spec: annotations(spec))
        check(f"sources[{i}] {spec.name}: media_root", lambda spec=spec: media_root(spec))
    for i, profile in enumerate(config.models):
        check(f"models[{i}] {profile.name}: tokenizer {profile.tokenizer}",
              lambda p=profile: f"vocab {len(load_tokenizer(p.tokenizer))}")
    check("ffmpeg", ffmpeg_exe)
    check(f"lake {config.lake}: writable", lambda: _check_writable(storage, config.lake))
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print("config is valid")
    return 0


# Annotation files ``validate`` opens per source to tell their format: a source of thousands of
# files is told by its first ones.
DESCRIBED_FILES = 20


def describe_annotations(adapter, files: list[str], open_read) -> str:
    """Each file's name with its format and compression ("a.json.gz (JSON array, gzip)");
    raises with every file that cannot be read as the source's format."""
    described, problems = [], []
    for uri in files[:DESCRIBED_FILES]:
        name = uri.rsplit("/", 1)[-1]
        try:
            described.append(f"{name} ({adapter.describe_file(uri, open_read)})")
        except Exception as err:  # each file's problem is reported, and the others still described
            problems.append(f"{name}: {err}" if name not in str(err) else str(err))
    if problems:
        raise ValueError("; ".join(problems))
    more = len(files) - DESCRIBED_FILES
    return ", ".join(described) + (f", and {more} more (not opened)" if more > 0 else "")


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
    print(f"{'table':<14} {'rows':>10} {'version':>8} {'files':>6} {'bytes':>12}" + ("  checksum" * args.checksum))
    for name in TABLES:
        info = lake.info(name)
        version = "-" if info.version is None else str(info.version)
        checksum = f"  {lake.checksum(name).split(':')[1]}" if args.checksum else ""
        print(f"{name:<14} {info.rows:>10} {version:>8} {info.files:>6} {info.bytes:>12}{checksum}")
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
    from framelake.report import write_report
    from framelake.runs import load_run
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


def cmd_vacuum(config: Config, args) -> int:
    """Delete what no table references; with a retention, only what a running write cannot own."""
    from framelake.lake import DEFAULT_RETENTION_HOURS, Lake
    from framelake.storage import Storage

    if config.engine == "delta-spark":  # Delta's own VACUUM, through Spark
        from framelake.runtime import Context

        lake = Context.create(config).lake
    else:
        lake = Lake(config.lake, Storage(config.storage))
    hours = DEFAULT_RETENTION_HOURS if args.retention_hours is None else args.retention_hours
    try:
        with lake_lock(lake.storage, lake.root):  # no run writes files while they are judged orphans
            result = lake.vacuum(hours, dry_run=args.dry_run)
    except LakeLockedError as err:
        print(f"framelake: {err}", file=sys.stderr)
        return EXIT_LAKE_BUSY
    verb = "would remove" if args.dry_run else "removed"
    for name, files in result.table_files.items():
        print(f"{name:<14} {verb} {len(files)} file(s)")
    print(f"{'objects':<14} {verb} {len(result.objects)} frame or shard file(s)")
    for uri in result.objects:
        print(f"  {uri}")
    print(f"{verb} {result.count} file(s) older than {hours:g} h that no table references")
    return 0


if __name__ == "__main__":
    sys.exit(main())
