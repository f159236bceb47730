"""Small, fast IMP configs shared by the tests."""

from __future__ import annotations

import sys
from pathlib import Path

from prunescope.config import build_config

TINY = [
    "data.train_subset=256",
    "data.test_subset=120",
    "imp.levels=3",
    "imp.rate=0.2",
    "imp.pretrain_epochs=1",
    "imp.train_epochs=2",
    "train.batch_size=64",
]


def tiny_config(*extra: str):
    return build_config(preset="quickstart", overrides=[*TINY, *extra])


def tiny_cli_args(*extra: str) -> list[str]:
    args = ["--preset", "quickstart"]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    return args


def run_command(run_dir: Path, *extra: str, analyze: bool = True) -> list[str]:
    """``prunescope run`` on the tiny config, as a subprocess command line."""
    args = [
        sys.executable,
        "-m",
        "prunescope",
        "run",
        "--run-dir",
        str(run_dir),
        *tiny_cli_args(*extra),
    ]
    return args if analyze else [*args, "--no-analyze"]
