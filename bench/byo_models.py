"""Models researchers bring, end to end: where does prunescope fail on them?

For each model of ``tests/byo_models.py`` (or those named), write its config from
``byo_models.CONFIGS`` (then ``byo_models.VARIANTS``, unless ``--no-variants``) to a
work folder and run, each as a subprocess of this Python with ``PYTHONPATH`` =
``src:tests`` (plus what was there):

1. ``prunescope run --config C --run-dir R``   (train, every default analysis, report)
2. ``prunescope export R --level 1 --out E --trust-code``
3. ``prunescope runtime R --levels 1 --formats dense,sparse,exported --batch-sizes 1
   --trust-code``
4. checks of the tables the run did write, for numbers that are there but wrong
   (:func:`check_run`): exit 0 nothing found, 3 findings, 4 nothing to check.

Every step runs whatever the step before it did (a run that failed in its analyses may
still have trained its levels). Each step's exit code, wall seconds and error (the last
``prunescope:`` message of its stderr, else its last stderr line; the checks' findings)
go in a markdown table (one row per model, one column per step), printed and written to
``--out``; each step's whole output stays in ``WORKDIR/<model>/<step>.log``.
``--debug`` passes ``--debug`` to prunescope, so the logs hold tracebacks and each
error cell ends with the deepest prunescope frame (``[at prunescope/x.py:N
(function)]``). One thread per step (``--threads``), a timeout per step (``--timeout``).

    PYTHONPATH=src:tests python bench/byo_models.py [MODEL ...] [--out byo.md]
        [--workdir DIR] [--debug] [--no-variants] [--timeout 900] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import byo_models  # noqa: E402

STEPS = ("run", "export", "runtime", "checks")
FOUND, UNCHECKED = 3, 4  # exit codes of the checks step: findings; nothing to check
# the models researchers bring, then what they try after the first failure
CONFIGS = {**byo_models.CONFIGS, **byo_models.VARIANTS}


@dataclass
class Step:
    code: int | None  # None: timed out
    seconds: float
    error: str

    def cell(self) -> str:
        code = "timeout" if self.code is None else str(self.code)
        text = f"{code}, {self.seconds:.0f} s"
        return f"{text}: {self.error}" if self.code != 0 and self.error else text


def error_line(stderr: str) -> str:
    """One line: the last ``prunescope:`` message (with the lines it continues on); else,
    after a traceback (``--debug``), the exception and where in prunescope it was raised;
    else the last line of stderr."""
    lines = stderr.splitlines()
    said = [i for i, line in enumerate(lines) if line.startswith("prunescope:")]
    frame = deepest_frame(stderr)
    if said:
        text = " ".join(line.strip() for line in lines[said[-1] :])
    elif frame:
        text = exception_text(stderr)
    else:
        text = next((line.strip() for line in reversed(lines) if line.strip()), "")
    text = " ".join(text.split())
    if frame:
        text = f"{text} [at {frame}]"
    return text.replace("|", "\\|")[:400]


def exception_text(stderr: str) -> str:
    """The exception that ended the last traceback, its message's lines included."""
    tail = stderr.rpartition("Traceback (most recent call last):")[2].splitlines()
    start = next((i for i, line in enumerate(tail) if line and not line[0].isspace()), len(tail))
    return " ".join(line.strip() for line in tail[start:])


FRAME = re.compile(r'File "[^"]*?/(prunescope/[^"]+\.py)", line (\d+), in (\S+)')


def deepest_frame(stderr: str) -> str | None:
    """The last prunescope frame of the last traceback: ``prunescope/x.py:N (function)``."""
    frames = FRAME.findall(stderr.rpartition("Traceback (most recent call last)")[2])
    if not frames:
        return None
    path, line, function = frames[-1]
    return f"{path}:{line} ({function})"


def commands(model: str, work: Path, debug: bool) -> dict[str, list[str]]:
    config, run_dir, export = work / f"{model}.toml", work / "run", work / "export"
    base = [sys.executable, "-m", "prunescope", *(["--debug"] if debug else [])]
    return {
        "run": [*base, "run", "--config", str(config), "--run-dir", str(run_dir)],
        "export": [
            *base,
            "export",
            str(run_dir),
            "--level",
            "1",
            "--out",
            str(export),
            "--trust-code",
        ],
        "runtime": [
            *base,
            "runtime",
            str(run_dir),
            "--levels",
            "1",
            "--formats",
            "dense,sparse,exported",
            "--batch-sizes",
            "1",
            "--trust-code",
        ],
        "checks": [sys.executable, str(Path(__file__).resolve()), "--check", str(run_dir)],
    }


def environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "tests")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def run_step(argv: list[str], log: Path, env: dict[str, str], timeout: float) -> Step:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        err += f"\ntimed out after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    log.write_text(
        f"$ {' '.join(argv)}\n# exit {code}, {seconds:.1f} s\n\n"
        f"--- stdout\n{out}\n--- stderr\n{err}"
    )
    said = [line.strip() for line in err.splitlines() if line.startswith("check: ")]
    error = "; ".join(line.removeprefix("check: ") for line in said) if said else error_line(err)
    return Step(code, seconds, error.replace("|", "\\|"))


# ------------------------------------------------------------------------------- checks
# What a finished run's tables say that a failing exit code would not: numbers that are
# there but wrong. Each finding is one "check: ..." line on stderr.


