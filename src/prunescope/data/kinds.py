"""What a dataset holds decides how it is prepared, batched, subset and scored: images
(classification, top-1), tokens (next-token prediction over every position of a sequence)
or one graph (node classification on the test nodes). Each kind is one object here, so
adding a kind is one class and one registry entry, not a branch in every caller
(docs/guide.md, "Beyond CNNs")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from prunescope.data.loader import DeviceLoader, GraphLoader, Normalizer, TokenLoader
from prunescope.data.subset import check_subset, stratified_subset
from prunescope.errors import UserInputError
from prunescope.models.registry import ModelInputs
from prunescope.training.objective import IGNORE  # a label not scored (nodes outside a split)

if TYPE_CHECKING:
    from prunescope.data.prepared import PreparedData
    from prunescope.data.registry import DatasetSpec

Loader = DeviceLoader | TokenLoader | GraphLoader


@dataclass(frozen=True)
class Choices:
    """The config's data choices a kind prepares with (None: the dataset's own)."""

    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    context: int | None = None

    def subset(self, part: str) -> int | None:
        return self.train_subset if part == "train" else self.test_subset


class DataKind:
    """The behaviour of one kind of data. ``prepare`` turns the loaded arrays into
    :class:`PreparedData`; the other methods answer for a prepared dataset."""

    name: ClassVar[str]
    metric: ClassVar[str]  # what the accuracy columns measure, as the report says it
    unit: ClassVar[str]  # what one example is, in messages

    def prepare(self, spec: DatasetSpec, arrays, options: Choices) -> PreparedData:
        raise NotImplementedError

    def describe(self, spec: DatasetSpec) -> str:
        """One column of ``prunescope datasets``."""
        raise NotImplementedError

    def resolve(self, data_cfg, spec: DatasetSpec) -> None:
        """Write out the config's defaults that this kind takes from its spec."""

    def inputs_without_data(self, spec: DatasetSpec, data_cfg) -> ModelInputs | None:
        """What a model is built for when the spec alone decides it (None: needs the data)."""
        return None

    def image_size(self, data: PreparedData) -> int:
        return 0

    def scored(self, y: torch.Tensor) -> torch.Tensor:
        """The labels that count (a graph's split marks the others :data:`IGNORE`)."""
        return y

    def strata(self, data: PreparedData) -> int:
        """Classes a subset is stratified over (0: not stratified)."""
        return len(data.classes)

    def example(self, data: PreparedData, device: torch.device) -> torch.Tensor:
        """A small input of the right shape and type (for tracing shapes, not for scores)."""
        return data.test_x[:2].to(device).float()

    def model_inputs(self, data: PreparedData) -> ModelInputs:
        raise NotImplementedError

    def loader(self, data: PreparedData, x, y, batch_size: int, device, **kw) -> Loader:
        raise NotImplementedError

    def pick(self, data: PreparedData, x, y, n: int, seed: int) -> tuple:
        """A seeded subset of ``n`` scored examples of ``(x, y)``."""
        idx = torch.from_numpy(stratified_subset(y.numpy(), n, seed))
        return x[idx], y[idx]

    def as_model_takes(self, data: PreparedData, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Stored inputs as the model takes them, and their labels (copies)."""
        return x.clone(), y.clone()


class Images(DataKind):
    name, metric, unit = "images", "top-1 accuracy", "images"

    def prepare(self, spec, arrays, options):
        size = options.image_size or spec.image_size
        seed = options.seed
        split = {}
        for part, n in (("train", options.subset("train")), ("test", options.subset("test"))):
            x, y = getattr(arrays, f"{part}_x"), getattr(arrays, f"{part}_y")
            check_subset(f"data.{part}_subset", n, y, spec.num_classes)
            idx = stratified_subset(y, n, seed) if n else slice(None)
            split[part] = (
                torch.from_numpy(resize_uint8(x[idx], size)),
                torch.from_numpy(np.ascontiguousarray(y[idx])),
            )
        return _prepared(spec, *split["train"], *split["test"], classes=list(arrays.classes))

    def describe(self, spec):
        return f"{spec.num_classes:>3} classes  {spec.channels}x{spec.image_size}x{spec.image_size}"

    def resolve(self, data_cfg, spec):
        if data_cfg.image_size is None:
            data_cfg.image_size = spec.image_size

    def inputs_without_data(self, spec, data_cfg):
        return ModelInputs(spec.num_classes, spec.channels, data_cfg.image_size or spec.image_size)

    def image_size(self, data):
        return int(data.train_x.shape[-1])

    def model_inputs(self, data):
        return ModelInputs(data.spec.num_classes, data.spec.channels, self.image_size(data))

    def loader(self, data, x, y, batch_size, device, *, train=False, seed=0, channels_last=False):
        s = data.spec
        return DeviceLoader(
            x,
            y,
            batch_size,
            s.mean,
            s.std,
            device,
            train=train,
            crop_padding=s.crop_padding,
            flip=s.flip,
            seed=seed,
            channels_last=channels_last,
        )

    def as_model_takes(self, data, x, y):
        return Normalizer(data.spec.mean, data.spec.std, torch.device("cpu"))(x), y.clone()


class Tokens(DataKind):
    name, metric, unit = "tokens", "next-token accuracy", "sequences"

    def prepare(self, spec, corpus, options):
        from prunescope.data.text import encode_windows, split_windows  # it registers datasets

        windows, vocab = encode_windows(corpus, options.context or spec.context)
        train_idx, test_idx = split_windows(len(windows))
        out = []
        for part, idx in (("train", train_idx), ("test", test_idx)):
            n = options.subset(part)
            check_subset(f"data.{part}_subset", n, idx, 0, self.unit)
            if n is not None:
                rng = np.random.default_rng(np.random.SeedSequence([options.seed, 0x7E5]))
                idx = np.sort(rng.permutation(idx)[:n])
            w = torch.from_numpy(np.ascontiguousarray(windows[idx]))
            out += [w[:, :-1].contiguous(), w[:, 1:].contiguous()]
        return _prepared(spec, *out, classes=vocab)

    def describe(self, spec):
        return f"next character, {spec.context} per sequence"

    def resolve(self, data_cfg, spec):
        if data_cfg.context is None:
            data_cfg.context = spec.context

    def strata(self, data):
        return 0  # a sequence has a target per position, no one class

    def example(self, data, device):
        return data.test_x[:2].to(device).long()

    def model_inputs(self, data):
        return ModelInputs(len(data.classes), 1, 0, context=int(data.train_x.shape[1]))

    def loader(self, data, x, y, batch_size, device, *, train=False, seed=0, channels_last=False):
        return TokenLoader(x, y, batch_size, device, train=train, seed=seed)

    def pick(self, data, x, y, n, seed):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC]))
        idx = torch.from_numpy(np.sort(rng.permutation(len(y))[:n]))
        return x[idx], y[idx]

    def as_model_takes(self, data, x, y):
        return x.long(), y.clone()  # stored as uint8; nn.Embedding takes int64


class Graph(DataKind):
    name, metric, unit = "graph", "node accuracy", "nodes"  # scored on the test nodes

    def prepare(self, spec, g, options):
        from prunescope.data.graph import normalised_adjacency  # it registers datasets

        ys = []
        for part, nodes in (("train", g.train_nodes), ("test", g.test_nodes)):
            n = options.subset(part)
            check_subset(f"data.{part}_subset", n, g.labels[nodes], len(g.classes), self.unit)
            if n is not None:
                nodes = nodes[stratified_subset(g.labels[nodes], n, options.seed)]
            y = torch.full((len(g.labels),), IGNORE, dtype=torch.int64)
            y[torch.from_numpy(nodes)] = torch.from_numpy(g.labels[nodes])
            ys.append(y)
        x = torch.from_numpy(g.features)
        adjacency = normalised_adjacency(g.edges, len(g.labels))
        return _prepared(spec, x, ys[0], x, ys[1], classes=list(g.classes), graph=adjacency)

    def describe(self, spec):
        return f"{spec.num_classes or 'its':>3} classes  one graph"

    def scored(self, y):
        return y[y != IGNORE]

    def example(self, data, device):
        return data.test_x.to(device)

    def model_inputs(self, data):
        features = int(data.train_x.shape[1])
        return ModelInputs(len(data.classes), 1, 0, features=features, graph=data.graph)

    def loader(self, data, x, y, batch_size, device, **kw):
        return GraphLoader(x, y, device)  # one graph: every batch is the whole graph

    def pick(self, data, x, y, n, seed):
        labelled = torch.nonzero(y != IGNORE).flatten()
        chosen = labelled[torch.from_numpy(stratified_subset(y[labelled].numpy(), n, seed))]
        kept = torch.full_like(y, IGNORE)
        kept[chosen] = y[chosen]
        return x, kept


DATA_KINDS: dict[str, DataKind] = {k.name: k for k in (Images(), Tokens(), Graph())}


def data_kind(name: str) -> DataKind:
    try:
        return DATA_KINDS[name]
    except KeyError:
        raise UserInputError(
            f"unknown data kind {name!r}; choose one of {', '.join(DATA_KINDS)}"
        ) from None


def resize_uint8(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    t = torch.from_numpy(x).float()
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


def _prepared(spec, *tensors, classes, graph=None) -> PreparedData:
    from prunescope.data.prepared import PreparedData

    return PreparedData(spec, *tensors, classes=classes, graph=graph)
