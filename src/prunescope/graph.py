"""A model's graph, where torch.fx can have it: what the fast zeroing engine, the channel
flow (:mod:`prunescope.structure`) and the structured export read.

``torch.fx.symbolic_trace`` fails on data-dependent control flow, on most Hugging Face and
PyTorch Geometric models (measured: GPT-2, Llama, ViT, BERT, GCNConv, GATConv all fail;
docs/results/byo_models.md and docs/results/graph_capture.md have the tables) and on code that checks shapes at run time.
Every caller has a path without it: zeroing runs Algorithm 2's loop, BatchNorm constants
come from hooks, the export refuses in one line, the run-time formats that need no graph
are still timed.
"""

from __future__ import annotations

import torch.fx as fx
from torch import nn

from prunescope.errors import Unsupported


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model`` (standard torch modules stay leaves)."""
    return fx.symbolic_trace(model)


def untraceable(model: nn.Module) -> str | None:
    """Why torch.fx cannot trace ``model``, or None."""
    try:
        trace(model)
    except Exception as exc:  # whatever the model's code raises under tracing
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        return f"{type(exc).__name__}: {first}"
    return None


def require_graph(model: nn.Module, what: str) -> None:
    """:class:`Unsupported` (one line; the analysis is recorded as skipped) when ``what``
    needs a graph that torch.fx cannot make."""
    why = untraceable(model)
    if why:
        raise Unsupported(
            f"{what} needs the model's graph, and torch.fx cannot trace "
            f"{type(model).__name__} ({why})"
        )
