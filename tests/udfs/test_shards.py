"""Shard formatting and writing, checked with real JPEG files and the readers trainers use."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds
from PIL import Image

from framelake.config import ShardSettings
from tests.support.shards import SampleWithFrames, build_sample, frame_row, reader_under, video_sample, write_frames
from udfs.atomic import atomic_write
from udfs.sample import MEDIA_TOKEN, make_media, make_sample, turn
from udfs.shards import (
    MINICPMV_TAG,
    HashingWriter,
    WebDatasetShardWriter,
    format_problem,
    get_format,
    known_formats,
    manifest_json,
    mimicit_files,
    shard_name,
    to_llava,
    to_mimicit,
    to_minicpmv,
    write_json_shard,
)


def test_minicpmv_tags_stand_where_the_placeholders_stand_and_paths_exist(tmp_path: Path) -> None:
    video = make_media("video", "s3://media/clip.mp4", 2.0, 6.0)
    still = make_media("image", "s3://media/still.png")
    sample = build_sample(
        "mixed", [video, still], f"Compare {MEDIA_TOKEN} with the picture.",
        extra_turns=[turn("user", f"And this one, {MEDIA_TOKEN}?"), turn("assistant", "Nothing.")],
    )
    frames = [write_frames(tmp_path, video, [(64, 48)] * 3), write_frames(tmp_path, still, [(32, 32)])]
    with atomic_write(tmp_path / "out" / "shard-00000.json") as out:
        assert write_json_shard([to_minicpmv(sample, frames)], out) == 1

    [record] = json.loads((tmp_path / "out" / "shard-00000.json").read_text(encoding="utf-8"))
    tags = ["<image_00>", "<image_01>", "<image_02>", "<image_03>"]
    assert list(record["image"]) == tags
    assert list(record["image"].values()) == [f["path"] for item in frames for f in item]
    # A video's frame tags joined by "\n" in its placeholder's place, the still's in a later turn.
    assert [t["content"] for t in record["conversations"]] == [
        "Compare <image_00>\n<image_01>\n<image_02> with the picture.", "answer of mixed",
        "And this one, <image_03>?", "Nothing."]
    assert [t["role"] for t in record["conversations"]] == ["user", "assistant", "user", "assistant"]
    # MiniCPM-V's rule: every tag in any content is a key of "image"; every image is used.
    used = [tag for t in record["conversations"] for tag in MINICPMV_TAG.findall(t["content"])]
    assert used == tags
    assert all((tmp_path / path).is_file() for path in record["image"].values())


def test_minicpmv_keeps_t2vids_layout_for_a_video_opening_the_first_turn() -> None:
    video = make_media("video", "s3://media/clip.mp4")
    for first_user in (f"{MEDIA_TOKEN}\nWhat happens?", f"{MEDIA_TOKEN}What happens?", f" {MEDIA_TOKEN} What happens?"):
        record = to_minicpmv(build_sample("t2vid", [video], first_user), [[frame_row(f"{i}.jpg", i) for i in range(3)]])
        assert record["conversations"][0]["content"] == "<image_00>\n<image_01>\n<image_02>\nWhat happens?"


def test_minicpmv_tag_width_grows_consistently_past_99_frames() -> None:
    video = make_media("frames_dir", "s3://media/pics")
    sample = build_sample("long", [video], MEDIA_TOKEN)
    record = to_minicpmv(sample, [[frame_row(f"f/{i}.jpg", i) for i in range(120)]])
    tags = re.split(r"(<image_\d+>)", record["conversations"][0]["content"])[1::2]
    assert tags == [f"<image_{i:03d}>" for i in range(120)] == list(record["image"])


def test_minicpmv_system_text_goes_into_first_user_turn() -> None:
    still = make_media("image", "s3://media/still.png")
    sample = make_sample(
        source="demo", fmt="test", source_file="f", file_key="f", record_index=0, record_key="sys", media=[still],
        raw="{}",
        conversations=[
            turn("system", "Be brief."), turn("user", f"{MEDIA_TOKEN} Describe."), turn("assistant", "A cat."),
        ],
    )
    record = to_minicpmv(sample, [[frame_row("s.jpg")]])
    assert record["conversations"] == [
        {"role": "user", "content": "<image_00>\nBe brief.\nDescribe."},
        {"role": "assistant", "content": "A cat."},
    ]


@pytest.mark.parametrize(
    ("formatter", "text"),
    [(to_minicpmv, "see <image_7> here"), (to_llava, "an <image> tag"), (to_llava, "a <video> tag")],
)
def test_text_that_looks_like_a_media_tag_is_rejected(formatter, text: str) -> None:
    still = make_media("image", "s3://media/still.png")
    sample = build_sample("tag", [still], f"{MEDIA_TOKEN} {text}")
    with pytest.raises(ValueError, match="text contains"):
        formatter(sample, [[frame_row("s.jpg")]])


def llava_to_canonical(record: dict) -> tuple[list[dict], list[str], list[str]]:
    """What a LLaVA reader makes of a record: canonical turns, and the media of each tag in order."""
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    images, video = iter(record.get("image", [])), record.get("video", [])
    kinds = re.findall(r"<image>|<video>", "".join(t["value"] for t in record["conversations"]))
    media = [next(images) if kind == "<image>" else "video" for kind in kinds]
    conversations = [
        {"role": roles[t["from"]], "content": re.sub(r"<image>|<video>", MEDIA_TOKEN, t["value"])}
        for t in record["conversations"]
    ]
    return conversations, media, video


def test_llava_round_trip_keeps_placeholder_positions(tmp_path: Path) -> None:
    first, second = make_media("image", "s3://a.png"), make_media("image", "s3://b.png")
    video = make_media("video", "s3://v.mp4")
    sample = build_sample("llava", [first, video, second], f"Is {MEDIA_TOKEN} in {MEDIA_TOKEN}, unlike {MEDIA_TOKEN}?")
    frames = [
        write_frames(tmp_path, first, [(16, 16)]),
        write_frames(tmp_path, video, [(32, 24)] * 4),
        write_frames(tmp_path, second, [(8, 8)]),
    ]
    record = to_llava(sample, frames)

    assert record["conversations"][0] == {"from": "human", "value": "Is <image> in <video>, unlike <image>?"}
    conversations, media, video_frames = llava_to_canonical(record)
    assert conversations == sample["conversations"]
    assert media == [frames[0][0]["path"], "video", frames[2][0]["path"]]
    assert video_frames == [f["path"] for f in frames[1]]


def test_llava_rejects_two_videos() -> None:
    videos = [make_media("video", "s3://a.mp4"), make_media("video", "s3://b.mp4")]
    sample = build_sample("two", videos, MEDIA_TOKEN * 2)
    with pytest.raises(ValueError, match="one video"):
        to_llava(sample, [[frame_row("a.jpg")], [frame_row("b.jpg")]])


def write_webdataset(root: Path, directory: Path, samples: list[SampleWithFrames], per_shard: int) -> list[dict]:
    """Write tar shards of ``per_shard`` consecutive samples; returns their manifest rows."""
    rows = []
    for index in range(0, len(samples), per_shard):
        name = shard_name("minicpmv-2.6", "webdataset", index // per_shard)
        with atomic_write(directory / name) as raw:
            out = HashingWriter(raw)
            with WebDatasetShardWriter(out) as writer:
                for sample, frames in samples[index:index + per_shard]:
                    writer.write(sample, frames, reader_under(root))
        rows.append({"model": "minicpmv-2.6", "format": "webdataset", "shard_path": name, "samples": writer.samples,
                     "bytes": out.bytes, "token_sum": 0, "sha256": out.sha256})
    return rows


def test_webdataset_shards_read_back_with_webdataset(tmp_path: Path) -> None:
    samples = [video_sample(tmp_path, f"clip{i}", n_frames=2 + i, size=(40 + i * 8, 30)) for i in range(5)]
    rows = write_webdataset(tmp_path, tmp_path / "out", samples, per_shard=2)
    assert [row["samples"] for row in rows] == [2, 2, 1]

    expected = {sample["sample_id"]: (sample, frames) for sample, frames in samples}
    seen = []
    for row in rows:
        path = tmp_path / "out" / row["shard_path"]
        assert row["bytes"] == path.stat().st_size and row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        for item in wds.WebDataset(str(path), shardshuffle=False).decode("pil"):
            sample, frames = expected[item["__key__"]]
            meta = item["json"]
            assert meta["conversations"] == sample["conversations"]
            assert (meta["source"], meta["media_type"]) == ("demo", "video")
            described = meta["media"][0]["frames"]
            assert [f["timestamp_s"] for f in described] == [f["timestamp_s"] for f in frames[0]]
            for frame in described:
                image = item[frame["field"]]
                assert isinstance(image, Image.Image) and image.size == (frame["width"], frame["height"])
            assert sorted(k for k in item if k.endswith(".jpg")) == [f"{i:03d}.jpg" for i in range(len(frames[0]))]
            seen.append(item["__key__"])
    assert seen == list(expected)


def test_same_samples_give_byte_identical_shards(tmp_path: Path) -> None:
    samples = [video_sample(tmp_path, f"clip{i}", n_frames=3) for i in range(3)]
    first = write_webdataset(tmp_path, tmp_path / "a", samples, per_shard=10)
    second = write_webdataset(tmp_path, tmp_path / "b", samples, per_shard=10)
    assert first == second

    records = [to_minicpmv(sample, frames) for sample, frames in samples]
    digests = set()
    for directory in ("a", "b"):
        with atomic_write(tmp_path / directory / "shard.json") as raw:
            out = HashingWriter(raw)
            write_json_shard(iter(records), out)
        digests.add(out.sha256)
    assert len(digests) == 1


def test_a_failing_frame_read_leaves_the_shard_readable(tmp_path: Path) -> None:
    good, bad = video_sample(tmp_path, "good", 2), video_sample(tmp_path, "bad", 2)
    (tmp_path / bad[1][0][1]["path"]).unlink()
    buffer = io.BytesIO()
    with WebDatasetShardWriter(buffer) as writer:
        with pytest.raises(FileNotFoundError):
            writer.write(*bad, reader_under(tmp_path))
        writer.write(*good, reader_under(tmp_path))
    (tmp_path / "one.tar").write_bytes(buffer.getvalue())
    keys = [item["__key__"] for item in wds.WebDataset(str(tmp_path / "one.tar"), shardshuffle=False)]
    assert keys == [good[0]["sample_id"]]


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "shard-00000.json") as out:
            out.write(b"[")
            raise RuntimeError("job died")
    assert list(tmp_path.iterdir()) == []


def test_every_format_writes_a_shard_through_the_one_interface(tmp_path: Path) -> None:
    """What the shards job does for each format: the files ``write`` reports are there with its
    bytes and sha256, and only the first file of a shard counts the shard's samples."""
    assert known_formats() == ("minicpmv", "llava", "webdataset", "mimicit", "messages", "hf_parquet")
    samples = [video_sample(tmp_path, f"clip{i}", n_frames=2) for i in range(3)]
    settings = ShardSettings(mimicit_task="TVC")
    for fmt in known_formats():
        uri = str(tmp_path / "out" / shard_name("m", fmt, 0))
        files = get_format(fmt, settings).write(uri, samples, atomic_write, reader_under(tmp_path))
        assert [f.samples for f in files] == [3] + [0] * (len(files) - 1)
        for written in files:
            content = Path(written.uri).read_bytes()
            assert (written.bytes, written.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    mimicit = sorted((tmp_path / "out" / "m" / "mimicit").iterdir())
    assert [path.name for path in mimicit] == ["shard-00000.parquet", "shard-00000_instructions.json",
                                               "shard-00000_train.json"]
    assert all(key.startswith("TVC_INS_") for key in json.loads(mimicit[2].read_text(encoding="utf-8")))
    with pytest.raises(ValueError, match="unknown shard format 'parquet'"):
        get_format("parquet")


def test_shard_names_and_manifest_are_deterministic() -> None:
    assert shard_name("idefics3", "llava", 3) == "idefics3/llava/shard-00003.json"
    assert shard_name("idefics3", "webdataset", 0).endswith("/shard-00000.tar")
    assert shard_name("idefics3", "mimicit", 12) == "idefics3/mimicit/shard-00012"  # the stem of Otter's triple
    # Keys deliberately out of schema order: the manifest puts them back in order.
    rows = [
        {"sha256": "b", "token_sum": 5, "bytes": 20, "samples": 2, "shard_path": "m/llava/shard-00001.json",
         "format": "llava", "model": "m"},
        {"sha256": "a", "token_sum": 7, "bytes": 10, "samples": 1, "shard_path": "m/llava/shard-00000.json",
         "format": "llava", "model": "m"},
    ]
    text = manifest_json(rows, model="m", fmt="llava", config_fingerprint="abc")
    assert text == manifest_json(rows[::-1], model="m", fmt="llava", config_fingerprint="abc")
    manifest = json.loads(text)
    assert (manifest["samples"], manifest["bytes"], manifest["token_sum"]) == (3, 30, 12)
    assert list(manifest["shards"][0]) == ["model", "format", "shard_path", "samples", "bytes", "token_sum", "sha256"]
    assert [row["shard_path"] for row in manifest["shards"]] == ["m/llava/shard-00000.json", "m/llava/shard-00001.json"]


def test_mimicit_triple_ids_line_up_and_images_decode(tmp_path: Path) -> None:
    video = make_media("video", "s3://media/ride.mp4")
    example = {
        "example_id": "ex1",
        "media": [],
        "conversations": [turn("user", "Who rides?"), turn("assistant", "A police officer.")],
    }
    query = build_sample("q1", [video], f"{MEDIA_TOKEN}\nWhere is the horse?", in_context=[example])
    other = build_sample("q2", [video], f"What colour is it? {MEDIA_TOKEN}")
    broken = build_sample("q3", [video], MEDIA_TOKEN)
    frames = [write_frames(tmp_path, video, [(48, 32), (48, 32), (48, 32)])]
    artifacts = to_mimicit([(query, frames), (other, frames), (broken, [])], "DC", reader_under(tmp_path))

    data = artifacts.instructions["data"]
    query_id = f"DC_INS_{query['sample_id']}"
    assert set(artifacts.train) == {query_id, f"DC_INS_{other['sample_id']}"}
    assert artifacts.dropped == [(broken["sample_id"], "0 frame lists for 1 media items")]
    assert data[query_id]["instruction"] == "Where is the horse?"
    assert data[query_id]["answer"] == "answer of q1"
    [example_id] = artifacts.train[query_id]
    assert data[query_id]["rel_ins_ids"] == [example_id]
    assert data[example_id]["instruction"] == "Who rides?"
    assert all(ref in data for refs in artifacts.train.values() for ref in refs)

    files = mimicit_files(artifacts, "DC")
    assert [name for name, _ in files] == ["DC_instructions.json", "DC_train.json", "DC.parquet"]
    for name, content in files:
        (tmp_path / name).write_bytes(content)
    assert json.loads((tmp_path / "DC_instructions.json").read_text(encoding="utf-8")) == artifacts.instructions
    assert json.loads((tmp_path / "DC_train.json").read_text(encoding="utf-8")) == artifacts.train
    images = pd.read_parquet(tmp_path / "DC.parquet")  # as Otter loads it
    assert sorted(images.index) == sorted(data[query_id]["image_ids"])  # frames shared by both samples, stored once
    for image_id, frame in zip(data[query_id]["image_ids"], frames[0]):
        jpeg = base64.urlsafe_b64decode(images.loc[image_id]["base64"])
        assert jpeg == (tmp_path / frame["path"]).read_bytes()
        assert Image.open(io.BytesIO(jpeg)).size == (48, 32)


def test_format_problem_names_the_first_format_that_refuses() -> None:
    videos = [make_media("video", "s3://a.mp4"), make_media("video", "s3://b.mp4")]
    two_videos = build_sample("two", videos, MEDIA_TOKEN * 2)
    frames = [[frame_row("a.jpg")], [frame_row("b.jpg")]]
    assert format_problem(two_videos, frames, ["minicpmv", "webdataset", "mimicit"]) is None
    assert format_problem(two_videos, frames, ["minicpmv", "llava"]) == (
        "not expressible as llava: LLaVA records hold one video; sample has several")
    assert format_problem(two_videos, frames[:1], ["webdataset"]) == (
        "not expressible as webdataset: 1 frame lists for 2 media items")
    no_answer = {**two_videos, "conversations": [turn("user", MEDIA_TOKEN * 2)]}
    assert format_problem(no_answer, frames, ["mimicit"]) == (
        "not expressible as mimicit: conversation has no assistant turn")
