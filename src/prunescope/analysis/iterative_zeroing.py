"""Iterative zeroing with fine-tuning: does one-shot zeroing overestimate a neuron's
importance? (the paper's conclusion: "one-shot zeroing experiments (without retraining)
may overestimate individual neuron importance; future work could apply iterative
zeroing with fine-tuning to refine these insights").

On a level, per stage, neurons are removed in ``steps`` steps until ``max_fraction`` of
the stage's neurons are gone, in two orders: by their one-shot importance (the accuracy
the network keeps when the neuron alone is zeroed, as Algorithm 2 measures it; the least
important first) and in a seeded random order, the control. Each order is followed
twice: without retraining, and fine-tuned for ``finetune_epochs`` epochs after every step
(the level's optimizer settings at a constant rate ``lr_scale`` × ``train.lr``, on a fixed
``finetune_subset`` of the training set; pruned weights and removed neurons, their
incoming weights and bias, stay exactly 0). ``iterative_zeroing.csv`` holds the accuracy
against the neurons removed.

``iterative_zeroing_neurons.csv`` compares, for ``sample`` neurons per stage spread over
the importance ranking, the one-shot accuracy change with the change after fine-tuning
(the neuron removed, then the network fine-tuned as above, against the same network
fine-tuned with nothing removed). :func:`removal_curve_naive` is the curve without
fine-tuning written as plain loops; a test compares it with the fast path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from prunescope.analysis.registry import (
    AnalysisSpec,
    Figure,
    FindingInputs,
    Headline,
    Sentence,
    SentenceInputs,
    register_analysis,
)
from prunescope.analysis.zeroing import zeroing_fast
from prunescope.config.schema import Section
from prunescope.models.layers import adapter_for
from prunescope.pruning.masks import Masks
from prunescope.report.figures.common import WIDTH, FigureFile, FigureInputs, save
from prunescope.seeding import derive_seed
from prunescope.training.trainer import Trainer, evaluate

COLUMNS = [
    "level",
    "network_sparsity",
    "stage",
    "order",
    "finetuned",
    "step",
    "neurons_removed",
    "fraction_removed",
    "test_accuracy",
    "test_loss",
]
NEURON_COLUMNS = [
    "level",
    "network_sparsity",
    "stage",
    "layer",
    "neuron",
    "oneshot_rank",
    "oneshot_delta",
    "finetuned_delta",
]


class IterativeZeroingSettings(Section):
    levels: list[int] | Literal["last"] = Field(
        "last", description="levels to measure (default: the last trained level)"
    )
    steps: int = Field(4, ge=1, le=50, description="removal steps per stage")
    max_fraction: float = Field(
        0.5, gt=0, le=1, description="share of a stage's neurons removed by the last step"
    )
    finetune_epochs: int = Field(1, ge=1, description="epochs of fine-tuning after each step")
    finetune_subset: int = Field(
        1000, gt=0, description="training examples fine-tuned on (a fixed stratified subset)"
    )
    lr_scale: float = Field(
        0.1, gt=0, le=1, description="fine-tuning learning rate as a share of train.lr (constant)"
    )
    sample: int = Field(
        4, ge=0, description="neurons per stage whose one-shot and fine-tuned changes are compared"
    )
    test_subset: int | None = Field(
        None, gt=0, description="test examples the accuracy is measured on (default: all)"
    )
    batch_size: int = Field(
        250, gt=0, description="examples per forward pass (memory, not the numbers)"
    )


# -- what is removed --------------------------------------------------------------------------

Neuron = tuple[str, int]  # (layer, neuron)


def removal_masks(model: nn.Module, masks: Masks, removed: list[Neuron]) -> Masks:
    """The level's weight masks with the removed neurons' incoming weights off, and a mask
    for each bias that holds a removed neuron (so fine-tuning cannot revive it)."""
    modules = dict(model.named_modules())
    out = {k: m.clone() for k, m in masks.items()}
    for layer, i in removed:
        a = adapter_for(modules[layer])
        key = f"{layer}.weight"
        if key not in out:
            out[key] = torch.ones_like(modules[layer].weight, dtype=torch.bool, device="cpu")
        a.neuron(out[key], i).fill_(False)
        if (bias := a.bias_of(modules[layer])) is not None:
            bkey = f"{layer}.{a.bias}"
            out.setdefault(bkey, torch.ones_like(bias, dtype=torch.bool, device="cpu"))[i] = False
    return out


@torch.no_grad()
def apply(model: nn.Module, masks: Masks) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))
    for key, mask in masks.items():
        params[key].masked_fill_(~mask.to(params[key].device), 0.0)


def step_counts(neurons: int, steps: int, max_fraction: float) -> list[int]:
    """Neurons removed after each step: evenly spaced up to ``max_fraction`` of them."""
    top = max(1, round(max_fraction * neurons))
    return sorted({max(1, round(top * k / steps)) for k in range(1, steps + 1)})


# -- the curves ---------------------------------------------------------------------------------


def importance_order(
    ctx, model: nn.Module, layers: list[str], batches
) -> list[tuple[Neuron, float]]:
    """Every neuron of ``layers`` with its one-shot accuracy change (Algorithm 2), least
    important first (the largest accuracy kept; ties: network order, neuron index)."""
    res = zeroing_fast(model, layers, batches, precision=ctx.precision)
    base = res.base_correct / res.images
    ranked = []
    for li, layer in enumerate(layers):
        for i, c in enumerate(res.correct[layer].tolist()):
            ranked.append((-(c / res.images), li, i, (layer, i), c / res.images - base))
    return [(neuron, delta) for *_, neuron, delta in sorted(ranked)]


def finetune(ctx, model: nn.Module, masks: Masks, seed_tag: str) -> None:
    """``finetune_epochs`` of the level's optimizer at a constant rate on the fixed subset,
    pruned weights and removed neurons held at exactly 0 (the real training loop)."""
    from prunescope.pruning.masks import Masker

    s = ctx.cfg.analysis.iterative_zeroing
    train = ctx.cfg.train.model_copy(
        update={
            "lr": ctx.cfg.train.lr * s.lr_scale,
            "schedule": "constant",
            "warmup_epochs": 0.0,
            "compile": False,
            "capture": False,
        }
    )
    cfg = ctx.cfg.model_copy(update={"train": train, "seed": derive_seed(ctx.cfg.seed, seed_tag)})
    trainer = Trainer(model, cfg, finetune_data(ctx), ctx.device, s.finetune_epochs)
    trainer.fit(0, s.finetune_epochs, trainer.new_optimizer(), Masker(model, masks))
    model.eval()


def finetune_data(ctx):
    """The fixed training subset fine-tuning runs on (a dataset of its own, test set unused)."""
    from dataclasses import replace

    s = ctx.cfg.analysis.iterative_zeroing
    x, y = ctx.data.subset("train", s.finetune_subset, derive_seed(ctx.cfg.seed, "iz-subset"))
    return replace(ctx.data, train_x=x, train_y=y)


Tune = Callable[[nn.Module, Masks, str], None]  # fine-tune in place, holding masks


def removal_curve(
    level_model: nn.Module,
    masks: Masks,
    order: list[Neuron],
    counts: list[int],
    *,
    batches,
    precision: str,
    tune: Tune | None,
) -> list[tuple[int, float, float]]:
    """(neurons removed, accuracy, loss) after each step of removing ``order`` in ``counts``
    (cumulative), fine-tuned after each step by ``tune`` if given; step 0 first."""
    model = copy.deepcopy(level_model)
    if tune:
        tune(model, masks, "iz-finetune-0")
    out = [(0, *evaluate(model, batches, precision))]
    for k, n in enumerate(counts, start=1):
        current = removal_masks(model, masks, order[:n])
        apply(model, current)
        if tune:
            tune(model, current, f"iz-finetune-{k}")
        out.append((n, *evaluate(model, batches, precision)))
    return out


@torch.no_grad()
def removal_curve_naive(
    model: nn.Module, order: list[Neuron], counts: list[int], batches
) -> list[tuple[int, float]]:
    """The curve without fine-tuning, as plain loops: zero every incoming weight and the
    bias of each removed neuron one number at a time, count correct predictions by hand."""
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    out = []
    for n in [0, *counts]:
        for layer, i in order[:n]:
            a = adapter_for(modules[layer])
            row = a.neuron(modules[layer].weight, i)
            for j in range(row.numel()):
                row.view(-1)[j] = 0.0
            if (bias := a.bias_of(modules[layer])) is not None:
                bias[i] = 0.0
        correct = total = 0
        for x, y in batches:
            pred = model(x).argmax(-1)
            for p, t in zip(pred.reshape(-1).tolist(), y.reshape(-1).tolist(), strict=True):
                if t != -100:
                    correct += int(p == t)
                    total += 1
        out.append((n, correct / total))
    return out


def _test_batches(ctx):
    s = ctx.cfg.analysis.iterative_zeroing
    return ctx.batches(s.test_subset, s.batch_size)


# -- the tables ---------------------------------------------------------------------------------


def stage_layers(ctx) -> dict[str, list[str]]:
    """The stages' pruned layers (the excluded classifier left out, as zeroing does)."""
    out = {}
    for stage, layers in ctx.stages.items():
        pruned = [layer for layer in layers if layer in ctx.prunable_layers]
        if pruned:
            out[stage] = pruned
    return out


