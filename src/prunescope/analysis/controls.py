"""The lottery controls beside the run (a report part): ``prunescope branch`` trains them
(:mod:`prunescope.branch`); the report states each one's accuracy gap to IMP and draws
them with the run."""

from __future__ import annotations

from prunescope.analysis.registry import (
    Figure,
    FindingInputs,
    ReportPart,
    Sentence,
    SentenceInputs,
    register_part,
)
from prunescope.report import findings as F
from prunescope.report import sentences as S
from prunescope.report.figures import controls as controls_figure


def _finding(inp: FindingInputs) -> dict:
    if not inp.controls:
        return {}
    found = F.controls_finding(inp.tables["accuracy"], inp.controls, inp.stage_order, inp.exclude)
    return {"controls": found}


def _sentences(s: SentenceInputs) -> list[Sentence]:
    return [S.controls_finding(s.summary["controls"])] if s.summary.get("controls") else []


register_part(
    ReportPart(
        name="controls",
        finding=_finding,
        sentences=_sentences,
        figures=(Figure(controls_figure.draw, ("accuracy",)),),  # nothing without branches
    )
)
