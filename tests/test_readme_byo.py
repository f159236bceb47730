"""The README's "Bring your own model" example, copied from the README as it is written:
a Hugging Face GPT-2 and a PyTorch Geometric GCN through ``layers`` and ``run``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunescope.cli import main

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"
TINY = [
    "imp.levels=1",
    "imp.pretrain_epochs=1",
    "imp.train_epochs=1",
    "threads=1",
]
TINY_TEXT = [
    "data.train_subset=256",
    "data.test_subset=64",
    "analysis.zeroing.test_subset=4",
    "analysis.similarity.test_subset=32",
    "analysis.connectivity.test_subset=32",
    "analysis.connectivity.bn_images=32",
]


def readme_files() -> dict[str, str]:
    """Every fenced block whose first line is ``# <file name>``, by that name."""
    blocks = re.findall(r"```(?:python|toml)\n# (\S+)[^\n]*\n(.*?)```", GUIDE.read_text(), re.S)
    return {name: body for name, body in blocks}


@pytest.fixture
def byo_folder(tmp_path, monkeypatch):
    files = readme_files()
    assert {"mymodels.py", "gpt2.toml", "gcn.toml"} <= set(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))  # as PYTHONPATH=. does
    return tmp_path


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.mark.slow
def test_the_readme_models_run_as_written(byo_folder, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("torch_geometric")
    for name in ("gpt2", "gcn"):
        assert main(["layers", "--config", str(byo_folder / f"{name}.toml")]) == 0
    out = capsys.readouterr().out
    assert "transformer.h.0.attn.c_attn" in out and "conv1.lin" in out
    gcn = ["run", "--config", str(byo_folder / "gcn.toml"), "--run-dir", str(byo_folder / "g")]
    assert main(gcn + _sets(TINY)) == 0
    gpt2 = ["run", "--config", str(byo_folder / "gpt2.toml"), "--run-dir", str(byo_folder / "t")]
    assert main(gpt2 + _sets(TINY + TINY_TEXT)) == 0
    assert (byo_folder / "t/report/index.html").exists()
