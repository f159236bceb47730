"""Each declared layer group's sparsity (a transformer's attention projections vs its MLP
layers, across every block) against network sparsity, with the unit diagonal."""

from __future__ import annotations

from pathlib import Path

from prunescope.report.figures.common import FigureFile, FigureInputs
from prunescope.report.figures.stage_sparsity import sparsity_lines


def draw(inp: FigureInputs, out: Path) -> list[FigureFile]:
    groups = inp.tables["sparsity_groups"]
    lines = {
        name: groups[groups["group"] == name].sort_values("level")
        for name in dict.fromkeys(groups["group"])
    }
    caption = (
        "Sparsity of each layer group (all its layers, across every stage) against network "
        "sparsity; above the diagonal a group is pruned more than the network as a whole."
    )
    return [
        sparsity_lines(inp, lines, out, name="group_sparsity", what="layer group", caption=caption)
    ]
