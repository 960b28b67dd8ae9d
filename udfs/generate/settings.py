"""The config's ``generate:`` section: the endpoint, the limits and the recipes.

::

    generate:
      endpoint: {base_url: http://127.0.0.1:8080/v1, model: SmolLM2-135M-Instruct}
      limits: {tasks: 2, concurrency: 4, requests_per_minute: 600, max_requests: 10000}
      wave_size: 256
      recipes: [conf/recipes/mimicit_dc.yaml]

The endpoint's key is never here (``udfs.generate.secrets``). Without recipes the generate
stage is not among a run's default stages.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from udfs.generate.problems import Problems, RecipeError, mapping, typed
from udfs.generate.recipe import Recipe, parse_recipes
from udfs.generate.secrets import KEY_VARIABLE, Secret, api_key, endpoint_host, from_environment

API_TYPES = ("openai", "azure")


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, llama.cpp's server, ...)."""

    base_url: str | None = None  # else OPENAI_API_BASE
    model: str | None = None  # the model, or Azure's deployment; else OPENAI_API_ENGINE
    api_type: str | None = None  # openai or azure; else OPENAI_API_TYPE, else openai
    api_version: str | None = None  # Azure's; else OPENAI_API_VERSION
    timeout_s: float = 120.0  # of one request
    max_attempts: int = 6  # a request failing with 408, 409, 429, 5xx, a reset or a timeout
    backoff_s: float = 1.0  # the first retry's delay bound, doubled each attempt (full jitter)
    max_backoff_s: float = 60.0  # also the longest Retry-After honoured
    response_format: bool = True  # the server takes a json_schema response_format


@dataclass(frozen=True)
class Limits:
    """Over the cluster; the per-minute limits are split evenly over a wave's tasks."""

    tasks: int = 2  # tasks of a wave, each with its own threads
    concurrency: int = 4  # requests in flight per task
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None  # prompt and max completion tokens of the requests sent
    max_requests: int | None = None  # requests sent by one run; then it stops, the rest pending
    max_tokens_total: int | None = None  # prompt and completion tokens spent by one run


@dataclass(frozen=True)
class GenerateSettings:
    endpoint: Endpoint = Endpoint()
    limits: Limits = Limits()
    wave_size: int = 256  # requests sent and committed together: a killed run loses at most one wave
    recipes: tuple[Recipe, ...] = ()

    def recipe(self, name: str) -> Recipe:
        for recipe in self.recipes:
            if recipe.name == name:
                return recipe
        raise KeyError(f"no recipe {name!r} configured (configured: {', '.join(r.name for r in self.recipes)})")


@dataclass(frozen=True)
class ResolvedEndpoint:
    """The endpoint as a run uses it: the config, the Syphus variables, the key."""

    base_url: str
    model: str
    api_type: str
    api_version: str | None
    key: Secret | None
    settings: Endpoint

    @property
    def host(self) -> str:
        return endpoint_host(self.base_url)


def resolve(endpoint: Endpoint, environ: Mapping[str, str]) -> ResolvedEndpoint:
    """The endpoint with what the config leaves out taken from the environment; a
    ``RecipeError`` names what is still missing."""
    given = {**from_environment(environ), **{k: v for k, v in vars(endpoint).items() if v is not None}}
    problems = Problems()
    for key, variable in (("base_url", "OPENAI_API_BASE"), ("model", "OPENAI_API_ENGINE")):
        if not given.get(key):
            problems.add(f"generate.endpoint.{key}: required (or {variable} in the environment)")
    api_type = str(given.get("api_type", "openai")).lower().replace("open_ai", "openai")
    if api_type not in API_TYPES:
        problems.add(f"generate.endpoint.api_type: must be one of {', '.join(API_TYPES)}, got {api_type!r}")
    if api_type == "azure" and not given.get("api_version"):
        problems.add("generate.endpoint.api_version: required for azure (or OPENAI_API_VERSION)")
    problems.raise_if_any()
    return ResolvedEndpoint(given["base_url"], given["model"], api_type, given.get("api_version"),
                            api_key(environ), endpoint)


def parse_generate(raw: Any, read_text: Callable[[str], str], profile_dirs: Iterable[str | Path] = ()
                   ) -> GenerateSettings:
    """The ``generate:`` section; ``recipes`` are files (read with ``read_text``) or mappings."""
    section = mapping(raw, "generate")
    problems = Problems()
    problems.unknown_keys(section, ("endpoint", "limits", "wave_size", "recipes"), "generate")
    endpoint = problems.check(_endpoint, section.get("endpoint"))
    limits = problems.check(_limits, section.get("limits"))
    wave_size = problems.check(typed, section, "wave_size", int, "generate", 256, positive=True)
    recipes = problems.check(_recipes, section.get("recipes"), read_text, list(profile_dirs))
    problems.raise_if_any()
    return GenerateSettings(endpoint, limits, wave_size, tuple(recipes))


def _endpoint(raw: Any) -> Endpoint:
    section = mapping(raw, "generate.endpoint")
    where = "generate.endpoint"
    problems = Problems()
    if "api_key" in section or "key" in section:
        problems.add(f"{where}.api_key: not allowed in a file; the key comes from {KEY_VARIABLE} only")
    problems.unknown_keys({k: v for k, v in section.items() if k not in ("api_key", "key")},
                          Endpoint.__dataclass_fields__, where)
    values = {}
    for key in ("base_url", "model", "api_type", "api_version"):
        values[key] = problems.check(typed, section, key, str, where)
    for key in ("timeout_s", "backoff_s", "max_backoff_s"):
        values[key] = problems.check(typed, section, key, float, where, getattr(Endpoint, key), positive=True)
    values["max_attempts"] = problems.check(typed, section, "max_attempts", int, where, Endpoint.max_attempts,
                                            positive=True)
    values["response_format"] = problems.check(typed, section, "response_format", bool, where, True)
    problems.raise_if_any()
    return Endpoint(**values)


def _limits(raw: Any) -> Limits:
    section = mapping(raw, "generate.limits")
    where = "generate.limits"
    problems = Problems()
    problems.unknown_keys(section, Limits.__dataclass_fields__, where)
    values = {key: problems.check(typed, section, key, int, where, getattr(Limits, key), positive=True)
              for key in ("tasks", "concurrency", "max_requests", "max_tokens_total")}
    for key in ("requests_per_minute", "tokens_per_minute"):
        values[key] = problems.check(typed, section, key, float, where, None, positive=True)
    problems.raise_if_any()
    return Limits(**values)


def _recipes(raw: Any, read_text: Callable[[str], str], profile_dirs: list) -> list[Recipe]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RecipeError("generate.recipes: must be a list of recipe files or mappings")
    problems = Problems()
    recipes: list[Recipe] = []
    for i, entry in enumerate(raw):
        where = f"generate.recipes[{i}]"
        recipes += problems.check(load_recipe, entry, where, read_text, profile_dirs) or []
    names = [recipe.name for recipe in recipes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add(f"generate.recipes: recipe name {name!r} used twice")
    problems.raise_if_any()
    return recipes


def load_recipe(entry: Any, where: str, read_text: Callable[[str], str], profile_dirs: Iterable = ()) -> list[Recipe]:
    """The recipes of a recipe file (a path) or mapping."""
    if not isinstance(entry, str):
        return parse_recipes(entry, where, profile_dirs)
    try:
        raw = yaml.safe_load(read_text(entry))
    except OSError as err:
        raise RecipeError(f"{where}: cannot read {entry}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{where}: {entry} is not valid YAML: {err}") from None
    return parse_recipes(raw, f"{where} ({entry})", profile_dirs, path=entry)
