"""The same corpus gives the same ids, frame object names and rows whatever the lake's root and
the media's mount point (README, "Ids, and rebuilding a lake")."""
from __future__ import annotations

import contextlib
import io
import shutil

from framelake.cli import main
from framelake.runtime import Context
from jobs.pipeline import run_stages
from tests.support.config import demo_config, write_config
from tests.support.paths import REPO
from tests.support.tables import comparable_rows
from udfs.schemas import TABLES

# Tables whose rows name neither the lake nor the corpus: equal as they are. The others hold
# URIs (samples: media and source files; rejects and source_files: source files; videos: media;
# frames: frame objects; shards: shard files), equal once those are taken relative to the lake
# and the corpus.
WHERE_FREE = ("token_lengths",)


def corpus_sources(sources, corpus: str) -> list[dict]:
    """The demo's sources, on a copy of the corpus at ``corpus``."""
    local = str(REPO / "demo")
    return [{"name": s.name, "format": s.format, "annotations": s.annotations.replace(local, corpus),
             "media_root": s.media_root.replace(local, corpus),
             **({"media_type": s.media_type} if s.media_type else {})} for s in sources]


def checksums(config_path: str) -> dict[str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", "--config", config_path, "--checksum", "--history", "0"]) == 0
    lines = out.getvalue().splitlines()[2:]
    return {line.split()[0]: line.split()[-1] for line in lines if line.split()[0] in TABLES}


def test_a_corpus_mounted_elsewhere_into_another_lake_gives_the_same_tables(demo_run, spark, tmp_path):
    local_ctx, _ = demo_run
    corpus = tmp_path / "mnt" / "datasets" / "corpus"
    shutil.copytree(REPO / "demo", corpus)  # another mount point of the same files
    sources = corpus_sources(local_ctx.config.sources, str(corpus))
    ctx = Context.create(demo_config(str(tmp_path / "elsewhere" / "lake"), sources=sources), spark)
    run_stages(ctx, echo=lambda line: None)

    assert ctx.lake.root != local_ctx.lake.root
    renames = {local_ctx.lake.root: "<lake>", ctx.lake.root: "<lake>",
               str(REPO / "demo"): "<corpus>", str(corpus): "<corpus>"}
    for name in TABLES:
        assert comparable_rows(ctx.lake, name, renames) == comparable_rows(local_ctx.lake, name, renames), name
    # Frame objects are named by their video ids: the same names under each lake.
    def frame_names(lake):
        uris = lake.read_arrow("frames", ["uri"]).column("uri").to_pylist()
        return sorted(uri.removeprefix(lake.root) for uri in uris)

    assert frame_names(ctx.lake) == frame_names(local_ctx.lake)
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    here = checksums(write_config(tmp_path / "here", lake=local_ctx.lake.root))
    there = checksums(write_config(tmp_path / "there", lake=ctx.lake.root, sources=sources))
    assert {name: here[name] for name in WHERE_FREE} == {name: there[name] for name in WHERE_FREE}
