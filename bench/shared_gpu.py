"""Several runs on one GPU: K independent training processes sharing the device, against
the same K trained one at a time (issue #22, "several runs on one GPU").

The replicates and lottery controls of a study are independent runs of one small network
(ResNet20: 0.27M parameters). One of them leaves an H100 mostly idle (its step is
launch-bound), so K of them at once should finish in much less than K times as long.
prunescope runs them so with ``prunescope sweep SWEEP.toml --jobs K`` (K processes, one
run each; CUDA MPS, ``nvidia-cuda-mps-control -d``, lets their kernels overlap). This
measures what that buys: every process trains the real ``Trainer`` on CIFAR-10-sized
synthetic data for ``--steps`` steps, and the aggregate images/s of K at once is compared
with one alone, in the same session, alternating (alone, together, alone, together) so
that drift hits both.

    python bench/shared_gpu.py --jobs 4 --out shared.json        # on a CUDA machine
    python bench/shared_gpu.py --device cpu --quick              # the code path, tiny

On a CPU the ratio means nothing (the processes share the same cores); the quick mode
only proves the script. Nothing here has run on a GPU yet (BENCHMARKS.md, "GPU").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKER = """
import json, sys, time, torch
sys.path.insert(0, {bench!r})
from gpu import synthetic_data
from prunescope.config import build_config
from prunescope.models.build import new_model
from prunescope.training.trainer import Trainer
cfg = build_config(preset="paper-resnet20-cifar10", overrides={overrides!r})
data = synthetic_data({images}, 64)
model = new_model(cfg, data.model_inputs())
device = torch.device({device!r})
trainer = Trainer(model, cfg, data, device, total_epochs=2)
optimizer = trainer.new_optimizer()
trainer.fit(0, 1, optimizer)  # warm up: cuDNN autotuning, graph capture
if device.type == "cuda":
    torch.cuda.synchronize()
start = time.perf_counter()
trainer.fit(1, 2, optimizer)
if device.type == "cuda":
    torch.cuda.synchronize()
print(json.dumps({{"images": {images}, "seconds": time.perf_counter() - start}}))
"""


def worker_code(args: argparse.Namespace) -> str:
    overrides = [
        f"device={args.device}",
        f"train.batch_size={args.batch_size}",
        "train.precision=auto",
        "threads=1",
    ]
    return WORKER.format(
        bench=str(Path(__file__).resolve().parent),
        overrides=overrides,
        images=args.batch_size * args.steps,
        device=args.device,
    )


def run_processes(code: str, jobs: int) -> dict:
    """``jobs`` workers at once: their own images/s, and the aggregate over the wall time."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, ["src", os.environ.get("PYTHONPATH")])),
    }
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(jobs)
    ]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a worker failed (exit codes {[p.returncode for p in procs]})")
    results = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    images = sum(r["images"] for r in results)
    timed = max(r["seconds"] for r in results)  # the training part, warm-up excluded
    return {
        "jobs": jobs,
        "images": images,
        "seconds": timed,
        "images_per_s": images / timed,
        "wall_s": wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny: prove the code path")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.quick:
        args.jobs, args.steps, args.batch_size, args.rounds = 2, 2, 8, 1
    code = worker_code(args)
    rounds = []
    for _ in range(args.rounds):
        rounds.append({"alone": run_processes(code, 1), "together": run_processes(code, args.jobs)})
    ratios = [r["together"]["images_per_s"] / r["alone"]["images_per_s"] for r in rounds]
    summary = {
        "device": args.device,
        "jobs": args.jobs,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "rounds": rounds,
        "aggregate_over_alone": ratios,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
