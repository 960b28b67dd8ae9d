"""The framelake config: YAML in, validated dataclasses out.

Every error names the key it is about (``sources[1].format: ...``), and one load reports every
problem of the file, not only the first. Relative local paths are taken from the current
directory, as a shell user expects of ``lake: ./lake``.

One module, past 400 lines: every section's parser shares the problem collector and the
key-path form of the errors, and the settings they build are read side by side.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from framelake.storage import StorageOptions, is_s3
from udfs.adapters import SourceSpec
from udfs.fingerprint import fingerprint
from udfs.generate.problems import RecipeError
from udfs.generate.settings import GenerateSettings, parse_generate
from udfs.sample import media_datasets

if TYPE_CHECKING:
    from udfs.token_lengths import ModelProfile
    from udfs.video import Sampling

STAGES = ("normalize", "generate", "frames", "tokens", "shards")
# "auto": delta-spark where this session has Delta's classes (Databricks, --packages), else delta-rs.
ENGINES = ("auto", "delta-rs", "delta-spark")


class ConfigError(ValueError):
    """Config problems, one a line, each starting with the key it is about."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    remote: str | None = None
    conf: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogSettings:
    """Where the tables are also registered by name: ``<name>.<schema>.<table>``."""

    name: str
    schema: str


@dataclass(frozen=True)
class NormalizeSettings:
    split_bytes: int = 64 * 1024 * 1024  # bigger annotation files are read in parts of about this size


@dataclass(frozen=True)
class FramesSettings:
    fps: float = 1.0
    max_frames: int = 96
    max_side: int = 448
    quality: int = 3
    timeout_s: float = 120.0
    wave_size: int = 256  # media items extracted and committed together: a killed run keeps its waves

    def fingerprint(self) -> str:
        """Identifies the sampling parameters: frames made with others are not reused."""
        return fingerprint({k: v for k, v in asdict(self).items() if k != "wave_size"})  # not a sampling parameter

    def sampling(self) -> Sampling:
        """The extraction parameters these settings give; a media item's clip is ``clip``'s."""
        from udfs.video import Sampling  # here, not at the top: it loads PyAV, ffmpeg and PIL

        return Sampling(fps=self.fps, max_frames=self.max_frames, max_side=self.max_side, quality=self.quality,
                        timeout_s=self.timeout_s)


@dataclass(frozen=True)
class ShardSettings:
    formats: tuple[str, ...] = ("minicpmv", "llava", "webdataset")
    samples_per_shard: int = 1000
    frame_root: str = ""  # prefix of frame paths in JSON shards; "" keeps them lake-relative
    balance: str = "samples"  # balance shards by "samples" (samples_per_shard) or "bytes" (bytes_per_shard)
    bytes_per_shard: int = 500_000_000
    length_order: str = "none"  # "sort": by token length within shards; "group": each shard a length range
    mimicit_task: str = "DC"  # Otter picks its loader by this id prefix; DC, E4D, TVC, EAI are video tasks
    # In-context examples (MIMIC-IT) in a format with no place for them (minicpmv, llava,
    # messages, hf_parquet): "drop" the sample for the model, or "turns": earlier exchanges.
    in_context: str = "drop"
    llava_system: str = "prepend"  # LLaVA has no system role: "prepend" to the first human turn, or "drop"


@dataclass(frozen=True)
class Config:
    lake: str  # the lake's root: a local folder or s3://bucket/prefix
    storage: StorageOptions
    spark: SparkSettings
    sources: tuple[SourceSpec, ...]
    frames: FramesSettings
    models: tuple[ModelProfile, ...]
    shards: ShardSettings
    filters: dict = field(default_factory=dict)  # model name -> udfs.filters.FilterSettings
    path: str = ""
    catalog: CatalogSettings | None = None
    normalize: NormalizeSettings = NormalizeSettings()
    engine: str = "auto"  # lake.engine: ENGINES
    generate: GenerateSettings = GenerateSettings()

    def tokens_fingerprint(self, profile: ModelProfile, inputs: list) -> str:
        """What a model's ``token_lengths`` rows were made from (their ``settings``): its settings,
        and ``inputs``, the digest of the rows the tokens stage reads (``jobs.sample_frames``)."""
        return fingerprint({
            "inputs": inputs,
            "model": profile.as_dict(),
            "filters": asdict(self.filters[profile.name]),
            "frames": asdict(self.frames),
            "formats": sorted(self.shards.formats),
            "in_context": self.shards.in_context,  # which samples the formats drop
        })


