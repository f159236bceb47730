"""A dataset ready for training, as CPU tensors; how it behaves is its kind's
(:mod:`prunescope.data.kinds`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunescope.data.kinds import DataKind, Loader, data_kind
from prunescope.data.registry import DatasetSpec
from prunescope.models.registry import ModelInputs


@dataclass
class PreparedData:
    """images: uint8 NCHW images and class labels. tokens: character ids ``[sequences,
    context]`` and the next character of each position. graph: ``train_x`` and ``test_x``
    are the same node features, ``train_y``/``test_y`` the labels of the training/test
    nodes (``IGNORE`` elsewhere), ``graph`` the normalised adjacency.
    """

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    graph: torch.Tensor | None = None

    @property
    def kind(self) -> DataKind:
        return data_kind(self.spec.kind)

    @property
    def image_size(self) -> int:
        return self.kind.image_size(self)

    def examples(self, split: str) -> int:
        """Scored examples: images, sequences, or labelled nodes of the split."""
        return len(self.kind.scored(self.train_y if split == "train" else self.test_y))

    def example(self, device: torch.device) -> torch.Tensor:
        """A small input of the right shape and type (for tracing shapes, not for scores)."""
        return self.kind.example(self, device)

    def probe_batch(self, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test examples (a graph: the whole graph) as the model takes them,
        on the CPU: what the model is checked on before training."""
        return next(iter(self.loader(self.test_x, self.test_y, n, torch.device("cpu"))))

    def model_inputs(self) -> ModelInputs:
        return self.kind.model_inputs(self)

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
    ) -> Loader:
        """Batches of ``(x, y)`` on ``device``, as this kind of data is batched."""
        return self.kind.loader(
            self, x, y, batch_size, device, train=train, seed=seed, channels_last=channels_last
        )

    def subset(self, split: str, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of a seeded subset of ``n`` examples of a split (all when ``n`` is
        None or at least the split): stratified by class where examples have one class."""
        x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
        if n is None or n >= self.examples(split):
            return x, y
        return self.kind.pick(self, x, y, n, seed)
