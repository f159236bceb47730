"""Datasets: registry, loading with resize and subsets, and the on-device loader."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunescope.data import cifar10, digits, graph, text, tinyimagenet  # noqa: F401
from prunescope.data.graph import GraphArrays, normalised_adjacency
from prunescope.data.loader import DeviceLoader, GraphLoader, Normalizer, TokenLoader
from prunescope.data.registry import ArrayDataset, DatasetSpec, dataset_names, dataset_spec
from prunescope.data.subset import stratified_subset
from prunescope.data.text import TextCorpus, encode_windows, split_windows
from prunescope.errors import DataError, shorten
from prunescope.models.registry import ModelInputs
from prunescope.training.objective import IGNORE  # a label not scored (nodes outside a split)


@dataclass
class PreparedData:
    """A dataset ready for training, as CPU tensors.

    images: uint8 NCHW images and class labels. tokens: character ids ``[sequences,
    context]`` and the next character of each position. graph: ``train_x`` and ``test_x``
    are the same node features, ``train_y``/``test_y`` the labels of the training/test
    nodes (:data:`IGNORE` elsewhere), ``graph`` the normalised adjacency.
    """

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    graph: torch.Tensor | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1]) if self.kind == "images" else 0

    def examples(self, split: str) -> int:
        """Scored examples: images, sequences, or labelled nodes of the split."""
        y = self.train_y if split == "train" else self.test_y
        return int((y != IGNORE).sum()) if self.kind == "graph" else len(y)

    def example(self, device: torch.device) -> torch.Tensor:
        """A small input of the right shape and type (for tracing shapes, not for scores)."""
        if self.kind == "graph":
            return self.test_x.to(device)
        x = self.test_x[:2].to(device)
        return x.long() if self.kind == "tokens" else x.float()

    def probe_batch(self, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test examples (a graph: the whole graph) as the model takes them,
        on the CPU: what the model is checked on before training."""
        return next(iter(self.loader(self.test_x, self.test_y, n, torch.device("cpu"))))

    def model_inputs(self) -> ModelInputs:
        if self.kind == "tokens":
            return ModelInputs(len(self.classes), 1, 0, context=int(self.train_x.shape[1]))
        if self.kind == "graph":
            return ModelInputs(
                len(self.classes), 1, 0, features=int(self.train_x.shape[1]), graph=self.graph
            )
        return ModelInputs(self.spec.num_classes, self.spec.channels, self.image_size)

    def loader(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        device: torch.device,
        *,
        train: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ) -> DeviceLoader | TokenLoader | GraphLoader:
        """Batches of ``(x, y)`` on ``device``, as this kind of data is batched."""
        if self.kind == "tokens":
            return TokenLoader(x, y, batch_size, device, train=train, seed=seed)
        if self.kind == "graph":
            return GraphLoader(x, y, device)
        spec = self.spec
        return DeviceLoader(
            x,
            y,
            batch_size,
            spec.mean,
            spec.std,
            device,
            train=train,
            crop_padding=spec.crop_padding,
            flip=spec.flip,
            seed=seed,
            channels_last=channels_last,
        )

    def subset(self, split: str, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of a seeded subset of ``n`` examples of a split (all when ``n`` is
        None or at least the split): stratified by class where examples have one class."""
        x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
        if n is None or n >= self.examples(split):
            return x, y
        if self.kind == "graph":
            labelled = torch.nonzero(y != IGNORE).flatten()
            chosen = labelled[torch.from_numpy(stratified_subset(y[labelled].numpy(), n, seed))]
            kept = torch.full_like(y, IGNORE)
            kept[chosen] = y[chosen]
            return x, kept
        if self.kind == "tokens":
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC]))
            idx = torch.from_numpy(np.sort(rng.permutation(len(y))[:n]))
        else:
            idx = torch.from_numpy(stratified_subset(y.numpy(), n, seed))
        return x[idx], y[idx]


@functools.lru_cache(maxsize=2)
def _load_arrays(name: str, root: str, download: bool) -> ArrayDataset:
    try:
        return dataset_spec(name).load(Path(root), download)
    except OSError as exc:  # a path too long, a folder without permission, ...
        raise DataError(
            f"{name}: cannot read data.root {shorten(root)} ({exc.strerror or exc})"
        ) from None


def check_subset(
    what: str, n: int | None, labels: np.ndarray, num_classes: int, unit: str = "images"
) -> None:
    """A stratified subset needs an example of every class and cannot exceed the set it
    takes from (``num_classes`` 0: not stratified)."""
    if n is None:
        return
    if n > len(labels):
        raise DataError(
            f"{what} = {n} is larger than the set it is taken from ({len(labels)} {unit})"
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
    if spec.kind == "tokens":
        return prepare_tokens(
            spec, arrays, context or spec.context, train_subset, test_subset, seed
        )
    if spec.kind == "graph":
        return prepare_graph(spec, arrays, train_subset, test_subset, seed)
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


def prepare_tokens(
    spec: DatasetSpec,
    corpus: TextCorpus,
    context: int,
    train_subset: int | None,
    test_subset: int | None,
    seed: int,
) -> PreparedData:
    windows, vocab = encode_windows(corpus, context)
    train_idx, test_idx = split_windows(len(windows))
    out = []
    for what, idx, n in (
        ("data.train_subset", train_idx, train_subset),
        ("data.test_subset", test_idx, test_subset),
    ):
        check_subset(what, n, idx, 0, "sequences")
        if n is not None:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E5]))
            idx = np.sort(rng.permutation(idx)[:n])
        w = torch.from_numpy(np.ascontiguousarray(windows[idx]))
        out += [w[:, :-1].contiguous(), w[:, 1:].contiguous()]
    return PreparedData(spec, *out, classes=vocab)


def prepare_graph(
    spec: DatasetSpec,
    g: GraphArrays,
    train_subset: int | None,
    test_subset: int | None,
    seed: int,
) -> PreparedData:
    ys = []
    for what, nodes, n in (
        ("data.train_subset", g.train_nodes, train_subset),
        ("data.test_subset", g.test_nodes, test_subset),
    ):
        check_subset(what, n, g.labels[nodes], len(g.classes), "nodes")
        if n is not None:
            nodes = nodes[stratified_subset(g.labels[nodes], n, seed)]
        y = torch.full((len(g.labels),), IGNORE, dtype=torch.int64)
        y[torch.from_numpy(nodes)] = torch.from_numpy(g.labels[nodes])
        ys.append(y)
    x = torch.from_numpy(g.features)
    adjacency = normalised_adjacency(g.edges, len(g.labels))
    return PreparedData(spec, x, ys[0], x, ys[1], list(g.classes), graph=adjacency)


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
    if spec.kind == "images":
        return ModelInputs(spec.num_classes, spec.channels, cfg.data.image_size or spec.image_size)
    return prepare_from_config(cfg).model_inputs()


__all__ = [
    "IGNORE",
    "ArrayDataset",
    "DatasetSpec",
    "DeviceLoader",
    "GraphLoader",
    "Normalizer",
    "PreparedData",
    "TokenLoader",
    "check_subset",
    "dataset_names",
    "dataset_spec",
    "model_inputs",
    "prepare_data",
    "prepare_from_config",
    "resize_uint8",
    "stratified_subset",
]
