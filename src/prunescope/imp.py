"""Iterative Magnitude Pruning with rewinding: the lottery loop (docs/guide.md, "IMP as
implemented"). Training a phase with checkpoints is :mod:`prunescope.training.phase`, the
torchrun protocol :mod:`prunescope.torchrun`, the time estimate :mod:`prunescope.eta`.

    init (seed) ─ pretrain r epochs ─ rewind state (every parameter and buffer)
    level 0: rewind state, all weights, train epochs r..E-1, evaluate, save
    level k: mask_k = prune(mask_{k-1}, trained weights of level k-1)
             rewind state × mask_k, fresh optimizer, train epochs r..E-1, evaluate, save

Every level is a pure function of the config and the files of the level before
it, so a run resumes after the last completed level with identical results.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from prunescope.config import Config
from prunescope.data import PreparedData, prepare_from_config
from prunescope.dense import epochs_csv
from prunescope.errors import NonFiniteLossError, RunDirError
from prunescope.eta import time_left
from prunescope.models import count_parameters
from prunescope.models.build import new_model
from prunescope.models.layers import neuron_major, stored_layout, weight_axes
from prunescope.models.ties import cloned
from prunescope.pruning.masks import Masks, dense_masks, prunable_weight_keys
from prunescope.pruning.registry import PruneInput, next_masks
from prunescope.rundir.checkpoint import remove_checkpoint
from prunescope.rundir.layout import REWIND, RunDir, level_file, now
from prunescope.rundir.level_files import read_level_tensors, read_state
from prunescope.structure import channel_flows
from prunescope.torchrun import follow_phases
from prunescope.tracking import tracker_for
from prunescope.training.phase import Phase, train_phase
from prunescope.training.schedule import lr_factor
from prunescope.training.trainer import Trainer
from prunescope.wording import format_seconds, plural

log = logging.getLogger("prunescope")


@dataclass(frozen=True)
class Schedule:
    """Epoch indices of the one schedule that spans pretraining and level training."""

    rewind_epoch: int
    total_epochs: int

    @property
    def level_epochs(self) -> int:
        return self.total_epochs - self.rewind_epoch


def schedule_of(cfg: Config) -> Schedule:
    total = cfg.imp.pretrain_epochs + cfg.imp.train_epochs
    # "init" is the original lottery ticket: every level retrains the whole
    # schedule from initialisation, so the rewind point is epoch 0.
    rewind = 0 if cfg.imp.rewind == "init" else cfg.imp.pretrain_epochs
    return Schedule(rewind, total)


# What a pruned level (k >= 1) starts from, per imp.rewind:
#   weights  the rewind state (the paper's method: weight rewinding to the pretrain point)
#   init     the initialisation (the original lottery ticket)
#   lr       level k-1's trained weights, with the learning-rate schedule replayed from the
#            rewind epoch (learning-rate rewinding, Renda et al. 2020)
#   finetune level k-1's trained weights, trained at the schedule's final learning rate
KEEPS_TRAINED_WEIGHTS = ("lr", "finetune")

# Fine-tuning at the schedule's final learning rate trains next to nothing when the schedule
# ends near zero: measured on cpu-resnet20-cifar10 (cosine), 1.7e-7, i.e. 1.7e-6 of its lr.
FINETUNE_FLOOR = 1e-3  # a final rate below this share of train.lr gets a warning


def finetune_rate_warning(cfg: Config, steps_per_epoch: int) -> str | None:
    """The line ``imp.rewind = "finetune"`` deserves when its learning rate is near zero."""
    if cfg.imp.rewind != "finetune" or cfg.imp.levels == 0:
        return None
    total = cfg.imp.pretrain_epochs + cfg.imp.train_epochs
    final = cfg.train.lr * lr_factor(total * steps_per_epoch - 1, steps_per_epoch, total, cfg.train)
    if final >= FINETUNE_FLOOR * cfg.train.lr:
        return None
    return (
        f'imp.rewind = "finetune" trains every pruned level at the schedule\'s final learning '
        f"rate, {final:.2g} here ({cfg.train.schedule} schedule, train.lr {cfg.train.lr:g}): "
        f'next to no training; rewind = "lr" replays the schedule instead'
    )


def level_sparsity(state: dict[str, torch.Tensor], keys: list[str]) -> tuple[int, int]:
    """(zeros, total) over the prunable weights of a state dict."""
    zeros = sum(int((state[k] == 0).sum()) for k in keys)
    total = sum(state[k].numel() for k in keys)
    return zeros, total


class IMP:
    def __init__(
        self, cfg: Config, rd: RunDir, device: torch.device, data: PreparedData | None = None
    ):
        self.cfg = cfg
        self.rd = rd
        self.device = device
        self.data = data if data is not None else prepare_from_config(cfg)
        self.schedule = schedule_of(cfg)
        self.model = new_model(cfg, self.data.model_inputs())
        self.init_state = cloned(self.model.state_dict())
        self.keys = prunable_weight_keys(self.model, cfg.imp.exclude)
        sched = self.schedule
        self.trainer = Trainer(
            self.model,
            cfg,
            self.data,
            device,
            sched.total_epochs,
            planned_epochs=sched.rewind_epoch + (cfg.imp.levels + 1) * sched.level_epochs,
        )
        self.tracker = tracker_for(cfg, rd.root)  # track.tensorboard; a no-op by default

    # -- the rewind point ------------------------------------------------------------------
    def rewind_state(self) -> dict[str, torch.Tensor]:
        if self.rd.recorded(REWIND):
            return read_state(self.rd, REWIND, self.model)
        state = self.make_rewind_state()
        self.rd.write_tensors(REWIND, state)
        remove_checkpoint(self.rd)
        return state

    def make_rewind_state(self) -> dict[str, torch.Tensor]:
        """Initialise, and pretrain to the rewind epoch."""
        r = self.schedule.rewind_epoch
        if r > 0:
            log.info("pretraining %s to the rewind point", plural(r, "epoch"))
            try:
                self.train_phase(Phase("pretrain", None, self.init_state, None, 0, r))
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(
                    f"pretraining: {exc}; change the config and run again with --redo-from 0"
                ) from None
            return cloned(self.model.state_dict())
        return self.init_state

    def train_phase(self, phase: Phase) -> list[dict]:
        return train_phase(
            self.trainer, self.rd, phase, self.cfg.train.checkpoint_every, self.tracker
        )

    # -- masks -----------------------------------------------------------------------------
    def read_level(self, level: int) -> tuple[dict[str, torch.Tensor], Masks]:
        return read_level_tensors(self.rd, level, self.model, self.keys)

    def masks_for(self, level: int) -> Masks:
        if level == 0:
            return dense_masks(self.model, self.keys)
        state, masks = self.read_level(level - 1)
        # the methods read neurons as rows: an [in, out] weight (GPT-2's Conv1D) is transposed
        axes = weight_axes(self.model, [k[: -len(".weight")] for k in self.keys])
        new = next_masks(
            PruneInput(
                neuron_major({k: state[k] for k in self.keys}, axes),
                neuron_major(masks, axes),
                self.cfg.imp.rate,
                self.cfg.imp.scope,
                settings=self.cfg.imp,
                consumers=self.consumers() if self.cfg.imp.prune_fanout else {},
            )
        )
        return stored_layout(new, axes)

    def consumers(self) -> dict[str, list[tuple[str, int, int]]]:
        """Weight key -> (consumer weight key, features per channel, consumer groups)."""
        modules = dict(self.model.named_modules())
        example = self.data.example(self.device)
        flows = channel_flows(self.model.eval(), [k[: -len(".weight")] for k in self.keys], example)
        return {
            f"{layer}.weight": [
                (f"{c.layer}.weight", c.span, getattr(modules[c.layer], "groups", 1))
                for c in flow.consumers
            ]
            for layer, flow in flows.items()
            if flow.removable
        }

    def start_state(self, level: int, rewind: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Where level ``level`` starts (before its mask is applied): see KEEPS_TRAINED_WEIGHTS."""
        if level > 0 and self.cfg.imp.rewind in KEEPS_TRAINED_WEIGHTS:
            return self.read_level(level - 1)[0]
        return rewind

    # -- one level -------------------------------------------------------------------------
    def train_level(self, level: int, start_state: dict[str, torch.Tensor], masks: Masks) -> dict:
        sched = self.schedule
        model = self.model
        start = time.perf_counter()
        try:
            rows = self.train_phase(
                Phase(
                    "level",
                    level,
                    start_state,
                    masks,
                    sched.rewind_epoch,
                    sched.total_epochs,
                    final_lr=level > 0 and self.cfg.imp.rewind == "finetune",
                )
            )
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(
                f"level {level}: {exc}; completed levels are intact, change the config and resume "
                f"with --redo-from {level}"
            ) from None
        accuracy, loss = self.trainer.evaluate()
        state = cloned(model.state_dict())
        zeros, total = level_sparsity(state, self.keys)
        return {
            "metrics": {
                "level": level,
                "network_sparsity": zeros / total,
                "parameter_sparsity": zeros / count_parameters(model),
                "remaining_weights": total - zeros,
                "prunable_weights": total,
                "test_accuracy": accuracy,
                "test_loss": loss,
                "train_loss": rows[-1]["train_loss"] if rows else None,
                "train_accuracy": rows[-1]["train_accuracy"] if rows else None,
                "epochs": sched.level_epochs,
                "rewind_epoch": sched.rewind_epoch,
                "test_images": self.data.examples("test"),
                "precision": self.trainer.precision,
            },
            "state": state,
            "rows": rows,
            "seconds": time.perf_counter() - start,
        }

    def save_level(self, level: int, masks: Masks, result: dict) -> None:
        rd = self.rd
        rd.write_tensors(level_file(level, "model.safetensors"), result["state"])
        rd.write_tensors(level_file(level, "mask.safetensors"), masks)
        rd.write(level_file(level, "epochs.csv"), epochs_csv(result["rows"]).encode())
        rd.write_json(level_file(level, "metrics.json"), result["metrics"])
        m = result["metrics"]
        remove_checkpoint(rd)
        rd.level_record(level).update(
            status="complete",
            network_sparsity=m["network_sparsity"],
            test_accuracy=m["test_accuracy"],
            seconds=round(result["seconds"], 3),
            finished=now(),
            precision=self.trainer.precision,
            compiled=self.trainer.forward.active,
        )
        rd.save_manifest()

    # -- the loop --------------------------------------------------------------------------
    def verify_completed(self) -> None:
        if self.rd.recorded(REWIND) and (problem := self.rd.check(REWIND)):
            raise RunDirError(
                f"{self.rd.path(REWIND)} is damaged ({problem}); redo the run from its start with "
                f"'prunescope run --run-dir {self.rd.root} --redo-from 0'"
            )
        damaged = []
        for level in self.rd.completed_levels():
            for name in ("model.safetensors", "mask.safetensors", "metrics.json"):
                problem = self.rd.check(level_file(level, name))
                if problem:
                    damaged.append((level, name, problem))
        if damaged:
            first = min(level for level, _, _ in damaged)
            what = "; ".join(f"{level_file(lv, n)}: {p}" for lv, n, p in damaged[:3])
            raise RunDirError(
                f"damaged level files ({what}); redo them with "
                f"'prunescope run --run-dir {self.rd.root} --redo-from {first}'"
            )

    def run(self, on_level=None) -> None:
        try:
            self.train_levels(on_level)
        finally:
            self.tracker.close()  # the event files complete, however training ended

    def train_levels(self, on_level=None) -> None:
        cfg = self.cfg
        self.verify_completed()
        if warning := finetune_rate_warning(cfg, self.trainer.steps_per_epoch):
            log.warning(warning)
        rewind = self.rewind_state()
        for level in range(cfg.imp.levels + 1):
            if self.rd.level_complete(level):
                continue
            masks = self.masks_for(level)
            result = self.train_level(level, self.start_state(level, rewind), masks)
            self.save_level(level, masks, result)
            m = result["metrics"]
            self.tracker.level(level, m)
            log.info(
                "level %d of %d: sparsity %6.2f%%  test acc %.4f  test loss %.4f  (%s)",
                level,
                cfg.imp.levels,
                100 * m["network_sparsity"],
                m["test_accuracy"],
                m["test_loss"],
                format_seconds(result["seconds"]),
            )
            if (eta := time_left(self.rd, cfg.imp.levels)) is not None:
                log.info(eta)
            if on_level is not None:
                on_level(level)


class Follower:
    """A rank other than 0 under torchrun: the run's model, data and trainer, no run
    directory; it trains every phase rank 0 announces (:mod:`prunescope.torchrun`)."""

    def __init__(self, cfg: Config, device: torch.device):
        data = prepare_from_config(cfg)
        model = new_model(cfg, data.model_inputs())
        self.keys = prunable_weight_keys(model, cfg.imp.exclude)
        sched = schedule_of(cfg)
        self.trainer = Trainer(model, cfg, data, device, sched.total_epochs)

    def follow(self) -> dict | None:
        return follow_phases(self.trainer, self.keys)
