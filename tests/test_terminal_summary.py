"""A finished run's last words (report/terminal.py), from tables built by hand."""

from __future__ import annotations

import pandas as pd

from prunescope.report.terminal import summary_lines

ACCURACY = pd.DataFrame(
    {
        "level": [0, 1, 2, 3],
        "network_sparsity": [0.0, 0.2, 0.36, 0.488],
        "test_accuracy": [0.90, 0.91, 0.89, 0.85],
        "test_loss": [0.3, 0.3, 0.35, 0.5],
    }
)


def crit(level=None, sparsity=None) -> dict:
    return {"margin": 0.02, "level": level, "network_sparsity": sparsity}


def test_the_summary_names_accuracy_critical_sparsity_and_the_findings_that_ran():
    summary = {
        "findings": {
            "critical_sparsity": crit(3, 0.488),
            "fully_pruned_neurons": {"last_level_fully_pruned": 4},
        }
    }
    lines = summary_lines(summary, ACCURACY)
    assert lines[0] == (
        "test accuracy 90.00% dense (level 0), 85.00% at 48.8% sparsity (level 3); "
        "best pruned level 1: 91.00% at 20.0%"
    )
    assert lines[1] == (
        "critical sparsity: 48.8% (level 3, the first more than 2 points below dense)"
    )
    # only the finding that ran; none of the analyses absent from the summary
    assert lines[2:] == ["2: fully pruned neurons, last level  4"]


def test_a_critical_sparsity_never_reached_is_said():
    lines = summary_lines({"findings": {"critical_sparsity": crit()}}, ACCURACY.iloc[:2])
    assert lines == [
        "test accuracy 90.00% dense (level 0), 91.00% at 20.0% sparsity (level 1)",
        "critical sparsity: not reached (no pruned level fell more than 2 points below dense)",
    ]


def test_only_prunescope_speaks_at_info(monkeypatch):
    """Other libraries' INFO lines stay out of the terminal (fontTools logged one per font
    table for every PDF figure of a report)."""
    import logging

    from prunescope.cli import setup_logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig configures an unconfigured root
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(logging.getLogger("prunescope"), "level", logging.NOTSET)
    setup_logging()
    assert logging.getLogger("prunescope.report").isEnabledFor(logging.INFO)
    assert not logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
    assert logging.getLogger("fontTools.subset").isEnabledFor(logging.WARNING)
