"""The ``minicpmv`` adapter on its fixture files."""

from __future__ import annotations

import pytest

from tests.support.adapters import conv, media_of, normalize_fixture, under_root


@pytest.mark.parametrize(("media_type", "label"), [(None, "images"), ("video", "video")])
def test_minicpmv_indexed_image_tags(tmp_path, media_type, label):
    name = "minicpmv_t2vid.json"
    run = normalize_fixture(tmp_path, "minicpmv", name, media_type=media_type)
    frames = run.sample(name, 0)
    assert frames["conversations"] == conv(
        ("user", "<media>\n<media>\nWhat happens?"), ("assistant", "A person pours water into a glass.")
    )
    assert media_of(frames) == [
        ("image", under_root("path/to/frame_0.jpg"), None, None),
        ("image", under_root("path/to/frame_1.jpg"), None, None),
    ]
    assert frames["media_type"] == label
    assert run.sample(name, 1)["conversations"][0] == {"role": "user", "content": "<media>\nWhat is this?"}
    single = run.sample(name, 2)
    assert single["conversations"] == conv(("user", "Look: <media> — what colour?"), ("assistant", "Green."))
    assert media_of(single) == [("image", under_root("coco/4.jpg"), None, None)]
    assert run.reasons(name) == {
        3: "media tag <image_02> not found in image",
        4: "unbalanced media tags: image entry '<image_01>' has no tag",
        5: "unexpected media tag <video>",
        6: "image must be a path or an object of paths, got a number",
        7: "conversations[0].role: unknown role 'human'",
        8: "turn 1: empty assistant turn",
        9: "unexpected media tag <video>",
        10: "absolute media path outside media_root: '/data/f/0.jpg'",
        11: "media path escapes media_root: '../f/0.jpg'",
    }
