"""Datasets as uint8 arrays in memory, and the registry that names them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prunescope.errors import UserInputError


@dataclass
class ArrayDataset:
    """Images as uint8 NCHW arrays, labels as int64; ``classes`` in label order."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("train_x", "test_x"):
            arr = getattr(self, name)
            if arr.dtype != np.uint8 or arr.ndim != 4:
                raise ValueError(f"{name} must be uint8 NCHW, got {arr.dtype} {arr.shape}")
        for x, y in ((self.train_x, self.train_y), (self.test_x, self.test_y)):
            if len(x) != len(y):
                raise ValueError(f"{len(x)} images but {len(y)} labels")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    num_classes: int  # 0: decided by the data (a vocabulary, a user's graph)
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    flip: bool
    load: Callable[[Path, bool], object]  # ArrayDataset for images; see data/text, data/graph
    default_root: str
    kind: str = "images"  # a name in prunescope.data.kinds.DATA_KINDS
    context: int = 0  # tokens per sequence, for a text dataset
    synthetic: bool = False  # said wherever the data are named

    @property
    def metric(self) -> str:
        from prunescope.data.kinds import data_kind

        return data_kind(self.kind).metric


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    from prunescope.data.kinds import data_kind

    data_kind(spec.kind)  # a kind no DataKind implements is refused here, not at first use
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def dataset_names() -> list[str]:
    return list(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserInputError(
            f"unknown dataset {name!r}; choose one of {', '.join(_REGISTRY)}"
        ) from None


def nested_hint(root: Path, folder: str, depth: int = 2) -> str:
    """When ``data.root`` is a level or two too high: where the dataset's folder is inside it."""
    try:
        for d in range(1, depth + 1):
            found = sorted(root.glob("/".join(["*"] * d) + f"/{folder}"))
            if found:
                return f"; found {found[0]}: set data.root={found[0].parent}"
    except OSError:
        pass
    return ""
