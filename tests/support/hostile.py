"""A corpus of hostile inputs, built at test time in a folder: annotation files in the
registered formats and media files, each hostile record or media item next to good ones.

``build_corpus(root)`` returns the config ``sources`` and, per case, where it must end: a
``rejects`` row whose reason holds a substring, a ``failed`` videos row whose error holds
one, or (duplicate ids) a sample of its own. Nothing big is committed: the 100 MB record and
the media are written here.
"""
from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tests.support.videos import make_audio_only, make_corrupt_video, make_test_video, make_truncated_video

HUGE_STRING_BYTES = 100 * 1024 * 1024
DEEP_NESTING = 100_000
GOOD_QA = [{"q": "What happens?", "a": "Something moves."}]


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    file: str  # annotation file name, under the corpus root
    index: int  # record index in that file
    ends_in: str  # "reject", "failed" (videos) or "sample"
    reason: str = ""  # substring of the reject reason or the video error


@dataclass
class Corpus:
    sources: list[dict]
    cases: list[Case]
    records: dict[str, int] = field(default_factory=dict)  # records written per source
    good: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # (file, index) per source


class _File:
    """One annotation file being written: raw lines (JSON lines) or array elements."""

    def __init__(self, corpus: Corpus, root: Path, source: str, name: str):
        self.corpus, self.root, self.source, self.name = corpus, root, source, name
        self.parts: list[bytes] = []

    def good(self, record: dict) -> None:
        self.corpus.good.setdefault(self.source, []).append((self.name, len(self.parts)))
        self.parts.append(json.dumps(record).encode())

    def case(self, name: str, raw: bytes | dict, ends_in: str, reason: str = "") -> None:
        data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
        self.corpus.cases.append(Case(name, self.source, self.name, len(self.parts), ends_in, reason))
        self.parts.append(data)

    def write_lines(self) -> str:
        return self._write(b"\n".join(self.parts) + b"\n")

    def write_raw(self) -> str:
        """The only part, as the whole file."""
        return self._write(self.parts[0])

    def write_array(self, tail: bytes = b"]") -> str:
        return self._write(b"[" + b",\n".join(self.parts) + tail)

    def _write(self, data: bytes) -> str:
        path = self.root / "annotations" / self.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.corpus.records[self.source] = self.corpus.records.get(self.source, 0) + len(self.parts)
        return str(path)


