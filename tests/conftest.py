"""Shared fixtures. Real CIFAR-10 is found through PRUNESCOPE_SHARED_DATA (set by .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 on 2 cores: one thread per worker and per run it starts. Two threads per
    # process with another process on the other core were measured 200x slower on small
    # forward passes (the threads wait on each other).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_data_dir() -> Path | None:
    value = os.environ.get("PRUNESCOPE_SHARED_DATA")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    base = shared_data_dir()
    if base is None:
        pytest.skip(
            "real CIFAR-10 needs PRUNESCOPE_SHARED_DATA=<path to shared/data> (set by .ci/run)"
        )
    root = base / "cifar10"
    if not (root / "cifar-10-batches-py" / "test_batch").exists():
        pytest.skip(f"real CIFAR-10 not found at {root}")
    return root


@pytest.fixture(scope="session")
def analysed_run(tmp_path_factory) -> Path:
    """A tiny IMP run (digits, resnet8, 4 levels) with every analysis and the report."""
    from imp_helpers import tiny_config
    from prunescope.runner import run

    root = tmp_path_factory.mktemp("analysed") / "run"
    run(root, tiny_config(), analyze=True)
    return root


@pytest.fixture
def damaged_copy(analysed_run, tmp_path):
    """A factory: a fresh copy of the analysed tiny run, to damage or attack."""
    import shutil

    def make() -> Path:
        root = tmp_path / "copy"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(analysed_run, root, symlinks=True)
        return root

    return make


@pytest.fixture(autouse=True)
def fresh_trust():
    """Each test starts with nothing vouched for: what one test's config vouched for
    (prunescope.trust) must not let another test's run directory import code."""
    from prunescope import trust

    token = trust._TRUST.set(None)
    yield
    trust._TRUST.reset(token)
