"""Iterative Magnitude Pruning with rewinding: the lottery loop of DESIGN §2.

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
from prunescope.dense import epochs_csv, new_model
from prunescope.distributed import broadcast_object, broadcast_tensors, world
from prunescope.errors import NonFiniteLossError, RunDirError
from prunescope.models import count_parameters
from prunescope.models.layers import neuron_major, stored_layout, weight_axes
from prunescope.models.ties import cloned
from prunescope.pruning.masks import (
    Masker,
    Masks,
    apply_masks,
    dense_masks,
    prunable_weight_keys,
    relayout_state,
)
from prunescope.pruning.registry import PruneInput, next_masks
from prunescope.rundir.checkpoint import (
    load_checkpoint,
    remove_checkpoint,
    restore_rng,
    save_checkpoint,
)
from prunescope.rundir.layout import REWIND, RunDir, level_file, now
from prunescope.rundir.level_files import read_level_tensors, read_state
from prunescope.structure import channel_flows
from prunescope.training.progress import PhaseProgress
from prunescope.training.trainer import EpochResult, Trainer
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


def lead_phase(
    model: torch.nn.Module,
    masks: Masks | None,
    optimizer: torch.optim.Optimizer,
    *,
    resumed: bool,
    first_epoch: int,
    begin: int,
    end_epoch: int,
    final_lr: bool,
) -> None:
    """Rank 0 under torchrun: what the phase starts from, to every rank (see ``follow``)."""
    if not world().distributed:
        return
    broadcast_object(
        {
            "masks": masks is not None,
            "optimizer": optimizer.state_dict() if resumed else None,
            "first_epoch": first_epoch,
            "begin": begin,
            "end_epoch": end_epoch,
            "final_lr": final_lr,
        }
    )
    broadcast_tensors(model.state_dict())
    if masks is not None:
        broadcast_tensors(masks)


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
                self.train_phase("pretrain", None, self.init_state, None, 0, r)
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(
                    f"pretraining: {exc}; change the config and run again with --redo-from 0"
                ) from None
            return cloned(self.model.state_dict())
        return self.init_state

    # -- training with checkpoints ---------------------------------------------------------
    def train_phase(
        self,
        phase: str,
        level: int | None,
        start: dict[str, torch.Tensor],
        masks: Masks | None,
        first_epoch: int,
        end_epoch: int,
        final_lr: bool = False,
    ) -> list[dict]:
        """Train epochs ``first_epoch..end_epoch-1`` from ``start`` (× ``masks``), resuming from
        this phase's checkpoint when there is one; returns the per-epoch rows. ``final_lr``
        holds the learning rate at the schedule's last value (fine-tuning)."""
        model, rd = self.model, self.rd
        name = "pretraining" if phase == "pretrain" else f"level {level}"
        model.load_state_dict(start)
        if masks is not None:
            apply_masks(model, masks)
        optimizer = self.trainer.new_optimizer()
        rows: list[dict] = []
        begin = first_epoch
        ck = load_checkpoint(rd, phase, level, model)
        if ck is not None and first_epoch < ck.next_epoch <= end_epoch:
            try:
                model.load_state_dict(ck.model_state)
                optimizer.load_state_dict(ck.optimizer_state)
                relayout_state(optimizer)
                restore_rng(ck.rng)
                rows, begin = ck.rows, ck.next_epoch
                log.info(
                    "%s: resuming from the checkpoint after epoch %d of %d",
                    name,
                    begin - first_epoch,
                    end_epoch - first_epoch,
                )
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                log.warning(
                    "%s: ignoring a checkpoint that does not restore (%s)", name, str(exc)[:200]
                )
                model.load_state_dict(start)
                if masks is not None:
                    apply_masks(model, masks)
                optimizer = self.trainer.new_optimizer()
        lead_phase(
            model,
            masks,
            optimizer,
            resumed=begin != first_epoch,
            first_epoch=first_epoch,
            begin=begin,
            end_epoch=end_epoch,
            final_lr=final_lr,
        )
        masker = Masker(model, masks) if masks is not None else None
        progress = PhaseProgress(
            name,
            first_epoch,
            end_epoch,
            begin,
            checkpoint_every=self.cfg.train.checkpoint_every,
            save=lambda next_epoch: save_checkpoint(
                rd, phase, level, next_epoch, model, optimizer, rows
            ),
        )

        def on_epoch(r: EpochResult) -> None:
            rows.append(r.row())
            progress(r)

        try:
            self.trainer.fit(
                begin,
                end_epoch,
                optimizer,
                masker,
                on_epoch=on_epoch,
                desc=f"{name}: ",
                first_epoch=first_epoch,
                final_lr=final_lr,
            )
        finally:
            progress.close()
        return rows

    def follow(self) -> dict | None:
        """Ranks other than 0 under torchrun: train every phase rank 0 announces, in step
        with it, writing nothing; return rank 0's next message once training is done."""
        while (phase := broadcast_object()) is not None and "begin" in phase:
            masks = dense_masks(self.model, self.keys) if phase["masks"] else None
            broadcast_tensors(self.model.state_dict())
            if masks is not None:
                broadcast_tensors(masks)
            optimizer = self.trainer.new_optimizer()
            if phase["optimizer"] is not None:
                optimizer.load_state_dict(phase["optimizer"])
                relayout_state(optimizer)
            self.trainer.fit(
                phase["begin"],
                phase["end_epoch"],
                optimizer,
                Masker(self.model, masks) if masks is not None else None,
                first_epoch=phase["first_epoch"],
                final_lr=phase["final_lr"],
            )
        return phase

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
                "level",
                level,
                start_state,
                masks,
                sched.rewind_epoch,
                sched.total_epochs,
                final_lr=level > 0 and self.cfg.imp.rewind == "finetune",
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
        cfg = self.cfg
        self.verify_completed()
        rewind = self.rewind_state()
        for level in range(cfg.imp.levels + 1):
            if self.rd.level_complete(level):
                continue
            masks = self.masks_for(level)
            result = self.train_level(level, self.start_state(level, rewind), masks)
            self.save_level(level, masks, result)
            m = result["metrics"]
            log.info(
                "level %d of %d: sparsity %6.2f%%  test acc %.4f  test loss %.4f  (%s)",
                level,
                cfg.imp.levels,
                100 * m["network_sparsity"],
                m["test_accuracy"],
                m["test_loss"],
                format_seconds(result["seconds"]),
            )
            if (eta := self.time_left()) is not None:
                log.info(eta)
            if on_level is not None:
                on_level(level)

    def time_left(self) -> str | None:
        """How long the levels still to train should take, from the ones already trained
        (every level trains the same epochs on the same data, so they take about as long)."""
        levels = range(self.cfg.imp.levels + 1)
        left = [lv for lv in levels if not self.rd.level_complete(lv)]
        seconds = [
            float(self.rd.level_record(lv).get("seconds", 0.0))
            for lv in levels
            if self.rd.level_complete(lv)
        ]
        seconds = [s for s in seconds if s > 0]  # a branch's level 0 is the run's, not trained
        if not left or not seconds:
            return None
        total = len(left) * sum(seconds) / len(seconds)
        finish = time.strftime("%H:%M", time.localtime(time.time() + total))
        return (
            f"estimate: {format_seconds(total)} more training for {plural(len(left), 'level')} "
            f"(done around {finish}), then the analyses"
        )
