"""Inputs as their projects publish them (tests/fixtures/published/, issue 17): every project's
files normalize with count in = samples + rejects; MIMIC-IT image files under Otter's and
Octopus's names, in-context links to nothing, media tags in later turns, absolute paths and
URIs, compressed files, and lmms-finetune's and VideoLLaMA3's layouts."""
from __future__ import annotations

import gzip
import io
import json
import shutil
import urllib.request
from pathlib import Path

import pytest
import zstandard
from PIL import Image

from framelake.cli import describe_annotations
from framelake.storage import Storage
from tests.support.adapters import MEDIA_ROOT, context, conv, media_of, normalize_files, open_from, stored_image
from tests.support.paths import PROFILE_DIR
from tests.support.published import PROJECTS, PUBLISHED, annotation_files, records_in, records_of
from tests.support.samples import frames
from udfs.adapters import get_adapter
from udfs.filters import FilterSettings, assess
from udfs.sample import MEDIA_TOKEN, RejectError, make_media, make_sample, resolve_media_path, turn
from udfs.token_lengths import ModelProfile, load_profile, render_text
from udfs.tokenizers import load_counter
from udfs.video import extract_media


def run_project(tmp_path: Path, project: str, files: list[Path] | None = None, **spec):
    fmt, media_type = PROJECTS[project]
    ctx = context(tmp_path, fmt, media_type, annotations=PUBLISHED / project, name=project, **spec)
    return normalize_files(files or annotation_files(project), ctx)


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_every_published_record_is_one_sample(tmp_path, project):
    run = run_project(tmp_path, project)
    assert len(run.samples) + len(run.rejects) == records_of(project) > 0
    assert run.rejects == []
    assert all(sample["notes"] == [] for sample in run.samples)


# --- MIMIC-IT image files under Otter's and Octopus's names -----------------------------------


def test_otter_images_parquet_is_the_task_image_file_not_a_record(tmp_path):
    adapter = get_adapter("mimicit")
    files = [str(f) for f in annotation_files("otter")]
    assert adapter.plan(files) == [[str(PUBLISHED / "otter" / name)
                                    for name in ("DallE3_instructions.json", "DallE3_images.parquet")]]
    run = run_project(tmp_path, "otter")
    first, second = (run.sample("DallE3_instructions.json", i) for i in (0, 1))
    assert [stored_image(m["uri"]) for m in first["media"] + second["media"]] == [("JPEG", (4, 3)), ("JPEG", (3, 4))]
    assert first["conversations"][0]["content"] == (
        "<media>\nWhat do you think is the prompt for this AI-generated picture?")


def test_octopus_instructions_named_like_an_image_file(tmp_path):
    files = [str(f) for f in annotation_files("octopus")]
    assert get_adapter("mimicit").plan(files) == [sorted(files)]  # OctoGibson.json, then its images
    run = run_project(tmp_path, "octopus")
    sample = run.sample("OctoGibson.json", 0)
    entry = json.loads((PUBLISHED / "octopus" / "OctoGibson.json").read_text())["data"]
    image_ids = entry["cook_a_bread_slice_fail_subtask_1"]["image_ids"]
    assert len(sample["media"]) == len(image_ids) and all(stored_image(m["uri"])[0] == "PNG" for m in sample["media"])
    assert sample["conversations"][0]["content"] == "\n".join([MEDIA_TOKEN] * len(image_ids) + [
        "Inventory:..., Task Goal:..., Previous Action Code:..., Execution error:..."])


def test_an_image_file_no_task_uses_is_no_unit():
    plan = get_adapter("mimicit").plan(["s3://b/LA/LA.parquet", "s3://b/SD/SD_images.parquet", "s3://b/E4D/E4D.json"])
    assert plan == []


# --- MIMIC-IT in-context links to instructions that do not exist ------------------------------


def otter_with_links(tmp_path: Path, links: list[str]) -> list[Path]:
    task = tmp_path / "otter"
    task.mkdir()
    shutil.copy(PUBLISHED / "otter" / "DallE3_images.parquet", task)
    document = json.loads((PUBLISHED / "otter" / "DallE3_instructions.json").read_text())
    document["data"]["D3_INS_000000"]["rel_ins_ids"] = links
    (task / "DallE3_instructions.json").write_text(json.dumps(document))
    return sorted(task.iterdir())


