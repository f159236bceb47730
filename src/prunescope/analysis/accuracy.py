"""Accuracy and loss per level (Fig. 4), from each level's ``metrics.json``."""

from __future__ import annotations

import pandas as pd

from prunescope.analysis.tables import COLUMNS, register_table, write_table
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
