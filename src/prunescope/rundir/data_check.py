"""The data a run trained on, recorded once and checked on every resume and analysis."""

from __future__ import annotations

import logging

from prunescope.data import PreparedData
from prunescope.data.fingerprint import data_fingerprint
from prunescope.errors import RunDirError
from prunescope.rundir.layout import RunDir, now

log = logging.getLogger("prunescope")

KEY = "data_fingerprint"


def check_data(rd: RunDir, data: PreparedData, *, redo_from: int | None = None) -> None:
    """Record the fingerprint of ``data``, or refuse data that differ from the recorded.

    With ``redo_from`` the new data are adopted (and the change recorded): the levels
    trained again see them, and the warning says that earlier levels did not.
    """
    fp = data_fingerprint(data)
    old = rd.manifest.get(KEY)
    if isinstance(old, dict) and old.get("sha256") == fp["sha256"]:
        return
    if isinstance(old, dict) and old:
        if redo_from is None:
            raise RunDirError(
                f"the data under data.root differ from the data {rd.root} was trained on "
                f"({fp['train_images']}/{fp['test_images']} train/test images with sha256 "
                f"{fp['sha256'][:12]}, recorded {old.get('train_images')}/{old.get('test_images')} "
                f"with {str(old.get('sha256'))[:12]}); point data.root at the original data, or "
                f"train again on these with --redo-from 0"
            )
        log.warning(
            "the data differ from those this run was trained on: levels before %d keep the old "
            "data, levels %d and later use the new",
            redo_from,
            redo_from,
        )
        rd.manifest.setdefault("config_history", []).append(
            {"at": now(), "redo_from": redo_from, "changed": {KEY: {"old": old, "new": fp}}}
        )
    rd.manifest[KEY] = fp
    rd.save_manifest()
