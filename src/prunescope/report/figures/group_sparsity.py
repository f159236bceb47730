"""Each declared layer group's sparsity (a transformer's attention projections vs its MLP
layers, across every block) against network sparsity, with the unit diagonal; in a report
on several runs, one panel per group with a line per run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prunescope.report.figures.common import FigureFile, FigureInputs, compared_with
from prunescope.report.figures.stage_sparsity import Lines, sparsity_lines


def group_lines(groups: pd.DataFrame) -> Lines:
    return {
        name: groups[groups["group"] == name].sort_values("level")
        for name in dict.fromkeys(groups["group"])
    }


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    runs = [
        (r.label, group_lines(r.tables["sparsity_groups"]))
        for r in compared_with(inp, "sparsity_groups")
    ]
    if not runs:  # figure inputs built by hand, without the runs
        runs = [("", group_lines(inp.tables["sparsity_groups"]))]
    caption = (
        "Sparsity of each layer group (all its layers, across every stage) against network "
        "sparsity; above the diagonal a group is pruned more than the network as a whole."
    )
    return [
        sparsity_lines(inp, runs, out, name="group_sparsity", what="layer group", caption=caption)
    ]