def check_run(run_dir: Path) -> list[str]:
    """Findings on a run's tables (levels and analyses that exist; missing ones skipped):

    - neuron axis: ``neuron_sparsity.csv`` counts as many neurons per layer as the layer's
      output has units along prunescope's neuron dimension (``neuron_dim``);
    - zeroing: some neuron of a layer changes the loss (a layer where no ablation changes
      anything, to the last bit, was not ablated);
    - similarity's capture (:func:`prunescope.analysis.similarity.capture`) holds each
      layer's own output, even where a later in-place module overwrites that tensor.
    """
    import pandas as pd
    import torch

    from prunescope import load_level, load_test_set
    from prunescope.analysis.similarity import capture
    from prunescope.models.layers import adapter_for

    torch.set_num_threads(1)
    analysis = run_dir / "analysis"
    findings: list[str] = []
    layers_csv = analysis / "sparsity_layers.csv"
    if not layers_csv.exists():
        raise FileNotFoundError("no analysis tables")
    layers = list(dict.fromkeys(pd.read_csv(layers_csv)["layer"]))

    model, _ = load_level(run_dir, 0, trust_code=True)
    x, y = load_test_set(run_dir)
    graph = bool((y == -100).any()) and len(x) == len(y)  # a graph: every node at once
    x = x if graph else x[:4]
    if not x.is_floating_point():  # token ids come back as uint8 (the loader's .long())
        x = x.long()
    modules = dict(model.named_modules())
    seen: dict[str, tuple[torch.Tensor, int, torch.Tensor]] = {}
    hooks = [
        modules[name].register_forward_hook(
            lambda _m, i, o, name=name: seen.__setitem__(name, (o, o._version, i[0].clone()))
        )
        for name in layers
        if name in modules
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    units = {
        name: o.shape[adapter_for(modules[name]).output_axis] for name, (o, *_) in seen.items()
    }
    captured = capture(model, list(seen), x)
    with torch.no_grad():
        for name, (_, _, inp) in seen.items():  # the layer recomputed from its own input
            if not torch.equal(captured[name], modules[name](inp)):
                findings.append(f"{name}: similarity's capture differs from the layer's output")

    neurons_csv = analysis / "neuron_sparsity.csv"
    if neurons_csv.exists():
        ns = pd.read_csv(neurons_csv)
        counted = ns[ns["level"] == ns["level"].min()].groupby("layer")["neuron"].count()
        for name, n in counted.items():
            if name in units and n != units[name]:
                fan_in = int(ns[ns["layer"] == name]["fan_in"].iloc[0])
                findings.append(
                    f"{name}: neuron_sparsity.csv has {n} neurons of fan-in {fan_in}, its "
                    f"output has {units[name]} units"
                )
    zeroing_csv = analysis / "zeroing.csv"
    if zeroing_csv.exists():
        z = pd.read_csv(zeroing_csv)
        for (level, name), part in z.groupby(["level", "layer"]):
            if len(part) > 1 and (part["loss"] == part["base_loss"]).all():
                findings.append(
                    f"{name}: at level {level} zeroing any of its {len(part)} neurons leaves "
                    f"the loss exactly unchanged"
                )
    return findings


def check_main(run_dir: Path) -> int:
    try:
        findings = check_run(run_dir)
    except Exception as exc:  # a run that failed early has nothing to check
        why = str(exc) if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}: {exc}"
        print(f"check: not checked ({why})", file=sys.stderr)
        return UNCHECKED
    for finding in findings:
        print(f"check: {finding}", file=sys.stderr)
    return FOUND if findings else 0


def table(results: dict[str, dict[str, Step]]) -> str:
    rows = [
        "| model | " + " | ".join(STEPS) + " |",
        "| --- | " + " | ".join("---" for _ in STEPS) + " |",
    ]
    for model, steps in results.items():
        rows.append(f"| {model} | " + " | ".join(steps[s].cell() for s in STEPS) + " |")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"some of {', '.join(CONFIGS)} (default: all)")
    parser.add_argument(
        "--no-variants", action="store_true", help="only byo_models.CONFIGS, not VARIANTS"
    )
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--workdir", type=Path, help="keep configs, runs and logs here")
    parser.add_argument("--debug", action="store_true", help="pass --debug to prunescope")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per step")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL threads per step")
    parser.add_argument("--check", type=Path, metavar="RUN_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check:
        return check_main(args.check)

    default = byo_models.CONFIGS if args.no_variants else CONFIGS
    models = args.models or list(default)
    unknown = [m for m in models if m not in CONFIGS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    base = args.workdir or Path(tempfile.mkdtemp(prefix="byo-"))
    base.mkdir(parents=True, exist_ok=True)
    env = environment(args.threads)
    print(f"work folder: {base}", file=sys.stderr)

    results: dict[str, dict[str, Step]] = {}
    for model in models:
        work = base / model
        if work.exists():
            raise SystemExit(f"{work} exists: give an empty --workdir")
        work.mkdir()
        (work / f"{model}.toml").write_text(CONFIGS[model])
        results[model] = {}
        for step, argv in commands(model, work, args.debug).items():
            result = run_step(argv, work / f"{step}.log", env, args.timeout)
            results[model][step] = result
            print(f"{model} {step}: {result.cell()}", file=sys.stderr, flush=True)

    text = table(results)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
