"""The framelake config: YAML in, validated dataclasses out.

Every error names the key it is about (``sources[1].format: ...``). Relative local paths are
taken from the current directory, as a shell user expects of ``lake: ./lake``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from framelake.storage import StorageOptions, is_s3
from udfs.adapters import SourceSpec

SHARD_FORMATS = ("minicpmv", "llava", "webdataset", "mimicit")
STAGES = ("normalize", "frames", "tokens", "shards")


class ConfigError(ValueError):
    """A config problem; the message starts with the key it is about."""


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
        params = {k: v for k, v in asdict(self).items() if k != "wave_size"}  # not a sampling parameter
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardSettings:
    formats: tuple[str, ...] = ("minicpmv", "llava", "webdataset")
    samples_per_shard: int = 1000
    frame_root: str = ""  # prefix of frame paths in JSON shards; "" keeps them lake-relative
    balance: str = "samples"  # balance shards by "samples" (samples_per_shard) or "bytes" (bytes_per_shard)
    bytes_per_shard: int = 500_000_000
    length_order: str = "none"  # "sort": by token length within shards; "group": each shard a length range
    mimicit_task: str = "DC"  # Otter picks its loader by this id prefix; DC, E4D, TVC, EAI are video tasks


@dataclass(frozen=True)
class Config:
    lake: str
    storage: StorageOptions
    spark: SparkSettings
    sources: tuple[SourceSpec, ...]
    frames: FramesSettings
    models: tuple[dict, ...]
    shards: ShardSettings
    filters: dict = field(default_factory=dict)  # model name -> udfs.filters.FilterSettings
    path: str = ""
    catalog: CatalogSettings | None = None
    normalize: NormalizeSettings = NormalizeSettings()

    def model_profiles(self):
        """The models as ``ModelProfile`` objects (validated at load time)."""
        from udfs.token_lengths import ModelProfile

        return [ModelProfile.from_dict(m) for m in self.models]


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
    known = {"lake", "storage", "spark", "sources", "normalize", "frames", "models", "shards", "catalog", "filters"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    lake = _require(raw, "lake", str, "lake")
    sources = tuple(_sources(raw.get("sources")))
    models = tuple(_models(raw.get("models"), config_dir))
    return Config(
        lake=_absolute(lake),
        storage=_storage(raw.get("storage")),
        spark=_spark(raw.get("spark")),
        sources=sources,
        normalize=_section(NormalizeSettings, raw.get("normalize"), "normalize"),
        frames=_section(FramesSettings, raw.get("frames"), "frames"),
        models=models,
        shards=_shards(raw.get("shards")),
        filters=_filters(raw.get("filters"), raw["models"], models, sources),
        path=path,
        catalog=_catalog(raw.get("catalog")),
    )


def _absolute(path: str) -> str:
    return path.rstrip("/") if is_s3(path) else os.path.abspath(os.path.expanduser(path))


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
    kwargs = {}
    for key, given in section.items():
        if not hasattr(defaults, key):
            raise ConfigError(f"{where}.{key}: unknown key")
        default = getattr(defaults, key)
        kind = type(default)
        if kind is float and isinstance(given, int) and not isinstance(given, bool):
            given = float(given)
        if not isinstance(given, kind) or isinstance(given, bool) != isinstance(default, bool):
            raise ConfigError(f"{where}.{key}: must be a {kind.__name__}, got {given!r}")
        if isinstance(given, (int, float)) and not isinstance(given, bool) and given <= 0:
            raise ConfigError(f"{where}.{key}: must be > 0, got {given!r}")
        kwargs[key] = given
    return cls(**kwargs)


def _storage(value: Any) -> StorageOptions:
    section = _mapping(value, "storage")
    known = {"endpoint_url", "region", "access_key_id", "secret_access_key", "session_token",
             "allow_http", "max_attempts"}
    for key in section:
        if key not in known:
            raise ConfigError(f"storage.{key}: unknown key (known: {', '.join(sorted(known))})")
    return StorageOptions.from_config(section)


def _spark(value: Any) -> SparkSettings:
    section = _mapping(value, "spark")
    for key in section:
        if key not in ("master", "remote", "conf"):
            raise ConfigError(f"spark.{key}: unknown key (known: conf, master, remote)")
    conf = _mapping(section.get("conf"), "spark.conf")
    return SparkSettings(
        master=str(section.get("master") or "local[*]"),
        remote=section.get("remote") or os.environ.get("SPARK_REMOTE"),
        conf={str(k): str(v) for k, v in conf.items()},
    )


def _sources(value: Any) -> list[SourceSpec]:
    from udfs.adapters import known_formats

    if not isinstance(value, list) or not value:
        raise ConfigError("sources: must be a non-empty list")
    formats = known_formats()
    specs, names = [], set()
    for i, entry in enumerate(value):
        where = f"sources[{i}]"
        entry = _mapping(entry, where)
        name = _require(entry, "name", str, f"{where}.name")
        if name in names:
            raise ConfigError(f"{where}.name: duplicate source name {name!r}")
        names.add(name)
        fmt = _require(entry, "format", str, f"{where}.format")
        if fmt not in formats:
            raise ConfigError(f"{where}.format: unknown format {fmt!r} (known: {', '.join(formats)})")
        annotations = _require(entry, "annotations", str, f"{where}.annotations")
        media_root = entry.get("media_root") or os.path.dirname(annotations.rstrip("/*")) or "."
        media_type = entry.get("media_type")
        if media_type not in (None, "video", "image", "text"):
            raise ConfigError(f"{where}.media_type: must be video, image or text, got {media_type!r}")
        where_sql = entry.get("where")
        if where_sql is not None and not isinstance(where_sql, str):
            raise ConfigError(f"{where}.where: must be a Spark SQL predicate string")
        options = _mapping(entry.get("options"), f"{where}.options")
        extra = sorted(set(entry) - {"name", "format", "annotations", "media_root", "media_type",
                                     "where", "options"})
        if extra:
            raise ConfigError(f"{where}.{extra[0]}: unknown key")
        specs.append(
            SourceSpec(
                name=name,
                format=fmt,
                annotations=_absolute(annotations),
                media_root=_absolute(str(media_root)),
                media_type=media_type,
                options={**options, **({"where": where_sql} if where_sql else {})},
            )
        )
    return specs


def _models(value: Any, config_dir: Path | None) -> list[dict]:
    from udfs.token_lengths import ModelProfile, load_profile

    if not isinstance(value, list) or not value:
        raise ConfigError("models: must be a non-empty list")
    search = [d for d in (config_dir and config_dir / "models", builtin_profile_dir()) if d]
    models, names = [], set()
    for i, entry in enumerate(value):
        where = f"models[{i}]"
        entry = dict(_mapping(entry, where))
        entry.pop("filters", None)  # read by _filters; not part of the profile
        if "profile" in entry:
            try:
                base = load_profile(str(entry.pop("profile")), [str(d) for d in search])
            except (OSError, ValueError, KeyError) as err:
                raise ConfigError(f"{where}.profile: {err}") from None
            entry = {**base, **entry}
        try:
            profile = ModelProfile.from_dict(entry)
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{where}.{err}") from None
        if profile.name in names:
            raise ConfigError(f"{where}.name: duplicate model name {profile.name!r}")
        names.add(profile.name)
        models.append(entry)
    return models


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


def _catalog(value: Any) -> CatalogSettings | None:
    if value is None:
        return None
    section = _mapping(value, "catalog")
    unknown = sorted(set(section) - {"name", "schema"})
    if unknown:
        raise ConfigError(f"catalog.{unknown[0]}: unknown key (known: name, schema)")
    names = {}
    for key in ("name", "schema"):
        names[key] = _require(section, key, str, f"catalog.{key}")
        if not names[key] or any(ch in names[key] for ch in "`. "):
            raise ConfigError(f"catalog.{key}: must be one identifier, got {names[key]!r}")
    return CatalogSettings(**names)


def _shards(value: Any) -> ShardSettings:
    section = dict(_mapping(value, "shards"))
    formats = section.pop("formats", list(ShardSettings.formats))
    if not isinstance(formats, list) or not formats:
        raise ConfigError("shards.formats: must be a non-empty list")
    for fmt in formats:
        if fmt not in SHARD_FORMATS:
            raise ConfigError(f"shards.formats: unknown format {fmt!r} (known: {', '.join(SHARD_FORMATS)})")
    settings = replace(_section(ShardSettings, section, "shards"), formats=tuple(formats))
    for key, allowed in (("balance", ("samples", "bytes")), ("length_order", ("none", "sort", "group"))):
        if getattr(settings, key) not in allowed:
            raise ConfigError(f"shards.{key}: must be one of {', '.join(allowed)}, got {getattr(settings, key)!r}")
    if not re.fullmatch(r"[A-Za-z0-9]+", settings.mimicit_task):
        raise ConfigError(f"shards.mimicit_task: letters and digits only (an Otter id prefix), got {settings.mimicit_task!r}")
    return settings


def _filters(value: Any, raw_models: list, models: tuple[dict, ...], sources: tuple[SourceSpec, ...]) -> dict:
    """Each model's ``FilterSettings``: the top-level ``filters`` with ``models[i].filters`` over it."""
    from udfs.filters import FilterError, FilterSettings

    names = [spec.name for spec in sources]
    common = _mapping(value, "filters")
    try:
        FilterSettings.from_dict(common, names)
    except FilterError as err:
        raise ConfigError(f"filters.{err}") from None
    settings = {}
    for i, (entry, model) in enumerate(zip(raw_models, models)):
        own = _mapping(entry.get("filters"), f"models[{i}].filters")
        try:
            settings[model["name"]] = FilterSettings.from_dict({**common, **own}, names)
        except FilterError as err:
            raise ConfigError(f"models[{i}].filters.{err}") from None
    return settings
