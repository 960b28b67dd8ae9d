"""M3IT (MMInstruction/M3IT): ``{"instruction", "inputs", "outputs", "image_base64_str": [...]}``.

``instruction`` is the system turn (when not blank), the user turn is one placeholder per
image then ``inputs``, the assistant turn ``outputs``. Images are base64 (standard or URL-safe)
and stored in the lake with ``put_inline``. M3IT's video tasks give frames as images: those
samples are "images". Records have no id: samples are keyed by index.
"""

from __future__ import annotations

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import field, inline_image, required, source_text, system_turns, with_media_prefix
from udfs.sample import turn


@register("m3it")
class M3ITAdapter(JsonRecordsAdapter):
    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        system = system_turns(source_text(required(obj, "instruction"), "instruction"))
        inputs = source_text(required(obj, "inputs"), "inputs")
        outputs = source_text(required(obj, "outputs"), "outputs")
        images = field(obj, "image_base64_str", list)
        media = [inline_image(encoded, f"image_base64_str[{k}]", ctx) for k, encoded in enumerate(images)]
        turns = [*system, turn("user", with_media_prefix(inputs, len(media))), turn("assistant", outputs)]
        return SampleParts(media=media, conversations=turns)
