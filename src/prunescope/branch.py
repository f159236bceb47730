"""Control branches of a finished run (as OpenLTH's lottery branches): the same data order,
schedule and sparsity at every level, with one thing changed.

    random_reinit  the run's masks at every level, the weights re-initialised from another
                   draw of the seed (is it the mask, or the mask with its weights?)
    random_mask    random masks with exactly the run's per-layer sparsities (is it which
                   weights, or only how many per layer?)
    random_global  random masks with the run's network sparsity, uniform over every
                   prunable weight (is it the allocation across layers at all?)

A branch lives in ``RUN/branches/KIND/``: a run directory of its own (the run's config,
its own manifest, checkpoints and lock), so it resumes after a crash and is analysed
and reported exactly like a run. It records the sha256 of every mask of the run it was
made from, and is refused once the run was redone under it. Level 0 of the two
random-mask controls is the run's own dense level (same start, same data, no mask),
copied byte for byte rather than trained again. ``random_reinit`` is not pretrained: its
rewind state is the new initialisation itself, so every one of its levels, level 0
included, trains the level's epochs from that initialisation (the run's levels start
from the run's pretrained rewind point).
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from prunescope.config import Config
from prunescope.data import PreparedData
from prunescope.errors import RunDirError, UserInputError
from prunescope.imp import IMP
from prunescope.models.build import new_model
from prunescope.models.ties import cloned
from prunescope.pruning.masks import Masks
from prunescope.pruning.random_masks import random_global_masks, random_layerwise_masks
from prunescope.rundir.files import check_no_link_below
from prunescope.rundir.layout import REWIND, RunDir, level_file
from prunescope.rundir.level_files import read_level_tensors, read_metrics, read_state

log = logging.getLogger("prunescope")

BRANCHES = "branches"


@dataclass(frozen=True)
class BranchKind:
    name: str
    description: str
    random_masks: object | None  # (template, seed, level) -> Masks; None: the run's own masks
    reinit: bool  # weights from another initialisation instead of the run's rewind state


KINDS = {
    k.name: k
    for k in (
        BranchKind(
            "random_reinit", "the run's masks, weights re-initialised from another seed", None, True
        ),
        BranchKind(
            "random_mask",
            "random masks with exactly the run's per-layer sparsities",
            random_layerwise_masks,
            False,
        ),
        BranchKind(
            "random_global",
            "random masks with the run's network sparsity, uniform over all prunable weights",
            random_global_masks,
            False,
        ),
    )
}


def branch_kind(name: str) -> BranchKind:
    if name not in KINDS:
        close = difflib.get_close_matches(name, list(KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserInputError(
            f"unknown branch kind {name!r}{hint}; choose one of {', '.join(KINDS)}"
        )
    return KINDS[name]


def branch_dir(run: Path, kind: str) -> Path:
    return Path(run) / BRANCHES / kind


def branch_dirs(run: Path) -> list[Path]:
    """The branches a run has, in KINDS order; a branch folder reached through a symbolic
    link is refused (it could be another run, which analysing it would modify)."""
    check_no_link_below(Path(run), Path(run) / BRANCHES, "branches")
    found = []
    for k in KINDS:
        path = branch_dir(run, k)
        if path.is_symlink() or (path / "manifest.json").exists():
            check_no_link_below(Path(run), path, "a branch")
            found.append(path)
    return found


def check_parent_complete(parent: RunDir, cfg: Config) -> None:
    left = [lv for lv in range(cfg.imp.levels + 1) if not parent.level_complete(lv)]
    if left:
        raise UserInputError(
            f"{parent.root} is not complete (levels {', '.join(map(str, left))} are not trained); "
            f"finish it with 'prunescope run --run-dir {parent.root}' before branching"
        )


def adopt(rd: RunDir, parent: RunDir, kind: BranchKind) -> dict:
    """The branch record of ``rd``: new, or the one it holds if it is this run's own branch of
    this kind (a run directory copied into ``branches/`` is not adopted)."""
    rewind = parent.manifest["files"].get(REWIND, {}).get("sha256")
    if rd.manifest["levels"] or rd.manifest.get("branch"):
        record = rd.manifest.get("branch") or {}
        if record.get("kind") != kind.name or record.get("parent_rewind", rewind) != rewind:
            raise RunDirError(
                f"{rd.root} is not the {kind.name} branch of {parent.root} (it holds another "
                f"run's levels); move it away and branch again"
            )
    record = rd.manifest.setdefault("branch", {"kind": kind.name, "parent_masks": {}})
    record.setdefault("parent_masks", {})
    record["parent_rewind"] = rewind
    return record


class BranchIMP(IMP):
    """IMP's loop with the masks and the starting weights of a control."""

    def __init__(
        self,
        cfg: Config,
        rd: RunDir,
        device: torch.device,
        parent: RunDir,
        kind: BranchKind,
        data: PreparedData | None = None,
    ):
        super().__init__(cfg, rd, device, data)
        self.parent = parent
        self.kind = kind
        self.parent_masks: dict = adopt(rd, parent, kind)["parent_masks"]

    # the parent's files, checked like every read of a level
    def parent_mask(self, level: int) -> Masks:
        rel = level_file(level, "mask.safetensors")
        digest = self.parent.manifest["files"][rel]["sha256"]
        known = self.parent_masks.get(str(level))
        if known is not None and known != digest:
            raise RunDirError(
                f"{self.parent.root} was redone after branch {self.kind.name} was made (the mask "
                f"of level {level} changed); delete {self.rd.root} and branch again"
            )
        self.parent_masks[str(level)] = digest
        return read_level_tensors(self.parent, level, self.model, self.keys)[1]

    def make_rewind_state(self) -> dict[str, torch.Tensor]:
        if self.kind.reinit:
            fresh = new_model(self.cfg, self.data.model_inputs(), "reinit")
            return cloned(fresh.state_dict())
        return read_state(self.parent, REWIND, self.model)

    def masks_for(self, level: int) -> Masks:
        template = self.parent_mask(level)
        if self.kind.random_masks is None or level == 0:
            return template
        return self.kind.random_masks(template, self.cfg.seed, level)

    def train_level(self, level: int, start_state, masks: Masks) -> dict:
        if level == 0 and not self.kind.reinit:
            return self.parent_level(0)
        return super().train_level(level, start_state, masks)

    def parent_level(self, level: int) -> dict:
        """The run's own level, to be saved unchanged (the dense level of a mask control)."""
        state, _ = read_level_tensors(self.parent, level, self.model, self.keys)
        metrics = read_metrics(self.parent, level)
        text = self.parent.read_text(level_file(level, "epochs.csv"))
        rows = [
            {k: _number(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))
        ]
        return {"metrics": metrics, "state": state, "rows": rows, "seconds": 0.0}


def _number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        return float(text)
