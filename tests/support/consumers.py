"""What each trainer's own loader requires of the shards it reads, as one small check per consumer.

Each check raises AssertionError naming the rule a shard breaks. ``open_image`` opens a path as
the trainer does (joined to its image folder): ``image_opener(root)``. The rules, read in the
consumers' code:

- LLaVA: haotian-liu/LLaVA llava/train/train.py: ``preprocess_v1`` (and the other templates) map
  ``from`` through ``{"human": roles[0], "gpt": roles[1]}`` (any other role: KeyError) and
  ``assert role == conv.roles[j % 2]``; ``LazySupervisedDataset`` opens ``image`` (one path)
  under ``image_folder``. LLaVA-VL/LLaVA-NeXT llava/train/train.py: ``image`` a path or a list
  of paths, each opened; zjysteven/lmms-finetune datasets.py: turns alternate human/gpt, an even
  number of them, one ``<video>`` tag per video.
- MiniCPM-V: OpenBMB/MiniCPM-V finetune/dataset.py (``preprocess``: more than one turn, the first
  from the user; ``conversation_to_ids``: roles user/assistant only), and its multi-image version
  as mindspore-lab/mindone examples/minicpm_v/finetune/dataset.py carries it: ``image`` maps
  ``<image_XX>`` to a path, every image of it is encoded in the mapping's order, and every
  ``<image_\\d+>`` in any content must be one of its keys (else "not found in image dict").
- Otter: Luodian/Otter pipeline/mimicit_utils/mimicit_dataset.py: ``XX_instructions.json``'s
  ``data`` by instruction id; ``XX_train.json`` maps each id to train on (it must be in ``data``
  with ``instruction`` and ``answer``) to its in-context ids, whose instruction and answer are
  read too; images: ``pd.read_parquet`` then ``images.loc[image_id]["base64"]``, URL-safe base64
  of an image PIL opens.
- LLaMA-Factory: hiyouga/LLaMA-Factory src/llamafactory/data/converter.py
  (``SharegptDatasetConverter``: an optional system message first, then user/assistant
  alternating, an even number of them, else the example is skipped) and
  src/llamafactory/data/mm_plugin.py (``_validate_messages``: as many ``<image>``, ``<video>``,
  ``<audio>`` tags as images, videos, audios; ``_regularize_videos``: a video is a file or,
  ``_check_video_is_nested_images``, a list of frame paths that exist). ms-swift
  (modelscope/ms-swift docs/source_en/Customization/Custom-dataset.md) reads the same layout.
- Hugging Face datasets: ``datasets.load_dataset("parquet", data_files=...)``.
"""
from __future__ import annotations

import base64
import io
import os
import re
import tempfile
from typing import Callable

from PIL import Image

OpenImage = Callable[[str], Image.Image]


def image_opener(root: str, mounted_at: str = "") -> OpenImage:
    """Opens a shard's path as a trainer does, under its image folder ``root``, and decodes it;
    paths under ``mounted_at`` (``shards.frame_root``, where a trainer mounts the lake) are read
    from ``root``."""
    def open_image(path: str) -> Image.Image:
        if mounted_at:
            assert path.startswith(mounted_at + "/"), f"{path} is not under {mounted_at}"
            path = path[len(mounted_at) + 1:]
        image = Image.open(os.path.join(root, path))
        image.load()
        return image

    return open_image


def check_alternating(roles: list[str], first: str, second: str) -> None:
    assert roles, "no turns"
    for k, role in enumerate(roles):
        assert role == (first, second)[k % 2], f"turn {k} is {role!r}, expected {(first, second)[k % 2]!r}: {roles}"
    assert len(roles) % 2 == 0, f"odd number of turns: {roles}"


