"""Neuron zeroing (Alg. 2, Figs. 11–12): the accuracy and loss of the network with each
neuron of each prunable layer ablated in turn.

:func:`zeroing_naive` is Alg. 2 itself and the reference; :func:`zeroing_fast`
gives the same answers through :class:`~prunescope.analysis.ablation.AblationEngine`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm import tqdm

from prunescope.analysis.ablation import AblationEngine, ablation_nodes
from prunescope.analysis.bn_constant import bn_constants
from prunescope.analysis.registry import (
    AnalysisSpec,
    Figure,
    FindingInputs,
    Headline,
    Sentence,
    SentenceInputs,
    register_analysis,
)
from prunescope.analysis.tables import empty_table
from prunescope.config.schema import Section
from prunescope.graph import trace, untraceable
from prunescope.models.layers import adapter_for
from prunescope.models.probe import samples_independent
from prunescope.report import findings as findings
from prunescope.report import sentences as S
from prunescope.report.figures import zeroing as zeroing_figure
from prunescope.training.objective import IGNORE, scored_count
from prunescope.training.precision import autocast

log = logging.getLogger("prunescope")


class ZeroingSettings(Section):
    levels: list[int] | Literal["all"] = Field("all", description="levels to zero (a list), or all")
    test_subset: int | None = Field(
        None, gt=0, description="test examples zeroing evaluates on (default: the whole test set)"
    )
    # "weights" is the paper's Alg. 2 (incoming weights and bias to 0: zeroing.csv); after
    # a BatchNorm that still leaves the constant beta - gamma*mu/sqrt(var+eps), so "output"
    # zeroes the neuron after its BatchNorm instead (zeroing_output.csv); "both" does both.
    mode: Literal["weights", "output", "both"] = Field(
        "weights",
        description="weights: incoming weights and bias to 0 (Alg. 2, zeroing.csv); output: the neuron after its BatchNorm (zeroing_output.csv); both",
    )
    # Measured on 2 CPU cores (ResNet20, 256 images): 32 → 28.5 s, 64 → 25.8 s, 128 → 38.8 s,
    # 256 → 49.6 s; bigger passes fall out of cache. A GPU takes more neurons per pass instead.
    batch_size: int = Field(64, gt=0, description="test images per pass")
    max_ablations: int = Field(64, gt=0, description="neurons ablated together in one pass")


@dataclass
class ZeroingResult:
    """Sums over the evaluated images: correct predictions and cross-entropy."""

    images: int
    base_correct: int
    base_loss_sum: float
    correct: dict[str, torch.Tensor]  # layer -> int64 [neurons]
    loss_sum: dict[str, torch.Tensor]  # layer -> float64 [neurons]


def neuron_count(module: nn.Module) -> int:
    """Output units, on the layer's neuron axis (:mod:`prunescope.models.layers`)."""
    return adapter_for(module).neurons(module)


