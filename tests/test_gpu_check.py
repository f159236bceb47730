"""bench/gpu_check.py and bench/gpu.py on a CPU (``--device cpu --quick``): every check's
code runs here, so that a typo in a check shows in CI and not in a rare, short GPU session.
Also the harness itself: an exception becomes one ERROR line with the deepest prunescope
frame, a check over its budget is stopped, and the JSON is rewritten after every check."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STATUSES = {"PASS", "FAIL", "ERROR", "SLOW", "SKIP"}
# what these checks are about needs CUDA: on a CPU they run what they can, then SKIP
CUDA_ONLY = {"nccl_broadcast", "profile_step", "speed_bare_captured", "speed_trainer_compiled"}


def bench(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
    )


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("gpu_check")
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.mark.slow
def test_every_check_runs_on_a_cpu_and_only_the_cuda_ones_skip(tmp_path, gpu_check):
    done = bench("gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {c["name"]: c for c in doc["checks"]}
    assert list(checks) == [name for name, _, _ in gpu_check.CHECKS]
    assert {c["status"] for c in checks.values()} <= STATUSES
    broken = {n: c["detail"] for n, c in checks.items() if c["status"] in ("FAIL", "ERROR")}
    assert not broken
    assert {n for n, c in checks.items() if c["status"] == "SKIP"} == CUDA_ONLY
    assert doc["finished"] and doc["environment"]["torch"] == torch.__version__
    assert all(c["seconds"] >= 0 and isinstance(c["numbers"], dict) for c in checks.values())
    # one line per check, STATUS name: detail, in the JSON's order
    lines = [line for line in done.stdout.splitlines() if line.split(" ")[0] in STATUSES]
    assert [line.split(" ")[1].rstrip(":") for line in lines] == list(checks)


def test_bench_gpu_quick_measures_only_settings_that_prunescope_run_has(tmp_path):
    from prunescope.config import build_config

    out = tmp_path / "gpu.json"
    done = bench("gpu.py", "--device", "cpu", "--quick", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert not doc["errors"]
    assert "bf16 channels_last capture" in doc["training"]
    for variant in doc["training"].values():
        build_config(preset="quickstart", overrides=variant["settings"])  # real --set values
        assert variant["images_per_s"] > 0
        assert {"compiled", "compile_fell_back", "capture", "graph_captured"} <= set(variant)
    projection = doc["projection_paper_resnet20"]
    assert projection["settings"] == doc["training"][projection["at"]]["settings"]


def ctx_for(gpu_check, out: Path):
    return gpu_check.Ctx(torch.device("cpu"), True, out, gpu_check.QUICK, None)


def test_an_exception_is_one_error_line_with_the_deepest_prunescope_frame(tmp_path, gpu_check):
    from prunescope.config import build_config

    def bad_config(ctx, rec):
        rec.numbers["before"] = 1
        build_config(overrides=["train.lr=-1"])
        return "PASS", "unreachable"

    rec = gpu_check.run_check(ctx_for(gpu_check, tmp_path), "bad", bad_config, 30)
    assert rec.status == "ERROR"
    assert "(at prunescope/config/" in rec.detail, rec.detail
    assert rec.error["where"].startswith("prunescope/config/")
    assert rec.numbers == {"before": 1}  # what the check found before it raised is kept


def test_a_check_over_its_budget_is_stopped_and_the_next_one_runs(tmp_path, gpu_check):
    def sleepy(ctx, rec):
        time.sleep(30)
        return "PASS", "too late"

    def fine(ctx, rec):
        # the JSON on disk already holds the check before this one
        names = [c["name"] for c in json.loads((tmp_path / "c.json").read_text())["checks"]]
        return ("PASS", "seen") if names == ["sleepy"] else ("FAIL", str(names))

    ctx = ctx_for(gpu_check, tmp_path)
    doc = {"checks": [], "counts": {}}
    start = time.monotonic()
    checks = [("sleepy", sleepy, 0.5), ("fine", fine, 30)]
    records = gpu_check.run_all(ctx, checks, doc, tmp_path / "c.json", time_limit=60)
    assert time.monotonic() - start < 20
    assert [r.status for r in records] == ["ERROR", "PASS"], [r.line() for r in records]
    assert "over its budget" in records[0].detail
    assert json.loads((tmp_path / "c.json").read_text())["counts"] == {"ERROR": 1, "PASS": 1}


def test_the_cuda_verdicts_judge_their_numbers(tmp_path, gpu_check, monkeypatch):
    """The branches that only a GPU reaches, fed numbers by hand: a typo there would
    otherwise first show in a GPU session."""
    from types import SimpleNamespace as NS

    ctx = gpu_check.Ctx(torch.device("cpu"), False, tmp_path, gpu_check.FULL, 100_000.0, 2e5)
    rec = gpu_check.Record("speed", 30)
    assert gpu_check.judged(ctx, rec, 50_000.0, [])[0] == "SLOW"
    assert gpu_check.judged(ctx, rec, 150_000.0, [])[0] == "PASS"
    assert gpu_check.judged(ctx, rec, 150_000.0, ["no graph captured"])[0] == "FAIL"

    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    def event(name, device, start, end):
        return NS(
            name=name, device_type=device, time_range=NS(start=start, end=end), cpu_parent=None
        )

    prof = NS(
        events=lambda: [
            event("cudaGraphLaunch", cpu, 0, 1),
            event("kernel_a", cuda, 10, 20),
            event("kernel_b", cuda, 15, 30),  # overlaps a: busy 30 of the span 10-50
            event("kernel_c", cuda, 40, 50),
        ]
    )
    stats = gpu_check.kernel_stats(prof, steps=1)
    assert stats["kernels_per_step"] == 3 and stats["launches_per_step"] == 1
    assert stats["gpu_busy_fraction"] == pytest.approx(30 / 40)

    monkeypatch.setattr(gpu_check.Ctx, "cuda", property(lambda self: True))
    profiles = {False: {**stats, "graph_captured": False}, True: {**stats, "graph_captured": True}}
    monkeypatch.setattr(gpu_check, "profiled_epoch", lambda ctx, capture: profiles[capture])
    status, detail = gpu_check.check_profile_step(ctx, gpu_check.Record("profile_step", 30))
    assert status == "PASS" and "GPU busy 75% vs 75%" in detail, detail
    profiles[True] = {**stats, "launches_per_step": 300, "graph_captured": False}
    status, detail = gpu_check.check_profile_step(ctx, gpu_check.Record("profile_step", 30))
    assert status == "FAIL" and "no CUDA graph" in detail, detail


@pytest.mark.slow
def test_shared_gpu_bench_runs_its_code_path_on_a_cpu(tmp_path):
    """bench/shared_gpu.py (K runs sharing one device vs one alone), tiny, on the CPU."""
    out = tmp_path / "shared.json"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            str(root / "bench/shared_gpu.py"),
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(out),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["jobs"] == 2 and len(summary["aggregate_over_alone"]) == 1
    assert summary["rounds"][0]["together"]["images"] == 2 * summary["rounds"][0]["alone"]["images"]
