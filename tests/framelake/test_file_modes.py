"""Every file the lake writes for people (tables, frames, inline media, shards, manifests, run
records, the report) gets the mode a plain ``open`` gives under the writing process's umask,
through the atomic writes too: 0640 files and 0750 folders under umask 027, so a trainer
running as another user (or group) can read the lake. A demo-like lake (inline base64 images,
still images, videos, every shard format) is written by ``framelake run`` in a process started
with that umask, as a user would run it, with each lake engine (delta-spark's files come from
Hadoop's file system, which has a umask setting of its own)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO
from udfs.shards import known_formats

pytestmark = pytest.mark.spark  # the run starts Spark in its own process
DEMO_SOURCES = ("coco_caption", "videoinstruct", "m3it_vqa")  # stills, videos, inline base64 images


def demo_like_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    raw["lake"] = str(tmp_path / "lake")
    raw["sources"] = [source for source in raw["sources"] if source["name"] in DEMO_SOURCES]
    raw["models"] = raw["models"][:1]
    raw["shards"]["formats"] = list(known_formats())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def modes_under(root: Path) -> dict[Path, int]:
    found = {root: stat.S_IMODE(root.stat().st_mode)}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder) / name
            found[path] = stat.S_IMODE(path.lstat().st_mode)
    return found


# 027, not the usual 022, which every other test runs under: a mode copied from a default shows.
@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_every_file_of_a_lake_follows_the_umask(tmp_path: Path, engine: str) -> None:
    umask = 0o027
    config = demo_like_config(tmp_path)
    run = subprocess.run(
        [str(Path(sys.executable).parent / "framelake"), "run", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=1200, preexec_fn=lambda: os.umask(umask),
        env={**os.environ, "FRAMELAKE_ENGINE": engine},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lake = tmp_path / "lake"
    modes = modes_under(lake)
    wrong = {str(path.relative_to(lake)): oct(mode) for path, mode in modes.items()
             if mode != (0o777 if path.is_dir() else 0o666) & ~umask}
    assert wrong == {}
    written = {path.relative_to(lake).parts[0] for path in modes if path != lake}
    assert {"tables", "frames", "media", "shards", "runs", "reports"} <= written
    for fmt in known_formats():
        assert (lake / "shards" / "minicpm-llama3-v2_5" / fmt / "manifest.json").is_file(), fmt
