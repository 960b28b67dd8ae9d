"""The ``m3it`` adapter: images inline as base64."""

from __future__ import annotations

from tests.support.adapters import conv, normalize_fixture, stored_image


def test_m3it_inline_images(tmp_path):
    run = normalize_fixture(tmp_path, "m3it", "m3it_vqa.jsonl")
    name = "m3it_vqa.jsonl"
    first = run.sample(name, 0)
    assert first["conversations"] == conv(
        ("system", "Answer the question about the image."),
        ("user", "<media>\nWhat color is the square?"),
        ("assistant", "Red."),
    )
    assert [stored_image(m["uri"]) for m in first["media"]] == [("JPEG", (2, 2))]
    second = run.sample(name, 1)  # URL-safe and standard base64 in one record
    assert second["conversations"][0] == {"role": "user", "content": "<media>\n<media>\nWhich image is blue?"}
    assert [stored_image(m["uri"]) for m in second["media"]] == [("JPEG", (3, 1)), ("PNG", (1, 1))]
    text = run.sample(name, 2)
    assert (text["media_type"], text["conversations"][1]) == (
        "text",
        {"role": "user", "content": "Bonjour tout le monde"},
    )
    assert run.reasons(name) == {
        3: "image_base64_str[0]: invalid base64",
        4: "image_base64_str[0]: not a JPEG, PNG, GIF, WebP or BMP image",
        5: "outputs must be a string, got null",
        7: "turn 2: empty assistant turn",
        8: "unexpected media tag <video> in inputs",
    }
