"""Frame folders: ordered images (T2Vid's rendered text, MIMIC-IT frame sets) played as a
video, sampled by the videos' plan."""
from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from udfs.sampling import sample_timestamps
from udfs.video.inputs import Deadline, VideoError
from udfs.video.results import Frame, VideoResult, failed, finishing
from udfs.video.sampling_spec import Sampling
from udfs.video.stills import encode_image, image_message, read_local

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _natural_key(name: str) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def image_files(paths: Iterable[str]) -> list[str]:
    """The image files among ``paths`` (by suffix), in natural order."""
    return sorted((p for p in paths if p.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)


def list_frames_dir(dir_path: str) -> list[str]:
    """The image files of a local folder in natural order."""
    try:
        names = os.listdir(dir_path)
    except FileNotFoundError:
        raise VideoError("folder not found") from None
    except NotADirectoryError:
        raise VideoError("not a folder") from None
    return image_files(os.path.join(dir_path, n) for n in names)


def check_inside(folder: str, files: Sequence[str]) -> None:
    """Refuses a local frame folder holding a symlink that resolves outside the folder."""
    root = os.path.realpath(folder)
    for path in files:
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise VideoError(f"{os.path.basename(path)}: symlink leads outside the frame folder")


def extract_frames_dir(
    src: str | Sequence[str],
    sampling: Sampling = Sampling(),
    *,
    source_fps: float = 1.0,
    read_bytes: Callable[[str], bytes] = read_local,
) -> VideoResult:
    """A folder of ordered images played as a video at ``source_fps``: image ``i`` is at
    ``i / source_fps``. ``src`` is a local folder or the image paths/URIs already in order
    (each read with ``read_bytes``). The sampling plan is the videos' one; each target takes
    the nearest image."""
    started = time.monotonic()
    deadline = Deadline(sampling.timeout_s)
    try:
        files = list_frames_dir(src) if isinstance(src, str) else list(src)
        if not files:
            raise VideoError("no image files in folder")
        duration_s = len(files) / source_fps
        targets = sample_timestamps(duration_s, sampling.fps, sampling.start_s, sampling.end_s, sampling.max_frames)
        if not targets:
            raise VideoError(f"clip holds no frame time (the folder plays for {duration_s:g} s)")
    except (VideoError, ValueError) as err:
        return failed(str(err), started)
    result = VideoResult(
        status="ok", strategy="frames_dir", duration_s=duration_s, fps_native=source_fps, n_frames=len(files),
    )

    def frames() -> Iterator[Frame]:
        for index, target in enumerate(targets):
            deadline.check("reading frames")
            position = min(len(files) - 1, math.floor(target * source_fps + 0.5))
            try:
                width, height, jpeg = encode_image(read_bytes(files[position]), sampling.max_side, sampling.quality)
            except Exception as err:
                raise VideoError(f"{os.path.basename(files[position])}: {image_message(err)}") from None
            result.width, result.height = width, height
            yield Frame(index, position / source_fps, width, height, jpeg)

    result.frames = finishing(result, frames(), started)
    return result
