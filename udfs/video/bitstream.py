"""H.264 and HEVC frame types read from packet bytes, without decoding: which frames a
``-skip_frame`` level leaves to decode, and how far apart those are."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av


@dataclass(frozen=True)
class SkipScan:
    """What one ``-skip_frame`` level leaves to decode, from the probe's first packets."""

    fraction: float  # of the frames, still decoded
    max_gap_s: float  # largest gap between consecutive decoded frames, in display order


def skip_scans(kinds: list[tuple[float, bool, bool]]) -> dict[str, SkipScan]:
    """Per skip level, what the frames (timestamp, is reference, is B) leave decoded. ffmpeg's
    "noref" drops non-reference frames; "bidir" drops B-frames too."""
    keeps = {"noref": lambda ref, b: ref, "bidir": lambda ref, b: ref and not b}
    if not any(b for _, _, b in kinds):
        keeps.pop("bidir")  # unknown for HEVC, where B-slices are the norm, or nothing to gain
    scans = {}
    for level, keep in keeps.items():
        kept = sorted(pts for pts, ref, b in kinds if keep(ref, b))
        if len(kept) >= 2:
            gap = max(b - a for a, b in zip(kept, kept[1:]))
            scans[level] = SkipScan(fraction=len(kept) / len(kinds), max_gap_s=gap)
    return scans


def frame_kind_reader(codec: av.codec.context.CodecContext) -> Callable[[bytes], tuple[bool, bool] | None] | None:
    """A function reading (is reference, is B) from a packet of this stream, or None if the
    codec or bitstream format is not one this reads: H.264 and HEVC with length-prefixed NAL
    units (mp4, Matroska), whose configuration record gives the length size."""
    extradata = codec.extradata or b""
    if codec.name == "h264" and len(extradata) > 4 and extradata[0] == 1:
        return functools.partial(_h264_frame_kind, length_size=(extradata[4] & 3) + 1)
    if codec.name == "hevc" and len(extradata) > 21 and extradata[0] == 1:
        return functools.partial(_hevc_frame_kind, length_size=(extradata[21] & 3) + 1)
    return None


def _nal_units(data: bytes, length_size: int) -> Iterator[bytes]:
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos: pos + length_size], "big")
        pos += length_size
        yield data[pos: pos + size]
        pos += size


def _h264_frame_kind(data: bytes, length_size: int) -> tuple[bool, bool] | None:
    """From the first slice: ``nal_ref_idc`` in its NAL header, ``slice_type`` (two Exp-Golomb
    numbers into the slice header, after ``first_mb_in_slice``)."""
    for nal in _nal_units(data, length_size):
        if nal and nal[0] & 0x1F in (1, 5):  # a coded slice (non-IDR, IDR)
            bits = "".join(f"{byte:08b}" for byte in nal[1:9])
            _, pos = _exp_golomb(bits, 0)
            slice_type, _ = _exp_golomb(bits, pos)
            if slice_type is None:
                return None
            return bool(nal[0] & 0x60), slice_type % 5 == 1
    return None


def _hevc_frame_kind(data: bytes, length_size: int) -> tuple[bool, bool] | None:
    """From the first slice's NAL type: the even types below 16 are sub-layer non-reference
    pictures (TRAIL_N, TSA_N, RADL_N, ...). Slice types are not read (see ``skip_scans``)."""
    for nal in _nal_units(data, length_size):
        if nal and (nal[0] >> 1) & 0x3F < 32:
            nal_type = (nal[0] >> 1) & 0x3F
            return not (nal_type <= 14 and nal_type % 2 == 0), False
    return None


def _exp_golomb(bits: str, pos: int) -> tuple[int | None, int]:
    """The unsigned Exp-Golomb number at ``pos`` of a bit string, and the position after it."""
    zeros = 0
    while pos + zeros < len(bits) and bits[pos + zeros] == "0":
        zeros += 1
    end = pos + 2 * zeros + 1
    if end > len(bits):
        return None, end
    return int(bits[pos + zeros: end], 2) - 1, end
