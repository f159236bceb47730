"""Mid-level checkpoints: a killed level resumes from its last finished epoch, bit for bit.

A checkpoint is two run files: ``checkpoint/state.safetensors`` (model state,
optimizer buffers, torch RNG states) and ``checkpoint/state.json`` (phase,
level, next epoch, the per-epoch rows so far, optimizer hyperparameters, the
Python and NumPy RNG states, and the sha256 of the tensor file it belongs to).
The JSON is written last and names its tensors by hash, so a crash between
the two writes leaves an inconsistent pair that is ignored, never a mix.

Every epoch's randomness is derived from (seed, epoch) (see
:mod:`prunescope.seeding`); the RNG states are kept as well so that nothing a
future change draws from a global generator can break resumption.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prunescope.errors import RunDirError
from prunescope.rundir.layout import RunDir
from prunescope.rundir.level_files import check_state

log = logging.getLogger("prunescope")

TENSORS = "checkpoint/state.safetensors"
META = "checkpoint/state.json"


@dataclass
class Checkpoint:
    phase: str  # "pretrain" or "level"
    level: int | None
    next_epoch: int
    rows: list[dict]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng: dict[str, Any]


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    version, keys, pos = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [version, list(keys), pos],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    return tensors, meta


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch_cpu"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, keys, pos = rng["python"]
    random.setstate((version, tuple(keys), pos))
    name, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


def save_checkpoint(
    rd: RunDir,
    phase: str,
    level: int | None,
    next_epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rows: list[dict],
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for name, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {name} is not a tensor")
            tensors[f"optim.{idx}.{name}"] = value
    rng_tensors, rng_meta = _rng_state()
    tensors.update(rng_tensors)
    digest = rd.write_tensors(TENSORS, tensors)
    rd.write_json(
        META,
        {
            "phase": phase,
            "level": level,
            "next_epoch": next_epoch,
            "rows": rows,
            # a captured step keeps lr in a device tensor: JSON holds its value
            "param_groups": [
                {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in g.items()}
                for g in opt["param_groups"]
            ],
            "rng": rng_meta,
            "tensors_sha256": digest,
        },
    )
    rd.manifest["checkpoint"] = {"phase": phase, "level": level, "epoch": next_epoch}
    rd.save_manifest()


def load_checkpoint(
    rd: RunDir, phase: str, level: int | None, model: nn.Module
) -> Checkpoint | None:
    """The checkpoint of this phase/level, or None when there is none (or it is unusable:
    damaged, or holding a state that does not fit ``model``)."""
    if not (rd.recorded(META) and rd.recorded(TENSORS)):
        return None
    try:
        meta = rd.read_json(META)
        if not isinstance(meta, dict):
            raise RunDirError(f"{rd.path(META)} is not a JSON object")
        if meta.get("phase") != phase or meta.get("level") != level:
            return None
        if meta.get("tensors_sha256") != rd.manifest["files"][TENSORS]["sha256"]:
            log.warning(
                "checkpoint files do not belong together (killed while saving); starting the %s over",
                "pretraining" if phase == "pretrain" else f"level {level}",
            )
            return None
        tensors = rd.read_tensors(TENSORS)
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        check_state(TENSORS, model_state, model)
    except RunDirError as exc:
        log.warning("ignoring a damaged checkpoint: %s", exc)
        return None
    try:
        return _checkpoint_from(phase, level, meta, tensors, model_state)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("ignoring a malformed checkpoint (%s: %s)", type(exc).__name__, str(exc)[:200])
        return None


def _checkpoint_from(
    phase: str, level: int | None, meta: dict, tensors: dict, model_state: dict
) -> Checkpoint:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    rng = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
    rng.update(dict(meta["rng"]))
    rows = list(meta["rows"])
    if not all(isinstance(r, dict) for r in rows) or not isinstance(meta["param_groups"], list):
        raise TypeError("rows and param_groups must be lists of objects")
    return Checkpoint(
        phase,
        level,
        int(meta["next_epoch"]),
        rows,
        model_state,
        {"state": state, "param_groups": meta["param_groups"]},
        rng,
    )


def remove_checkpoint(rd: RunDir) -> None:
    for rel in (META, TENSORS):
        if rd.recorded(rel) or rd.path(rel).exists():
            rd.forget(rel)
    if rd.manifest.get("checkpoint") is not None:
        rd.manifest["checkpoint"] = None
        rd.save_manifest()
