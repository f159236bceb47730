"""Activation similarity between two networks (Alg. 3, Figs. 13–14), streamed.

Activations of a prunable layer are the module's output reshaped to
``[samples·H·W, channels]`` (a Linear's ``[samples·tokens, features]``). Everything the three metrics need is a sum over
rows, accumulated in float64 one batch at a time, so memory does not depend on
the number of test images:

* per-channel sums ``s_A``, ``s_B`` and the row count ``n``;
* Gram matrices ``AᵀA``, ``BᵀB`` and the cross matrix ``AᵀB`` (``C×C``).

``cosine`` (the original code's): ⟨A, B⟩ / (‖A‖‖B‖) over the flattened matrices,
which is tr(AᵀB) / √(tr(AᵀA) tr(BᵀB)). ``cosine_per_neuron``: the mean over
channels of each channel's cosine, from the diagonals (channels whose
activations are all zero in either network have no cosine and are left out).
``cka``: linear CKA (Kornblith et al. 2019) of the column-centred matrices,
‖A_cᵀB_c‖²_F / (‖A_cᵀA_c‖_F ‖B_cᵀB_c‖_F), with A_cᵀB_c = AᵀB − n·μ_A μ_Bᵀ.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from prunescope.analysis.registry import (
    AnalysisSpec,
    Figure,
    FindingInputs,
    Headline,
    Sentence,
    SentenceInputs,
    pruned_levels,
    register_analysis,
)
from prunescope.config.schema import Section
from prunescope.report import findings as F
from prunescope.report import sentences as S
from prunescope.report.figures import similarity as similarity_figure
from prunescope.report.findings import share
from prunescope.training.precision import autocast

METRICS = ("cosine", "cosine_per_neuron", "cka")


class SimilaritySettings(Section):
    test_subset: int | None = Field(
        None, gt=0, description="test examples whose activations are compared (default: all)"
    )
    batch_size: int = Field(
        250, gt=0, description="examples per forward pass (memory, not the numbers)"
    )
    metrics: list[Literal["cosine", "cosine_per_neuron", "cka"]] = Field(
        default_factory=lambda: ["cosine", "cosine_per_neuron", "cka"],
        description="cosine (flattened activations), cosine_per_neuron (mean over channels), cka (linear CKA)",
    )


def as_rows(act: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """Activations as ``[rows, channels]``: a convolution's [N, C, H, W] → [N·H·W, C]
    (``channel_dim`` 1), a Linear's [N, tokens, F] → [N·tokens, F] (``channel_dim`` -1);
    [N, C] stays (docs/guide.md, "The analyses")."""
    if act.dim() < 2:
        raise ValueError(f"cannot compare activations of shape {tuple(act.shape)}")
    if act.dim() == 2:
        return act
    return act.movedim(channel_dim, -1).reshape(-1, act.shape[channel_dim])


class SelfStats:
    """Row count, column sums and Gram matrix of one network's activations at one layer."""

    def __init__(self, channels: int, device: torch.device):
        self.n = 0
        self.sum = torch.zeros(channels, dtype=torch.float64, device=device)
        self.gram = torch.zeros(channels, channels, dtype=torch.float64, device=device)

    def update(self, rows: torch.Tensor) -> None:
        r = rows.double()
        self.n += r.shape[0]
        self.sum += r.sum(0)
        self.gram += r.T @ r

    def centred_gram(self) -> torch.Tensor:
        mu = self.sum / self.n
        return self.gram - self.n * torch.outer(mu, mu)


class CrossStats:
    def __init__(self, channels_a: int, channels_b: int, device: torch.device):
        self.cross = torch.zeros(channels_a, channels_b, dtype=torch.float64, device=device)

    def update(self, rows_a: torch.Tensor, rows_b: torch.Tensor) -> None:
        self.cross += rows_a.double().T @ rows_b.double()


def similarity_metrics(a: SelfStats, b: SelfStats, ab: CrossStats) -> dict[str, float]:
    if a.n != b.n:
        raise ValueError(f"row counts differ: {a.n} vs {b.n}")
    cosine = per_neuron = float("nan")
    if a.gram.shape == b.gram.shape:  # cosines need the same channels; CKA does not
        diag_ab = torch.diagonal(ab.cross)
        diag_a, diag_b = torch.diagonal(a.gram), torch.diagonal(b.gram)
        norm = math.sqrt(float(diag_a.sum()) * float(diag_b.sum()))
        cosine = float(diag_ab.sum()) / norm if norm > 0 else float("nan")
        denom = torch.sqrt(diag_a * diag_b)
        ok = denom > 0
        per_neuron = float((diag_ab[ok] / denom[ok]).mean()) if bool(ok.any()) else float("nan")
    mu_a, mu_b = a.sum / a.n, b.sum / b.n
    cross_c = ab.cross - a.n * torch.outer(mu_a, mu_b)
    ka, kb = a.centred_gram(), b.centred_gram()
    denom_cka = float(torch.linalg.matrix_norm(ka) * torch.linalg.matrix_norm(kb))
    cka = float((cross_c**2).sum()) / denom_cka if denom_cka > 0 else float("nan")
    return {"cosine": cosine, "cosine_per_neuron": per_neuron, "cka": cka}