def load_config(path: str, overrides: dict | None = None) -> Config:
    """Read and validate a YAML config file (local or ``s3://``)."""
    if is_s3(path):
        from framelake.storage import Storage

        text = Storage(StorageOptions.from_config(None)).read_bytes(path).decode("utf-8")
        config_dir = None
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"config: cannot read {path}: {err.strerror}") from None
        config_dir = Path(path).resolve().parent
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping")
    raw.update(overrides or {})
    return parse_config(raw, config_dir=config_dir, path=path)


def parse_config(raw: dict, *, config_dir: Path | None = None, path: str = "") -> Config:
    """The validated config; a ``ConfigError`` lists every problem found, not only the first."""
    problems = _Problems()
    known = {"lake", "storage", "spark", "sources", "normalize", "frames", "models", "shards", "catalog", "filters",
             "generate"}
    for key in sorted(set(raw) - known):
        problems.add(f"{key}: unknown key (known: {', '.join(sorted(known))})")
    lake, engine = problems.check(_lake, raw.get("lake")) or (None, None)
    parts = {
        "storage": problems.check(_storage, raw.get("storage")),
        "spark": problems.check(_spark, raw.get("spark")),
        "sources": problems.check(_sources, raw.get("sources")),
        "normalize": problems.check(_section, NormalizeSettings, raw.get("normalize"), "normalize"),
        "frames": problems.check(_section, FramesSettings, raw.get("frames"), "frames"),
        "models": problems.check(_models, raw.get("models"), config_dir),
        "shards": problems.check(_shards, raw.get("shards")),
        "catalog": problems.check(_catalog, raw.get("catalog")),
        "generate": problems.check(_generate, raw.get("generate"), config_dir),
    }
    if parts["sources"] is not None and parts["models"] is not None:
        parts["filters"] = problems.check(
            _filters, raw.get("filters"), raw["models"], parts["models"], parts["sources"])
    problems.raise_if_any()
    parts.update(sources=tuple(parts["sources"]), models=tuple(parts["models"]))
    return Config(lake=_absolute(lake), engine=engine, path=path, **parts)