def _score(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct counts and loss sums per ablation for logits ``[K, B, ..., classes]`` and
    labels ``[B, ...]``: every scored position (image, token, labelled node) counts."""
    k, n = logits.shape[0], y.numel()
    flat = logits.reshape(k * n, logits.shape[-1]).float()
    yy = y.reshape(-1).repeat(k)
    correct = ((flat.argmax(1) == yy) & (yy != IGNORE)).view(k, n).sum(1)
    # an ignored position's loss is 0 (ignore_index is torch's default, -100)
    loss = F.cross_entropy(flat, yy, reduction="none").double().view(k, n).sum(1)
    return correct, loss


def output_targets(model: nn.Module, layers: list[str], mode: str) -> dict[str, str]:
    """Module whose output the ``output`` mode zeroes, per layer (itself where the model
    cannot be traced: there is then no following normalisation to find)."""
    try:
        gm = trace(model)
    except Exception:
        return dict(zip(layers, layers, strict=True))
    return {layer: node.target for layer, node in ablation_nodes(gm, layers, mode).items()}


# Any re-iterable source of (images, labels) batches: a list, or a DeviceLoader.
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def zeroing_naive(
    model: nn.Module,
    layers: list[str],
    batches: Batches,
    mode: str = "weights",
    progress: Callable[[int], None] | None = None,
    neurons: dict[str, list[int]] | None = None,
    precision: str = "fp32",
) -> ZeroingResult:
    """Alg. 2 as written: zero a neuron, evaluate everything, restore; neuron by neuron.

    ``neurons`` restricts a layer to some of its neurons (the others stay 0 in the result);
    ``precision`` is the forward pass's (``"bf16"``: autocast, as training used).
    """
    model.eval()
    modules = dict(model.named_modules())
    targets = output_targets(model, layers, mode) if mode == "output" else {}

    def evaluate() -> tuple[int, float]:
        correct, loss = 0, 0.0
        for x, y in batches:
            with autocast(x.device, precision):
                out = model(x)
            c, s = _score(out.unsqueeze(0), y)
            correct += int(c[0])
            loss += float(s[0])
        return correct, loss

    base_correct, base_loss = evaluate()
    result = ZeroingResult(
        sum(scored_count(y) for _, y in batches), base_correct, base_loss, {}, {}
    )
    for layer in layers:
        module = modules[layer]
        n = neuron_count(module)
        correct = torch.zeros(n, dtype=torch.int64)
        loss = torch.zeros(n, dtype=torch.float64)
        adapter = adapter_for(module)
        for i in (neurons or {}).get(layer, range(n)):
            if mode == "weights":
                saved = adapter.zero(module, i)
                try:
                    correct[i], loss[i] = evaluate()
                finally:
                    adapter.restore(module, i, saved)
            else:
                dim = adapter.output_axis

                def zero_output(_m, _inp, out, i=i, dim=dim):
                    out = out.clone()
                    out.select(dim, i).zero_()
                    return out

                handle = modules[targets[layer]].register_forward_hook(zero_output)
                try:
                    correct[i], loss[i] = evaluate()
                finally:
                    handle.remove()
            if progress:
                progress(1)
        result.correct[layer] = correct
        result.loss_sum[layer] = loss
    return result


@contextlib.contextmanager
def exact_float32():
    """No TF32 on CUDA: the engine's rank-one updates must match full convolutions to float32."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


_NOTICES: set[str] = set()


@torch.no_grad()
def zeroing_fast(
    model: nn.Module,
    layers: list[str],
    batches: Batches,
    mode: str = "weights",
    max_ablations: int = 64,
    memory_budget: int | None = None,
    progress: Callable[[int], None] | None = None,
    neurons: dict[str, list[int]] | None = None,
    precision: str = "fp32",
) -> ZeroingResult:
    """The same numbers as :func:`zeroing_naive`, batch by batch through the ablation engine.

    The engine needs a model that torch.fx can trace and whose samples are independent
    (no operation mixes the rows of a batch, as a graph convolution does); a model that
    is neither is zeroed by the naive loop, with a one-line notice. So are the layers
    the engine cannot replay exactly (see
    :func:`~prunescope.analysis.ablation.graph_problem`).
    """
    naive = functools.partial(
        zeroing_naive, batches=batches, mode=mode, neurons=neurons, precision=precision
    )
    why = untraceable(model)
    if why:
        why = f"torch.fx cannot trace {type(model).__name__} ({why})"
    elif not samples_independent(model.eval(), next(iter(batches))[0]):
        why = f"{type(model).__name__} mixes the rows of a batch (a graph's nodes)"
    if why:
        if why not in _NOTICES:  # one line per run, not per level
            _NOTICES.add(why)
            log.warning("zeroing: %s: every neuron by the naive loop (same numbers, slower)", why)
        return naive(model.eval(), layers, progress=progress)
    with exact_float32(), autocast(next(model.parameters()).device, precision):
        result, unsupported = _engine_zeroing(
            model,
            layers,
            batches,
            mode=mode,
            max_ablations=max_ablations,
            memory_budget=memory_budget,
            progress=progress,
            neurons=neurons,
        )
    if unsupported:  # outside the autocast above: its weight cache would hide the zeroing
        # (measured: inside a bf16 autocast every neuron got the unablated loss)
        log.warning(
            "zeroing %d layer(s) with the naive loop (%s)",
            len(unsupported),
            "; ".join(f"{k}: {v}" for k, v in list(unsupported.items())[:3]),
        )
        slow = naive(model.eval(), list(unsupported))
        result.correct.update(slow.correct)
        result.loss_sum.update(slow.loss_sum)
    return result


def _engine_zeroing(
    model: nn.Module,
    layers: list[str],
    batches: Batches,
    *,
    mode: str,
    max_ablations: int,
    memory_budget: int | None,
    progress: Callable[[int], None] | None,
    neurons: dict[str, list[int]] | None,
) -> tuple[ZeroingResult, dict[str, str]]:
    """Every layer the engine can replay, on a copy of the model (convolutions in
    channels_last: faster with oneDNN and cuDNN); and the layers it could not, with why."""
    model = copy.deepcopy(model).eval()
    engine = AblationEngine(
        model, layers, mode, max_ablations=max_ablations, memory_budget=memory_budget or 32 * 2**20
    )
    views = any(n.op == "call_method" and n.target == "view" for n in engine.gm.graph.nodes)
    channels_last = not views and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    if memory_budget is None and device.type == "cuda":
        # measured on 2 CPU cores: ResNet20 zeroing is fastest with 32 MB per pass
        # (cache-sized); a GPU wants large passes
        engine.memory_budget = 2 * 2**30
    modules = dict(model.named_modules())
    correct = {
        layer: torch.zeros(neuron_count(modules[layer]), dtype=torch.int64, device=device)
        for layer in layers
    }
    loss = {
        layer: torch.zeros(neuron_count(modules[layer]), dtype=torch.float64, device=device)
        for layer in layers
    }
    base_correct = torch.zeros((), dtype=torch.int64, device=device)
    base_loss = torch.zeros((), dtype=torch.float64, device=device)
    scored, checked = 0, False
    out_node = next(n for n in reversed(engine.gm.graph.nodes) if n.op == "output")
    for x, y in batches:
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        scored += scored_count(y)
        env = engine.base_pass(x)
        if not checked:
            engine.check_shapes(env, x)
            checked = True
        c, s = _score(env[out_node].unsqueeze(0), y)
        base_correct += c[0]
        base_loss += s[0]
        for layer in list(engine.layers):
            chosen = torch.as_tensor(
                list((neurons or {}).get(layer, range(len(correct[layer])))),
                dtype=torch.int64,
                device=device,
            )
            step = engine.chunk_size(layer, env, len(y))
            try:
                for lo in range(0, len(chosen), step):
                    channels = chosen[lo : lo + step]
                    c, s = _score(engine.ablate(layer, channels, env), y)
                    correct[layer][channels] += c
                    loss[layer][channels] += s
            except RuntimeError as exc:  # a shape the replay got wrong: the naive loop's
                engine.give_up(layer, f"replay failed ({str(exc).splitlines()[0][:80]})")
            if progress:
                progress(1)
        del env
    result = ZeroingResult(
        images=scored,
        base_correct=int(base_correct),
        base_loss_sum=float(base_loss),
        correct={k: v.cpu() for k, v in correct.items() if k not in engine.unsupported},
        loss_sum={k: v.cpu() for k, v in loss.items() if k not in engine.unsupported},
    )
    return result, engine.unsupported


def zeroing_rows(ctx, level: int, mode: str, batches: list) -> pd.DataFrame:
    """Rows of one zeroing table (``zeroing`` or ``zeroing_output``) for one level."""
    model, _ = ctx.level(level)
    z = ctx.cfg.analysis.zeroing
    # one step = every neuron of one layer ablated on one batch of test images
    with tqdm(
        total=len(batches) * len(ctx.prunable_layers),
        desc=f"zeroing level {level}, {mode} (layer x batch)",
        unit="step",
        leave=False,
        disable=None,
    ) as bar:
        res = zeroing_fast(
            model,
            ctx.prunable_layers,
            batches,
            mode,
            z.max_ablations,
            progress=bar.update,
            precision=ctx.precision,
        )
    base_acc = res.base_correct / res.images
    base_loss = res.base_loss_sum / res.images
    parts = []
    for layer in ctx.prunable_layers:
        acc = res.correct[layer].double().numpy() / res.images
        parts.append(
            pd.DataFrame(
                {
                    "level": level,
                    "network_sparsity": ctx.network_sparsity(level),
                    "stage": ctx.stage_of[layer],
                    "layer": layer,
                    "neuron": range(len(acc)),
                    "base_accuracy": base_acc,
                    "accuracy": acc,
                    "delta_accuracy": acc - base_acc,
                    "base_loss": base_loss,
                    "loss": res.loss_sum[layer].numpy() / res.images,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def bn_constant_rows(ctx, level: int) -> pd.DataFrame:
    model, _ = ctx.level(level)
    parts = [
        pd.DataFrame(
            {
                "level": level,
                "network_sparsity": ctx.network_sparsity(level),
                "stage": ctx.stage_of[layer],
                "layer": layer,
                "neuron": range(len(c)),
                "constant": c.double().numpy(),
            }
        )
        for layer, c in bn_constants(
            model, ctx.prunable_layers, ctx.data.example(ctx.device)
        ).items()
    ]
    return pd.concat(parts, ignore_index=True) if parts else empty_table("bn_constants")


def zeroing_tables(ctx, levels: list[int]) -> dict[str, pd.DataFrame]:  # ctx: AnalysisContext
    """``zeroing.csv`` (the paper's definition), ``zeroing_output.csv`` (after BatchNorm) as
    ``analysis.zeroing.mode`` asks, and ``bn_constants.csv`` (what a zeroed neuron emits)."""
    z = ctx.cfg.analysis.zeroing
    batches = ctx.batches(z.test_subset, z.batch_size)
    modes = {"weights": ["weights"], "output": ["output"], "both": ["weights", "output"]}[z.mode]
    out = {"zeroing": [], "zeroing_output": [], "bn_constants": []}
    for level in levels:
        for mode in modes:
            table = "zeroing" if mode == "weights" else "zeroing_output"
            out[table].append(zeroing_rows(ctx, level, mode, batches))
        out["bn_constants"].append(bn_constant_rows(ctx, level))
    return {
        name: pd.concat(parts, ignore_index=True) if parts else empty_table(name)
        for name, parts in out.items()
    }


ZEROING_COLUMNS = [
    "level",
    "network_sparsity",
    "stage",
    "layer",
    "neuron",
    "base_accuracy",
    "accuracy",
    "delta_accuracy",
    "base_loss",
    "loss",
]


def _finding(inp: FindingInputs) -> dict:
    out = {}
    if inp.has("zeroing"):
        out["zeroing_spread"] = findings.zeroing_spread_finding(
            inp.tables["zeroing"], inp.critical["level"]
        )
    if inp.has("bn_constants"):
        out["bn_constant"] = findings.bn_constant_finding(
            inp.tables["bn_constants"], inp.stage_order
        )
    if inp.has("zeroing") and inp.has("zeroing_output"):
        out["zeroing_modes"] = findings.zeroing_modes_finding(
            inp.tables["zeroing"], inp.tables["zeroing_output"]
        )
    return out


def _sentences(s: SentenceInputs) -> list[Sentence]:
    out = []
    if (zs := s.summary.get("zeroing_spread")) and zs["levels_considered"]:
        out.append(S.zeroing_spread_finding(zs))
    if bn := s.summary.get("bn_constant"):
        out.append(S.bn_constant_finding(bn, s.summary.get("zeroing_modes")))
    return out


def _zeroing_levels(cfg, levels: list[int]) -> list[int]:
    chosen = cfg.analysis.zeroing.levels
    return levels if chosen == "all" else [lv for lv in levels if lv in chosen]


register_analysis(
    AnalysisSpec(
        name="zeroing",
        description="accuracy and loss with each neuron of every pruned layer zeroed (Alg. 2)",
        tables={
            "zeroing": ZEROING_COLUMNS,
            "zeroing_output": ZEROING_COLUMNS,
            "bn_constants": ["level", "network_sparsity", "stage", "layer", "neuron", "constant"],
        },
        compute=zeroing_tables,
        settings=ZeroingSettings,
        depends_on=lambda cfg: {
            "test_subset": cfg.analysis.zeroing.test_subset,
            "mode": cfg.analysis.zeroing.mode,
            "seed": cfg.seed,
        },
        levels=_zeroing_levels,
        runs_network=True,
        finding=_finding,
        sentences=_sentences,
        headlines={
            f"zeroing_{kind}_rho": Headline(
                f"3: ρ sparsity vs zeroing {kind.upper() if kind == 'iqr' else kind}",
                "num",
                lambda s, kind=kind: (
                    ((s.get("zeroing_spread") or {}).get("spreads") or {}).get(kind) or {}
                ).get("rho"),
            )
            for kind in ("std", "iqr")
        },
        figures=(Figure(zeroing_figure.draw, ("zeroing", "zeroing_output")),),
    )
)
