"""The ``videoinstruct100k`` adapter on its fixture files: the raw VideoInstruct-100K file and
the converted Video-ChatGPT training file."""

from __future__ import annotations

from tests.support.adapters import conv, media_of, normalize_fixture, under_root


def test_videoinstruct100k_raw_and_converted(tmp_path):
    run = normalize_fixture(tmp_path, "videoinstruct100k", "VideoInstruct_Dataset.json", "video_chatgpt_training.json")
    raw, converted = "VideoInstruct_Dataset.json", "video_chatgpt_training.json"
    answer = "The man is lifting weights in a gym, performing a series of squats."
    assert run.sample(raw, 0)["conversations"] == conv(
        ("user", "<media>\nWhat is the man doing in the video?"), ("assistant", answer)
    )
    assert media_of(run.sample(raw, 0)) == [("video", under_root("v_mTDRTiTnsjQ.mp4"), None, None)]
    assert media_of(run.sample(raw, 2)) == [("video", under_root("v_k2bW1z8C0pE.mkv"), None, None)]
    # several questions per video: keyed by index, not by the shared video id
    assert run.sample(raw, 0)["sample_id"] != run.sample(raw, 1)["sample_id"]
    assert run.reasons(raw) == {
        3: "media path escapes media_root: '../v_escape.mp4'",
        4: "video_id must be a string, got a number",
        5: "missing key 'a'",
        7: "turn 1: empty assistant turn",
        8: "absolute media path outside media_root: '/abs/v_absolute.mp4'",
    }
    # the converter puts <video> after the question on even records, before it on odd ones
    assert run.sample(converted, 0)["conversations"] == conv(
        ("user", "What is the man doing in the video?\n<media>"), ("assistant", answer)
    )
    assert run.sample(converted, 1)["conversations"] == conv(
        ("user", "<media>\nWhere does the video take place?"), ("assistant", "In a gym.")
    )
    assert media_of(run.sample(converted, 1)) == [("video", under_root("v_mTDRTiTnsjQ.mp4"), None, None)]
    assert run.reasons(converted) == {
        2: "unbalanced media tags: 2 tags for 1 media",
        3: "conversations[0].from: unknown role 'bot'",
    }

    webm = normalize_fixture(tmp_path, "videoinstruct100k", converted, options={"video_ext": "webm"})
    assert media_of(webm.sample(converted, 0)) == [("video", under_root("v_mTDRTiTnsjQ.webm"), None, None)]
