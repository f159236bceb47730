"""``--redo-from N``: forget level N and every later one, so that they are trained again."""

from __future__ import annotations

from prunescope.rundir.checkpoint import META, TENSORS
from prunescope.rundir.layout import LEVELS, REWIND, RunDir


def forget_levels_from(rd: RunDir, level: int) -> None:
    """Drop levels >= ``level`` (and the rewind point for 0), the checkpoint, and those
    levels from every analysis record, so that all of them are computed again.

    The manifest changes in one atomic save, before any file is removed: a crash
    never leaves a level marked complete whose files are no longer recorded.
    """
    m = rd.manifest
    prefixes = tuple(f"{LEVELS}/{name}/" for name in m["levels"] if int(name) >= level)
    drop = [rel for rel in m["files"] if rel.startswith(prefixes) or rel in (META, TENSORS)]
    if level == 0:
        drop += [REWIND] if REWIND in m["files"] else []
    for rel in drop:
        m["files"].pop(rel, None)
    for name in [n for n in m["levels"] if int(n) >= level]:
        del m["levels"][name]
    for record in m.get("analyses", {}).values():
        record["levels"] = [lv for lv in record.get("levels", []) if lv < level]
    m["checkpoint"] = None
    rd.save_manifest()
    for rel in drop:
        rd.safe_path(rel).unlink(missing_ok=True)