class _Problems:
    """Every problem of a config, so that one load (one ``validate``) reports them all."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, problem: str) -> None:
        self.found.append(problem)

    def check(self, parse, *args):
        """``parse(*args)``, or None with its problems recorded."""
        try:
            return parse(*args)
        except ConfigError as err:
            self.found.extend(err.problems)
            return None

    def raise_if_any(self) -> None:
        if self.found:
            raise ConfigError(self.found)


def _absolute(path: str) -> str:
    return path.rstrip("/") if is_s3(path) else os.path.abspath(os.path.expanduser(path))


def _lake(value: Any) -> tuple[str, str]:
    """(root, engine) of ``lake: ROOT`` or ``lake: {root: ROOT, engine: ENGINE}``. Without an
    engine, ``FRAMELAKE_ENGINE`` or "auto"."""
    section = {"root": value} if isinstance(value, str) or value is None else _mapping(value, "lake")
    problems = _Problems()
    for key in sorted(set(section) - {"root", "engine"}):
        problems.add(f"lake.{key}: unknown key (known: engine, root)")
    where = "lake" if isinstance(value, str) or value is None else "lake.root"
    root = problems.check(_require, section, "root", str, where)
    engine = section.get("engine") or os.environ.get("FRAMELAKE_ENGINE") or "auto"
    if engine not in ENGINES:
        problems.add(f"lake.engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
    problems.raise_if_any()
    return root, engine


def _require(section: dict, key: str, kind: type, where: str) -> Any:
    if key not in section or section[key] is None:
        raise ConfigError(f"{where}: required")
    value = section[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def _section(cls, value: Any, where: str):
    """A flat settings dataclass from a mapping, with type checks per field."""
    section = _mapping(value, where)
    defaults = cls()
    problems = _Problems()
    kwargs = {}
    for key, given in section.items():
        if not hasattr(defaults, key):
            problems.add(f"{where}.{key}: unknown key")
            continue
        default = getattr(defaults, key)
        kind = type(default)
        if kind is float and isinstance(given, int) and not isinstance(given, bool):
            given = float(given)
        if not isinstance(given, kind) or isinstance(given, bool) != isinstance(default, bool):
            problems.add(f"{where}.{key}: must be a {kind.__name__}, got {given!r}")
        elif isinstance(given, (int, float)) and not isinstance(given, bool) and given <= 0:
            problems.add(f"{where}.{key}: must be > 0, got {given!r}")
        else:
            kwargs[key] = given
    problems.raise_if_any()
    return cls(**kwargs)


def _storage(value: Any) -> StorageOptions:
    section = _mapping(value, "storage")
    known = {"endpoint_url", "region", "access_key_id", "secret_access_key", "session_token",
             "allow_http", "max_attempts"}
    problems = _Problems()
    for key in section:
        if key not in known:
            problems.add(f"storage.{key}: unknown key (known: {', '.join(sorted(known))})")
    problems.raise_if_any()
    return StorageOptions.from_config(section)


def _spark(value: Any) -> SparkSettings:
    section = _mapping(value, "spark")
    problems = _Problems()
    for key in section:
        if key not in ("master", "remote", "conf"):
            problems.add(f"spark.{key}: unknown key (known: conf, master, remote)")
    conf = problems.check(_mapping, section.get("conf"), "spark.conf") or {}
    problems.raise_if_any()
    return SparkSettings(
        master=str(section.get("master") or "local[*]"),
        remote=section.get("remote") or os.environ.get("SPARK_REMOTE"),
        conf={str(k): str(v) for k, v in conf.items()},
    )


_SOURCE_KEYS = ("name", "format", "annotations", "media_root", "media_type", "where", "options")


def _sources(value: Any) -> list[SourceSpec]:
    if not isinstance(value, list) or not value:
        raise ConfigError("sources: must be a non-empty list")
    problems = _Problems()
    specs = [problems.check(_source, entry, f"sources[{i}]") for i, entry in enumerate(value)]
    _no_duplicates(problems, "sources", [spec and spec.name for spec in specs], "source")
    problems.raise_if_any()
    # Named in the options, the dataset is part of each source's settings: a change renormalizes it.
    datasets = media_datasets([(spec.media_root, spec.options.get("media_dataset")) for spec in specs])
    return [replace(spec, options={**spec.options, "media_dataset": name}) for spec, name in zip(specs, datasets)]


def _no_duplicates(problems: _Problems, where: str, names: list[str | None], what: str) -> None:
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            problems.add(f"{where}[{i}].name: duplicate {what} name {name!r}")
        if name is not None:
            seen.add(name)


def _source(entry: Any, where: str) -> SourceSpec:
    """One ``sources:`` entry, its adapter's options checked."""
    from udfs.adapters import get_adapter, known_formats

    entry = _mapping(entry, where)
    problems = _Problems()
    for key in sorted(set(entry) - set(_SOURCE_KEYS)):
        problems.add(f"{where}.{key}: unknown key")
    name = problems.check(_require, entry, "name", str, f"{where}.name")
    fmt = problems.check(_require, entry, "format", str, f"{where}.format")
    if fmt is not None and fmt not in known_formats():
        problems.add(f"{where}.format: unknown format {fmt!r} (known: {', '.join(known_formats())})")
        fmt = None
    annotations = problems.check(_require, entry, "annotations", str, f"{where}.annotations")
    media_type = entry.get("media_type")
    if media_type not in (None, "video", "image", "text"):
        problems.add(f"{where}.media_type: must be video, image or text, got {media_type!r}")
    where_sql = entry.get("where")
    if where_sql is not None and not isinstance(where_sql, str):
        problems.add(f"{where}.where: must be a Spark SQL predicate string")
    options = problems.check(_mapping, entry.get("options"), f"{where}.options")
    if fmt is not None and options is not None:
        for problem in get_adapter(fmt).check_options(options):
            problems.add(f"{where}.options.{problem}")
    problems.raise_if_any()
    media_root = entry.get("media_root") or os.path.dirname(annotations.rstrip("/*")) or "."
    return SourceSpec(
        name=name,
        format=fmt,
        annotations=_absolute(annotations),
        media_root=_absolute(str(media_root)),
        media_type=media_type,
        options={**options, **({"where": where_sql} if where_sql else {})},
    )


def _models(value: Any, config_dir: Path | None) -> list[ModelProfile]:
    if not isinstance(value, list) or not value:
        raise ConfigError("models: must be a non-empty list")
    search = [d for d in (config_dir and config_dir / "models", builtin_profile_dir()) if d]
    problems = _Problems()
    models = [problems.check(_model, entry, f"models[{i}]", search) for i, entry in enumerate(value)]
    _no_duplicates(problems, "models", [profile and profile.name for profile in models], "model")
    problems.raise_if_any()
    return models


def _model(entry: Any, where: str, search: list[Path]) -> ModelProfile:
    """One ``models:`` entry: its profile file (``profile:``) with the entry's keys over it."""
    from udfs.token_lengths import ModelProfile, load_profile

    entry = dict(_mapping(entry, where))
    entry.pop("filters", None)  # read by _filters; not part of the profile
    if "profile" in entry:
        try:
            base = load_profile(str(entry.pop("profile")), [str(d) for d in search])
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"{where}.profile: {err}") from None
        entry = {**base, **entry}
    try:
        return ModelProfile.from_dict(entry)
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{where}.{err}") from None