def test_missing_in_context_links_are_dropped_and_noted(tmp_path):
    files = otter_with_links(tmp_path, ["D3_INS_000404", "D3_INS_000001", "D3_INS_000405"])
    run = run_project(tmp_path, "otter", files)
    assert len(run.samples) + len(run.rejects) == records_in(files[1]) and run.rejects == []
    linked = run.sample("DallE3_instructions.json", 0)
    assert [e["example_id"] for e in linked["in_context"]] == ["D3_INS_000001"]
    assert linked["notes"] == [{"kind": "in_context_dropped", "count": 2, "detail": "D3_INS_000404, D3_INS_000405"}]
    assert run.sample("DallE3_instructions.json", 1)["notes"] == []


def test_missing_in_context_links_reject_with_the_option(tmp_path):
    files = otter_with_links(tmp_path, ["D3_INS_000001", "D3_INS_000404"])
    run = run_project(tmp_path, "otter", files, options={"missing_examples": "reject"})
    assert run.reasons("DallE3_instructions.json") == {
        0: "in-context example 'D3_INS_000404' not found (options.missing_examples: reject)"}
    assert len(run.samples) == 1
    assert get_adapter("mimicit").check_options({"missing_examples": "keep"}) == [
        "missing_examples: must be one of drop, reject, got 'keep'"]


# --- media tags in later turns ----------------------------------------------------------------


def test_tags_in_later_turns_stay_where_they_stood(tmp_path):
    run = run_project(tmp_path, "llama-factory")
    tagged = run.sample("mllm_demo_tagged.json", 0)
    assert [t["content"] for t in tagged["conversations"] if t["role"] == "user"] == [
        "<media>Who are they?", "What are they doing?<media>"]
    assert media_of(tagged) == 2 * [("image", f"{MEDIA_ROOT}/mllm_demo_data/1.jpg", None, None)]
    untagged = run.sample("mllm_demo.json", 0)  # no tag at all: prepended to the first user turn
    assert untagged["conversations"][0]["content"] == "<media>\nWho are they?"


