"""docs/extending.md's plugin, copied from the page as it is written: registered from a
user's module, it runs through analyze and report with its own table and figure, its
numbers equal to a count made here from the run's files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import tomllib
from safetensors import safe_open

from prunescope.cli import main

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    code = re.search(r"```python\n# signflip.py\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "signflip.py").write_text(code)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _by_hand(run: Path, level: int, layers: dict[str, str]) -> dict[str, float]:
    """Per stage: surviving weights (nonzero now and at the rewind point) whose sign flipped."""
    flipped: dict[str, list[int]] = {}
    with (
        safe_open(run / "rewind.safetensors", "pt") as r0,
        safe_open(run / f"levels/{level:02d}/model.safetensors", "pt") as r1,
    ):
        for layer, stage in layers.items():
            w0, w = r0.get_tensor(f"{layer}.weight"), r1.get_tensor(f"{layer}.weight")
            alive = (w != 0) & (w0 != 0)
            counts = flipped.setdefault(stage, [0, 0])
            counts[0] += int(((w.sign() != w0.sign()) & alive).sum())
            counts[1] += int(alive.sum())
    return {stage: f / n for stage, (f, n) in flipped.items()}


def test_the_guides_plugin_runs_through_analyze_and_report(plugin, damaged_copy, analysed_run):
    run = damaged_copy()
    assert main(["analyze", str(run), "--set", 'analysis.plugins=["signflip"]']) == 0
    table = pd.read_csv(run / "analysis/signflip.csv")
    # the run's stage of each layer (its pinned sparsity table), and what IMP prunes
    layers = pd.read_csv(run / "analysis/sparsity_layers.csv")[["layer", "stage"]]
    excluded = set(tomllib.loads((run / "config.toml").read_text())["imp"]["exclude"])
    pruned = {
        r.layer: r.stage for r in layers.drop_duplicates().itertuples() if r.layer not in excluded
    }
    want = _by_hand(run, 2, pruned)
    got = table[table["level"] == 2].set_index("stage")["fraction"].to_dict()
    assert got == pytest.approx(want, abs=1e-12)
    summary = json.loads((run / "report/summary.json").read_text())
    assert summary["findings"]["signflip"]["level"] == int(table["level"].max())
    assert (run / "report/figures/signflip.png").exists()
    assert "Sign flips since the rewind point" in (run / "report/index.html").read_text()
    # a report of the run later needs the plugin vouched for; another run never has it
    assert main(["report", str(run), "--trust-code"]) == 0
    assert not (analysed_run / "analysis/signflip.csv").exists()
