"""Normalize at VideoChat2-IT scale: 2,000,000 records across 20 JSON array files (quick mode:
200,000, projected to 2M), normalized into Delta end to end with a real local[2] session.

Figures:
- ``normalize_2m_s``: seconds to normalize 2M records end to end (listing, tasks, Parquet
  files, Delta commits, counts), and ``normalize_rps``, the records per second that makes.
  Quick mode projects them from three runs in one session: 2 of the files (it also warms the
  session up), all 200,000 records, 2 of the files again. The cost per record is the
  difference of the last two; 2M records cost the 200,000 run plus the records it lacks at
  that cost, plus the warm-up (the first run's time over the third's);
- ``normalize_measured_rps``: records per second of the biggest run measured;
- ``normalize_vs_python``: that rate over the rate of the bare normalize loop (read, normalize,
  Arrow batches) on one core in this process, measured in the same run: 2 cores and no Spark
  overhead would give 2;
- ``normalize_worker_peak_mb``: the peak resident memory of a Spark Python worker (sampled
  from /proc), and ``normalize_jvm_peak_mb``, of the JVM (driver and executor in local mode);
- ``normalize_rerun_s``: a second run after one of the 20 files changed (only it is read);
- ``normalize_scan_mb_s``: how fast one core scans a file for split boundaries (a file over
  ``split_bytes`` is scanned whole before its splits are read in parallel).

Target: 2M records in at most 5 minutes on 2 cores, about 7,000 records/s.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from bench.common import local_spark
from framelake.config import parse_config
from framelake.runtime import Context

FULL_RECORDS = 2_000_000
QUICK_RECORDS = 200_000
FILES = 20
INSTRUCTIONS = [
    "Review the shown video, detailing observations on objects and actions, then select the most accurate "
    "answer from the choices provided.",
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement "
    "of objects, and the action and pose of persons. Based on your observations, select the best option.",
    "Watch the video and answer the question with one of the options; explain nothing.",
]
COLOURS = ["red", "purple", "blue", "gray", "green", "yellow", "brown", "cyan"]


def record_text(i: int) -> str:
    """One VideoChat2-IT record (``video``, ``QA`` with ``i``/``q``/``a``, some clipped)."""
    colour = COLOURS[i % len(COLOURS)]
    options = "\\n".join(f"({chr(65 + k)}) {COLOURS[(i + k) % len(COLOURS)]}" for k in range(4))
    clip = f', "start": {i % 30}.5, "end": {i % 30 + 8}' if i % 3 == 0 else ""
    return (
        f'{{"video": "ego4d/v_{i:08d}.mp4", "QA": [{{"i": "{INSTRUCTIONS[i % 3]}", '
        f'"q": "Question: What is the colour of object {i % 977} entering the scene at {i % 60} s?\\nOptions:\\n'
        f'{options}", "a": "Answer: ({chr(65 + i % 4)}) {colour}"}}]{clip}}}'
    )


def generate(folder: Path, records: int, files: int) -> None:
    folder.mkdir(parents=True)
    per_file = records // files
    for f in range(files):
        texts = (record_text(f * per_file + i) for i in range(per_file))
        (folder / f"train_{f:02d}.json").write_text("[\n" + ",\n".join(texts) + "\n]\n", encoding="utf-8")


class WorkerMemory:
    """Samples the peak resident memory (VmHWM) of this process's descendants: Spark's JVM and
    its Python workers."""

    def __init__(self, interval_s: float = 0.5):
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), daemon=True)
        self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.sample()

    def sample(self) -> None:
        for pid in _descendants(os.getpid()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # it ended meanwhile
                continue
            kind = "jvm" if b"java" in cmdline else "python" if b"pyspark" in cmdline else "other"
            hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0)
            self.peaks[pid] = (kind, max(hwm, self.peaks.get(pid, (kind, 0.0))[1]))

    def peak_mb(self, kind: str) -> float:
        self.sample()
        return max((mb for k, mb in self.peaks.values() if k == kind), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def python_loop_rps(path: Path, seconds: float = 5.0) -> float:
    """Records per second of the normalize loop alone (no Spark), on one file, for about
    ``seconds`` of CPU."""
    from jobs.normalize import normalized_batch
    from udfs.adapters import NormalizeContext, SourceSpec, get_adapter
    from udfs.normalize import normalize_unit

    spec = SourceSpec(name="bench", format="videochat2", annotations=str(path.parent), media_root="/media",
                      media_type="video")
    ctx = NormalizeContext(spec=spec, open_binary=lambda uri, offset=0: open(uri, "rb"), put_inline=None)
    adapter = get_adapter("videochat2")
    started, records, rows = time.process_time(), 0, []
    for _, row in normalize_unit(adapter, [str(path)], ctx):
        rows.append(row)
        if len(rows) == 1024:
            normalized_batch(rows)
            records, rows = records + len(rows), []
            if time.process_time() - started > seconds:
                break
    return records / (time.process_time() - started)


def scan_mb_s(path: Path) -> float:
    """MiB per second (CPU) of ``scan_splits`` over ``path``, in 1 MiB splits."""
    from udfs.adapters.readers import scan_splits

    started = time.process_time()
    with open(path, "rb") as stream:
        splits = scan_splits(stream, 1 << 20)
    assert len(splits) > 1
    return path.stat().st_size / 2**20 / (time.process_time() - started)


def timed_run(spark, lake: Path, annotations: str, records: int):
    """(seconds, Context) of normalizing the ``records`` of ``annotations`` into a fresh ``lake``."""
    from jobs import normalize

    config = parse_config({
        "lake": str(lake),
        "sources": [{"name": "videochat2_bench", "format": "videochat2", "annotations": annotations,
                     "media_root": "/data/videochat2", "media_type": "video"}],
        "models": [{"name": "minicpm-llama3-v2_5", "profile": "minicpm-llama3-v2_5"}],
    })
    ctx = Context.create(config, spark)
    started = time.perf_counter()
    result = normalize.stage(ctx)
    elapsed = time.perf_counter() - started
    print(f"   {result.summary()}", flush=True)
    assert result.counts["in"] == result.counts["samples"] == records, result.counts
    return elapsed, ctx


def run(quick: bool = True) -> dict[str, float]:
    from jobs import normalize

    records = QUICK_RECORDS if quick else FULL_RECORDS
    with tempfile.TemporaryDirectory(prefix="bench_normalize_") as tmp:
        data = Path(tmp) / "videochat2"
        started = time.perf_counter()
        generate(data, records, FILES)
        size_mb = sum(f.stat().st_size for f in data.iterdir()) / 2**20
        print(f"   generated {records:,} records in {FILES} files ({size_mb:,.0f} MiB) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        baseline = python_loop_rps(data / "train_00.json")
        print(f"   baseline: the normalize loop alone, one core: {baseline:,.0f} records/s", flush=True)
        scan = scan_mb_s(data / "train_00.json")

        spark = local_spark(cores=2)
        memory = WorkerMemory()
        try:
            small, two_files = 2 * (records // FILES), str(data / "train_0[01].json")
            if quick:
                cold_s, _ = timed_run(spark, Path(tmp) / "small_cold", two_files, small)
            elapsed, ctx = timed_run(spark, Path(tmp) / "lake", str(data), records)
            full_s = elapsed
            if quick:
                warm_s, _ = timed_run(spark, Path(tmp) / "small_warm", two_files, small)
                per_record_s = (elapsed - warm_s) / (records - small)
                full_s = elapsed + (FULL_RECORDS - records) * per_record_s + (cold_s - warm_s)

            changed = data / "train_07.json"
            changed.write_text(changed.read_text(encoding="utf-8").replace('"Answer: (A)', '"Answer: (a)'),
                               encoding="utf-8")
            started = time.perf_counter()
            rerun = normalize.stage(ctx)
            rerun_s = time.perf_counter() - started
            assert rerun.counts["kept"] == FILES - 1
            assert rerun.details["sources"]["videochat2_bench"]["samples"] == records
            print(f"   rerun after one file changed: {rerun.summary()}", flush=True)
            worker_mb, jvm_mb = memory.peak_mb("python"), memory.peak_mb("jvm")
            # The machine may be shared: how busy it was tells how far the times are from 2 free cores.
            print(f"   load average over the last 5 minutes: {os.getloadavg()[1]:.1f} (2 cores)", flush=True)
        finally:
            memory.stop()
            spark.stop()
        shutil.rmtree(data)
    rps = records / elapsed
    return {
        "normalize_rps": FULL_RECORDS / full_s,
        "normalize_2m_s": full_s,
        "normalize_measured_rps": rps,
        "normalize_vs_python": rps / baseline,
        "normalize_worker_peak_mb": worker_mb,
        "normalize_jvm_peak_mb": jvm_mb,
        "normalize_rerun_s": rerun_s,
        "normalize_scan_mb_s": scan,
    }
