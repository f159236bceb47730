"""The Python API: ``dir(prunescope)``, the configs ``run`` takes, and docs/guide.md's
"Python API" example, copied from the guide as it is written and run on a tiny quickstart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomli_w

import prunescope
from imp_helpers import TINY, tiny_config
from prunescope.api import config_of
from prunescope.config import load
from prunescope.errors import ConfigError, RunDirError, UserInputError
from prunescope.trust import current, scope

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"
MARKER = "<!-- test: python-api -->"
PUBLIC = [
    "__version__",
    "analyze",
    "build_model",
    "load_exported",
    "load_level",
    "load_test_set",
    "run",
    "tables",
]


def guide_example() -> str:
    """The fenced block right after the marker, as it is written."""
    found = re.findall(re.escape(MARKER) + r"\n```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(found) == 1, f"docs/guide.md needs exactly one block after {MARKER}"
    return found[0]


def test_dir_lists_exactly_the_public_names():
    assert dir(prunescope) == PUBLIC
    assert sorted(prunescope.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(prunescope, name) is not None
    with pytest.raises(AttributeError):
        prunescope.Any  # noqa: B018


def test_every_kind_of_config_gives_the_same_config(tmp_path):
    want = tiny_config()
    as_dict = want.model_dump(mode="json", exclude_none=True)
    toml = tmp_path / "c.toml"
    toml.write_text(tomli_w.dumps(as_dict))
    assert config_of(want) == want
    assert config_of(as_dict) == want
    assert config_of(toml) == config_of(str(toml)) == want
    assert config_of("quickstart") == load.build_config(preset="quickstart")


def test_a_bad_config_is_one_error():
    with pytest.raises(UserInputError, match="neither a preset"):
        config_of("quickstrat")
    with pytest.raises(ConfigError, match=r"imp\.rate"):
        config_of({"imp": {"rate": 2}})


def test_the_callers_config_vouches_for_its_code():
    with scope():
        user = {"model": {"name": "mypkg.models:make"}, "imp": {"exclude": ["fc"]}}
        config_of(user)  # exclude given: resolving it builds no model
        assert current().vouches_for("mypkg.models:make")
    assert not current().vouches_for("mypkg.models:make")  # a call's trust ends with it


@pytest.fixture
def tiny_quickstart(monkeypatch):
    """The quickstart preset made tiny (as the guide's example runs it in a test), with a
    test set that holds the example's 200 images."""
    real = load.preset_text

    def tiny(name: str) -> str:
        if name != "quickstart":
            return real(name)
        data = load.parse_toml(real(name), "quickstart")
        for item in [*TINY, "data.test_subset=250", "threads=1"]:
            data = load.apply_overrides(data, [item])
        return tomli_w.dumps(data)

    monkeypatch.setattr(load, "preset_text", tiny)


@pytest.mark.slow
def test_the_guides_example_runs_as_written(tmp_path, monkeypatch, capsys, tiny_quickstart):
    monkeypatch.chdir(tmp_path)
    exec(compile(guide_example(), str(GUIDE), "exec"), {})
    out = capsys.readouterr().out
    assert "network_sparsity" in out and "level 3: accuracy" in out
    run = tmp_path / "runs" / "quickstart"
    assert (run / "report" / "index.html").exists()

    tables = prunescope.tables(run)
    files = json.loads((run / "manifest.json").read_text())["files"]
    recorded = {
        rel[len("analysis/") : -len(".csv")]
        for rel in files
        if rel.startswith("analysis/") and rel.endswith(".csv")
    }
    assert set(tables) == recorded and {"accuracy", "zeroing", "sparsity_layers"} <= recorded
    assert list(tables["accuracy"]["level"]) == [0, 1, 2, 3]

    (run / "analysis" / "accuracy.csv").write_text("level\n0\n")  # damaged: refused, not read
    with pytest.raises(RunDirError, match=r"accuracy\.csv"):
        prunescope.tables(run)
