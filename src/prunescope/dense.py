"""``prunescope train``: dense training of one model, the building block IMP reuses."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

from prunescope.config import Config, config_to_toml
from prunescope.data import prepare_from_config
from prunescope.errors import RunDirError
from prunescope.models import count_parameters
from prunescope.models.build import new_model
from prunescope.rundir.atomic import atomic_save_tensors, atomic_write_json, atomic_write_text
from prunescope.rundir.layout import MANIFEST
from prunescope.training.device import describe_device, resolve_device
from prunescope.training.precision import apply_threads
from prunescope.training.trainer import EpochResult, Trainer

log = logging.getLogger("prunescope")


def epochs_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def refuse_run_directory(out: Path) -> None:
    """``train --out`` writes config.toml and model files: never over an IMP run directory."""
    if (out / MANIFEST).exists() or (out / MANIFEST).is_symlink():
        raise RunDirError(
            f"{out} is an IMP run directory; 'prunescope train' would overwrite its config.toml "
            f"(choose another --out)"
        )


def train_dense(cfg: Config, out: Path) -> dict:
    refuse_run_directory(out)
    device = resolve_device(cfg.device)
    apply_threads(cfg.threads)
    data = prepare_from_config(cfg)
    model = new_model(cfg, data.model_inputs())
    log.info(
        "training %s (%s parameters) on %s: %d train / %d test examples, %d epochs, %s",
        cfg.model.name,
        f"{count_parameters(model):,}",
        cfg.data.name,
        data.examples("train"),
        data.examples("test"),
        cfg.train.epochs,
        describe_device(device),
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", config_to_toml(cfg))
    trainer = Trainer(model, cfg, data, device, cfg.train.epochs)
    rows: list[dict] = []

    def on_epoch(r: EpochResult) -> None:
        rows.append(r.row())
        atomic_write_text(out / "epochs.csv", epochs_csv(rows))
        log.info(
            "epoch %d/%d  lr %.4g  loss %.4f  train acc %.4f  (%.1fs)",
            r.epoch + 1,
            cfg.train.epochs,
            r.lr,
            r.train_loss,
            r.train_accuracy,
            r.seconds,
        )

    start = time.perf_counter()
    trainer.fit(0, cfg.train.epochs, trainer.new_optimizer(), on_epoch=on_epoch)
    accuracy, loss = trainer.evaluate()
    metrics = {
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "epochs": cfg.train.epochs,
        "test_accuracy": accuracy,
        "test_loss": loss,
        "train_loss": rows[-1]["train_loss"],
        "train_accuracy": rows[-1]["train_accuracy"],
        "seconds": time.perf_counter() - start,
    }
    atomic_save_tensors(out / "model.safetensors", trainer.model.state_dict())
    atomic_write_json(out / "metrics.json", metrics)
    log.info("test accuracy %.4f, test loss %.4f -> %s", accuracy, loss, out)
    return metrics
