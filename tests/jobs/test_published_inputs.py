"""The normalize stage as a Spark job on records as their projects publish them
(tests/fixtures/published/): count in = samples + rejects per source, with the counts taken
from the files; compressed files read whole, never split; dropped MIMIC-IT in-context links
counted in the stage's details and the run summary."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from framelake.config import parse_config
from framelake.runtime import Context
from jobs import normalize
from jobs.pipeline import summary
from tests.support.published import PROJECTS, PUBLISHED, annotation_files, records_of
from udfs.adapters import get_adapter
from udfs.normalize import WorkUnit

MODELS = [{"name": "minicpm-llama3-v2_5", "profile": "minicpm-llama3-v2_5"}]


def otter_with_missing_links(folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(PUBLISHED / "otter" / "DallE3_images.parquet", folder)
    document = json.loads((PUBLISHED / "otter" / "DallE3_instructions.json").read_text())
    document["data"]["D3_INS_000000"]["rel_ins_ids"] = ["D3_INS_000001", "D3_INS_000404", "D3_INS_000405"]
    document["data"]["D3_INS_000001"]["rel_ins_ids"] = ["D3_INS_000406"]
    (folder / "DallE3_instructions.json").write_text(json.dumps(document))
    return folder


def gzipped_lines(path: Path, copies: int) -> Path:
    """The published JSON lines repeated, gzipped: a file over ``split_bytes``."""
    text = "".join([path.read_text(encoding="utf-8")] * copies)
    target = path.parent / (path.name + ".gz")
    target.write_bytes(gzip.compress(text.encode("utf-8")))
    return target


def test_published_sources_normalize_with_every_record_counted(spark, tmp_path):
    sources = [{"name": project, "format": fmt, "annotations": str(PUBLISHED / project), "media_root": "/data/media",
                **({"media_type": media_type} if media_type else {})}
               for project, (fmt, media_type) in PROJECTS.items()]
    links = otter_with_missing_links(tmp_path / "otter-links")
    sources.append({"name": "otter-links", "format": "mimicit", "annotations": str(links), "media_root": "/data"})
    compressed = tmp_path / "compressed"
    compressed.mkdir()
    copies = 40
    big = gzipped_lines(Path(shutil.copy(annotation_files("videollama3")[0], compressed)), copies)
    (compressed / "annotations.jsonl").unlink()
    sources.append({"name": "compressed", "format": "llava", "annotations": str(compressed), "media_root": "/data"})
    config = parse_config({"lake": str(tmp_path / "lake"), "sources": sources, "models": MODELS,
                           "normalize": {"split_bytes": 200}})
    ctx = Context.create(config, spark)
    result = normalize.stage(ctx)

    expected = {project: records_of(project) for project in PROJECTS}
    expected["otter-links"] = records_of("otter")
    expected["compressed"] = copies * records_of("videollama3")
    assert result.details["sources"] == {name: {"in": n, "samples": n, "rejects": 0} for name, n in expected.items()}
    assert big.stat().st_size > 200
    planned = sum(len(get_adapter(s["format"]).plan([str(f) for f in Path(s["annotations"]).iterdir()]))
                  for s in sources)
    assert result.counts["units"] > planned  # plain files over split_bytes were read in splits
    unit = WorkUnit("compressed", (str(big),), big.stat().st_size)
    assert normalize.split_big_units(ctx, [unit]) == [unit]  # the compressed one whole
    assert result.details["notes"] == {"otter-links": {"in_context_dropped": 3}}
    assert "  source otter-links: in=2 samples=2 rejects=0 in_context_dropped=3" in summary(ctx, [result]).splitlines()
