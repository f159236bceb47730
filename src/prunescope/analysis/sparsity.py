"""Stage, layer and neuron sparsity (Alg. 1, Figs. 7–10), from the saved weights.

A neuron is an output channel of a convolution or an output unit of a linear
layer; its fan-in sparsity is the fraction of zeros in its incoming weights (``W[i]``
for a Linear or a convolution, ``W[:, i]`` for an [in, out] layer such as GPT-2's
Conv1D: :mod:`prunescope.models.layers`). Zeros are
counted in the trained weights themselves, as the paper does.
"""

from __future__ import annotations

import pandas as pd
import torch

from prunescope.analysis.context import AnalysisContext
from prunescope.analysis.registry import (
    AnalysisSpec,
    Figure,
    FindingInputs,
    Headline,
    Sentence,
    SentenceInputs,
    register_analysis,
)
from prunescope.analysis.tables import COLUMNS
from prunescope.report import findings as F
from prunescope.report import sentences as S
from prunescope.report.figures import group_sparsity as groups_figure
from prunescope.report.figures import neuron_sparsity as neurons_figure
from prunescope.report.figures import stage_sparsity as stages_figure
from prunescope.report.findings import share


def sparsity_tables(ctx: AnalysisContext, levels: list[int]) -> dict[str, pd.DataFrame]:
    layer_rows, neuron_parts, stage_rows, dead_rows = [], [], [], []
    for level in levels:
        state = ctx.state(level)
        ns = ctx.network_sparsity(level)
        stage_totals: dict[str, list[int]] = {}
        for layer in ctx.layers:
            stage = ctx.stage_of[layer]
            w = state[f"{layer}.weight"]
            rows = ctx.adapters[layer].rows(w) == 0  # [neurons, fan-in]
            zeros_per = rows.sum(1).to(torch.int64)
            fan_in = rows.shape[1]
            zeros, weights = int(zeros_per.sum()), int(w.numel())
            layer_rows.append((level, ns, stage, layer, weights, zeros, zeros / weights))
            neuron_parts.append(
                pd.DataFrame(
                    {
                        "level": level,
                        "network_sparsity": ns,
                        "stage": stage,
                        "layer": layer,
                        "neuron": range(rows.shape[0]),
                        "fan_in": fan_in,
                        "zeros": zeros_per.numpy(),
                        "sparsity": zeros_per.numpy() / fan_in,
                    }
                )
            )
            dead_rows.append(
                (level, ns, stage, layer, rows.shape[0], int((zeros_per == fan_in).sum()))
            )
            tot = stage_totals.setdefault(stage, [0, 0])
            tot[0] += weights
            tot[1] += zeros
        for stage, (weights, zeros) in stage_totals.items():
            stage_rows.append((level, ns, stage, weights, zeros, zeros / weights))
    return {
        "sparsity_layers": pd.DataFrame(layer_rows, columns=COLUMNS["sparsity_layers"]),
        "sparsity_stages": pd.DataFrame(stage_rows, columns=COLUMNS["sparsity_stages"]),
        "neuron_sparsity": (
            pd.concat(neuron_parts, ignore_index=True)
            if neuron_parts
            else pd.DataFrame(columns=COLUMNS["neuron_sparsity"])
        ),
        "dead_neurons": pd.DataFrame(dead_rows, columns=COLUMNS["dead_neurons"]),
        "sparsity_groups": group_sparsity(layer_rows, ctx.groups),
    }


def group_sparsity(layer_rows: list[tuple], groups: dict[str, list[str]]) -> pd.DataFrame:
    """Zeros per declared layer group (attention vs MLP across every block), per level."""
    layers = pd.DataFrame(layer_rows, columns=COLUMNS["sparsity_layers"])
    parts = []
    for group, members in groups.items():
        g = layers[layers["layer"].isin(members)]
        g = g.groupby(["level", "network_sparsity"], as_index=False)[["weights", "zeros"]].sum()
        parts.append(g.assign(group=group))
    if not parts:
        return pd.DataFrame(columns=COLUMNS["sparsity_groups"])
    out = pd.concat(parts, ignore_index=True)
    out["sparsity"] = out["zeros"] / out["weights"]
    return out[COLUMNS["sparsity_groups"]].sort_values(["level", "group"], ignore_index=True)


def _finding(inp: FindingInputs) -> dict:
    out = {}
    if "sparsity_layers" in inp.tables:
        out["later_stages_pruned_more"] = F.stage_order_finding(
            inp.tables["sparsity_layers"], inp.stage_order, inp.exclude, inp.critical["level"]
        )
    groups = inp.tables.get("sparsity_groups")
    if groups is not None and not groups.empty and (groups["level"] > 0).any():
        out["layer_groups"] = F.group_finding(groups)
    if inp.has("dead_neurons") and "neuron_sparsity" in inp.tables:
        out["fully_pruned_neurons"] = F.dead_neuron_finding(
            inp.tables["dead_neurons"], inp.tables["neuron_sparsity"], inp.exclude
        )
    return out


def _sentences(s: SentenceInputs) -> list[Sentence]:
    out = []
    if (st := s.summary.get("later_stages_pruned_more")) is not None:
        out.append(S.stage_order_finding(st, s.summary["critical_sparsity"].get("level")))
    if gf := s.summary.get("layer_groups"):
        out.append(S.group_sentence(gf))
    if (dn := s.summary.get("fully_pruned_neurons")) and dn["per_level"]:
        out.append(S.dead_neuron_finding(dn))
    return out


def _stage(summary: dict) -> dict:
    return summary.get("later_stages_pruned_more") or {}


register_analysis(
    AnalysisSpec(
        name="sparsity",
        description=(
            "zeros per layer, stage and layer group, every neuron's fan-in sparsity, "
            "fully pruned neurons"
        ),
        tables={
            "sparsity_layers": [
                "level",
                "network_sparsity",
                "stage",
                "layer",
                "weights",
                "zeros",
                "sparsity",
            ],
            "sparsity_stages": [
                "level",
                "network_sparsity",
                "stage",
                "weights",
                "zeros",
                "sparsity",
            ],
            "neuron_sparsity": [
                "level",
                "network_sparsity",
                "stage",
                "layer",
                "neuron",
                "fan_in",
                "zeros",
                "sparsity",
            ],
            "dead_neurons": [
                "level",
                "network_sparsity",
                "stage",
                "layer",
                "neurons",
                "fully_pruned",
            ],
            # empty unless the model declares layer groups (model.groups, a transformer's
            # attention and mlp)
            "sparsity_groups": [
                "level",
                "network_sparsity",
                "group",
                "weights",
                "zeros",
                "sparsity",
            ],
        },
        compute=sparsity_tables,
        finding=_finding,
        sentences=_sentences,
        headlines={
            "stage_rho": Headline(
                "1: mean ρ stage vs sparsity", "num", lambda s: _stage(s).get("mean_rho")
            ),
            "stage_rises_share": Headline(
                "1: levels where later stages are pruned more",
                "pct",
                lambda s: share(
                    _stage(s).get("levels_later_stages_pruned_more"),
                    _stage(s).get("levels_considered"),
                ),
            ),
            "fully_pruned_last": Headline(
                "2: fully pruned neurons, last level",
                "int",
                lambda s: (s.get("fully_pruned_neurons") or {}).get("last_level_fully_pruned"),
            ),
        },
        figures=(
            Figure(stages_figure.draw, ("sparsity_layers",)),
            Figure(groups_figure.draw, ("sparsity_groups",)),
            Figure(neurons_figure.draw, ("neuron_sparsity",)),
        ),
    )
)