def builtin_profile_dir() -> Path:
    """The model profiles shipped with framelake (``framelake/profiles``, a link to
    ``conf/models`` in a checkout); a config's own ``models/`` folder is searched first."""
    packaged = resources.files("framelake") / "profiles"
    if isinstance(packaged, Path):  # a checkout or an installed wheel
        return packaged
    # Imported from the --py-files archive, whose files are no folder: unpack them once.
    from udfs.tokenizers import cache_root

    profiles = sorted((f.name, f.read_bytes()) for f in packaged.iterdir() if f.name.endswith(".yaml"))
    digest = hashlib.sha256(repr(profiles).encode()).hexdigest()[:16]
    folder = cache_root().parent / "profiles" / digest
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent))
        for name, data in profiles:
            (staging / name).write_bytes(data)
        try:
            staging.rename(folder)
        except OSError:  # another process unpacked the same profiles first
            shutil.rmtree(staging)
    return folder


def default_stages(config: Config) -> list[str]:
    """The stages a run does unless told: all, but generate only with recipes configured
    (it needs an LLM endpoint; the demo runs offline)."""
    return [s for s in STAGES if s != "generate" or config.generate.recipes]


def _generate(value: Any, config_dir: Path | None) -> GenerateSettings:
    """The ``generate:`` section (``udfs.generate.settings``); recipe files are read as the
    config is, relative paths from the current directory."""
    def read_text(path: str) -> str:
        if is_s3(path):
            from framelake.storage import Storage

            return Storage(StorageOptions.from_config(None)).read_bytes(path).decode("utf-8")
        return Path(path).read_text(encoding="utf-8")

    search = [d for d in (config_dir and config_dir / "models", builtin_profile_dir()) if d]
    try:
        return parse_generate(value, read_text, search)
    except RecipeError as err:
        raise ConfigError(err.problems) from None


def _catalog(value: Any) -> CatalogSettings | None:
    if value is None:
        return None
    section = _mapping(value, "catalog")
    problems = _Problems()
    for key in sorted(set(section) - {"name", "schema"}):
        problems.add(f"catalog.{key}: unknown key (known: name, schema)")
    names = {key: problems.check(_identifier, section, key) for key in ("name", "schema")}
    problems.raise_if_any()
    return CatalogSettings(**names)


def _identifier(section: dict, key: str) -> str:
    name = _require(section, key, str, f"catalog.{key}")
    if not name or any(ch in name for ch in "`. "):
        raise ConfigError(f"catalog.{key}: must be one identifier, got {name!r}")
    return name


def _shards(value: Any) -> ShardSettings:
    from udfs.shards import known_formats
    from udfs.shards.common import IN_CONTEXT_MODES
    from udfs.shards.llava import LLAVA_SYSTEM_MODES

    section = dict(_mapping(value, "shards"))
    problems = _Problems()
    formats = section.pop("formats", list(ShardSettings.formats))
    if not isinstance(formats, list) or not formats:
        problems.add("shards.formats: must be a non-empty list")
        formats = list(ShardSettings.formats)
    for fmt in formats:
        if fmt not in known_formats():
            problems.add(f"shards.formats: unknown format {fmt!r} (known: {', '.join(known_formats())})")
    settings = problems.check(_section, ShardSettings, section, "shards")
    if settings is not None:
        for key, allowed in (("balance", ("samples", "bytes")), ("length_order", ("none", "sort", "group")),
                             ("in_context", IN_CONTEXT_MODES), ("llava_system", LLAVA_SYSTEM_MODES)):
            if getattr(settings, key) not in allowed:
                problems.add(f"shards.{key}: must be one of {', '.join(allowed)}, got {getattr(settings, key)!r}")
        if not re.fullmatch(r"[A-Za-z0-9]+", settings.mimicit_task):
            problems.add("shards.mimicit_task: letters and digits only (an Otter id prefix), "
                         f"got {settings.mimicit_task!r}")
    problems.raise_if_any()
    return replace(settings, formats=tuple(formats))


def _filters(value: Any, raw_models: list, models: list[ModelProfile], sources: list[SourceSpec]) -> dict:
    """Each model's ``FilterSettings``: the top-level ``filters`` with ``models[i].filters`` over it."""
    from udfs.filters import FilterError, FilterSettings

    names = [spec.name for spec in sources]
    common = _mapping(value, "filters")
    try:
        FilterSettings.from_dict(common, names)
    except FilterError as err:
        raise ConfigError(f"filters.{err}") from None
    problems = _Problems()
    settings = {}
    for i, (entry, model) in enumerate(zip(raw_models, models)):
        own = problems.check(_mapping, entry.get("filters"), f"models[{i}].filters")
        if own is None:
            continue
        try:
            settings[model.name] = FilterSettings.from_dict({**common, **own}, names)
        except FilterError as err:
            problems.add(f"models[{i}].filters.{err}")
    problems.raise_if_any()
    return settings
