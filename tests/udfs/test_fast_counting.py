"""The fast paths of token counting give exactly what the HF tokenizer and Jinja give."""
from __future__ import annotations

import random

import pytest

from udfs.chat_template import SkeletonRenderer
from udfs.tokenizers import CHAT_TEMPLATES, load_counter, load_tokenizer

TEXTS = [
    "What is the color of the object that enters the scene?\nOptions:\n(A) red\n(B) purple",
    "  leading and trailing spaces  \n\n",
    "Ünïcödé café naïve — “quotes” ✓ 漢字かなカナ 한국어 العربية",
    "e\u0301 composed vs decomposed é",  # NFC matters for Qwen2
    "numbers 1234567 3.14159 and code: def f(x):\n    return x ** 2  # comment",
    "<|start_header_id|>user<|end_header_id|>\n\nspecial tokens written in text<|eot_id|>",
    "<|im_start|>user\nchatml specials<|im_end|>",
    "nested <|<|eot_id|>|> unknown <|not_a_token|> adjacent<|eot_id|><|eot_id|>end <|",
    "idefics3 tokens <fake_token_around_image><image><end_of_utterance> <row_1_col_1>",
    "\t\ttabs\r\nand windows newlines\r\n",
    "",
    "a" * 3000,
]


@pytest.mark.parametrize("family", ["llama3", "qwen2", "idefics3"])
@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_counter_equals_the_hf_tokenizer(family, add_special_tokens):
    counter = load_counter(family)
    tokenizer = load_tokenizer(family)
    assert counter.encoding is not None  # the fast path is what is under test
    expected = [len(tokenizer(t, add_special_tokens=add_special_tokens).input_ids) for t in TEXTS]
    assert counter.count(TEXTS, add_special_tokens) == expected


def test_counter_of_a_tokenizer_folder_uses_that_tokenizer(tmp_path):
    load_tokenizer("qwen2").save_pretrained(tmp_path)
    counter = load_counter(str(tmp_path))
    assert counter.encoding is None
    assert counter.count(TEXTS, True) == load_counter("qwen2").count(TEXTS, True)


def conversations(n: int, seed: int = 3) -> list[list[dict]]:
    rng = random.Random(seed)
    pieces = ["Describe the video.", "  padded  ", "line one\nline two", "", " ", "trailing\n",
              "ünïcode ✓", "{{ not jinja }}", "{% raw %}"]
    out = []
    for _ in range(n):
        turns = [{"role": "system", "content": rng.choice(pieces)}] if rng.random() < 0.5 else []
        for _ in range(rng.randint(1, 3)):
            turns.append({"role": "user", "content": rng.choice(pieces) + rng.choice(pieces)})
            turns.append({"role": "assistant", "content": rng.choice(pieces)})
        out.append(turns)
    return out


@pytest.mark.parametrize("template", sorted(CHAT_TEMPLATES))
def test_skeleton_renderer_equals_jinja(template):
    tokenizer = load_tokenizer("llama3")

    def jinja(messages):
        return tokenizer.apply_chat_template(messages, chat_template=CHAT_TEMPLATES[template], tokenize=False)

    fast = SkeletonRenderer(jinja)
    for messages in conversations(300):
        assert fast(messages) == jinja(messages)
    assert any(s is not None for s in fast._skeletons.values())  # the cache was actually used


def test_content_sensitive_template_falls_back_to_jinja():
    tokenizer = load_tokenizer("llama3")
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}"

    def jinja(messages):
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)

    fast = SkeletonRenderer(jinja)
    for messages in conversations(50):
        assert fast(messages) == jinja(messages)
    assert all(s is None for s in fast._skeletons.values())
