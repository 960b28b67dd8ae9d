"""Every shard format written through its one interface and read back with its consumer's own
rules (tests/support/consumers.py, which names the code each rule was read in: haotian-liu/LLaVA
llava/train/train.py, LLaVA-VL/LLaVA-NeXT llava/train/train.py, OpenBMB/MiniCPM-V
finetune/dataset.py, Luodian/Otter pipeline/mimicit_utils/mimicit_dataset.py,
hiyouga/LLaMA-Factory src/llamafactory/data/converter.py and mm_plugin.py,
modelscope/ms-swift docs/source_en/Customization/Custom-dataset.md), plus what each format does
with system text, placeholders in later turns and in-context examples."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds

from framelake.config import ShardSettings
from tests.support.consumers import (
    check_hf_parquet,
    check_llava,
    check_messages,
    check_minicpmv,
    check_otter,
    check_webdataset,
    image_opener,
)
from tests.support.paths import PROFILE_DIR
from tests.support.shards import SampleWithFrames, build_sample, frame_row, reader_under, write_frames
from udfs.atomic import atomic_write
from udfs.filters import FilterSettings, assess
from udfs.sample import MEDIA_TOKEN, make_media, make_sample, turn
from udfs.shards import format_problem, get_format, known_formats, shard_name, to_llava, to_messages, to_minicpmv
from udfs.token_lengths import ModelProfile, load_profile
from udfs.tokenizers import load_counter

TURNS = ShardSettings(in_context="turns", mimicit_task="DC")
FLATTENING = ("minicpmv", "llava", "messages", "hf_parquet")  # formats with no place for in-context examples


def with_system(sample: dict, text: str) -> dict:
    return {**sample, "conversations": [turn("system", text), *sample["conversations"]]}


def example_with_frames(root: Path, example_id: str) -> tuple[dict, dict]:
    """An in-context example with one image, and its ``in_context_frames`` entry (example 0)."""
    image = make_media("image", f"s3://media/{example_id}.png")
    example = {"example_id": example_id, "media": [image],
               "conversations": [turn("user", f"{MEDIA_TOKEN}\nWho rides?"), turn("assistant", "An officer.")]}
    [frames] = [write_frames(root, image, [(40, 30)])]
    return example, {"example": 0, "position": 0, "kind": "image", "status": "ok", "frames": frames}


@pytest.fixture
def corpus(tmp_path: Path) -> list[SampleWithFrames]:
    """The layouts real sources give: T2Vid's (a video opening the first turn), an image in a
    later turn under a system turn (VideoChat2's ``i``, M3IT), an image and a video in the
    middle of a turn, a video read as a list of frames, and a MIMIC-IT instruction with an
    in-context example."""
    video, still, clip = (make_media("video", "s3://m/a.mp4"), make_media("image", "s3://m/b.png"),
                          make_media("video", "s3://m/c.mp4"))
    t2vid = build_sample("t2vid", [video], f"{MEDIA_TOKEN}\nWhat happens?")
    later = with_system(build_sample("later", [still], "Describe the scene.", extra_turns=[
        turn("user", f"And in this picture, {MEDIA_TOKEN}?"), turn("assistant", "A cat.")]), "Answer briefly.")
    mixed = build_sample("mixed", [still, clip], f"Is {MEDIA_TOKEN} a frame of {MEDIA_TOKEN}?")
    pictures = [make_media("image", f"s3://m/f{i}.jpg") for i in range(3)]
    as_frames = build_sample("as_frames", pictures, "\n".join([MEDIA_TOKEN] * 3) + "\nWhat moves?", media_type="video")
    example, extracted = example_with_frames(tmp_path, "ex1")
    context = {**build_sample("context", [still], f"{MEDIA_TOKEN}\nWho rides here?", in_context=[example]),
               "in_context_frames": [extracted]}
    still_frames = write_frames(tmp_path, still, [(32, 32)])
    return [
        (t2vid, [write_frames(tmp_path, video, [(64, 48)] * 4)]),
        (later, [still_frames]),
        (mixed, [still_frames, write_frames(tmp_path, clip, [(48, 32)] * 2)]),
        (as_frames, [write_frames(tmp_path, p, [(16, 16)]) for p in pictures]),
        (context, [still_frames]),
    ]


def written(tmp_path: Path, fmt: str, samples: list[SampleWithFrames]) -> list[Path]:
    uri = str(tmp_path / "out" / shard_name("m", fmt, 0))
    files = get_format(fmt, TURNS).write(uri, samples, atomic_write, reader_under(tmp_path))
    return [Path(f.uri) for f in files]


def test_every_format_loads_with_its_consumers_rules(tmp_path: Path, corpus) -> None:
    open_image = image_opener(str(tmp_path))
    loaded = {}
    for fmt in known_formats():
        paths = written(tmp_path, fmt, corpus)
        if fmt in ("minicpmv", "llava", "messages"):
            records = json.loads(paths[0].read_text(encoding="utf-8"))
            check = {"minicpmv": check_minicpmv, "llava": check_llava, "messages": check_messages}[fmt]
            for record in records:
                check(record, open_image)
        elif fmt == "hf_parquet":
            records = check_hf_parquet(str(paths[0]), open_image)
        elif fmt == "webdataset":
            records = list(wds.WebDataset(str(paths[0]), shardshuffle=False).decode("pil"))
            check_webdataset(records)
        else:
            instructions, train = (json.loads(p.read_text(encoding="utf-8")) for p in paths[:2])
            records = list(train)
            assert check_otter(instructions, train, pd.read_parquet(paths[2])) == len(corpus)
        loaded[fmt] = records
    assert {fmt: len(records) for fmt, records in loaded.items()} == dict.fromkeys(known_formats(), len(corpus))
    # The Parquet shard holds the messages format's records.
    assert loaded["hf_parquet"] == loaded["messages"]


def test_llava_has_no_system_turn_and_one_image_is_a_path(corpus) -> None:
    later, frames = corpus[1]
    record = to_llava(later, frames)
    assert record["image"] == frames[0][0]["path"]  # LLaVA's train.py opens one path
    assert record["conversations"] == [
        {"from": "human", "value": "Answer briefly.\nDescribe the scene."}, {"from": "gpt", "value": "answer of later"},
        {"from": "human", "value": "And in this picture, <image>?"}, {"from": "gpt", "value": "A cat."}]
    dropped = to_llava(later, frames, system="drop")
    assert dropped["conversations"][0] == {"from": "human", "value": "Describe the scene."}
    # The system text goes after the tags opening the turn, where LLaVA's loaders expect them.
    t2vid, t2vid_frames = corpus[0]
    opened = to_llava(with_system(t2vid, "Be brief."), t2vid_frames)
    assert opened["conversations"][0]["value"] == "<video>\nBe brief.\nWhat happens?"
    assert get_format("llava", ShardSettings(llava_system="drop")).record(later, frames) == dropped


def test_messages_keep_tags_in_place_with_a_system_message_and_videos_as_frames(corpus) -> None:
    later, frames = corpus[1]
    record = to_messages(later, frames)
    assert record["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert record["messages"][3] == {"role": "user", "content": "And in this picture, <image>?"}
    assert (record["images"], record["videos"]) == ([frames[0][0]["path"]], [])
    mixed, mixed_frames = corpus[2]
    record = to_messages(mixed, mixed_frames)
    assert record["messages"][0]["content"] == "Is <image> a frame of <video>?"
    assert record["videos"] == [[f["path"] for f in mixed_frames[1]]]
    as_frames, frame_images = corpus[3]
    record = to_messages(as_frames, frame_images)  # one video again, its frames in order
    assert (record["messages"][0]["content"], record["images"]) == ("<video>\nWhat moves?", [])
    assert record["videos"] == [[item[0]["path"] for item in frame_images]]


def test_text_holding_a_media_tag_cannot_be_a_messages_record() -> None:
    still = make_media("image", "s3://m/b.png")
    for text in ("an <image> tag", "an <audio> tag"):
        with pytest.raises(ValueError, match="text contains"):
            to_messages(build_sample("tag", [still], f"{MEDIA_TOKEN} {text}"), [[frame_row("b.jpg")]])


def test_turns_that_do_not_alternate_are_refused() -> None:
    sample = make_sample(
        source="demo", fmt="test", source_file="f", file_key="f", record_index=0, record_key="k", raw="{}",
        media=[], conversations=[turn("user", "Hi."), turn("user", "Again?"), turn("assistant", "Yes.")])
    for fmt in ("llava", "messages"):
        assert format_problem(sample, [], [fmt]) == (
            f"not expressible as {fmt}: turn 1 after the system turns is from the user, expected the assistant")


def test_in_context_examples_drop_the_sample_for_formats_without_a_place_for_them(corpus) -> None:
    context, frames = corpus[4]
    for fmt in FLATTENING:
        assert format_problem(context, frames, [fmt]) == (
            f"not expressible as {fmt}: in-context examples (1), which {fmt} records have no place for "
            "(shards.in_context: turns writes them as earlier turns)")
    assert format_problem(context, frames, ["webdataset", "mimicit"]) is None
    assert format_problem(context, frames, [get_format(fmt, TURNS) for fmt in known_formats()]) is None


def test_the_tokens_stage_records_why_in_context_examples_drop_a_sample(corpus) -> None:
    context, _ = corpus[4]
    frame = {"frame_index": 0, "timestamp_s": 0.0, "uri": "/lake/frames/b/00000.jpg", "width": 32, "height": 32,
             "bytes": 100}
    # As the tokens stage reads them: frames by uri, for the query's media and the example's.
    row = {**context, "media_frames": [{"position": 0, "kind": "image", "status": "ok", "frames": [frame]}],
           "in_context_frames": [{**context["in_context_frames"][0], "frames": [frame]}]}
    profile = ModelProfile.from_dict(load_profile("minicpm-llama3-v2_5", [PROFILE_DIR]))
    counter = load_counter(profile.tokenizer)
    [dropped] = assess(profile, counter, FilterSettings(), [row], [get_format(f) for f in ("webdataset", "llava")])
    assert not dropped["kept"] and dropped["reason"].startswith("not expressible as llava: in-context examples (1)")
    [kept] = assess(profile, counter, FilterSettings(), [row], [get_format(f, TURNS) for f in ("webdataset", "llava")])
    assert kept["kept"], kept["reason"]


def test_in_context_examples_as_earlier_turns_with_their_own_images(corpus) -> None:
    context, frames = corpus[4]
    example_frame = context["in_context_frames"][0]["frames"][0]["path"]
    record = get_format("minicpmv", TURNS).record(context, frames)
    assert record["image"] == {"<image_00>": example_frame, "<image_01>": frames[0][0]["path"]}
    assert [t["content"] for t in record["conversations"]] == [
        "<image_00>\nWho rides?", "An officer.", "<image_01>\nWho rides here?", "answer of context"]
    llava = get_format("llava", TURNS).record(context, frames)
    assert llava["image"] == [example_frame, frames[0][0]["path"]]
    assert [t["from"] for t in llava["conversations"]] == ["human", "gpt", "human", "gpt"]
    unextracted = {**context, "in_context_frames": [{**context["in_context_frames"][0], "status": "failed"}]}
    assert format_problem(unextracted, frames, [get_format("messages", TURNS)]) == (
        "not expressible as messages: in-context example 'ex1': frames missing for media 0")


def test_webdataset_json_carries_the_in_context_examples(tmp_path: Path, corpus) -> None:
    [path] = written(tmp_path, "webdataset", corpus[4:])
    [item] = wds.WebDataset(str(path), shardshuffle=False).decode("pil")
    [example] = item["json"]["in_context"]
    assert example["example_id"] == "ex1"
    assert example["conversations"] == corpus[4][0]["in_context"][0]["conversations"]
    assert [m["uri"] for m in example["media"]] == ["s3://media/ex1.png"]


def test_minicpmv_system_text_follows_the_opening_tags(corpus) -> None:
    t2vid, frames = corpus[0]
    record = to_minicpmv(with_system(t2vid, "Be brief."), frames)
    tags = "\n".join(f"<image_{i:02d}>" for i in range(4))
    assert record["conversations"][0]["content"] == f"{tags}\nBe brief.\nWhat happens?"