def test_minicpmv_indexed_tags_in_a_later_turn_and_tags_in_answers(tmp_path):
    records = [
        {"id": "later", "image": {"<image_00>": "a.jpg", "<image_01>": "b.jpg"},
         "conversations": [{"role": "user", "content": "<image_00>\nWhat is this?"},
                           {"role": "assistant", "content": "A."},
                           {"role": "user", "content": "And <image_01>?"}, {"role": "assistant", "content": "B."}]},
        {"id": "in_answer", "image": {"<image_00>": "a.jpg"},
         "conversations": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<image_00> A"}]},
    ]
    path = tmp_path / "later.json"
    path.write_text(json.dumps(records))
    run = normalize_files([path], context(tmp_path, "minicpmv"))
    later = run.sample("later.json", 0)
    assert later["conversations"] == conv(("user", "<media>\nWhat is this?"), ("assistant", "A."),
                                          ("user", "And <media>?"), ("assistant", "B."))
    assert [m["uri"].rsplit("/", 1)[1] for m in later["media"]] == ["a.jpg", "b.jpg"]
    assert run.reasons("later.json") == {1: "turn 1 (assistant): media tags stand only in user turns"}


def later_turn_video() -> dict:
    """A video sample whose placeholder stands in the second user turn, as the filters get it."""
    media = [make_media("video", "s3://media/later.mp4")]
    conversations = [turn("user", "Watch this."), turn("assistant", "Ready."),
                     turn("user", f"{MEDIA_TOKEN}\nWhat happens?"), turn("assistant", "A ball rolls.")]
    row = make_sample(source="qa", fmt="test", source_file="f.json", file_key="f.json", record_index=0,
                      record_key="later", media=media, conversations=conversations, raw="{}")
    row["media_frames"] = [{"position": 0, "kind": "video", "status": "ok", "frames": frames(media[0]["media_id"], 4)}]
    return row


def test_filters_and_token_counts_read_placeholders_in_any_user_turn():
    llama3 = load_counter("llama3")
    profile = ModelProfile.from_dict({**load_profile("minicpm-llama3-v2_5", [PROFILE_DIR]), "max_tokens": 2000})
    row = later_turn_video()
    [kept] = assess(profile, llama3, FilterSettings(max_turn0_words=2), [row])
    assert kept["kept"]  # turn 0 has two words: the placeholder is elsewhere
    [one_video] = assess(profile, llama3, FilterSettings(media_layout="one_video"), [row])
    assert one_video["reason"] == "media layout: the video is not in the first turn"  # T2Vid's rule
    assert MEDIA_TOKEN not in render_text(row["conversations"], profile, llama3)


# --- absolute media paths and URIs ------------------------------------------------------------


@pytest.fixture
def media_root(tmp_path) -> Path:
    root = tmp_path / "media"
    (root / "coco").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    (tmp_path / "mount").symlink_to(root)
    return root


def test_absolute_paths_inside_media_root_resolve_as_relative_ones(media_root, tmp_path):
    relative = resolve_media_path(str(media_root), "coco/1.jpg")
    assert resolve_media_path(str(media_root), f"{media_root}/coco/1.jpg") == relative
    assert resolve_media_path(str(media_root), f"{media_root}/coco/../coco/1.jpg") == relative
    # the root mounted through a symlink: the record may name either path
    assert resolve_media_path(str(tmp_path / "mount"), f"{media_root}/coco/1.jpg") == f"{tmp_path}/mount/coco/1.jpg"
    s3_root = "s3://bucket/media"
    assert resolve_media_path(s3_root, "s3://bucket/media/coco/1.jpg") == resolve_media_path(s3_root, "coco/1.jpg")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "absolute media path outside media_root: '/etc/passwd'"),
        ("{root}/../outside/x.jpg", "absolute media path outside media_root: '{root}/../outside/x.jpg'"),
        ("{root}/escape/x.jpg", "media path escapes media_root through a symlink: 'escape/x.jpg'"),
        ("escape/x.jpg", "media path escapes media_root through a symlink: 'escape/x.jpg'"),
        ("../x.jpg", "media path escapes media_root: '../x.jpg'"),
        ("C:\\data\\x.jpg", "absolute media path not allowed (a Windows drive or UNC path): 'C:\\\\data\\\\x.jpg'"),
        ("\\\\server\\share\\x.jpg", "absolute media path not allowed (a Windows drive or UNC path): "
                                      "'\\\\\\\\server\\\\share\\\\x.jpg'"),
        ("coco/x\x00.jpg", "media path contains a NUL byte"),
        ("s3://other/x.mp4", "remote media not allowed: 's3://other/x.mp4' (add s3 to the source's "
                             "options.allow_remote_media)"),
        ("https://host/x.mp4", "remote media not allowed: 'https://host/x.mp4' (add https to the source's "
                               "options.allow_remote_media)"),
        ("file:///etc/passwd", "media URI scheme 'file' not supported: 'file:///etc/passwd' (a path under "
                               "media_root, or s3:// or https:// with the source's options.allow_remote_media)"),
        ("http://host/x.mp4", "media URI scheme 'http' not supported: 'http://host/x.mp4' (a path under "
                              "media_root, or s3:// or https:// with the source's options.allow_remote_media)"),
    ],
)
def test_media_paths_that_escape_or_are_not_allowed_are_rejected(media_root, path, reason):
    with pytest.raises(RejectError) as rejected:
        resolve_media_path(str(media_root), path.format(root=media_root))
    assert str(rejected.value) == reason.format(root=media_root)


def test_remote_media_where_the_source_allows_it(media_root):
    allowed = ("s3", "https")
    assert resolve_media_path(str(media_root), "s3://other/v.mp4", allowed) == "s3://other/v.mp4"
    assert resolve_media_path(str(media_root), "https://host/v.mp4", allowed) == "https://host/v.mp4"
    for uri, shown in [("https://host/v.mp4?X-Amz-Signature=abc", "https://host/v.mp4?[redacted]"),
                       ("https://user:secret@host/v.mp4", "https://[redacted]@host/v.mp4")]:
        with pytest.raises(RejectError) as rejected:
            resolve_media_path(str(media_root), uri, allowed)
        assert str(rejected.value) == ("media URI with a query or user info not allowed (it may carry credentials, "
                                       f"which never enter the tables): {shown!r}")
    with pytest.raises(RejectError, match="^media URI has no bucket or host and path: 's3://bucket'$"):
        resolve_media_path(str(media_root), "s3://bucket", allowed)


