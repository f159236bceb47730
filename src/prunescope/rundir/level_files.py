"""Reading a level's tensors back, checked against the model they must fit.

A level file can carry the right sha256 and still be wrong (a run directory from
someone else, re-signed): a weight of another shape, float16 or int64 tensors,
NaN weights, masks with other keys, or weights alive where the mask says
pruned. Every read of a level, by IMP, by the analyses and by the Python API,
goes through :func:`read_level_tensors`, so none of them is ever computed from
such a file.
"""

from __future__ import annotations

import torch
from torch import nn

from prunescope.errors import RunDirError
from prunescope.models.ties import aliases, expanded
from prunescope.rundir.layout import RunDir, level_file

Masks = dict[str, torch.Tensor]


def _first(items: list, n: int = 3) -> list:
    return sorted(items)[:n]


def check_state(rel: str, state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """A saved state must match the model key for key (a tied tensor under its first key
    only), shape for shape and dtype for dtype, and hold no NaN or infinity. The model's
    alias keys are then filled in (:mod:`prunescope.models.ties`)."""
    tied = aliases(model)
    want = {k: v for k, v in model.state_dict().items() if k not in tied}
    missing = set(want) - set(state)
    extra = set(state) - set(want)
    shapes = [k for k in set(want) & set(state) if want[k].shape != state[k].shape]
    if missing or extra or shapes:
        raise RunDirError(
            f"{rel} does not fit this model (missing {_first(list(missing))}, unexpected "
            f"{_first(list(extra))}, other shapes {_first(shapes)})"
        )
    dtypes = [k for k in want if want[k].dtype != state[k].dtype]
    if dtypes:
        k = _first(dtypes)[0]
        raise RunDirError(
            f"{rel} does not fit this model: {k} is {state[k].dtype}, the model's is "
            f"{want[k].dtype} ({len(dtypes)} tensor(s) of another dtype)"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise RunDirError(f"{rel} holds NaN or infinite values (in {_first(bad)})")
    expanded(state, model)


def check_masks(
    rel: str, masks: dict[str, torch.Tensor], state: dict[str, torch.Tensor], keys: list[str]
) -> Masks:
    """Masks must name exactly the prunable weights, in their shapes, as 0/1 values, and
    every weight they prune must be exactly 0."""
    if sorted(masks) != sorted(keys):
        raise RunDirError(
            f"{rel} does not match this model's prunable weights (missing "
            f"{_first(list(set(keys) - set(masks)))}, unexpected {_first(list(set(masks) - set(keys)))})"
        )
    out = {}
    for k in keys:
        m = masks[k]
        if m.shape != state[k].shape:
            raise RunDirError(
                f"{rel}: mask {k} has shape {tuple(m.shape)}, its weight {tuple(state[k].shape)}"
            )
        if m.dtype not in (torch.bool, torch.uint8) or (
            m.dtype == torch.uint8 and bool((m > 1).any())
        ):
            raise RunDirError(f"{rel}: mask {k} is not boolean (dtype {m.dtype})")
        alive = m.bool()
        if bool((state[k][~alive] != 0).any()):
            raise RunDirError(f"{rel}: {k} has weights that its mask prunes but that are not 0")
        out[k] = alive
    return out


def read_state(rd: RunDir, rel: str, model: nn.Module) -> dict[str, torch.Tensor]:
    state = rd.read_tensors(rel)
    check_state(rel, state, model)
    return state


def read_level_tensors(
    rd: RunDir, level: int, model: nn.Module, keys: list[str]
) -> tuple[dict[str, torch.Tensor], Masks]:
    """The trained state and masks of a completed level, both checked against ``model``."""
    state = read_state(rd, level_file(level, "model.safetensors"), model)
    rel = level_file(level, "mask.safetensors")
    return state, check_masks(rel, rd.read_tensors(rel), state, keys)


_METRIC_RANGES = {
    "level": (0, None),
    "network_sparsity": (0.0, 1.0),
    "test_accuracy": (0.0, 1.0),
    "test_loss": (0.0, None),
}


def read_metrics(rd: RunDir, level: int) -> dict:
    """A level's ``metrics.json``, with the fields the tables are built from checked."""
    rel = level_file(level, "metrics.json")
    m = rd.read_json(rel)
    if not isinstance(m, dict):
        raise RunDirError(f"{rd.path(rel)} is damaged (not a JSON object)")
    for key, (lo, hi) in _METRIC_RANGES.items():
        v = m.get(key)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and v == v
        if ok and (v < lo or (hi is not None and v > hi)):
            ok = False
        if not ok:
            raise RunDirError(
                f"{rd.path(rel)} is damaged ({key} = {str(v)[:40]!r} is not a number in range)"
            )
    if m["level"] != level:
        raise RunDirError(f"{rd.path(rel)} is damaged (it says level {m['level']})")
    return m