def stage_rows(ctx, level: int, stage: str, layers: list[str]) -> tuple[list, list]:
    s = ctx.cfg.analysis.iterative_zeroing
    model, masks = ctx.level(level)
    ranked = importance_order(ctx, model, layers, _test_batches(ctx))
    counts = step_counts(len(ranked), s.steps, s.max_fraction)
    g = torch.Generator().manual_seed(derive_seed(ctx.cfg.seed, f"iz-random-{stage}", level))
    shuffled = [ranked[i][0] for i in torch.randperm(len(ranked), generator=g).tolist()]
    orders = {"importance": [n for n, _ in ranked], "random": shuffled}
    ns, total = ctx.network_sparsity(level), len(ranked)
    rows = []
    batches = _test_batches(ctx)
    for name, order in orders.items():
        for tuned in (False, True):
            tune = (lambda m, k, tag: finetune(ctx, m, k, tag)) if tuned else None
            curve = removal_curve(
                model, masks, order, counts, batches=batches, precision=ctx.precision, tune=tune
            )
            rows += [
                (level, ns, stage, name, tuned, k, n, n / total, acc, loss)
                for k, (n, acc, loss) in enumerate(curve)
            ]
    return rows, sampled_neurons(ctx, level, stage, model, masks, ranked)


def sampled_neurons(ctx, level: int, stage: str, model, masks, ranked) -> list:
    """``sample`` neurons spread over the ranking: one-shot change, and the change after
    fine-tuning against the same fine-tuning with nothing removed."""
    s = ctx.cfg.analysis.iterative_zeroing
    if not s.sample or not ranked:
        return []
    picks = sorted({round(q) for q in np.linspace(0, len(ranked) - 1, min(s.sample, len(ranked)))})
    baseline = tuned_accuracy(ctx, model, masks, [])
    rows = []
    for rank in picks:
        (layer, i), delta = ranked[rank]
        tuned = tuned_accuracy(ctx, model, masks, [(layer, i)])
        rows.append(
            (level, ctx.network_sparsity(level), stage, layer, i, rank, delta, tuned - baseline)
        )
    return rows


