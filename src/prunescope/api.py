"""The Python API that other tools use (DESIGN §9): ``load_level`` and ``load_test_set``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunescope.config import Config
from prunescope.data import (
    Normalizer,
    PreparedData,
    check_subset,
    dataset_spec,
    prepare_from_config,
    stratified_subset,
)
from prunescope.errors import RunDirError
from prunescope.models import build_model
from prunescope.pruning.masks import Masks, prunable_weight_keys
from prunescope.rundir.layout import RunDir
from prunescope.rundir.level_files import read_level_tensors
from prunescope.rundir.session import open_run_dir
from prunescope.seeding import derive_seed


def model_for(cfg: Config) -> nn.Module:
    spec = dataset_spec(cfg.data.name)
    return build_model(cfg.model.name, spec.num_classes, spec.channels, cfg.data.image_size)


def read_level(rd: RunDir, cfg: Config, level: int) -> tuple[nn.Module, Masks]:
    if not rd.level_complete(level):
        done = rd.completed_levels()
        raise RunDirError(
            f"level {level} of {rd.root} is not complete (complete: {', '.join(map(str, done)) or 'none'})"
        )
    model = model_for(cfg)
    state, masks = read_level_tensors(
        rd, level, model, prunable_weight_keys(model, cfg.imp.exclude)
    )
    model.load_state_dict(state)
    model.eval()
    return model, masks


def load_level(run_dir: str | Path, level: int) -> tuple[nn.Module, Masks]:
    """The trained model of a level (eval mode, on the CPU) and its masks keyed like its state dict."""
    rd, cfg = open_run_dir(run_dir)
    return read_level(rd, cfg, level)


def analysis_subset(labels: torch.Tensor, subset: int | None, seed: int) -> torch.Tensor | None:
    """Indices of the test images an analysis with a test subset of ``subset`` uses."""
    check_subset("an analysis test_subset", subset, labels.numpy(), int(labels.max()) + 1)
    if subset is None or subset >= len(labels):
        return None
    idx = stratified_subset(labels.numpy(), subset, derive_seed(seed, "analysis-subset"))
    return torch.from_numpy(idx)


def test_images(
    data: PreparedData, cfg: Config, subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, labels) of the run's test set, or the analysis subset of it."""
    idx = analysis_subset(data.test_y, subset, cfg.seed)
    if idx is None:
        return data.test_x, data.test_y
    return data.test_x[idx], data.test_y[idx]


def load_test_set(
    run_dir: str | Path, subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 NCHW test images and labels that the run evaluates on.

    ``subset=N`` gives exactly the images an analysis configured with a test
    subset of N uses.
    """
    _, cfg = open_run_dir(run_dir)
    data = prepare_from_config(cfg)
    x, y = test_images(data, cfg, subset)
    norm = Normalizer(data.spec.mean, data.spec.std, torch.device("cpu"))
    return norm(x), y.clone()
