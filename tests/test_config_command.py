"""``prunescope config``: every key with its description, default and allowed values; the
annotated TOML reads back as the same config; docs/config.md is the generated reference."""

from __future__ import annotations

from pathlib import Path

import tomllib

from prunescope.cli import main
from prunescope.config import build_config, config_from_toml_text
from prunescope.config.describe import keys, markdown_reference
from prunescope.config.load import flatten

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_config_prints_every_key_with_its_description(capsys):
    assert main(["config", "--preset", "quickstart", "--set", "imp.levels=3"]) == 0
    out = capsys.readouterr().out
    cfg = build_config(preset="quickstart", overrides=["imp.levels=3"])
    every = flatten(cfg.model_dump(mode="json"))
    lines = out.splitlines()
    for key in every:
        leaf = key.rpartition(".")[2]
        at = next(
            i
            for i, line in enumerate(lines)
            if line.startswith((f"{leaf} = ", f"# {leaf}: not set"))
        )
        assert lines[at - 1].startswith("# ") and "default" in lines[at - 1], key
    assert all(k.description for k in keys(cfg))
    # the annotated TOML is a config file: it reads back as the same config
    assert config_from_toml_text(out, "printed") == cfg
    assert tomllib.loads(out)["imp"]["levels"] == 3


def test_the_key_reference_in_docs_is_current():
    assert DOCS.read_text() == markdown_reference(build_config()), (
        "regenerate it: prunescope config --markdown > docs/config.md"
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_dry_run_checks_and_says_what_it_would_do_and_writes_nothing(
    tmp_path, capsys, damaged_copy
):
    new = tmp_path / "new"
    assert main(["run", "--preset", "quickstart", "--run-dir", str(new), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not new.exists()
    assert "9 levels (0-8)" in out and "40.0%, 64.0%, 78.4%" in out  # 1 - 0.6^k
    assert "1 pretraining + 9 x 10 level epochs = 91 epochs" in out
    run = damaged_copy()
    before = _snapshot(run)
    assert main(["run", "--run-dir", str(run), "--dry-run"]) == 0
    assert "would resume" in capsys.readouterr().out
    assert _snapshot(run) == before  # not even the lock or a session record
    assert (
        main(
            [
                "run",
                "--preset",
                "quickstart",
                "--run-dir",
                str(new),
                "--dry-run",
                "--set",
                "imp.rate=2",
            ]
        )
        == 2
    )
    assert not new.exists()