def tuned_accuracy(ctx, level_model: nn.Module, masks: Masks, removed: list[Neuron]) -> float:
    """Test accuracy with ``removed`` taken out and the network then fine-tuned once."""
    model = copy.deepcopy(level_model)
    current = removal_masks(model, masks, removed)
    apply(model, current)
    finetune(ctx, model, current, "iz-finetune-sample")
    return evaluate(model, _test_batches(ctx), ctx.precision)[0]


def iterative_zeroing_tables(ctx, levels: list[int]) -> dict[str, pd.DataFrame]:
    rows, neuron_rows = [], []
    for level in levels:
        for stage, layers in stage_layers(ctx).items():
            r, n = stage_rows(ctx, level, stage, layers)
            rows += r
            neuron_rows += n
    return {
        "iterative_zeroing": pd.DataFrame(rows, columns=COLUMNS),
        "iterative_zeroing_neurons": pd.DataFrame(neuron_rows, columns=NEURON_COLUMNS),
    }


def _levels(cfg, levels: list[int]) -> list[int]:
    chosen = cfg.analysis.iterative_zeroing.levels
    if chosen == "last":
        return levels[-1:]
    return [lv for lv in levels if lv in chosen]


# -- the report ---------------------------------------------------------------------------------


def finding(inp: FindingInputs) -> dict:
    t = inp.tables.get("iterative_zeroing")
    if t is None or t.empty:
        return {}
    level = int(t["level"].max())
    t = t[t["level"] == level]
    last = t[t["step"] == t["step"].max()]
    per_stage = {}
    for stage, g in last.groupby("stage", sort=False):
        acc = {
            (o, bool(f)): float(v)
            for o, f, v in zip(g["order"], g["finetuned"], g["test_accuracy"], strict=True)
        }
        start = t[(t["stage"] == stage) & (t["step"] == 0) & (~t["finetuned"])]
        per_stage[stage] = {
            "fraction_removed": float(g["fraction_removed"].iloc[0]),
            # the level's own accuracy before any removal (a pruned level: not "dense")
            "accuracy_before": float(start["test_accuracy"].iloc[0]),
            "importance_oneshot": acc.get(("importance", False)),
            "importance_finetuned": acc.get(("importance", True)),
            "random_oneshot": acc.get(("random", False)),
            "random_finetuned": acc.get(("random", True)),
        }
    out = {"level": level, "per_stage": per_stage}
    neurons = inp.tables.get("iterative_zeroing_neurons")
    if neurons is not None and not neurons.empty:
        n = neurons[neurons["level"] == level]
        one, tuned = n["oneshot_delta"].abs(), n["finetuned_delta"].abs()
        out["neurons"] = {
            "sampled": len(n),
            "mean_abs_oneshot": float(one.mean()),
            "mean_abs_finetuned": float(tuned.mean()),
            "smaller_after_finetuning": int((tuned < one).sum()),
            "larger_after_finetuning": int((tuned > one).sum()),
        }
    return {"iterative_zeroing": out}


