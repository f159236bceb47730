"""gcn: a graph convolutional network (Kipf & Welling 2017) in plain torch.

Each layer is a Linear (its output units are the neurons IMP prunes and zeroing ablates)
followed by aggregation over the normalised sparse adjacency, ``Â·(H W + b)``. The
adjacency is data, not a parameter: a non-persistent buffer that level files never hold.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from prunescope.errors import UserInputError
from prunescope.models.registry import ModelInputs, register_model

HIDDEN, DEPTH, DROPOUT = 64, 3, 0.5


class GCN(nn.Module):
    # the zeroing engine replays K ablations as K×B rows; a graph's rows are its nodes,
    # which the adjacency mixes, so zeroing takes the naive loop
    samples_independent = False

    def __init__(
        self,
        features: int,
        num_classes: int,
        graph: torch.Tensor,
        *,
        hidden: int = HIDDEN,
        depth: int = DEPTH,
        dropout: float = DROPOUT,
    ):
        super().__init__()
        widths = (features, *([hidden] * (depth - 1)))
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.out = nn.Linear(hidden, num_classes)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("adjacency", graph, persistent=False)
        self.stages = {f"layer{i + 1}": [f"layers.{i}"] for i in range(depth - 1)}
        self.stages["out"] = ["out"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers:
            h = self.relu(propagate(self.adjacency, layer(self.dropout(h))))
        return propagate(self.adjacency, self.out(self.dropout(h)))


def propagate(adjacency: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Â·h in float32 outside autocast: measured, a float32 sparse product under bf16
    autocast fails in backward ("expected scalar type Float but found BFloat16")."""
    with torch.autocast(h.device.type, enabled=False):
        return torch.sparse.mm(adjacency, h.float())


torch.fx.wrap("propagate")  # one call in a traced graph, not its autocast context


def _example_graph(nodes: int = 8) -> torch.Tensor:
    return torch.eye(nodes).to_sparse().coalesce()


@register_model(
    "gcn",
    description=f"graph convolutional network, {DEPTH} layers, hidden width {HIDDEN}, "
    f"dropout {DROPOUT}, sparse adjacency",
    classifier=("out",),
    min_image_size=0,
    example=ModelInputs(4, 1, 0, features=32, graph=_example_graph()),
    example_label="sbm",
)
def gcn(num_classes: int, features: int | None, graph: torch.Tensor | None) -> nn.Module:
    if graph is None or not features:
        raise UserInputError("gcn reads a graph: use a graph dataset (sbm, planetoid)")
    return GCN(features, num_classes, graph)
