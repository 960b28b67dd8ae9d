"""A generation recipe: YAML in, a validated ``Recipe`` out, every problem at once, each
naming its key (``generate.recipes[0].sampling.temperature: ...``).

A recipe says where its queries come from (``queries``: a loader and its options), what is
sent (``system``, ``in_context`` turns, the Jinja ``template`` of the user turn, ``sampling``),
how the reply is read (``parser``, ``pairs``) and what it becomes (``kind``):

- ``generate``: each query's pairs become a multi-turn sample of the source named after the
  recipe, with the query's media (MIMIC-IT's instructions made by Syphus);
- ``rewrite``: the query is an existing sample; the reply replaces its ``answers``,
  ``instructions`` or whole ``conversation`` in a new version of it, which the tokens stage
  uses instead of the original (VideoChat2-IT's rephrased "Sorry, ..." answers);
- ``translate``: each sample of ``queries`` in each of ``languages`` (Syphus's seven by
  default), a new sample with its ``language`` and a link to the original. A ``translate:``
  block in a ``generate`` recipe is the same, over that recipe's samples.

``version`` is part of every request key: bumping it sends every request again.
"""
from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from udfs.generate.problems import Problems, RecipeError, mapping, typed
from udfs.generate.scripts import LANGUAGES, SCRIPT_RANGES, SYPHUS_LANGUAGES, LanguageScript

KINDS = ("generate", "rewrite", "translate")
REWRITE_TARGETS = ("answers", "instructions", "conversation")
ROLES = ("user", "assistant")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KEYS = ("name", "kind", "version", "queries", "system", "in_context", "template", "pairs", "min_pairs", "parser",
         "sampling", "languages", "rewrite", "profile", "min_script_share", "translate")
_TRANSLATE_KEYS = ("name", "languages", "system", "template", "parser", "sampling", "min_script_share")

TRANSLATE_SYSTEM = (
    "You are a professional translator. Translate every question and every answer into {{ language }}. "
    "Keep each <media> placeholder exactly as written. Reply with the JSON object only."
)
TRANSLATE_TEMPLATE = "{{ pairs_json }}"


@dataclass(frozen=True)
class Sampling:
    """The sampling parameters of every request (``seed`` with ``temperature: 0``: the same
    reply from servers that honour them)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()

    def params(self) -> dict:
        """The request's sampling parameters, as the chat completions API names them."""
        params = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                  "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty}
        if self.seed is not None:
            params["seed"] = self.seed
        if self.stop:
            params["stop"] = list(self.stop)
        return params


@dataclass(frozen=True)
class Queries:
    loader: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    queries: Queries
    system: str
    template: str
    in_context: tuple[dict, ...] = ()
    version: int = 1
    pairs: int = 3  # pairs asked for; a reply's first ``pairs`` are kept
    min_pairs: int = 1  # fewer parsed pairs reject the reply
    parser: str = "syphus"
    sampling: Sampling = Sampling()
    languages: tuple[tuple[str, LanguageScript], ...] = ()  # translate: (code, script)
    rewrite: str = "answers"  # rewrite: what the reply replaces
    profile: Any = None  # a udfs.token_lengths.ModelProfile: prompt tokens counted with its tokenizer
    min_script_share: float = 0.5  # translate: the share of a reply's letters in the target script
    path: str = ""

    @property
    def output_format(self) -> str:
        """The ``format`` of the rows the recipe writes to ``samples`` and ``rejects``."""
        return f"generate:{self.name}"


