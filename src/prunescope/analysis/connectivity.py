"""Linear mode connectivity (Frankle et al. 2020): do consecutive levels lie in one basin?

For each level and a reference (the dense baseline, and the previous level), the
network is evaluated at ``analysis.connectivity.points`` evenly spaced points of
the straight line between the two weight vectors, θ(α) = (1 − α)·θ_reference +
α·θ_level, α from 0 (the reference) to 1 (the level). Averaging two networks'
weights does not average their BatchNorm statistics, so at every point, the two
ends included, the BatchNorm running statistics are re-estimated on a fixed
training subset (``analysis.connectivity.bn_images`` images, no augmentation),
as is standard; the accuracy at α = 0 and α = 1 is therefore the two levels'
accuracy *with re-estimated statistics*, which can differ slightly from
``accuracy.csv``. The barrier is the largest loss on the path above the mean of
the losses at its ends (0 for two identical networks).
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from prunescope.analysis.registry import AnalysisSpec, pruned_levels, register_analysis
from prunescope.training import objective
from prunescope.training.precision import autocast

COLUMNS = [
    "level",
    "network_sparsity",
    "reference",
    "reference_level",
    "alpha",
    "test_accuracy",
    "test_loss",
]


def alphas(points: int) -> list[float]:
    return [i / (points - 1) for i in range(points)]


def interpolate(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 − α)·a + α·b for every floating tensor; integer buffers (BatchNorm's step counter) from a."""
    return {
        k: torch.lerp(a[k], b[k], alpha) if a[k].is_floating_point() else a[k].clone() for k in a
    }


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches, precision: str = "fp32") -> None:
    """Replace every BatchNorm's running statistics by their exact average over ``batches``
    (momentum None: a cumulative mean), with every other module in eval mode."""
    bns = _batchnorms(model)
    if not bns:
        return
    model.eval()
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for x, _ in batches:
            with autocast(x.device, precision):
                model(x)
    finally:
        for bn, m in zip(bns, saved, strict=True):
            bn.momentum = m
        model.eval()


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches, precision: str = "fp32") -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over the scored examples of the batches."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for x, y in batches:
        with autocast(x.device, precision):
            out = model(x)
        c, scored = objective.correct_count(out, y)
        correct += int(c)
        loss += float(objective.loss_sum(out, y))
        n += int(scored)
    return correct / n, loss / n


def path(
    model: nn.Module,
    reference: dict[str, torch.Tensor],
    level: dict[str, torch.Tensor],
    points: int,
    bn_batches,
    test_batches,
    precision: str = "fp32",
) -> list[tuple[float, float, float]]:
    """(α, accuracy, loss) at each point of the line from ``reference`` to ``level``."""
    out = []
    for alpha in alphas(points):
        model.load_state_dict(interpolate(reference, level, alpha))
        reestimate_batchnorm(model, bn_batches, precision)
        acc, loss = evaluate_batches(model, test_batches, precision)
        out.append((alpha, acc, loss))
    return out


def barrier(losses: list[float]) -> float:
    """Largest loss on the path above the mean of the losses at its two ends."""
    return max(losses) - (losses[0] + losses[-1]) / 2


def connectivity_table(ctx, levels: list[int]) -> pd.DataFrame:  # ctx: AnalysisContext
    c = ctx.cfg.analysis.connectivity
    test = ctx.batches(c.test_subset, c.batch_size)
    bn = ctx.train_batches(c.bn_images, c.batch_size)
    work = ctx.fresh_model()
    rows = []
    for level in levels:
        state = ctx.state(level)
        for reference, ref_level in (("baseline", 0), ("previous", level - 1)):
            points = path(work, ctx.state(ref_level), state, c.points, bn, test, ctx.precision)
            for alpha, acc, loss in points:
                rows.append(
                    (level, ctx.network_sparsity(level), reference, ref_level, alpha, acc, loss)
                )
    return pd.DataFrame(rows, columns=COLUMNS)


register_analysis(
    AnalysisSpec(
        name="connectivity",
        description="accuracy and loss on the straight line from each level to the baseline "
        "and to the previous level, BatchNorm re-estimated at every point (Frankle et al. 2020)",
        tables={"connectivity": COLUMNS},
        compute=lambda ctx, levels: {"connectivity": connectivity_table(ctx, levels)},
        settings=lambda cfg: {**cfg.analysis.connectivity.model_dump(), "seed": cfg.seed},
        levels=pruned_levels,
        runs_network=True,
    )
)
