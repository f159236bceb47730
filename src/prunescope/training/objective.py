"""The training objective and the task's metric, for every kind of data.

Outputs ``[..., classes]`` are scored position by position against labels ``[...]``:
one row per image, per token (a language model's every next character), or per node
(a graph, where the nodes outside the split carry the ignored label -100). For images
this is exactly the plain ``F.cross_entropy(out, y)`` and ``out.argmax(1) == y``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # = torch's default ignore_index; prunescope.data.IGNORE


def flat(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs as float rows ``[N, classes]`` and labels ``[N]``."""
    return out.reshape(-1, out.shape[-1]).float(), y.reshape(-1)


def loss(out: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the scored positions."""
    logits, labels = flat(out, y)
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def loss_sum(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits, labels = flat(out, y)
    return F.cross_entropy(logits, labels, reduction="sum")


def correct_count(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct predictions, scored positions), as device tensors."""
    logits, labels = flat(out, y)
    scored = labels != IGNORE
    return ((logits.argmax(1) == labels) & scored).sum(), scored.sum()


def scored(y: torch.Tensor) -> torch.Tensor:
    """The scored positions of ``y``, counted on its device (no host sync)."""
    return (y != IGNORE).sum()


def scored_count(y: torch.Tensor) -> int:
    return int((y != IGNORE).sum())
