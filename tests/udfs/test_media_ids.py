"""Media ids name the media, not where they are: the media root's mount point, local or S3, and
the lake's root stay out of them (``udfs.sample.media_key``, ``stored_media``)."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from framelake.config import ConfigError, parse_config
from tests.support.adapters import normalize_files, open_from
from tests.support.paths import FORMATS, REPO
from udfs.adapters import NormalizeContext, SourceSpec
from udfs.adapters.common import media_item
from udfs.sample import make_media, media_datasets, media_key

CLEVRER = REPO / "demo" / "annotations" / "videochat2" / "clevrer_qa.json"


def demo_context(media_root: str, inline: Path | None = None, fmt: str = "videochat2", annotations: Path = CLEVRER,
                 options: dict | None = None) -> NormalizeContext:
    def put_inline(data: bytes, ext: str) -> str:
        path = inline / "media" / "inline" / f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    spec = SourceSpec(name="demo", format=fmt, annotations=str(annotations), media_root=media_root,
                      options=options or {})
    return NormalizeContext(spec=spec, open_binary=open_from, put_inline=put_inline)


def media_ids(samples: list[dict]) -> list[tuple[str, str]]:
    return [(s["sample_id"], m["media_id"]) for s in samples for m in s["media"]]


@pytest.mark.parametrize("elsewhere", ["/mnt/other/media", "s3://bucket/corpus/media", "/media"])
def test_a_media_root_mounted_elsewhere_gives_the_same_ids(elsewhere):
    here = normalize_files([CLEVRER], demo_context(str(REPO / "demo" / "media")))
    there = normalize_files([CLEVRER], demo_context(elsewhere))
    assert here.samples and media_ids(here.samples) == media_ids(there.samples)
    assert [m["uri"] for s in there.samples for m in s["media"]][0].startswith(elsewhere + "/videos/")


def test_datasets_whose_relative_paths_coincide_do_not_share_ids():
    webvid = demo_context("/data/webvid")
    panda = demo_context("/data/panda")
    assert media_item("video", "a/1.mp4", webvid)["media_id"] != media_item("video", "a/1.mp4", panda)["media_id"]
    # ...unless they say they are one dataset
    named = demo_context("/data/panda", options={"media_dataset": "webvid"})
    assert media_item("video", "a/1.mp4", webvid)["media_id"] == media_item("video", "a/1.mp4", named)["media_id"]


def test_an_absolute_path_inside_the_media_root_is_named_as_its_relative_path():
    ctx = demo_context("/data/webvid")
    absolute, relative = media_item("video", "/data/webvid/a/1.mp4", ctx), media_item("video", "a/1.mp4", ctx)
    assert absolute["media_id"] == relative["media_id"]


def test_nested_media_roots_name_a_shared_file_alike():
    roots = [("/d/media", None), ("/d/media/videos", None), ("s3://b/x/media/videos", None), ("/e/clips", None),
             ("/e/clips/hd", "hd-clips")]
    assert media_datasets(roots) == ["media", "media/videos", "videos", "clips", "hd-clips"]
    # A name given to the outer root carries to the roots inside it.
    assert media_datasets([("/d/media", "corpus"), ("/d/media/videos", None)]) == ["corpus", "corpus/videos"]
    outer = media_key("/d/media/videos/x.mp4", "/d/media", "media")
    inner = media_key("/d/media/videos/x.mp4", "/d/media/videos", "media/videos")
    assert outer == inner == "media/videos/x.mp4"


def test_the_config_fills_in_each_sources_media_dataset(tmp_path):
    def source(name, root, **options):
        return {"name": name, "format": "videochat2", "annotations": str(CLEVRER), "media_root": root,
                **({"options": options} if options else {})}

    config = parse_config({
        "lake": str(tmp_path / "lake"),
        "sources": [source("a", str(tmp_path / "media")), source("b", str(tmp_path / "media" / "videos")),
                    source("c", "s3://bucket/webvid", media_dataset="webvid-10m")],
        "models": [{"name": "m", "profile": "minicpm-llama3-v2_5"}],
    })
    assert [s.options["media_dataset"] for s in config.sources] == ["media", "media/videos", "webvid-10m"]
    with pytest.raises(ConfigError) as raised:
        parse_config({"lake": str(tmp_path / "lake"), "sources": [source("a", "/m", media_dataset="")],
                      "models": [{"name": "m", "profile": "minicpm-llama3-v2_5"}]})
    assert raised.value.problems == ["sources[0].options.media_dataset: must be a non-empty string, got ''"]


def test_inline_images_are_named_by_their_content_not_the_lake(tmp_path):
    m3it = sorted((FORMATS / "m3it").glob("*.jsonl"))[0]
    first = normalize_files([m3it], demo_context("/a", tmp_path / "lake-a", "m3it", m3it))
    second = normalize_files([m3it], demo_context("/b", tmp_path / "lake-b", "m3it", m3it))
    assert first.samples and media_ids(first.samples) == media_ids(second.samples)
    uris = {m["uri"] for s in first.samples + second.samples for m in s["media"]}
    assert any("lake-a" in uri for uri in uris) and any("lake-b" in uri for uri in uris)


def test_remote_media_are_named_by_their_uri():
    uri = "https://videos.example.org/clip.mp4"
    assert media_key(uri, "/data/webvid") == uri
    assert make_media("video", uri)["media_id"] == make_media("video", uri, key=media_key(uri, "/x"))["media_id"]
    # Clip bounds and kind stay part of the id.
    assert make_media("video", uri, 1.0, 2.0)["media_id"] != make_media("video", uri)["media_id"]


def test_rendered_pages_are_named_by_their_text_not_the_lake(tmp_path):
    fixture = FORMATS / "t2vid_text" / "longalpaca_text.json"

    def run(lake: Path):
        def put_object(relative_path: str, data: bytes) -> str:
            path = lake / "media" / relative_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return str(path)

        ctx = replace(demo_context("/m", fmt="t2vid_text", annotations=fixture), put_object=put_object)
        return normalize_files([fixture], ctx).samples

    first, second = run(tmp_path / "lake-a"), run(tmp_path / "lake-b")
    assert first and media_ids(first) == media_ids(second)
    assert first[0]["media"][0]["uri"] != second[0]["media"][0]["uri"]
