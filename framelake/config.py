"""The framelake config: YAML in, validated dataclasses out.

Every error names the key it is about (``sources[1].format: ...``). Relative local paths are
taken from the current directory, as a shell user expects of ``lake: ./lake``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from framelake.storage import StorageOptions, is_s3
from udfs.adapters import SourceSpec

# Model profiles shipped with framelake; a config's own ``models/`` folder is searched first.
BUILTIN_PROFILE_DIR = Path(__file__).resolve().parent.parent / "conf" / "models"
SHARD_FORMATS = ("minicpmv", "llava", "webdataset")
STAGES = ("normalize", "frames", "tokens", "shards")


class ConfigError(ValueError):
    """A config problem; the message starts with the key it is about."""


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    remote: str | None = None
    conf: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FramesSettings:
    fps: float = 1.0
    max_frames: int = 96
    max_side: int = 448
    quality: int = 3
    timeout_s: float = 120.0

    def fingerprint(self) -> str:
        """Identifies the sampling parameters: frames made with others are not reused."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardSettings:
    formats: tuple[str, ...] = ("minicpmv", "llava", "webdataset")
    samples_per_shard: int = 1000
    frame_root: str = ""  # prefix of frame paths in JSON shards; "" keeps them lake-relative


@dataclass(frozen=True)
class Config:
    lake: str
    storage: StorageOptions
    spark: SparkSettings
    sources: tuple[SourceSpec, ...]
    frames: FramesSettings
    models: tuple[dict, ...]
    shards: ShardSettings
    path: str = ""

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
    known = {"lake", "storage", "spark", "sources", "frames", "models", "shards"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    lake = _require(raw, "lake", str, "lake")
    return Config(
        lake=_absolute(lake),
        storage=_storage(raw.get("storage")),
        spark=_spark(raw.get("spark")),
        sources=tuple(_sources(raw.get("sources"))),
        frames=_section(FramesSettings, raw.get("frames"), "frames"),
        models=tuple(_models(raw.get("models"), config_dir)),
        shards=_shards(raw.get("shards")),
        path=path,
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
    search = [d for d in (config_dir and config_dir / "models", BUILTIN_PROFILE_DIR) if d]
    models, names = [], set()
    for i, entry in enumerate(value):
        where = f"models[{i}]"
        entry = dict(_mapping(entry, where))
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


def _shards(value: Any) -> ShardSettings:
    section = dict(_mapping(value, "shards"))
    formats = section.pop("formats", list(ShardSettings.formats))
    if not isinstance(formats, list) or not formats:
        raise ConfigError("shards.formats: must be a non-empty list")
    for fmt in formats:
        if fmt not in SHARD_FORMATS:
            raise ConfigError(f"shards.formats: unknown format {fmt!r} (known: {', '.join(SHARD_FORMATS)})")
    settings = _section(ShardSettings, {k: v for k, v in section.items() if k != "frame_root"}, "shards")
    frame_root = section.get("frame_root", "")
    if not isinstance(frame_root, str):
        raise ConfigError("shards.frame_root: must be a string")
    return ShardSettings(formats=tuple(formats), samples_per_shard=settings.samples_per_shard,
                         frame_root=frame_root)
