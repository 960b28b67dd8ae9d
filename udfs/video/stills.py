"""Stills: an image file as a one-frame result, and the JPEG encoding frame folders share."""
from __future__ import annotations

import io
import time
from collections.abc import Callable

from PIL import Image, ImageOps

from udfs.redact import redact
from udfs.video.inputs import MAX_PIXELS, VideoError, check_pixels, input_url
from udfs.video.results import Frame, VideoResult, failed
from udfs.video.sampling_spec import output_size


def pil_quality(qscale: int) -> int:
    """The libjpeg (PIL) quality closest to ffmpeg's ``-q:v``, so stills and video frames get
    alike JPEGs. Model: ``qscale/8`` scales libjpeg's quality-50 tables, as ``(200-2q)%`` does
    above quality 50 and ``5000/q %`` below; checked against ffmpeg's JPEG sizes on a real frame."""
    scale_percent = 12.5 * qscale
    quality = 100 - scale_percent / 2 if scale_percent <= 100 else 5000 / scale_percent
    return max(1, min(95, round(quality)))


def encode_image(data: bytes, max_side: int | None, quality: int) -> tuple[int, int, bytes]:
    """(width, height, JPEG) of an image file's bytes, upright (EXIF orientation), RGB."""
    with Image.open(io.BytesIO(data)) as image:
        check_pixels(image.width, image.height)
        if max_side and image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))  # decode big JPEGs at reduced size
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            # Transparent pixels composite onto white, as a viewer shows them.
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))
        size = output_size(image.width, image.height, max_side)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=pil_quality(quality))
    return size[0], size[1], out.getvalue()


def read_local(path: str) -> bytes:
    """A local file's bytes, after ``input_url``'s checks: the default ``read_bytes``."""
    url = input_url(path)
    if not url.startswith("file:"):
        raise VideoError("only local paths are read without a read_bytes function")
    with open(url.removeprefix("file:"), "rb") as file:
        return file.read()


def image_message(err: Exception) -> str:
    """The readable reason an image could not be read or encoded."""
    if isinstance(err, VideoError):
        return str(err)
    if isinstance(err, Image.UnidentifiedImageError):
        return "not an image file"
    if isinstance(err, Image.DecompressionBombError):  # far over PIL's own limit: refused at open
        return f"image size exceeds the limit of {MAX_PIXELS} pixels"
    if isinstance(err, OSError) and err.strerror:
        return f"cannot read image: {err.strerror}"
    return redact(f"cannot read image: {type(err).__name__}: {err}")


def extract_image(
    src: str | bytes,
    *,
    max_side: int | None = None,
    quality: int = 3,
    read_bytes: Callable[[str], bytes] = read_local,
) -> VideoResult:
    """One still (a path read with ``read_bytes``, or the file's bytes) as a one-frame result
    at timestamp 0. ``quality`` is on ffmpeg's ``-q:v`` scale, like the videos'."""
    started = time.monotonic()
    try:
        width, height, jpeg = encode_image(read_bytes(src) if isinstance(src, str) else src, max_side, quality)
    except Exception as err:  # never raise out of extract_*
        return failed(image_message(err), started)
    return VideoResult(
        status="ok", strategy="image", width=width, height=height, n_frames=1, duration_s=0.0,
        elapsed_s=time.monotonic() - started, frames=iter([Frame(0, 0.0, width, height, jpeg)]),
    )
