"""Accuracy and loss per level (Fig. 4), from each level's ``metrics.json``."""

from __future__ import annotations

import pandas as pd

from prunescope.analysis.registry import (
    Figure,
    Headline,
    ReportPart,
    Sentence,
    SentenceInputs,
    register_part,
)
from prunescope.analysis.tables import COLUMNS, register_table, write_table
from prunescope.report import sentences as S
from prunescope.report.figures import accuracy as accuracy_figure
from prunescope.rundir.layout import RunDir
from prunescope.rundir.level_files import read_metrics

# Written by `run` after every level (not an analysis: it needs no computation).
register_table("accuracy", ["level", "network_sparsity", "test_accuracy", "test_loss"])


def accuracy_table(rd: RunDir) -> pd.DataFrame:
    rows = []
    for level in rd.completed_levels():
        m = read_metrics(rd, level)
        rows.append({c: m[c] for c in COLUMNS["accuracy"]})
    return pd.DataFrame(rows, columns=COLUMNS["accuracy"])


def write_accuracy(rd: RunDir) -> pd.DataFrame:
    df = accuracy_table(rd)
    write_table(rd, "accuracy", df)
    return df


def _critical_sentences(s: SentenceInputs) -> list[Sentence]:
    return [S.critical_finding(s.summary["critical_sparsity"], s.pruned_levels)]


# The accuracy curve and the critical sparsity every other finding is measured up to: a
# report part, computed from accuracy.csv by the report itself (FindingInputs.critical).
register_part(
    ReportPart(
        name="accuracy",
        finding=lambda inp: {"critical_sparsity": inp.critical},
        sentences=_critical_sentences,
        headlines={
            "critical_sparsity": Headline(
                "critical sparsity",
                "pct",
                lambda s: (s.get("critical_sparsity") or {}).get("network_sparsity"),
            )
        },
        figures=(Figure(accuracy_figure.draw, ("accuracy",)),),
    )
)
