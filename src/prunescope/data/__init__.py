"""Datasets: registry, loading with resize and subsets, and the on-device loader."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunescope.data import cifar10, digits, tinyimagenet  # noqa: F401  (registration)
from prunescope.data.loader import DeviceLoader, Normalizer
from prunescope.data.registry import ArrayDataset, DatasetSpec, dataset_names, dataset_spec
from prunescope.data.subset import stratified_subset
from prunescope.errors import DataError, shorten


@dataclass
class PreparedData:
    """A dataset ready for training: resized, subset, as uint8 CPU tensors."""

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


@functools.lru_cache(maxsize=2)
def _load_arrays(name: str, root: str, download: bool) -> ArrayDataset:
    try:
        return dataset_spec(name).load(Path(root), download)
    except OSError as exc:  # a path too long, a folder without permission, ...
        raise DataError(
            f"{name}: cannot read data.root {shorten(root)} ({exc.strerror or exc})"
        ) from None


def check_subset(what: str, n: int | None, labels: np.ndarray, num_classes: int) -> None:
    """A stratified subset needs an image of every class and cannot exceed the set it takes from."""
    if n is None:
        return
    if n > len(labels):
        raise DataError(
            f"{what} = {n} is larger than the set it is taken from ({len(labels)} images)"
        )
    if n < num_classes:
        raise DataError(
            f"{what} = {n} is smaller than the number of classes ({num_classes}); a stratified "
            f"subset needs at least one image of each"
        )


def resize_uint8(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    t = torch.from_numpy(x).float()
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def prepare_data(
    name: str,
    root: str,
    *,
    download: bool = False,
    image_size: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> PreparedData:
    spec = dataset_spec(name)
    arrays = _load_arrays(name, str(root), download)
    size = image_size or spec.image_size
    check_subset("data.train_subset", train_subset, arrays.train_y, spec.num_classes)
    check_subset("data.test_subset", test_subset, arrays.test_y, spec.num_classes)
    train_idx = (
        stratified_subset(arrays.train_y, train_subset, seed) if train_subset else slice(None)
    )
    test_idx = stratified_subset(arrays.test_y, test_subset, seed) if test_subset else slice(None)
    return PreparedData(
        spec=spec,
        train_x=torch.from_numpy(resize_uint8(arrays.train_x[train_idx], size)),
        train_y=torch.from_numpy(np.ascontiguousarray(arrays.train_y[train_idx])),
        test_x=torch.from_numpy(resize_uint8(arrays.test_x[test_idx], size)),
        test_y=torch.from_numpy(np.ascontiguousarray(arrays.test_y[test_idx])),
        classes=list(arrays.classes),
    )


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
    )


__all__ = [
    "ArrayDataset",
    "DatasetSpec",
    "DeviceLoader",
    "Normalizer",
    "PreparedData",
    "check_subset",
    "dataset_names",
    "dataset_spec",
    "prepare_data",
    "prepare_from_config",
    "resize_uint8",
    "stratified_subset",
]
