"""The lake's layout version: what the ids and object names in its tables mean.

Recorded in ``<lake>/_framelake.json`` by the first run on a lake without tables. A lake
whose tables were made under another layout (a lake from before the file existed is layout 1)
holds ids this framelake would not make again, so a run on it stops with what to do: a new
lake, or the old tables deleted.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from udfs.schemas import TABLES

if TYPE_CHECKING:
    from framelake.lake import Lake

LAYOUT_VERSION = 2
# What each layout changed, told to whoever has a lake of the one before.
LAYOUT_CHANGES = {
    2: "media ids (and so video ids and frame object names) no longer depend on where the media are "
       "mounted or where the lake is",
}
LAYOUT_FILE = "_framelake.json"


class LakeLayoutError(RuntimeError):
    """The lake's tables were made under another layout: it must be rebuilt."""


def recorded_layout(lake: Lake) -> int | None:
    """The layout ``_framelake.json`` records; 1 for a lake with tables and no file; None for
    a lake with neither."""
    uri = lake.uri(LAYOUT_FILE)
    if lake.storage.exists(uri):
        return int(json.loads(lake.storage.read_bytes(uri))["layout"])
    return 1 if any(lake.exists(name) for name in TABLES) else None


def check_layout(lake: Lake) -> None:
    """Record this layout on a lake without tables; raise ``LakeLayoutError`` for a lake whose
    tables were made under another one."""
    layout = recorded_layout(lake)
    if layout == LAYOUT_VERSION:
        return
    if layout is None or not any(lake.exists(name) for name in TABLES):
        record = {"layout": LAYOUT_VERSION, "about": "what the ids in this lake's tables mean; README, "
                                                     "'Ids, and rebuilding a lake'"}
        lake.storage.write_bytes(lake.uri(LAYOUT_FILE), json.dumps(record).encode("utf-8"))
        return
    if layout > LAYOUT_VERSION:
        raise LakeLayoutError(f"the lake {lake.root} was made under layout {layout} by a newer framelake; this one "
                              f"writes layout {LAYOUT_VERSION}: run a framelake that knows layout {layout}")
    changed = "; ".join(LAYOUT_CHANGES[v] for v in range(layout + 1, LAYOUT_VERSION + 1) if v in LAYOUT_CHANGES)
    why = f" ({changed})" if changed else ""
    raise LakeLayoutError(
        f"the lake {lake.root} was made under layout {layout}, this framelake writes layout {LAYOUT_VERSION}"
        f"{why}: its tables cannot be updated in place. Run into a new lake (another `lake:`), or delete "
        f"{lake.uri('tables')} and {lake.uri('frames')} and run again to rebuild it here")
