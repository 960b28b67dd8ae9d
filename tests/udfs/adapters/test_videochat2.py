"""The ``videochat2`` adapter on its fixture files (tests/fixtures/formats/videochat2)."""

from __future__ import annotations

import json

from tests.support.adapters import conv, media_of, normalize_fixture, under_root
from udfs.sample import sample_id


def test_videochat2_video_records(tmp_path):
    run = normalize_fixture(tmp_path, "videochat2", "ego_qa_train.json")
    name = "ego_qa_train.json"
    first = run.sample(name, 0)
    assert first["conversations"] == conv(
        (
            "system",
            "Review the shown video, detailing observations on objects ... "
            "select the most accurate answer from the choices provided.",
        ),
        (
            "user",
            "<media>\nQuestion: What is the color of the object that enters the scene?\n"
            "Options:\n(A) red\n(B) purple\n(C) blue\n(D) gray",
        ),
        ("assistant", "Answer: (B) purple"),
    )
    assert media_of(first) == [("video", under_root("video_05028.mp4"), None, None)]
    assert (first["format"], first["source"], first["media_type"], first["language"]) == (
        "videochat2",
        "videochat2-fixture",
        "video",
        None,
    )
    assert first["sample_id"] == sample_id("videochat2-fixture", name, 0)
    assert json.loads(first["raw"])["video"] == "video_05028.mp4"

    caption = run.sample(name, 1)
    assert caption["conversations"] == conv(("user", "<media>"), ("assistant", "A man slices bread on a wooden board."))
    assert media_of(caption) == [("video", under_root("clips/caption_01.mp4"), 2.5, 7.0)]

    multi_turn = run.sample(name, 2)
    assert multi_turn["conversations"] == conv(
        ("system", "Répondez en français."),
        ("user", "<media>\nQue fait la personne ? 🎬"),
        ("assistant", "Elle coupe du pain."),
        ("user", "Et ensuite ?"),
        ("assistant", "Elle sert le café ☕."),
    )
    assert media_of(multi_turn) == [("video", under_root("日本/動画 01.mp4"), None, None)]

    gif = run.sample(name, 10)
    assert media_of(gif) == [("video", under_root("tgif/tumblr_nk172bbdPI1u1lr18o1_250.gif"), None, None)]
    assert gif["conversations"] == conv(
        ("system", "Describe the GIF."), ("user", "<media>"), ("assistant", "A cat jumps.")
    )

    assert run.reasons(name) == {
        3: "invalid JSON: Expecting ',' delimiter (offset 62)",
        4: "absolute media path outside media_root: '/etc/passwd'",
        5: "media path escapes media_root: 'clips/../../secret/video.mp4'",
        6: "QA must be an array, got an object",
        7: "QA[0].a must be a string, got a number",
        8: "turn 1: empty assistant turn",
        9: "unexpected media tag <video> in QA[0].q",
        11: "clip start must be a number, got 'soon'",
        12: "record must be an object, got a string",
        13: "turn 2: empty user turn",
        14: "unexpected media tag <video> in QA[0].q",
    }
    assert (
        run.outcomes(name)[3][1]["raw"] == '{"video": "broken.mp4", "QA": [{"i": "", "q": "missing comma" "a": "y"}]}'
    )


def test_videochat2_media_kind_from_the_key_or_the_source_media_type(tmp_path):
    name = "m3it_image_train.json"
    by_key = normalize_fixture(tmp_path, "videochat2", name)
    assert media_of(by_key.sample(name, 0)) == [("image", under_root("coco/000000000001.jpg"), None, None)]
    assert by_key.sample(name, 0)["media_type"] == "images"
    assert media_of(by_key.sample(name, 1)) == [("video", under_root("tgif/loop.gif"), None, None)]
    assert by_key.reasons(name) == {2: "clip bounds given for an image"}

    forced_video = normalize_fixture(tmp_path, "videochat2", name, media_type="video")
    assert [m[0] for s in forced_video.samples for m in media_of(s)] == ["video", "video", "video"]
    assert media_of(forced_video.sample(name, 2)) == [("video", under_root("coco/000000000002.jpg"), 1.0, 2.0)]

    text_only = normalize_fixture(tmp_path, "videochat2", name, media_type="text")
    assert text_only.samples == []
    assert set(text_only.reasons(name).values()) == {"'image' given in a text-only source"}


def test_videochat2_truncated_file(tmp_path):
    run = normalize_fixture(tmp_path, "videochat2", "truncated.json")
    assert run.sample("truncated.json", 0)["conversations"] == conv(("user", "<media>\nQ"), ("assistant", "A"))
    reasons = run.reasons("truncated.json")
    assert list(reasons) == [1]
    assert reasons[1].startswith("invalid JSON: Expecting ',' delimiter")
    assert reasons[1].endswith("the rest of the file is skipped")