# -- media ---------------------------------------------------------------------------------
def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` (1-bit grey; the pixel data
    holds only a few rows)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compress = zlib.compressobj(9)
    idat = b"".join(compress.compress(row) for _ in range(16)) + compress.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A 16x16 JPEG with its frame header (SOF0) patched to declare ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """A one-frame GIF whose logical screen is ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("P", (16, 16)).save(out, "GIF")
    data = bytearray(out.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def y4m_declaring(width: int, height: int) -> bytes:
    """A raw YUV4MPEG stream header declaring ``width`` x ``height``, with a few bytes of frame."""
    return f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + b"\x80" * 4096


def _png(size: tuple[int, int], color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def build_media(media: Path, outside: Path) -> None:
    media.mkdir(parents=True)
    outside.mkdir(parents=True)
    good = make_test_video(media / "good.mp4", seconds=1.0, fps=10, size=(64, 48))
    (media / "good.png").write_bytes(_png((32, 24), "blue"))
    (media / "empty.mp4").write_bytes(b"")
    make_truncated_video(good, media / "truncated.mp4")
    make_corrupt_video(media / "corrupt.mp4")
    (media / "text.mp4").write_text("not a video\n" * 100)
    (media / "small_png.mp4").write_bytes(_png((32, 24), "red"))
    make_audio_only(media / "audio_only.m4a")
    (media / "huge_gif.gif").write_bytes(gif_declaring(16000, 16000))
    (media / "huge_y4m.mp4").write_bytes(y4m_declaring(16000, 16000))
    # 16000, not 16384: ffmpeg's own size check refuses 16384x16384 before the probe sees it.
    (media / "huge_png.mp4").write_bytes(png_declaring(16000, 16000))
    (media / "huge.jpg").write_bytes(jpeg_declaring(16384, 16384))
    (media / "huge.png").write_bytes(png_declaring(16384, 16384))
    (media / "text.jpg").write_text("not an image\n")
    os.mkfifo(media / "fifo.mp4")
    os.mkfifo(media / "fifo.jpg")
    (media / "folder.mp4").mkdir()
    (media / "folder.jpg").mkdir()
    (media / "locked.mp4").write_bytes(good.read_bytes())
    os.chmod(media / "locked.mp4", 0)
    (media / "playlist.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    (media / "playlist.mp4").write_bytes((media / "playlist.m3u8").read_bytes())
    (media / "concat.mp4").write_text("ffconcat version 1.0\nfile /etc/passwd\n")
    # Symlinks escaping media_root: a file, and a folder on the way.
    (outside / "secret.mp4").write_bytes(good.read_bytes())
    os.symlink(outside / "secret.mp4", media / "escape.mp4")
    os.symlink(outside, media / "escape_dir")
    os.symlink("/etc/passwd", media / "passwd.mp4")
    # Frame folders (played as videos): a good one, a FIFO frame, an escaping frame, none.
    for name in ("frames_good", "frames_fifo", "frames_symlink", "frames_empty"):
        (media / name).mkdir()
    for i in range(3):
        (media / "frames_good" / f"{i:05d}.png").write_bytes(_png((32, 24), "white"))
    (media / "frames_fifo" / "00000.png").write_bytes(_png((32, 24), "white"))
    os.mkfifo(media / "frames_fifo" / "00001.png")
    (outside / "private.png").write_bytes(_png((32, 24), "black"))
    os.symlink(outside / "private.png", media / "frames_symlink" / "00000.png")


def can_read_unreadable_files() -> bool:
    """Root reads files whatever their mode: the permission case cannot fail then."""
    return os.geteuid() == 0


# -- annotations ---------------------------------------------------------------------------
def llava(video: str = "good.mp4", text: str = "<video>\nWhat happens?", **extra) -> dict:
    return {"video": video, "conversations": [{"from": "human", "value": text},
                                               {"from": "gpt", "value": "Something moves."}], **extra}


def _llava_cases(f: _File) -> None:
    f.good(llava(id="first"))
    f.case("malformed JSON", b'{"id": "x", "conversations": [', "reject", "invalid JSON line")
    f.case("record not an object", b"[1, 2, 3]", "reject", "record must be an object")
    f.case("conversations not a list", llava() | {"conversations": "hello"}, "reject",
           "conversations must be an array")
    f.case("missing conversations", {"video": "good.mp4"}, "reject", "missing key 'conversations'")
    f.case("empty conversations", llava() | {"conversations": []}, "reject", "conversations is empty")
    f.case("turn not an object", llava() | {"conversations": [1]}, "reject", "conversations[0] must be an object")
    f.case("turn value a number", llava() | {"conversations": [{"from": "human", "value": 42}]}, "reject",
           "conversations[0].value must be a string")
    f.case("unknown role", llava() | {"conversations": [{"from": "robot", "value": "hi"}]}, "reject",
           "unknown role")
    f.case("unknown media tag", llava(text="<image_3>\nWhat?"), "reject", "unexpected media tag <image_3>")
    f.case("two tags for one video", llava(text="<video><video>\nWhat?"), "reject",
           "unbalanced media tags: 2 tags for 1 media")
    f.case("no tag for two images",
           {"image": ["good.png", "good.png"], "conversations": llava(text="What?")["conversations"]},
           "reject", "unbalanced media tags: 0 tags for 2 media")
    f.case("reserved placeholder in text", llava(text="<video><media>"), "reject", "reserved placeholder")
    f.case("NUL byte in JSON text", b'{"video": "good.mp4", "conversations": [{"from": "human", "value": "a\x00b"}]}',
           "reject", "Invalid control character")
    f.case("NUL in media path", llava(video="good\u0000.mp4"), "reject", "NUL byte")
    f.case("invalid UTF-8", b'{"video": "good.mp4", "note": "\xff\xfe\xc3", "conversations": []}', "reject",
           "invalid UTF-8")
    f.case("integer of 5000 digits", b'{"video": "good.mp4", "n": ' + b"9" * 5000 + b"}", "reject",
           "integer string conversion")
    f.case("unbalanced deep nesting", b"[" * DEEP_NESTING, "reject", "nested too deeply")
    f.case("balanced deep nesting", b"[" * DEEP_NESTING + b"]" * DEEP_NESTING, "reject", "nested too deeply")
    f.case("path traversal", llava(video="../../../../etc/passwd"), "reject", "escapes media_root")
    f.case("absolute path", llava(video="/etc/passwd"), "reject", "absolute media path")
    f.case("file URL path", llava(video="file:///etc/passwd"), "reject", "media URI scheme 'file' not supported")
    f.case("symlink escaping media_root", llava(video="escape.mp4"), "reject", "through a symlink")
    f.case("symlink folder escaping media_root", llava(video="escape_dir/secret.mp4"), "reject", "through a symlink")
    f.case("symlink to /etc/passwd", llava(video="passwd.mp4"), "reject", "through a symlink")
    f.case("ends with a user turn", llava() | {"conversations": [{"from": "human", "value": "<video> hi"}]},
           "reject", "does not end with an assistant turn")
    f.case("empty answer", llava() | {"conversations": [{"from": "human", "value": "<video> hi"},
                                                         {"from": "gpt", "value": "  "}]},
           "reject", "empty assistant turn")
    f.case("image and video, no image tag", llava(image="good.png"), "reject",
           "unbalanced media tags: 0 <image> tags for 1 media")
    f.case("empty image list", {"image": [], "conversations": llava()["conversations"]}, "reject",
           "image is an empty array")
    f.case("data after the value", json.dumps(llava()).encode() + b" trailing", "reject",
           "unexpected data after the value")
    f.good(llava(id="last"))
    # Same id as the first record: a sample of its own, with its own id, not an overwrite.
    f.case("duplicate id", llava(id="first"), "sample")


def vc2(video: str = "good.mp4", **extra) -> dict:
    return {"video": video, "QA": GOOD_QA, **extra}


def _videochat2_cases(f: _File, permissions_enforced: bool) -> None:
    f.good(vc2())
    f.case("start NaN", b'{"video": "good.mp4", "start": NaN, "end": 1, "QA": []}', "reject",
           "clip start must be a finite number")
    f.case("end Infinity", b'{"video": "good.mp4", "start": 0, "end": Infinity, "QA": []}', "reject",
           "clip end must be a finite number")
    f.case("start 1e400", b'{"video": "good.mp4", "start": 1e400, "QA": []}', "reject",
           "clip start must be a finite number")
    f.case("start past float range", b'{"video": "good.mp4", "start": 1' + b"0" * 400 + b', "QA": []}', "reject",
           "clip start must be a number")
    f.case("negative start", vc2(start=-5, end=1), "reject", "clip start must be a finite number >= 0")
    f.case("inverted clip", vc2(start=5, end=2), "reject", "clip end 2.0 is not after start 5.0")
    f.case("start a string", vc2(start="soon"), "reject", "clip start must be a number")
    f.case("start a boolean", vc2(start=True), "reject", "got bool")
    f.case("QA not a list", vc2() | {"QA": "hello"}, "reject", "QA must be an array")
    f.case("QA empty", vc2() | {"QA": []}, "reject", "QA is empty")
    f.case("file name too long", vc2("a" * 2048 + ".mp4"), "failed", "File name too long")
    media_cases = [
        ("zero-byte video", "empty.mp4", "file is empty"),
        ("truncated video", "truncated.mp4", "invalid data found"),
        ("random bytes after ftyp", "corrupt.mp4", "invalid data found"),
        ("text file named .mp4", "text.mp4", "invalid data found"),
        ("PNG named .mp4", "small_png.mp4", "a still image (png_pipe), not a video"),
        ("audio only", "audio_only.m4a", "no video stream"),
        ("16000x16000 GIF", "huge_gif.gif", "frame size 16000x16000 exceeds the limit"),
        ("16000x16000 raw video", "huge_y4m.mp4", "frame size 16000x16000 exceeds the limit"),
        ("16000x16000 PNG named .mp4", "huge_png.mp4", "frame size 16000x16000 exceeds the limit"),
        ("FIFO as video (would block ffmpeg)", "fifo.mp4", "not a regular file"),
        ("folder named .mp4", "folder.mp4", "not a regular file"),
        ("HLS playlist to /etc/passwd", "playlist.m3u8", "unsupported container format"),
        # No allowed demuxer takes it: not read as a playlist.
        ("HLS playlist named .mp4", "playlist.mp4", "invalid data found"),
        ("concat list to /etc/passwd", "concat.mp4", "unsupported container format"),
        ("missing file", "missing.mp4", "file not found"),
    ]
    if permissions_enforced:
        media_cases.append(("unreadable file", "locked.mp4", "permission denied"))
    for name, path, error in media_cases:
        f.case(name, vc2(path), "failed", error)
    f.case("clip after the end", vc2(start=100, end=200), "failed", "holds no frame time")
    f.good(vc2(start=0.2, end=0.8))


def _image_cases(f: _File) -> None:
    f.good({"image": "good.png", "QA": GOOD_QA})
    for name, path, error in [
        ("16384x16384 JPEG image", "huge.jpg", "exceeds the limit"),
        ("16384x16384 PNG image", "huge.png", "exceeds the limit"),
        ("FIFO as image", "fifo.jpg", "not a regular file"),
        ("folder named .jpg", "folder.jpg", "not a regular file"),
        ("text file named .jpg", "text.jpg", "not an image file"),
    ]:
        f.case(name, {"image": path, "QA": GOOD_QA}, "failed", error)


def _frames_dir_cases(f: _File) -> None:
    conversations = [{"value": "<video>\nWhat is written?"}, {"value": "Text."}]
    f.good({"id": "good", "video": "frames_good", "conversations": conversations})
    for name, path, error in [
        ("FIFO frame in a frame folder", "frames_fifo", "not a regular file"),
        ("frame symlink escaping its folder", "frames_symlink", "symlink leads outside the frame folder"),
        ("empty frame folder", "frames_empty", "no image files"),
    ]:
        f.case(name, {"id": name, "video": path, "conversations": conversations}, "failed", error)


def _file_cases(corpus: Corpus, root: Path) -> list[str]:
    """Whole-file cases of the llava source: a 100 MB string, a truncated array, a JSON
    document, deep nesting inside an array; the paths written."""
    paths = []
    huge = _File(corpus, root, "hostile_llava", "llava/huge_string.jsonl")
    text = b"x" * HUGE_STRING_BYTES
    huge.case("100 MB string", b'{"video": "good.mp4", "conversations": [{"from": "human", "value": "' + text
              + b'"}, {"from": "gpt", "value": "ok"}]}', "reject", "record too large")
    huge.good(llava(id="after-huge"))
    paths.append(huge.write_lines())
    truncated = _File(corpus, root, "hostile_llava", "llava/truncated.json")
    truncated.good(llava(id="t1"))
    truncated.case("array cut short", b'{"id": "t2", "conversations": [{"from": "hum', "reject",
                   "the rest of the file is skipped")
    paths.append(truncated.write_array(tail=b""))
    document = _File(corpus, root, "hostile_llava", "llava/document.json")
    document.case("JSON document, not records", b'{\n "data": []\n}', "reject", "found a JSON document")
    paths.append(document.write_raw())
    nested = _File(corpus, root, "hostile_llava", "llava/nested.json")
    nested.good(llava(id="n1"))
    nested.case("deep nesting in an array", b"[" * DEEP_NESTING + b"]" * DEEP_NESTING, "reject", "nested too deeply")
    nested.good(llava(id="n2"))
    paths.append(nested.write_array())
    return paths


def build_corpus(root: Path) -> Corpus:
    """The corpus under ``root``: ``annotations/``, ``media/`` (the media root) and ``outside/``
    (what symlinks escape to)."""
    media = root / "media"
    build_media(media, root / "outside")
    corpus = Corpus(sources=[], cases=[])
    llava_file = _File(corpus, root, "hostile_llava", "llava/cases.jsonl")
    _llava_cases(llava_file)
    llava_file.write_lines()
    _file_cases(corpus, root)
    videos = _File(corpus, root, "hostile_videos", "videochat2/videos.jsonl")
    _videochat2_cases(videos, permissions_enforced=not can_read_unreadable_files())
    videos.write_lines()
    images = _File(corpus, root, "hostile_images", "videochat2/images.jsonl")
    _image_cases(images)
    images.write_lines()
    folders = _File(corpus, root, "hostile_frames_dirs", "conversations/folders.jsonl")
    _frames_dir_cases(folders)
    folders.write_lines()
    annotations = root / "annotations"
    corpus.sources = [
        {"name": "hostile_llava", "format": "llava", "annotations": f"{annotations}/llava/*",
         "media_root": str(media)},
        {"name": "hostile_videos", "format": "videochat2", "annotations": f"{annotations}/videochat2/videos.jsonl",
         "media_root": str(media), "media_type": "video"},
        {"name": "hostile_images", "format": "videochat2", "annotations": f"{annotations}/videochat2/images.jsonl",
         "media_root": str(media), "media_type": "image"},
        {"name": "hostile_frames_dirs", "format": "conversations_jsonl",
         "annotations": f"{annotations}/conversations/folders.jsonl", "media_root": str(media)},
    ]
    return corpus
