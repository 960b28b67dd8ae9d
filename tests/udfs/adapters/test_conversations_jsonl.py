"""The ``conversations_jsonl`` adapter on its fixture files."""

from __future__ import annotations

from tests.support.adapters import conv, media_of, normalize_fixture, under_root


def test_conversations_jsonl_roles_by_position(tmp_path):
    run = normalize_fixture(tmp_path, "conversations_jsonl", "webvid_core100k.jsonl", "longalpaca_chat_fake_vid.json")
    jsonl = "webvid_core100k.jsonl"
    assert run.sample(jsonl, 0)["conversations"] == conv(
        ("user", "<media>\nDescribe this video in detail."),
        ("assistant", "A drone flies over a snowy forest at sunrise."),
    )
    assert media_of(run.sample(jsonl, 0)) == [("video", under_root("webvid/1066692580.mp4"), None, None)]
    # "from" is ignored: position decides; no tag: the placeholder is prepended
    assert run.sample(jsonl, 1)["conversations"] == conv(
        ("user", "<media>\nWhat colour is the car?"), ("assistant", "Red.")
    )
    assert run.sample(jsonl, 2)["conversations"] == conv(
        ("user", "First look at this <media> then answer: who wins?"),
        ("assistant", "The runner in blue."),
        ("user", "By how much?"),
        ("assistant", "About one metre."),
    )
    # a tag in a later turn stays there
    assert run.sample(jsonl, 4)["conversations"] == conv(
        ("user", "Q1"), ("assistant", "A1"), ("user", "<media>\nQ2"), ("assistant", "A2")
    )
    reasons = run.reasons(jsonl)
    assert reasons.pop(5).startswith("invalid JSON line: Expecting ','")
    assert reasons == {
        3: "unbalanced media tags: 2 tags for 1 media",
        6: "unexpected media tag <image>",
        7: "conversation does not end with an assistant turn",
        9: "turn 1: empty assistant turn",
        10: "absolute media path outside media_root: '/mnt/webvid/16.mp4'",
        11: "media path escapes media_root: '../../etc/17.mp4'",
    }
    fake_video = run.sample("longalpaca_chat_fake_vid.json", 0)
    assert media_of(fake_video) == [("frames_dir", under_root("LongAlpaca-pics/LongAlpaca_00001"), None, None)]
    assert fake_video["conversations"][0] == {
        "role": "user",
        "content": "<media>\nSummarize the paper shown in the video.",
    }
