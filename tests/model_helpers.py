"""Every built-in model with an input it reads: images, token ids or one graph."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prunescope import build_model
from prunescope.data.graph import normalised_adjacency
from prunescope.models import model_spec

GRAPH_NODES = 12


def model_and_input(name: str, n: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """``name`` built for its kind of data and ``n`` samples of it (a graph model: the
    features of every node of a 12-node ring, whatever ``n``)."""
    ex = model_spec(name).example
    g = torch.Generator().manual_seed(seed)
    if ex.graph is not None:
        ring = np.arange(GRAPH_NODES)
        edges = np.stack([ring, (ring + 1) % GRAPH_NODES])
        edges = np.concatenate([edges, edges[::-1]], axis=1)
        adjacency = normalised_adjacency(edges, GRAPH_NODES)
        model = build_model(name, num_classes=ex.num_classes, features=ex.features, graph=adjacency)
        return model, torch.randn(GRAPH_NODES, ex.features, generator=g)
    if ex.context:
        model = build_model(name, num_classes=ex.num_classes, context=ex.context)
        return model, torch.randint(0, ex.num_classes, (n, ex.context), generator=g)
    return build_model(name, 10, 3, 32), torch.randn(n, 3, 32, 32, generator=g)


def batches_of(name: str, x: torch.Tensor, parts: int) -> list[tuple[torch.Tensor, None]]:
    """``x`` in ``parts`` batches; a graph is one batch (its nodes see each other)."""
    if model_spec(name).example.graph is not None:
        return [(x, None)]
    return [(c, None) for c in x.chunk(parts)]


def classifier_of(name: str) -> str:
    return model_spec(name).classifier[0]
