"""The Python API (docs/guide.md, "Python API"; pinned names in docs/formats.md): ``run``,
``analyze`` and ``tables`` do what the commands do; ``load_level`` and ``load_test_set``
give a level's network and the test set it is measured on."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunescope.config import Config
from prunescope.data import (
    PreparedData,
    check_subset,
    model_inputs,
    prepare_from_config,
)
from prunescope.errors import RunDirError, UserInputError
from prunescope.models.build import model_from_config
from prunescope.pruning.masks import Masks, prunable_weight_keys
from prunescope.rundir.layout import RunDir
from prunescope.rundir.level_files import read_level_tensors
from prunescope.rundir.session import open_run_dir, why_missing
from prunescope.seeding import derive_seed
from prunescope.trust import code_names, scope, trusting, vouch

if TYPE_CHECKING:
    import pandas as pd

# What ``run`` takes as a config: a Config, a preset's name, a TOML file, or a dict
# shaped like one (sections as nested dicts).
ConfigLike = Config | str | Path | Mapping[str, Any]


def model_for(cfg: Config) -> nn.Module:
    """A model of the config's architecture, built for its data (untrained)."""
    return model_from_config(cfg, model_inputs(cfg))


def read_level(rd: RunDir, cfg: Config, level: int) -> tuple[nn.Module, Masks]:
    if not rd.level_complete(level):
        raise RunDirError(why_missing(rd, cfg.imp.levels, [level]))
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
    kind = data.kind
    labels = kind.scored(data.test_y).numpy()
    check_subset("an analysis test_subset", subset, labels, kind.strata(data), kind.unit)
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
    return data.kind.as_model_takes(data, x, y)


# -- running -------------------------------------------------------------------------------
def config_of(config: ConfigLike) -> Config:
    """The caller's config, resolved; the code it names is vouched for, because the caller
    wrote it (docs/guide.md, "Code runs only when you vouch for it")."""
    from prunescope.config.load import build_config, preset_names, resolve, validate

    if isinstance(config, Config):
        vouch(code_names(config))
        return resolve(config)
    if isinstance(config, Mapping):
        cfg = validate(copy.deepcopy(dict(config)))  # the caller's dict is left as it was
        vouch(code_names(cfg))
        return resolve(cfg)
    if isinstance(config, str) and config in preset_names():
        return build_config(preset=config)
    if isinstance(config, str | Path) and (Path(config).suffix == ".toml" or Path(config).exists()):
        return build_config(config_file=config)
    raise UserInputError(
        f"config {str(config)[:200]!r} is neither a preset ({', '.join(preset_names())}) nor a "
        f"TOML file; pass a Config, a preset name, a .toml path or a dict"
    )


def run(
    config: ConfigLike | None,
    run_dir: str | Path,
    *,
    analyze: bool = True,
    redo_from: int | None = None,
    trust_code: bool = False,
) -> Path:
    """``prunescope run``: IMP on ``run_dir`` (created, or resumed after its last complete
    level), then the default analyses and the report unless ``analyze=False``. ``config``
    None resumes the run with its own config (whose code needs ``trust_code=True``).
    Returns the run directory."""
    from prunescope import runner

    with scope(everything=trust_code):  # what this call vouches for ends with it
        cfg = config_of(config) if config is not None else None
        runner.run(run_dir, cfg, analyze=analyze, redo_from=redo_from)
    return Path(run_dir)


def analyze(
    run_dir: str | Path,
    *,
    only: str | Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    force: bool = False,
    trust_code: bool = False,
    overrides: Sequence[str] = (),
) -> None:
    """``prunescope analyze``: the run's analyses (``only``: names, or "a,b"; default: every
    default one) on ``levels`` (default: all), recomputed with ``force``; ``overrides`` are
    ``--set`` items of ``analysis.*``, ``report.*``, ``device`` and ``threads``. The run's
    report, if it has one, is rebuilt."""
    from prunescope import runner

    text = only if only is None or isinstance(only, str) else ",".join(only)
    with scope(everything=trust_code):
        runner.analyze(
            run_dir, list(overrides), text, sorted(set(levels)) if levels else None, force
        )


def tables(run_dir: str | Path, *, trust_code: bool = False) -> dict[str, pd.DataFrame]:
    """Every analysis table the run holds (``analysis/<name>.csv`` by ``name``), each read
    with its checks: its sha256 against the manifest, its pinned columns and their kinds.
    A run whose config names plugins needs ``trust_code=True`` for their tables."""
    import prunescope.analysis  # noqa: F401  (registers every built-in table)
    from prunescope.analysis.tables import COLUMNS, has_table, read_table

    with trusting(trust_code):
        rd, _ = open_run_dir(run_dir)  # validating its config imports its plugins
        return {name: read_table(rd, name) for name in list(COLUMNS) if has_table(rd, name)}