def materialised_metrics(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """The same metrics from whole activation matrices: the reference for the streamed ones."""
    a, b = a.double(), b.double()
    cosine = float((a * b).sum() / (a.norm() * b.norm()))
    na, nb = a.norm(dim=0), b.norm(dim=0)
    ok = (na > 0) & (nb > 0)
    per_neuron = float(((a * b).sum(0)[ok] / (na[ok] * nb[ok])).mean())
    ac, bc = a - a.mean(0), b - b.mean(0)
    cka = float(
        torch.linalg.matrix_norm(bc.T @ ac) ** 2
        / (torch.linalg.matrix_norm(ac.T @ ac) * torch.linalg.matrix_norm(bc.T @ bc))
    )
    return {"cosine": cosine, "cosine_per_neuron": per_neuron, "cka": cka}


def capture(
    model: torch.nn.Module, layers: list[str], x: torch.Tensor, precision: str = "fp32"
) -> dict[str, torch.Tensor]:
    """The output of each named module for one batch (the forward pass in ``precision``)."""
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}
    handles = [
        modules[name].register_forward_hook(
            # a copy: an in-place operation after the layer (ReLU(inplace=True)) would
            # overwrite its output (measured: the post-ReLU values were compared)
            lambda _m, _i, o, name=name: out.__setitem__(name, o.detach().clone())
        )
        for name in layers
    ]
    try:
        with torch.no_grad(), autocast(x.device, precision):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return out


def similarity_table(ctx, levels: list[int]):  # ctx: AnalysisContext
    """Rows of ``analysis/similarity.csv``: each level against the baseline and the previous level."""
    import pandas as pd
    from tqdm import tqdm

    from prunescope.analysis.tables import COLUMNS

    s = ctx.cfg.analysis.similarity
    wanted = [m for m in METRICS if m in s.metrics]
    batches = ctx.batches(s.test_subset, s.batch_size)
    cache = ctx.__dict__.setdefault(
        "_similarity_self", {}
    )  # level -> {layer: SelfStats}, reused across calls
    rows = []
    for level in levels:
        if level == 0:
            continue  # the baseline against itself is 1 by definition
        refs = sorted({0, level - 1})
        needed = [lv for lv in [level, *refs] if lv not in cache]
        models = {lv: ctx.level(lv)[0] for lv in [level, *refs]}
        fresh: dict[int, dict[str, SelfStats]] = {lv: {} for lv in needed}
        cross: dict[int, dict[str, CrossStats]] = {r: {} for r in refs}
        for x, _ in tqdm(
            batches, desc=f"similarity level {level}", leave=False, disable=None, unit="batch"
        ):
            acts = {
                lv: capture(m, ctx.prunable_layers, x, ctx.precision) for lv, m in models.items()
            }
            for layer in ctx.prunable_layers:
                dim = ctx.adapters[layer].output_axis
                rows_of = {lv: as_rows(acts[lv][layer], dim) for lv in acts}
                for lv in needed:
                    st = fresh[lv].setdefault(layer, SelfStats(rows_of[lv].shape[1], x.device))
                    st.update(rows_of[lv])
                for r in refs:
                    cs = cross[r].setdefault(
                        layer, CrossStats(rows_of[level].shape[1], rows_of[r].shape[1], x.device)
                    )
                    cs.update(rows_of[level], rows_of[r])
        cache.update(fresh)
        ns = ctx.network_sparsity(level)
        for reference, ref_level in (("baseline", 0), ("previous", level - 1)):
            for layer in ctx.prunable_layers:
                values = similarity_metrics(
                    cache[level][layer], cache[ref_level][layer], cross[ref_level][layer]
                )
                for metric in wanted:
                    rows.append(
                        (
                            level,
                            ns,
                            reference,
                            ref_level,
                            ctx.stage_of[layer],
                            layer,
                            metric,
                            values[metric],
                        )
                    )
        for lv in list(cache):  # keep the baseline and this level (the next one's previous)
            if lv not in (0, level):
                del cache[lv]
    return pd.DataFrame(rows, columns=COLUMNS["similarity"])


def _finding(inp: FindingInputs) -> dict:
    if "similarity" not in inp.tables:
        return {}
    sim = inp.tables["similarity"]
    return {
        "similarity_to_baseline": {
            m: F.similarity_finding(sim, inp.stage_order, m, inp.critical["level"])
            for m in sorted(sim["metric"].unique())
        }
    }


def _sentences(s: SentenceInputs) -> list[Sentence]:
    out = []
    for metric in ("cosine", "cka"):
        sm = (s.summary.get("similarity_to_baseline") or {}).get(metric)
        if sm and sm["levels_considered"]:
            out.append(S.similarity_finding(metric, sm, s.batchnorm))
    return out


def _cka(summary: dict) -> dict:
    return (summary.get("similarity_to_baseline") or {}).get("cka") or {}


register_analysis(
    AnalysisSpec(
        name="similarity",
        description="cosine, per-neuron cosine and linear CKA of every pruned layer's output "
        "to the baseline and the previous level (Alg. 3)",
        tables={
            "similarity": [
                "level",
                "network_sparsity",
                "reference",
                "reference_level",
                "stage",
                "layer",
                "metric",
                "value",
            ]
        },
        compute=lambda ctx, levels: {"similarity": similarity_table(ctx, levels)},
        settings=SimilaritySettings,
        depends_on=lambda cfg: {
            "test_subset": cfg.analysis.similarity.test_subset,
            "metrics": list(cfg.analysis.similarity.metrics),
            "seed": cfg.seed,
        },
        levels=pruned_levels,
        runs_network=True,
        finding=_finding,
        sentences=_sentences,
        headlines={
            "cka_rho": Headline("4: mean ρ stage vs CKA", "num", lambda s: _cka(s).get("mean_rho")),
            "cka_falls_share": Headline(
                "4: levels where later stages are less similar",
                "pct",
                lambda s: share(
                    _cka(s).get("levels_later_stages_less_similar"),
                    _cka(s).get("levels_considered"),
                ),
            ),
        },
        figures=(Figure(similarity_figure.draw, ("similarity",)),),
    )
)
