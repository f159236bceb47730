"""The ``export`` analysis: what the structured export of every level removes and costs.

One row per pruned layer and level (``analysis/export.csv``): its neurons, how many the
export removes and how many empty ones it must keep (see :mod:`prunescope.export` for
why), the parameters (the layer's weights and bias and the BatchNorm after it) and FLOPs
(its multiply-adds × 2 for one image) before and after, and the largest absolute output
difference between the exported and the masked network on the run's test images.
Summing the rows gives the pruned layers' totals.
"""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from prunescope.analysis.registry import AnalysisSpec, Figure, register_analysis
from prunescope.config.schema import Section
from prunescope.report import findings as F
from prunescope.report import sentences as S
from prunescope.report.figures import export as export_figure

COLUMNS = [
    "level",
    "network_sparsity",
    "stage",
    "layer",
    "neurons",
    "removed",
    "kept_constant",
    "params_before",
    "params_after",
    "flops_before",
    "flops_after",
    "max_abs_diff",
]


class ExportSettings(Section):
    test_subset: int | None = Field(
        None, gt=0, description="test images the export's outputs are compared on"
    )


def export_table(ctx, levels: list[int]) -> pd.DataFrame:  # ctx: AnalysisContext
    from prunescope.export import export_model

    batches = ctx.batches(ctx.cfg.analysis.export.test_subset, 250)
    rows = []
    for level in levels:
        model, _ = ctx.level(level)
        res = export_model(model, ctx.prunable_layers, batches)
        for layer in ctx.prunable_layers:
            plan = res.plans[layer]
            rows.append(
                (
                    level,
                    ctx.network_sparsity(level),
                    ctx.stage_of[layer],
                    layer,
                    plan.neurons,
                    len(plan.removed),
                    len(plan.kept),
                    res.params_before[layer],
                    res.params_after[layer],
                    res.flops_before[layer],
                    res.flops_after[layer],
                    res.max_abs_diff,
                )
            )
    return pd.DataFrame(rows, columns=COLUMNS)


register_analysis(
    AnalysisSpec(
        name="export",
        description="neurons the structured export removes, parameters and FLOPs before and "
        "after, and its largest output difference from the masked network",
        tables={"export": COLUMNS},
        compute=lambda ctx, levels: {"export": export_table(ctx, levels)},
        settings=ExportSettings,
        depends_on=lambda cfg: {"test_subset": cfg.analysis.export.test_subset, "seed": cfg.seed},
        finding=lambda inp: (
            {"export": F.export_finding(inp.tables["export"])} if inp.has("export") else {}
        ),
        sentences=lambda s: (
            [S.export_sentence(s.summary["export"])] if s.summary.get("export") else []
        ),
        figures=(Figure(export_figure.draw, ("export",)),),
    )
)