def check_llava(record: dict, open_image: OpenImage) -> None:
    """LLaVA's train.py (and LLaVA-NeXT's, lmms-finetune's) reading one record."""
    turns = record["conversations"]
    roles = [t["from"] for t in turns]
    assert set(roles) <= {"human", "gpt"}, f"roles outside LLaVA's map: {roles}"
    check_alternating(roles, "human", "gpt")
    text = "".join(t["value"] for t in turns)
    images = record.get("image", [])
    images = [images] if isinstance(images, str) else images
    assert all(isinstance(path, str) for path in images), images
    assert text.count("<image>") == len(images), f"{text.count('<image>')} <image> tags for {len(images)} images"
    video = record.get("video")
    assert text.count("<video>") == (1 if video else 0), f"{text.count('<video>')} <video> tags, video: {video}"
    for path in images + (video or []):
        open_image(path)


def check_minicpmv(record: dict, open_image: OpenImage) -> None:
    """MiniCPM-V's finetune/dataset.py reading one record."""
    turns = record["conversations"]
    assert len(turns) > 1, "conversation length must be more than 1"
    check_alternating([t["role"] for t in turns], "user", "assistant")
    image = record["image"]
    if isinstance(image, str):  # the single-image layout: one optional <image> in the first turn
        assert all("<image>" not in t["content"] for t in turns[1:])
        open_image(image)
        return
    assert all(re.fullmatch(r"<image_\d+>", tag) for tag in image), list(image)
    used = [tag for t in turns for tag in re.findall(r"<image_\d+>", t["content"])]
    # Images are encoded in the mapping's order and placed at the tags in text order.
    assert used == list(image), f"tags in the text {used} are not the keys of image {list(image)}"
    for path in image.values():
        open_image(path)


def check_webdataset(items: list[dict]) -> None:
    """``webdataset.WebDataset(url).decode("pil")``'s samples: each key's json names its frames,
    every frame a member decoded to an image of the size the json says."""
    for item in items:
        meta = item["json"]
        assert meta["id"] == item["__key__"]
        described = [frame for media in meta["media"] for frame in media["frames"]]
        assert sorted(f["field"] for f in described) == sorted(k for k in item if k.endswith(".jpg"))
        for frame in described:
            image = item[frame["field"]]
            assert isinstance(image, Image.Image) and image.size == (frame["width"], frame["height"])
        for example in meta["in_context"]:
            assert example["conversations"] and all(set(t) == {"role", "content"} for t in example["conversations"])


def check_otter(instructions: dict, train: dict, images) -> int:
    """Otter's MimicitDataset over one triple (``images``: the parquet as ``pd.read_parquet``
    reads it); the number of instructions it trains on."""
    data = instructions["data"]
    for instruction_id, example_ids in train.items():
        for used in [instruction_id, *example_ids]:
            assert used in data and {"instruction", "answer"} <= set(data[used]), f"{used} is not a full instruction"
        for image_id in data[instruction_id].get("image_ids") or []:
            jpeg = base64.urlsafe_b64decode(images.loc[image_id]["base64"])
            Image.open(io.BytesIO(jpeg)).load()
    return len(train)


def check_messages(record: dict, open_image: OpenImage) -> None:
    """LLaMA-Factory's sharegpt converter and multimodal plugin (and ms-swift) reading one record."""
    messages = list(record["messages"])
    if messages and messages[0]["role"] == "system":
        messages = messages[1:]
    check_alternating([m["role"] for m in messages], "user", "assistant")
    text = "".join(m["content"] for m in record["messages"])
    images, videos = record.get("images") or [], record.get("videos") or []
    assert text.count("<image>") == len(images), f"{text.count('<image>')} <image> tags for {len(images)} images"
    assert text.count("<video>") == len(videos), f"{text.count('<video>')} <video> tags for {len(videos)} videos"
    assert "<audio>" not in text
    for path in images:
        open_image(path)
    for video in videos:
        assert isinstance(video, list) and video, f"a video given as frames is a list of paths: {video!r}"
        for path in video:
            open_image(path)


def check_hf_parquet(path: str, open_image: OpenImage) -> list[dict]:
    """The shard loaded with ``datasets.load_dataset("parquet")``, each row a ``messages`` record."""
    import datasets

    with tempfile.TemporaryDirectory() as cache:  # datasets' Arrow cache, kept out of the lake
        rows = list(datasets.load_dataset("parquet", data_files=path, split="train", cache_dir=cache))
    for row in rows:
        check_messages(row, open_image)
    return rows