def parse_recipes(raw: Any, where: str, profile_dirs: Iterable[str | Path] = (), path: str = "") -> list[Recipe]:
    """The recipe of a mapping, and the translation its ``translate:`` block asks for."""
    section = mapping(raw, where)
    problems = Problems()
    problems.unknown_keys(section, _KEYS, where)
    name = problems.check(_name, section, where)
    kind = section.get("kind", "generate")
    if kind not in KINDS:
        problems.add(f"{where}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    queries = problems.check(_queries, section.get("queries"), f"{where}.queries", kind)
    parser = problems.check(_parser, section.get("parser", "json" if kind == "translate" else "syphus"), where)
    system = section.get("system", TRANSLATE_SYSTEM if kind == "translate" else None)
    template = section.get("template", TRANSLATE_TEMPLATE if kind == "translate" else None)
    for key, text in (("system", system), ("template", template)):
        problems.check(_template, text, f"{where}.{key}")
    fields = {
        "version": problems.check(typed, section, "version", int, where, 1, positive=True),
        "pairs": problems.check(typed, section, "pairs", int, where, 3, positive=True),
        "min_pairs": problems.check(typed, section, "min_pairs", int, where, 1, positive=True),
        "in_context": problems.check(_in_context, section.get("in_context"), f"{where}.in_context"),
        "sampling": problems.check(_sampling, section.get("sampling"), f"{where}.sampling"),
        "min_script_share": problems.check(typed, section, "min_script_share", float, where, 0.5, positive=True),
        "profile": problems.check(_profile, section.get("profile"), f"{where}.profile", list(profile_dirs)),
    }
    rewrite = section.get("rewrite", "answers")
    if kind == "rewrite" and rewrite not in REWRITE_TARGETS:
        problems.add(f"{where}.rewrite: must be one of {', '.join(REWRITE_TARGETS)}, got {rewrite!r}")
    if kind != "rewrite" and "rewrite" in section:
        problems.add(f"{where}.rewrite: only for kind rewrite")
    if kind == "translate":
        fields["languages"] = problems.check(_languages, section.get("languages"), f"{where}.languages")
    elif "languages" in section:
        problems.add(f"{where}.languages: only for kind translate (or in a translate: block)")
    if kind != "generate" and "translate" in section:
        problems.add(f"{where}.translate: only in a generate recipe")
    if fields["pairs"] and fields["min_pairs"] and fields["min_pairs"] > fields["pairs"]:
        problems.add(f"{where}.min_pairs: more than pairs ({fields['min_pairs']} > {fields['pairs']})")
    problems.raise_if_any()
    recipe = Recipe(name=name, kind=kind, queries=queries, system=system, template=template, parser=parser,
                    rewrite=rewrite, path=path, **{k: v for k, v in fields.items() if v is not None})
    recipes = [recipe]
    if "translate" in section:
        recipes.append(_translate_block(section["translate"], f"{where}.translate", recipe))
    return recipes


def _translate_block(raw: Any, where: str, parent: Recipe) -> Recipe:
    """The translation of ``parent``'s samples a ``translate:`` block asks for."""
    block = mapping(raw, where)
    problems = Problems()
    problems.unknown_keys(block, _TRANSLATE_KEYS, where)
    section = {"name": f"{parent.name}.translate", "kind": "translate", "version": parent.version,
               "queries": {"loader": "samples", "sources": [parent.name]},
               **{key: value for key, value in block.items() if key in _TRANSLATE_KEYS}}
    recipes = problems.check(parse_recipes, section, where)
    problems.raise_if_any()
    return replace(recipes[0], profile=parent.profile, path=parent.path)


def _name(section: dict, where: str) -> str:
    name = typed(section, "name", str, where, required=True)
    if not NAME.fullmatch(name):
        raise RecipeError(f"{where}.name: letters, digits, '_', '.' and '-' only, got {name!r}")
    return name


def _queries(raw: Any, where: str, kind: str) -> Queries:
    from udfs.generate.loaders import LOADERS

    section = dict(mapping(raw, where))
    loader = section.pop("loader", None)
    module = section.pop("module", None)
    if loader is None:
        raise RecipeError(f"{where}.loader: required (one of {', '.join(LOADERS.names())}, or a registered one)")
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise RecipeError(f"{where}.module: cannot import {module!r}: {err}") from None
    try:
        instance = LOADERS.get(loader)()
    except ValueError as err:
        raise RecipeError(f"{where}.loader: {err}") from None
    problems = [f"{where}.{problem}" for problem in instance.check_options(section)]
    if kind in ("rewrite", "translate") and not instance.reads_samples:
        problems.append(f"{where}.loader: a {kind} recipe reads samples (loader: samples), got {loader!r}")
    if problems:
        raise RecipeError(problems)
    return Queries(loader, {**section, **({"module": module} if module else {})})


def _parser(value: Any, where: str) -> str:
    from udfs.generate.parsers import PARSERS

    try:
        PARSERS.get(value)
    except ValueError as err:
        raise RecipeError(f"{where}.parser: {err}") from None
    return value


@functools.lru_cache(maxsize=256)
def compiled(text: str):
    """A template compiled in Jinja's sandbox: a recipe's template may read its context, never
    call into Python. Undefined names fail (the query becomes a reject naming them)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False).from_string(text)


def _template(text: Any, where: str) -> None:
    from jinja2 import TemplateSyntaxError

    if not isinstance(text, str) or not text.strip():
        raise RecipeError(f"{where}: required, a non-empty (Jinja) string")
    try:
        compiled(text)
    except TemplateSyntaxError as err:
        raise RecipeError(f"{where}: line {err.lineno}: {err.message}") from None


def _in_context(raw: Any, where: str) -> tuple[dict, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RecipeError(f"{where}: must be a list of {{role, content}} turns")
    problems = Problems()
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            problems.add(f"{where}[{i}]: must be a {{role, content}} mapping")
        elif turn["role"] not in ROLES or not isinstance(turn["content"], str):
            problems.add(f"{where}[{i}]: role must be user or assistant and content a string")
    problems.raise_if_any()
    return tuple({"role": t["role"], "content": t["content"]} for t in raw)


def _sampling(raw: Any, where: str) -> Sampling:
    section = mapping(raw, where)
    problems = Problems()
    problems.unknown_keys(section, Sampling.__dataclass_fields__, where)
    values = {}
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        values[key] = problems.check(typed, section, key, float, where, getattr(Sampling, key))
    values["max_tokens"] = problems.check(typed, section, "max_tokens", int, where, Sampling.max_tokens,
                                          positive=True)
    values["seed"] = problems.check(typed, section, "seed", int, where)
    stop = section.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        problems.add(f"{where}.stop: must be a list of strings")
    problems.raise_if_any()
    if "seed" not in section:
        values["seed"] = Sampling.seed
    return Sampling(stop=tuple(stop), **values)


def _languages(raw: Any, where: str) -> tuple[tuple[str, LanguageScript], ...]:
    """``[zh, ja, ...]`` (default: Syphus's seven), or ``{code, name, scripts}`` entries for
    languages framelake does not know."""
    entries = list(SYPHUS_LANGUAGES) if raw is None else raw
    if not isinstance(entries, list) or not entries:
        raise RecipeError(f"{where}: must be a non-empty list of language codes")
    problems = Problems()
    languages = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str) and entry in LANGUAGES:
            languages.append((entry, LANGUAGES[entry]))
        elif isinstance(entry, dict) and isinstance(entry.get("code"), str) and isinstance(entry.get("scripts"), list):
            unknown = [s for s in entry["scripts"] if s not in SCRIPT_RANGES]
            if unknown or not entry["scripts"]:
                problems.add(f"{where}[{i}].scripts: known scripts are {', '.join(SCRIPT_RANGES)}, got {unknown}")
            else:
                name = str(entry.get("name") or entry["code"])
                languages.append((entry["code"], LanguageScript(name, tuple(entry["scripts"]))))
        else:
            problems.add(f"{where}[{i}]: a known code ({', '.join(LANGUAGES)}) or {{code, name, scripts}}, "
                         f"got {entry!r:.60}")
    codes = [code for code, _ in languages]
    if len(codes) != len(set(codes)):
        problems.add(f"{where}: a language is listed twice")
    problems.raise_if_any()
    return tuple(languages)


def _profile(value: Any, where: str, search: list):
    if value is None:
        return None
    from udfs.token_lengths import ModelProfile, load_profile

    try:
        return ModelProfile.from_dict(load_profile(str(value), [str(d) for d in search]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RecipeError(f"{where}: {err}") from None