def test_the_source_option_allows_remote_media_for_every_path_format(tmp_path):
    record = {"id": "r", "video": "https://host/v.mp4", "image": "s3://bucket/i.jpg",
              "conversations": [{"from": "human", "value": "<video> and <image>?"}, {"from": "gpt", "value": "A"}]}
    frames_dir = dict(record, id="d", video="https://host/frames/", image=None)
    del frames_dir["image"]
    path = tmp_path / "remote.json"
    path.write_text(json.dumps([record, frames_dir]))
    refused = normalize_files([path], context(tmp_path, "llava"))
    assert refused.reasons("remote.json")[0].startswith("remote media not allowed: 'https://host/v.mp4' (add https")
    run = normalize_files([path], context(tmp_path, "llava", options={"allow_remote_media": ["s3", "https"]}))
    assert media_of(run.sample("remote.json", 0)) == [("video", "https://host/v.mp4", None, None),
                                                    ("image", "s3://bucket/i.jpg", None, None)]
    assert run.reasons("remote.json") == {
        1: "a frames folder cannot be read over https (it cannot be listed): 'https://host/frames/'"}
    assert get_adapter("m3it").check_options({"allow_remote_media": ["ftp"]}) == [
        "allow_remote_media: must be a list of s3, https, got ['ftp']"]


# --- compressed annotation files --------------------------------------------------------------


def compressed_copy(source: Path, folder: Path, compression: str, name: str | None = None) -> Path:
    data = source.read_bytes()
    if compression == "gzip":
        path, data = folder / f"{name or source.name}.gz", gzip.compress(data)
    else:  # two frames, as zstd writes files joined
        half = len(data) // 2
        compressor = zstandard.ZstdCompressor()
        path, data = folder / f"{name or source.name}.zst", b"".join(
            compressor.compress(part) for part in (data[:half], data[half:]))
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def content(run) -> list[tuple]:
    return [(s["conversations"], [m["uri"] for m in s["media"]], s["in_context"]) for s in run.samples]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("project", ["minicpm-v", "videollama3", "lmms-finetune", "otter"])
def test_compressed_files_give_the_samples_of_the_plain_ones(tmp_path, project, compression):
    plain = run_project(tmp_path, project)
    folder = tmp_path / project
    folder.mkdir()
    files = [compressed_copy(f, folder, compression) if f.suffix != ".parquet" else Path(shutil.copy(f, folder))
             for f in annotation_files(project)]
    run = run_project(tmp_path, project, files)
    assert content(run) == content(plain) and run.rejects == []
    assert len(run.samples) == records_of(project)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_corrupt_compressed_file_is_one_reject(tmp_path, compression):
    lines = [json.dumps({"id": str(i), "image": f"{i}.jpg", "conversations": [
        {"from": "human", "value": f"<image>\nQ{i}"}, {"from": "gpt", "value": "A " * 200}]}) for i in range(400)]
    source = tmp_path / "chat.jsonl"
    source.write_text("\n".join(lines) + "\n")
    whole = compressed_copy(source, tmp_path / "out", compression)
    truncated = whole.with_name("cut_" + whole.name)
    truncated.write_bytes(whole.read_bytes()[:-10])  # the end cut off, inside the last block
    garbage = whole.with_name("garbage.jsonl" + whole.suffix)
    garbage.write_bytes(source.read_bytes())  # plain text under a compressed name
    run = normalize_files([whole, truncated, garbage], context(tmp_path, "llava"))
    assert len(run.outcomes(whole.name)) == len(lines) and run.reasons(whole.name) == {}
    (cut,) = [r for r in run.rejects if r["source_file"] == str(truncated)]
    assert cut["record_index"] is None and cut["reason"].startswith(
        f"unreadable: CorruptCompressedFile: {truncated.name}: corrupt {compression} data: ")
    kinds = [kind for kind, _ in run.outcomes(truncated.name).values()]
    assert kinds.count("reject") == 1 and kinds.count("sample") > 0  # records before the break, then one reject
    (bad,) = [r for r in run.rejects if r["source_file"] == str(garbage)]
    assert bad["reason"].startswith(f"unreadable: CorruptCompressedFile: {garbage.name}: corrupt {compression} data: ")
    assert list(run.outcomes(garbage.name)) == [None]  # one row, no record read


def test_compressed_files_are_never_split():
    llava = get_adapter("llava")
    assert llava.can_split("s3://b/a.json") and llava.can_split("s3://b/a.jsonl")
    assert not any(llava.can_split(f"s3://b/a.{ext}") for ext in ("json.gz", "jsonl.gz", "jsonl.zst", "zst"))
    assert not get_adapter("mimicit").can_split("s3://b/DC_instructions.json")


