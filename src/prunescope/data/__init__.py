"""Datasets: registry, loading with resize and subsets, and the on-device loader."""

from __future__ import annotations

import functools
from pathlib import Path

from prunescope.data import cifar10, digits, graph, text, tinyimagenet  # noqa: F401
from prunescope.data.kinds import DATA_KINDS, Choices, DataKind, data_kind, resize_uint8
from prunescope.data.loader import DeviceLoader, GraphLoader, Normalizer, TokenLoader
from prunescope.data.prepared import PreparedData
from prunescope.data.registry import ArrayDataset, DatasetSpec, dataset_names, dataset_spec
from prunescope.data.subset import check_subset, stratified_subset
from prunescope.errors import DataError, shorten
from prunescope.models.registry import ModelInputs
from prunescope.training.objective import IGNORE  # a label not scored (nodes outside a split)


@functools.lru_cache(maxsize=2)
def _load_arrays(name: str, root: str, download: bool) -> ArrayDataset:
    try:
        return dataset_spec(name).load(Path(root), download)
    except OSError as exc:  # a path too long, a folder without permission, ...
        raise DataError(
            f"{name}: cannot read data.root {shorten(root)} ({exc.strerror or exc})"
        ) from None


@functools.lru_cache(maxsize=2)
def prepare_data(
    name: str,
    root: str,
    *,
    download: bool = False,
    image_size: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    context: int | None = None,
) -> PreparedData:
    """The dataset a config names, prepared (cached: callers must not modify it)."""
    spec = dataset_spec(name)
    arrays = _load_arrays(name, str(root), download)
    choices = Choices(image_size, train_subset, test_subset, seed, context)
    return data_kind(spec.kind).prepare(spec, arrays, choices)


def prepare_from_config(cfg) -> PreparedData:  # cfg: prunescope.config.Config
    d = cfg.data
    return prepare_data(
        d.name,
        d.root,
        download=d.download,
        image_size=d.image_size,
        train_subset=d.train_subset,
        test_subset=d.test_subset,
        seed=cfg.seed,
        context=d.context,
    )


def model_inputs(cfg) -> ModelInputs:  # cfg: prunescope.config.Config
    """What the config's model is built for; images need only the dataset's spec, text and
    graphs their data (prepared once and cached)."""
    spec = dataset_spec(cfg.data.name)
    known = data_kind(spec.kind).inputs_without_data(spec, cfg.data)
    return known if known is not None else prepare_from_config(cfg).model_inputs()


__all__ = [
    "DATA_KINDS",
    "IGNORE",
    "ArrayDataset",
    "DataKind",
    "DatasetSpec",
    "DeviceLoader",
    "GraphLoader",
    "Normalizer",
    "PreparedData",
    "TokenLoader",
    "check_subset",
    "data_kind",
    "dataset_names",
    "dataset_spec",
    "model_inputs",
    "prepare_data",
    "prepare_from_config",
    "resize_uint8",
    "stratified_subset",
]
