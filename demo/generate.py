"""Regenerate the bundled demo corpus (``demo/``) deterministically.

The corpus is committed, so ``make demo`` needs nothing but the install; this script is how it
was made. It covers five source formats, generated videos (H.264 and a GIF), stills, inline
base64 images, one corrupt video and a few records that must be rejected.

    python demo/generate.py demo
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import imageio_ffmpeg
from PIL import Image, ImageDraw

# (file name, lavfi source, seconds, frames per second, keyframe interval)
VIDEOS = [
    ("clevrer_0001.mp4", "testsrc2=size=320x240:rate=25", 8, 25, 50),
    ("clevrer_0002.mp4", "mandelbrot=size=256x192:rate=25", 6, 25, 25),
    ("v_demo0001.mp4", "testsrc=size=320x240:rate=15", 5, 15, 30),
    ("v_demo0002.mp4", "smptehdbars=size=480x270:rate=30", 4, 30, 60),
    ("webvid_0001.mp4", "rgbtestsrc=size=320x180:rate=24", 6, 24, 240),
]


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def make_videos(media: str) -> None:
    videos = os.path.join(media, "videos")
    os.makedirs(videos, exist_ok=True)
    for name, source, seconds, _fps, gop in VIDEOS:
        ffmpeg("-f", "lavfi", "-i", source, "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
               "-crf", "30", "-g", str(gop), "-pix_fmt", "yuv420p", "-threads", "1",
               "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
               os.path.join(videos, name))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "3", "-fflags", "+bitexact",
           os.path.join(videos, "tgif_0001.gif"))
    # A corrupt video: the head of a real file with the rest cut off and garbage appended.
    with open(os.path.join(videos, "clevrer_0001.mp4"), "rb") as whole:
        head = whole.read(3000)
    with open(os.path.join(videos, "corrupt_0001.mp4"), "wb") as corrupt:
        corrupt.write(head + bytes(range(256)) * 8)


def still(width: int, height: int, hue: int) -> bytes:
    """A small deterministic JPEG: a gradient with a rectangle."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for x in range(width):
        draw.line([(x, 0), (x, height)], fill=((hue + x) % 256, (2 * x) % 256, (255 - hue) % 256))
    draw.rectangle([width // 4, height // 4, width // 2, height // 2], fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def write_json(path: str, value) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(value, out, ensure_ascii=False, indent=1)
        out.write("\n")


def write_jsonl(path: str, records: list) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write((record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)) + "\n")


def make_annotations(root: str) -> None:
    media = os.path.join(root, "media")
    os.makedirs(os.path.join(media, "images"), exist_ok=True)
    with open(os.path.join(media, "images", "coco_0001.jpg"), "wb") as out:
        out.write(still(320, 240, 40))
    ann = os.path.join(root, "annotations")
    instruction = ("Review the shown video, detailing observations on objects, and select the most "
                   "accurate answer from the choices provided.")
    write_json(os.path.join(ann, "videochat2", "clevrer_qa.json"), [
        {"video": "videos/clevrer_0001.mp4",
         "QA": [{"i": instruction,
                 "q": "Question: What is the color of the object that enters the scene?\nOptions:\n(A) red\n"
                      "(B) purple\n(C) blue\n(D) gray",
                 "a": "Answer: (B) purple"}]},
        {"video": "videos/clevrer_0001.mp4", "start": 2.0, "end": 6.0,
         "QA": [{"i": instruction, "q": "Question: Which object moves first?\nOptions:\n(A) the cube\n(B) the sphere",
                 "a": "Answer: (A) the cube"},
                {"i": "", "q": "Does the cube collide with anything?", "a": "Yes, with the sphere."}]},
        {"video": "videos/clevrer_0002.mp4",
         "QA": [{"i": instruction, "q": "Question: What shape is the large object?\nOptions:\n(A) cube\n(B) cylinder",
                 "a": "Answer: (B) cylinder"}]},
        {"video": "videos/corrupt_0001.mp4",
         "QA": [{"i": instruction, "q": "Question: How many objects are there?", "a": "Answer: three"}]},
        {"video": "videos/tgif_0001.gif",
         "QA": [{"i": "Describe the following animated GIF briefly.", "q": "",
                 "a": "Colourful test bars scroll across the frame."}]},
        {"video": "../../../etc/passwd",
         "QA": [{"i": "", "q": "What is this?", "a": "A file outside the media root."}]},
        {"video": "videos/clevrer_0002.mp4"},
    ])
    write_json(os.path.join(ann, "videochat2", "coco_caption.json"), [
        {"image": "images/coco_0001.jpg",
         "QA": [{"i": "Describe the image in detail.", "q": "", "a": "A white square on a coloured gradient."}]},
    ])
    write_json(os.path.join(ann, "videoinstruct", "videoinstruct_100k.json"), [
        {"video_id": "v_demo0001", "q": "What happens in the video?",
         "a": "A test pattern with a moving gradient and a counter."},
        {"video_id": "v_demo0002", "q": "Describe the colours you see.",
         "a": "Vertical colour bars in the SMPTE pattern: grey, yellow, cyan, green, magenta, red and blue."},
        {"video_id": "v_demo0002", "q": "Is there any motion?", "a": "No, the bars stay still for the whole clip."},
        {"video_id": "v_demo0003", "q": 42, "a": "The question is not a string."},
    ])
    write_jsonl(os.path.join(ann, "sharegemini", "webvid_core.jsonl"), [
        {"id": "webvid_0001", "video": "webvid_0001.mp4",
         "conversations": [{"from": "human", "value": "<video>\nDescribe this video in detail."},
                           {"from": "gpt", "value": "Red, green and blue bars slide across a dark frame."}]},
        {"id": "webvid_0002", "video": "clevrer_0002.mp4",
         "conversations": [{"from": "human", "value": "Explique la vidéo.\n<video>"},
                           {"from": "gpt", "value": "Une fractale de Mandelbrot colorée, vue de près. Ünïcödé ✓"}]},
        '{"id": "webvid_0003", "video": "webvid_0001.mp4", "conversations": [',
    ])
    write_jsonl(os.path.join(ann, "m3it", "vqa_v2.jsonl"), [
        {"instruction": "Answer the question about the image.", "inputs": "What colour is the square?",
         "outputs": "White.", "image_base64_str": [base64.b64encode(still(224, 168, 90)).decode()]},
        {"instruction": "Compare the two images.", "inputs": "Which image is warmer in tone?",
         "outputs": "The first one.",
         "image_base64_str": [base64.b64encode(still(200, 150, 200)).decode(),
                              base64.b64encode(still(200, 150, 10)).decode()]},
        {"instruction": "Answer.", "inputs": "Broken image?", "outputs": "Yes.", "image_base64_str": "not-a-list"},
    ])


def make_dense_captions(root: str) -> None:
    """Queries of the generate stage's MIMIC-IT recipe (conf/recipes/mimicit_dc.yaml): timestamped
    captions of the demo videos, as Syphus's dense-caption task reads ActivityNet's."""
    def captions(*spans):
        return {"dense_captions": [{"start": s, "end": e, "caption": c} for s, e, c in spans]}

    write_jsonl(os.path.join(root, "annotations", "generate", "dense_captions.jsonl"), [
        {"id": "clevrer_0001", "media": "videos/clevrer_0001.mp4", "annotations": captions(
            (0, 3, "A test card with colour bars and a moving gradient appears."),
            (3, 6, "A white counter in the centre counts the seconds."),
            (6, 8, "The gradient keeps sliding to the left."))},
        {"id": "clevrer_0002", "media": "videos/clevrer_0002.mp4", "annotations": captions(
            (0, 2, "A colourful fractal fills the frame."),
            (2, 6, "The camera zooms slowly into the fractal's edge."))},
        {"id": "v_demo0001", "media": "videos/v_demo0001.mp4", "annotations": captions(
            (0, 5, "A test pattern with a rotating wheel and a frame counter."))},
        {"id": "webvid_0001", "media": {"path": "videos/webvid_0001.mp4", "start": 0, "end": 4},
         "annotations": captions((0, 2, "Red, green and blue bars appear on a dark frame."),
                                 (2, 4, "The bars slide across the frame from left to right."))},
        {"id": "no_media", "annotations": captions((0, 1, "A caption without a video."))},
        "not an object",
    ])


def main(root: str) -> None:
    make_videos(os.path.join(root, "media"))
    make_annotations(root)
    make_dense_captions(root)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
