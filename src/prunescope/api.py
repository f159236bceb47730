"""The Python API that other tools use (docs/formats.md, "Pinned names"): ``load_level`` and ``load_test_set``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunescope.config import Config
from prunescope.data import (
    Normalizer,
    PreparedData,
    check_subset,
    model_inputs,
    prepare_from_config,
)
from prunescope.errors import RunDirError
from prunescope.models.build import model_from_config
from prunescope.pruning.masks import Masks, prunable_weight_keys
from prunescope.rundir.layout import RunDir
from prunescope.rundir.level_files import read_level_tensors
from prunescope.rundir.session import open_run_dir
from prunescope.seeding import derive_seed
from prunescope.trust import trusting


def model_for(cfg: Config) -> nn.Module:
    """A model of the config's architecture, built for its data (untrained)."""
    return model_from_config(cfg, model_inputs(cfg))


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


def load_level(
    run_dir: str | Path, level: int, *, trust_code: bool = False
) -> tuple[nn.Module, Masks]:
    """The trained model of a level (eval mode, on the CPU) and its masks keyed like its state
    dict. ``trust_code=True`` imports the code the run names (a user model; see
    :mod:`prunescope.trust`); built-in models never need it."""
    with trusting(trust_code):
        rd, cfg = open_run_dir(run_dir)
        return read_level(rd, cfg, level)


def test_images(
    data: PreparedData, cfg: Config, subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of the run's test set, or the analysis subset of it: images
    (uint8), token sequences, or the graph with only the chosen test nodes labelled."""
    labels = data.test_y[data.test_y != -100] if data.kind == "graph" else data.test_y
    classes = len(data.classes) if data.kind != "tokens" else 0
    unit = {"images": "images", "tokens": "sequences", "graph": "nodes"}[data.kind]
    check_subset("an analysis test_subset", subset, labels.numpy(), classes, unit)
    return data.subset("test", subset, derive_seed(cfg.seed, "analysis-subset"))


def load_test_set(
    run_dir: str | Path, subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The test inputs the run evaluates on, as the model takes them, and their labels:
    normalised float32 NCHW images; token ids and next-token targets; or node features
    and labels (-100 on the nodes that are not test nodes).

    ``subset=N`` gives exactly the examples an analysis configured with a test
    subset of N uses.
    """
    _, cfg = open_run_dir(run_dir)
    data = prepare_from_config(cfg)
    x, y = test_images(data, cfg, subset)
    if data.kind == "tokens":
        return x.long(), y.clone()  # stored as uint8; nn.Embedding takes int64
    if data.kind != "images":
        return x.clone(), y.clone()
    norm = Normalizer(data.spec.mean, data.spec.std, torch.device("cpu"))
    return norm(x), y.clone()