def _pts(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def sentences(s: SentenceInputs) -> list[Sentence]:
    f = s.summary.get("iterative_zeroing")
    if not f:
        return []
    parts = [
        f"{stage} ({100 * p['fraction_removed']:.0f}% of its neurons): "
        f"{_pts(p['importance_oneshot'])} without retraining and "
        f"{_pts(p['importance_finetuned'])} fine-tuned, against {_pts(p['random_oneshot'])} "
        f"and {_pts(p['random_finetuned'])} in a random order"
        for stage, p in f["per_stage"].items()
    ]
    before = {round(p["accuracy_before"], 6) for p in f["per_stage"].values()}
    start = _pts(before.pop(), 2) if len(before) == 1 else "its own accuracy"
    text = (
        f"At level {f['level']} ({start} before any removal), removing neurons least "
        "important first (by one-shot zeroing), the accuracy left: " + "; ".join(parts) + "."
    )
    if n := f.get("neurons"):
        text += (
            f" Of {n['sampled']} sampled neurons, fine-tuning after removing one left a smaller "
            f"accuracy change than one-shot zeroing for {n['smaller_after_finetuning']} and a "
            f"larger one for {n['larger_after_finetuning']} (mean |change| "
            f"{100 * n['mean_abs_oneshot']:.2f} points one-shot, {100 * n['mean_abs_finetuned']:.2f} "
            f"after fine-tuning), on this one level and these sampled neurons."
        )
    return [("Iterative zeroing with fine-tuning:", text)]


STYLE = {
    ("importance", True): ("-", "o", "fine-tuned, least important first"),
    ("importance", False): ("--", "o", "one-shot, least important first"),
    ("random", True): ("-", "x", "fine-tuned, random order"),
    ("random", False): ("--", "x", "one-shot, random order"),
}


def figure(inp: FigureInputs, out: Path) -> list[FigureFile]:
    t = inp.tables["iterative_zeroing"]
    level = int(t["level"].max())
    t = t[t["level"] == level]
    stages = [s for s in inp.stage_order if s in set(t["stage"])]
    fig, axes = plt.subplots(
        1, len(stages), figsize=(WIDTH, 2.6), sharey=True, layout="constrained", squeeze=False
    )
    for ax, stage in zip(axes[0], stages, strict=True):
        g = t[t["stage"] == stage]
        for (order, tuned), (ls, marker, label) in STYLE.items():
            c = g[(g["order"] == order) & (g["finetuned"] == tuned)].sort_values("step")
            ax.plot(
                100 * c["fraction_removed"],
                100 * c["test_accuracy"],
                ls=ls,
                marker=marker,
                ms=3,
                color="black" if order == "importance" else "grey",
                label=label,
            )
        ax.set_title(stage)
        ax.set_xlabel("neurons removed (%)")
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    sparsity = 100 * float(t["network_sparsity"].iloc[0])
    fig.suptitle(f"Removing neurons at level {level} ({sparsity:.1f}% sparse)", fontsize=9)
    caption = (
        f"Iterative zeroing at level {level}: test accuracy as a stage's neurons are removed, "
        "least important first (by one-shot zeroing) or in a random order, without retraining "
        "and fine-tuned after every step."
    )
    return [save(fig, out, "iterative_zeroing", caption)]


register_analysis(
    AnalysisSpec(
        name="iterative_zeroing",
        description="accuracy as each stage's neurons are removed, least important first or at "
        "random, with and without fine-tuning after each step (costly: not by default)",
        tables={"iterative_zeroing": COLUMNS, "iterative_zeroing_neurons": NEURON_COLUMNS},
        column_kinds={
            "order": "text",
            "finetuned": "bool",
            "step": "integer",
            "neurons_removed": "integer",
            "oneshot_rank": "integer",
        },
        compute=iterative_zeroing_tables,
        settings=IterativeZeroingSettings,
        depends_on=lambda cfg: {**cfg.analysis.iterative_zeroing.model_dump(), "seed": cfg.seed},
        levels=_levels,
        runs_network=True,
        default=False,
        on_branches=False,
        finding=finding,
        sentences=sentences,
        headlines={
            "iz_finetune_gain": Headline(
                "fine-tuning's gain after iterative zeroing (mean over stages)",
                "pct",
                lambda s: _gain(s),
            )
        },
        figures=(Figure(figure, ("iterative_zeroing",)),),
    )
)


def _gain(summary: dict) -> float | None:
    f = (summary.get("iterative_zeroing") or {}).get("per_stage") or {}
    gains = [
        p["importance_finetuned"] - p["importance_oneshot"]
        for p in f.values()
        if p["importance_finetuned"] is not None and p["importance_oneshot"] is not None
    ]
    return sum(gains) / len(gains) if gains else None
