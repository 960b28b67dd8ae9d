"""Configs of test runs: the demo config (conf/local.yaml) with changes."""
from __future__ import annotations

import yaml

from tests.support.paths import REPO


def demo_config(lake: str | dict, **overrides):
    """The loaded demo config on ``lake`` (a root, or ``{root, engine}``), with ``overrides``
    of its top-level keys."""
    from framelake.config import load_config

    return load_config(str(REPO / "conf" / "local.yaml"), overrides={"lake": lake, **overrides})


def write_config(tmp_path, **changes) -> str:
    """The demo config with ``changes`` of its top-level keys, written to ``tmp_path``; its path."""
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)
