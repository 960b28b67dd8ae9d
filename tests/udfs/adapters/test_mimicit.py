"""The ``mimicit`` adapter: a task's instructions, train and image files (JSON or Parquet)."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from tests.support.adapters import Run, context, conv, normalize_files, stored_image
from tests.support.paths import FORMATS
from udfs.adapters import get_adapter
from udfs.sample import sample_id

DC_FILES = ("DC_instructions.json", "DC_train.json", "DC.json")
DC_ANSWER = "The main focus of the video is a police officer riding a horse down the street."


def assert_dc_outcomes(run: Run) -> None:
    name = "DC_instructions.json"
    query = run.sample(name, 0)
    assert query["conversations"] == conv(
        ("user", "<media>\n<media>\nWho is the main focus of the video?"), ("assistant", DC_ANSWER)
    )
    assert [stored_image(m["uri"]) for m in query["media"]] == [("JPEG", (2, 2)), ("JPEG", (3, 1))]
    assert query["media_type"] == "images"
    assert query["sample_id"] == sample_id("mimicit-fixture", f"DC/{name}", "DC_INS_00001")
    # DC_train.json overrides rel_ins_ids ["DC_INS_00002", "DC_INS_00003"]
    (example,) = query["in_context"]
    assert example["example_id"] == "DC_INS_00003"
    assert example["conversations"] == conv(("user", "<media>\n警察骑的是什么动物？"), ("assistant", "一匹马。"))
    assert [stored_image(m["uri"]) for m in example["media"]] == [("PNG", (1, 1))]
    # not in the train file: rel_ins_ids are the examples
    chinese = run.sample(name, 2)
    assert [e["example_id"] for e in chinese["in_context"]] == ["DC_INS_00001"]
    assert chinese["in_context"][0]["media"] == query["media"]
    assert run.sample(name, 1)["in_context"] == []
    # an example id naming no instruction is dropped, and noted
    dropped = run.sample(name, 6)
    assert dropped["in_context"] == []
    assert dropped["notes"] == [{"kind": "in_context_dropped", "count": 1, "detail": "DC_INS_09999"}]
    assert query["notes"] == []
    text_only = run.sample(name, 5)
    assert (text_only["media"], text_only["media_type"]) == ([], "text")
    assert text_only["conversations"] == conv(("user", "Say hello."), ("assistant", "Hello!"))
    assert run.reasons(name) == {
        3: "image id 'DC_IMG_v_N1c3C_Npr-E_0099' not found in DC.json",
        4: "image 'DC_IMG_bad': invalid base64",
        7: "instruction must be a string, got a number",
        8: "turn 1: empty assistant turn",
        9: "unexpected media tag <video> in instruction",
    }


def test_mimicit_instructions_examples_and_images(tmp_path):
    ctx = context(tmp_path, "mimicit")
    files = [FORMATS / "mimicit" / "DC" / f for f in DC_FILES] + sorted((FORMATS / "mimicit" / "LA").iterdir())
    run = normalize_files(files, ctx)
    assert_dc_outcomes(run)
    shared = run.sample("LADD_instructions.json", 0)  # LADD finds its images in LA.json
    assert [stored_image(m["uri"]) for m in shared["media"]] == [("JPEG", (3, 1)), ("PNG", (1, 1))]
    # only referenced images are stored: 3 distinct ones
    assert len(list((tmp_path / "inline").iterdir())) == 3


def test_mimicit_parquet_images_give_the_same_samples(tmp_path):
    task = tmp_path / "DC"
    task.mkdir()
    for name in DC_FILES[:2]:
        shutil.copy(FORMATS / "mimicit" / "DC" / name, task / name)
    images = json.loads((FORMATS / "mimicit" / "DC" / "DC.json").read_text())
    pd.DataFrame({"base64": list(images.values())}, index=list(images)).to_parquet(task / "DC.parquet")
    run = normalize_files(sorted(task.iterdir()), context(tmp_path, "mimicit"))
    from_json = normalize_files([FORMATS / "mimicit" / "DC" / f for f in DC_FILES], context(tmp_path, "mimicit"))
    assert [(s["conversations"], s["media"], s["in_context"]) for s in run.samples] == [
        (s["conversations"], s["media"], s["in_context"]) for s in from_json.samples
    ]
    assert len(run.samples) == 5 and len(run.rejects) == 5


def test_mimicit_plan_groups_the_files_of_a_task():
    plan = get_adapter("mimicit").plan(
        [
            "s3://b/LA/LA.json",
            "s3://b/LA/LADD_instructions.json",
            "s3://b/LA/LACONV_train.json",
            "s3://b/LA/LACONV_instructions.json",
            "s3://b/DC/DC_train.json",
            "s3://b/DC/DC.parquet",
            "s3://b/DC/DC_instructions.json",
            "s3://b/SD/SD_train.json",
        ]
    )
    assert plan == [
        ["s3://b/DC/DC_instructions.json", "s3://b/DC/DC_train.json", "s3://b/DC/DC.parquet"],
        ["s3://b/LA/LACONV_instructions.json", "s3://b/LA/LACONV_train.json", "s3://b/LA/LA.json"],
        ["s3://b/LA/LADD_instructions.json", "s3://b/LA/LA.json"],
        ["s3://b/SD/SD_train.json"],
    ]


def test_mimicit_broken_member_missing_image_file_and_orphan_train_file(tmp_path):
    task = tmp_path / "SN"
    task.mkdir()
    (task / "SN_instructions.json").write_text(
        '{"meta": {}, "data": {"SN_INS_1": {"instruction": "Q", "answer": "A", "image_ids": ["SN_IMG_1"]},'
        ' "SN_INS_2": {"instruction": "Q" "answer": "A"},'
        ' "SN_INS_3": {"instruction": "Hi", "answer": "Hello"}}}'
    )
    (tmp_path / "TV_train.json").write_text("{}")
    run = normalize_files([task / "SN_instructions.json", tmp_path / "TV_train.json"], context(tmp_path, "mimicit"))
    assert run.reasons("SN_instructions.json") == {
        0: "image 'SN_IMG_1': the task has no image file",
        1: "invalid JSON: Expecting ',' delimiter (offset 20)",
    }
    assert run.sample("SN_instructions.json", 2)["conversations"] == conv(("user", "Hi"), ("assistant", "Hello"))
    assert run.reasons("TV_train.json") == {0: "TV_train.json: no matching *_instructions.json file"}
