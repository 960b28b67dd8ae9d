"""The ``llava`` adapter on its fixture files, and LLaVA records emitted from its samples."""

from __future__ import annotations

from tests.support.adapters import conv, media_of, normalize_fixture, round_trip, under_root
from udfs.sample import sample_id
from udfs.shards import to_llava


def test_llava_media_and_tags(tmp_path):
    run = normalize_fixture(tmp_path, "llava", "llava_mix.json", "llava_lines.json")
    name = "llava_mix.json"
    bus = run.sample(name, 0)
    assert bus["conversations"] == conv(
        ("user", "<media>\nWhat are the colors of the bus in the image?"),
        ("assistant", "The bus in the image is white and red."),
        ("user", "What feature can be seen on the back of the bus?"),
        ("assistant", "The back of the bus features an advertisement."),
    )
    assert media_of(bus) == [("image", under_root("coco/train2017/000000033471.jpg"), None, None)]
    assert bus["media_type"] == "images"
    assert bus["sample_id"] == sample_id("llava-fixture", name, "000000033471")
    # the same id again in the file: a distinct, stable sample id
    assert run.sample(name, 11)["sample_id"] not in {
        bus["sample_id"],
        sample_id("llava-fixture", name, 11),
    }

    assert run.sample(name, 1)["conversations"][0] == {"role": "user", "content": "<media>\nWhat is it?"}
    pair = run.sample(name, 2)
    assert pair["conversations"][0] == {"role": "user", "content": "Compare <media> and <media>."}
    assert media_of(pair) == [
        ("image", under_root("pairs/left.jpg"), None, None),
        ("image", under_root("pairs/right.jpg"), None, None),
    ]
    video = run.sample(name, 3)
    assert video["conversations"][:2] == conv(
        ("system", "You are a helpful assistant."), ("user", "<media>\nWhat is cooked?")
    )
    assert media_of(video) == [("video", under_root("videos/cooking.mp4"), None, None)]
    frames = run.sample(name, 4)
    assert frames["media_type"] == "video"
    assert frames["conversations"][0] == {"role": "user", "content": "<media>\n<media>\n<media>\nWhat happens?"}
    assert media_of(frames) == [("image", under_root(f"frames/v1/000{i}.jpg"), None, None) for i in (1, 2, 3)]
    text = run.sample(name, 5)
    assert (text["media"], text["media_type"]) == ([], "text")
    assert media_of(run.sample(name, 8)) == [("frames_dir", under_root("frames/v2"), None, None)]
    assert run.reasons(name) == {
        6: "unbalanced media tags: 2 tags for 1 media",
        7: "unbalanced media tags: 1 tags for 0 media",
        9: "absolute media path outside media_root: '/data/coco/1.jpg'",
        10: "conversations[0].value must be a string, got an array",
        13: "conversations[0].value contains the reserved placeholder '<media>'",
        14: "unbalanced media tags: 1 tags for 2 media",  # a list of video files is several videos
        16: "turn 1: empty assistant turn",
        17: "unbalanced media tags: 2 tags for 1 media",
        18: "media path escapes media_root: 'coco/../../secret.jpg'",
    }
    later = run.sample(name, 12)  # a tag in a later turn stays there
    assert later["conversations"][2] == {"role": "user", "content": "<media> and now?"}
    assert run.sample("llava_lines.json", 1)["conversations"][0] == {"role": "user", "content": "Q2 <media>"}


def test_llava_video_frames_normalize_and_emit_to_the_same_record(tmp_path):
    run = normalize_fixture(tmp_path, "llava", "llava_mix.json")
    videos = [s for s in run.samples if any(m["kind"] != "image" for m in s["media"])]
    assert videos
    for first, again in round_trip(tmp_path, "llava", to_llava, videos):
        assert again == first