def test_validate_tells_the_format_and_compression_of_each_file(tmp_path):
    plain = annotation_files("videollama3")[0]
    files = [compressed_copy(annotation_files("minicpm-v")[0], tmp_path, "gzip"), plain,
             compressed_copy(plain, tmp_path, "zstd")]
    assert describe_annotations(get_adapter("llava"), [str(f) for f in files], open_from) == (
        "vl_finetune_data.json.gz (JSON array, gzip), annotations.jsonl (JSON lines), "
        "annotations.jsonl.zst (JSON lines, zstd)")
    otter = [str(f) for f in annotation_files("otter")]
    assert describe_annotations(get_adapter("mimicit"), otter, open_from) == (
        "DallE3_images.parquet (MIMIC-IT images, Parquet), DallE3_instructions.json (MIMIC-IT instructions, "
        "JSON object)")
    fake = tmp_path / "fake.json.gz"
    fake.write_text("[]")
    with pytest.raises(ValueError, match=r"^fake\.json\.gz: named gzip but is not gzip data$"):
        describe_annotations(get_adapter("llava"), [str(fake)], open_from)


# --- other published layouts ------------------------------------------------------------------


def test_lmms_finetune_system_prompt_and_a_video_list_with_an_image(tmp_path):
    run = run_project(tmp_path, "lmms-finetune")
    entry = run.sample("dataset_md.json", 0)
    assert entry["conversations"][:2] == conv(
        ("system", "Answer the following questions about the image and video."),
        ("user", "<media><media>What are these videos about?"))
    assert entry["conversations"][3] == {"role": "user", "content": "<media>What does this image show?"}
    assert [(m["kind"], m["uri"].rsplit("/", 1)[1]) for m in entry["media"]] == [
        ("video", "bm_teaser.mp4"), ("video", "bm_show.mp4"), ("image", "bm.jpg")]
    assert entry["media_type"] == "video"
    mixed = run.sample("video.json", 0)
    assert [m["kind"] for m in mixed["media"]] == ["video", "image"]
    assert run.sample("video.json", 1)["conversations"][0]["role"] == "user"  # no system_prompt: no system turn


def test_llava_video_lists_by_what_they_hold(tmp_path):
    human = lambda text: [{"from": "human", "value": text}, {"from": "gpt", "value": "A"}]  # noqa: E731
    records = [
        {"id": "image_first", "video": "v.mp4", "image": "i.jpg", "conversations": human("<image> then <video>")},
        {"id": "frames", "video": ["f/1.jpg", "f/2.jpg"], "image": ["i.jpg"],
         "conversations": human("<video> <image>")},
        {"id": "mixed", "video": ["a.mp4", "f/1.jpg"], "conversations": human("<video><video>")},
        {"id": "prompt_and_system", "system_prompt": "S", "image": "i.jpg",
         "conversations": [{"from": "system", "value": "T"}] + human("<image>")},
        {"id": "untagged_pair", "video": "v.mp4", "image": "i.jpg", "conversations": human("Q")},
        {"id": "both_unbalanced", "video": "v.mp4", "image": ["i.jpg", "j.jpg"],
         "conversations": human("<video><image>")},
    ]
    path = tmp_path / "layouts.json"
    path.write_text(json.dumps(records))
    run = normalize_files([path], context(tmp_path, "llava"))
    assert [m["kind"] for m in run.sample("layouts.json", 0)["media"]] == ["image", "video"]  # tag order
    frames_sample = run.sample("layouts.json", 1)
    assert frames_sample["conversations"][0]["content"] == "<media>\n<media> <media>"
    assert (frames_sample["media_type"], len(frames_sample["media"])) == ("video", 3)
    assert run.reasons("layouts.json") == {
        2: "video list mixes video files and frame images",
        3: "record has both 'system_prompt' and a system turn",
        4: "unbalanced media tags: 0 <image> tags for 1 media",
        5: "unbalanced media tags: 1 <image> tags for 2 media",
    }


def test_the_frames_stage_reads_an_https_image(monkeypatch):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 10)).save(buffer, "JPEG")
    requested = []

    def urlopen(request, timeout):
        requested.append((request.full_url, request.headers, timeout))
        return io.BytesIO(buffer.getvalue())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    result = extract_media("image", "https://host/coco/1.jpg", Storage())
    assert (result.status, result.width, result.height) == ("ok", 8, 6)
    assert [url for url, _, _ in requested] == ["https://host/coco/1.jpg"]
    with Storage().open_read("https://host/v.mp4", 100):
        assert requested[-1][1] == {"Range": "bytes=100-"}
