"""The ``prunescope`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from prunescope.errors import (
    EXIT_BAD_INPUT,
    ConfigError,
    PrunescopeError,
    Terminated,
    UserInputError,
    readable,
)

log = logging.getLogger("prunescope")

TRUST_HELP = (
    "import the code that an opened run directory, branch or export names (model.name, "
    "imp.prunable_types, imp.neuron_axes, analysis.plugins); without it, only code your own "
    "config names runs"
)


class LazyHelp(str):
    """A help text computed only when help is shown: the analysis registry behind ``--only``
    imports torch, which ``prunescope --help`` should not wait for."""

    def __new__(cls, make):
        obj = super().__new__(cls, "(see the analysis registry)")
        obj.make = make
        return obj

    def __mod__(self, params):  # argparse expands help with "help % params"
        return self.make()


def branch_kinds_help() -> str:
    from prunescope.branch import KINDS

    return "; ".join(f"{k.name}: {k.description}" for k in KINDS.values())


def executors_help() -> str:
    from prunescope.sweep import EXECUTORS

    return f"one of {', '.join(EXECUTORS)} (default local)"


def formats_help() -> str:
    from prunescope.runtime.formats import FORMATS

    return "some of: " + "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())


def only_help() -> str:
    from prunescope.analysis.registry import only_help as text

    return text()


class Parser(argparse.ArgumentParser):
    """Argument errors end in one line and exit code 2, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"prunescope: error: {message} (see '{self.prog} --help')\n")


def add_set_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides", help=help_text
    )


def add_config_args(p: argparse.ArgumentParser) -> None:
    from prunescope.config import preset_names

    p.add_argument("--preset", metavar="NAME", help=f"a named config: {', '.join(preset_names())}")
    p.add_argument(
        "--config", metavar="FILE", type=Path, help="a TOML config file (on top of --preset)"
    )
    add_set_arg(
        p,
        "override one key, e.g. --set imp.levels=18 (value read as TOML, else as a string); "
        "on a resume, on top of the run's own config",
    )


def request_from_args(args: argparse.Namespace):
    from prunescope.config.request import ConfigRequest

    return ConfigRequest(args.preset, args.config, tuple(args.overrides))


def cmd_models(args: argparse.Namespace) -> int:
    from prunescope.models import build_for, count_parameters, model_names, model_spec
    from prunescope.models.build import layer_groups

    for name in model_names():
        spec = model_spec(name)
        model = build_for(name, spec.example)
        stages = ", ".join(f"{s} ({len(layers)})" for s, layers in model.stages.items())
        print(
            f"{name:<24} {count_parameters(model):>12,} params ({spec.example_label})  "
            f"{spec.description}"
        )
        print(f"{'':<24} stages (prunable layers): {stages}")
        groups = layer_groups(model)
        if groups:
            listed = ", ".join(f"{g} ({len(layers)})" for g, layers in groups.items())
            print(f"{'':<24} layer groups: {listed}")
    print(
        "\nyour own: model.name = package.module:function (returns an nn.Module), stages from "
        "[model.stages] or its stages attribute"
    )
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from prunescope.data import prepare_from_config
    from prunescope.models.build import model_from_config
    from prunescope.models.inventory import format_inventory, inventory
    from prunescope.models.probe import check_output, forward_once, output_layer

    cfg = request_from_args(args).build()
    data = prepare_from_config(cfg)
    model = model_from_config(cfg, data.model_inputs()).eval()
    x, y = data.probe_batch()
    check_output(forward_once(model, x, cfg.model.name), y, len(data.classes), cfg.model.name)
    print(f"{cfg.model.name} on {cfg.data.name}")
    print(format_inventory(inventory(model, list(cfg.imp.exclude or []), output_layer(model, x))))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from prunescope.config.describe import annotated_toml, markdown_reference

    cfg = request_from_args(args).build()
    print(markdown_reference(cfg) if args.markdown else annotated_toml(cfg), end="")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from prunescope.data import data_kind, dataset_names, dataset_spec

    for name in dataset_names():
        s = dataset_spec(name)
        shape = data_kind(s.kind).describe(s)
        print(f"{name:<16} {shape:<32} {s.description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from prunescope.dense import train_dense

    train_dense(request_from_args(args).build(), args.out)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from prunescope.runner import run

    request = request_from_args(args)
    given = request.complete or request.overrides
    if args.dry_run:
        from prunescope.dry_run import plan

        print(plan(args.run_dir, request if given else None))
        return 0
    run(
        args.run_dir,
        request if given else None,
        analyze=not args.no_analyze,
        redo_from=args.redo_from,
    )
    from prunescope.distributed import world

    if not args.no_analyze and world().writer:
        print(args.run_dir / "report" / "index.html")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from prunescope.analysis.runner import parse_levels
    from prunescope.runner import analyze

    analyze(args.run_dir, args.overrides, args.only, parse_levels(args.levels), args.force)
    return 0


def cmd_branch(args: argparse.Namespace) -> int:
    from prunescope.runner import run_branch

    root = run_branch(
        args.run_dir, args.kind, analyze=not args.no_analyze, overrides=tuple(args.overrides)
    )
    print(root)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from prunescope.runner import export_level

    print(export_level(args.run_dir, args.level, args.out))
    return 0


def cmd_runtime(args: argparse.Namespace) -> int:
    from prunescope.analysis.runner import parse_levels
    from prunescope.runner import measure_runtime

    overrides = list(args.overrides)
    if args.batch_sizes:
        sizes = [t.strip() for t in args.batch_sizes.split(",") if t.strip()]
        overrides.append(f"analysis.runtime.batch_sizes=[{', '.join(sizes)}]")
    if args.threads is not None:
        overrides.append(f"analysis.runtime.threads={args.threads}")
    if args.formats:
        names = ", ".join(f'"{t.strip()}"' for t in args.formats.split(",") if t.strip())
        overrides.append(f"analysis.runtime.formats=[{names}]")
    if args.synthetic:
        overrides.append(f"analysis.runtime.synthetic=[{args.synthetic}]")
    if args.device:
        overrides.append(f"device={args.device}")
    measure_runtime(
        args.run_dir, levels=parse_levels(args.levels), overrides=overrides, force=args.force
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from prunescope import sweep

    if args.target == "status":
        if args.sweep_dir is None:
            raise UserInputError(
                "sweep status needs the sweep directory: prunescope sweep status DIR"
            )
        print(sweep.status_table(sweep.sweep_status(args.sweep_dir)))
        return 0
    if args.sweep_dir is not None:
        raise UserInputError(
            f"unexpected argument {str(args.sweep_dir)!r} (use --dir for the sweep directory)"
        )
    root = sweep.run_sweep(
        Path(args.target),
        executor=args.executor,
        slots=args.jobs,
        sweep_dir=args.dir,
        analyze=not args.no_analyze,
        max_runs=args.max_runs,
    )
    states = sweep.sweep_status(root)
    print(sweep.status_table(states))
    failed = [s for s in states if s.state == "failed"]
    return 1 if failed and args.executor == "local" else 0


def cmd_report(args: argparse.Namespace) -> int:
    from prunescope.report.build import make_report
    from prunescope.sweep import expand_report_args

    run_dirs, out = expand_report_args(args.run_dirs, args.out)
    index = make_report(run_dirs, out, replicates=args.replicates)
    print(index)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from prunescope.status import status_text

    print(status_text(args.run_dir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="prunescope",
        description="Iterative Magnitude Pruning with rewinding, and the structure it leaves behind.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    common.add_argument(
        "--trust-code", action="store_true", default=argparse.SUPPRESS, help=TRUST_HELP
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _add = sub.add_parser

    def add_parser(name: str, **kw):
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser

    p = sub.add_parser("models", help="registered models: parameters and stages")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("datasets", help="registered datasets")
    p.set_defaults(func=cmd_datasets)
    p = sub.add_parser(
        "config",
        help="the resolved config as TOML, every key with its description, default and "
        "allowed values (from --preset, --config and --set, as run would build it)",
    )
    add_config_args(p)
    p.add_argument("--markdown", action="store_true", help="the key reference (docs/config.md)")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser(
        "layers",
        help="a config's model: its prunable layers (stage, group, neuron axis, fan-in), what "
        "stays dense and why; run it before a long run",
    )
    add_config_args(p)
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("train", help="dense training of one model (no pruning)")
    add_config_args(p)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "run",
        help="IMP: train every level (resumes an existing run directory), then analyse and report",
    )
    add_config_args(p)
    p.add_argument(
        "--run-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="the run directory: created new, or resumed where a run left it",
    )
    p.add_argument("--no-analyze", action="store_true", help="train only")
    p.add_argument(
        "--redo-from", type=int, metavar="N", help="forget level N and later ones, train them again"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything, time a few steps, say what the run would do; write nothing",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "analyze", help="the analyses' tables of a run (see --only), and its report rebuilt"
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--only", metavar="A,B", help=LazyHelp(only_help))
    p.add_argument("--levels", metavar="0,3,7", help="only these levels")
    p.add_argument("--force", action="store_true", help="recompute levels already analysed")
    add_set_arg(
        p,
        "change an analysis.*, report.*, device or threads setting, e.g. "
        "--set analysis.zeroing.test_subset=500",
    )
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "branch",
        help="a lottery control of a complete run (see KIND)",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("kind", metavar="KIND", help=LazyHelp(branch_kinds_help))
    p.add_argument("--no-analyze", action="store_true", help="train only")
    add_set_arg(
        p, "change where or how fast it runs, e.g. --set threads=1 (the run's own settings stay)"
    )
    p.set_defaults(func=cmd_branch)

    p = sub.add_parser(
        "runtime",
        help="latency, memory and energy of each level in every run-time format (see --formats)",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--levels", metavar="0,3,7", help="only these levels")
    p.add_argument("--batch-sizes", metavar="1,64", help="batch sizes to time (default 1,64)")
    p.add_argument("--threads", type=int, metavar="N", help="torch (and ONNX Runtime) threads")
    p.add_argument("--device", metavar="cpu|cuda", help="where to time it")
    p.add_argument("--formats", metavar="A,B", help=LazyHelp(formats_help))
    p.add_argument(
        "--synthetic", metavar="0.9,0.98", help="also these sparsities, pruned from the last level"
    )
    p.add_argument("--force", action="store_true", help="measure levels measured before again")
    add_set_arg(p, "another analysis.runtime setting, e.g. --set analysis.runtime.repetitions=50")
    p.set_defaults(func=cmd_runtime)

    p = sub.add_parser(
        "export", help="a level as a physically smaller dense network computing the same"
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument(
        "--level", type=int, required=True, metavar="K", help="the trained level to export"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new or empty folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "report", help="figures, findings and report/index.html from the analysis tables"
    )
    p.add_argument(
        "run_dirs",
        type=Path,
        nargs="+",
        metavar="RUN_DIR",
        help="the run to report on; more runs are overlaid on every figure that can show "
        "several, with a table of the settings that differ",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="write here instead of RUN_DIR/report")
    p.add_argument(
        "--replicates",
        action="store_true",
        help="the runs are seeds of one experiment: refuse them if their configs differ in "
        "more than the seed, and show their mean with a 95%% band",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "sweep",
        help="a grid of runs from a sweep file, locally N at a time or on SLURM (submitit); "
        "'sweep status DIR' shows where each run stands",
    )
    p.add_argument("target", metavar="SWEEP.toml|status", help="a sweep file, or 'status'")
    p.add_argument("sweep_dir", nargs="?", type=Path, metavar="SWEEP_DIR", help=argparse.SUPPRESS)
    p.add_argument("--executor", default="local", help=LazyHelp(executors_help))
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at a time (default 1)")
    p.add_argument(
        "--dir", type=Path, metavar="SWEEP_DIR", help="default: the sweep file's path without .toml"
    )
    p.add_argument("--no-analyze", action="store_true", help="train only")
    p.add_argument(
        "--max-runs",
        type=int,
        default=10_000,
        metavar="N",
        help="refuse a grid of more runs (default 10000)",
    )
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("status", help="what a run directory holds, what is left, damaged files")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.set_defaults(func=cmd_status)
    return parser


def setup_logging() -> None:
    """prunescope's own lines at INFO; other libraries only warn. (Their INFO is noise to a
    user: fontTools logs a line per font table it subsets for every PDF figure.)"""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("prunescope").setLevel(logging.INFO)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def interrupted_message(args: argparse.Namespace, why: str) -> str:
    """What a stopped command keeps, and the exact command that goes on from there."""
    command = getattr(args, "command", None)
    if command == "run":
        from prunescope.status import what_is_kept

        kept = what_is_kept(args.run_dir)
        if kept is None:
            return f"{why} before anything was trained; nothing is kept: run the same command again"
        return f"{why}; {kept}; resume with: prunescope run --run-dir {args.run_dir}"
    if command == "analyze":
        return f"{why}; analysed levels are kept; continue with: prunescope analyze {args.run_dir}"
    if command == "branch":
        return (
            f"{why}; the branch's completed levels and last checkpoint are kept; resume with: "
            f"prunescope branch {args.run_dir} {args.kind}"
        )
    return f"{why}; every file written so far is complete (writes are atomic)"


def _close_progress_bars() -> None:
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `prunescope`: the help, not an error
        parser.print_help()
        return 0
    setup_logging()
    debug_was = os.environ.get("PRUNESCOPE_DEBUG")
    if args.debug:
        os.environ["PRUNESCOPE_DEBUG"] = "1"  # analyses re-raise instead of recording a failure
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        from prunescope.trust import scope

        with logging_redirect_tqdm(), scope(everything=args.trust_code):
            return args.func(args)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"prunescope: config error: {readable(line)}", file=sys.stderr)
        return exc.exit_code
    except PrunescopeError as exc:
        if args.debug:
            raise
        print(f"prunescope: error: {readable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, Terminated) as exc:
        _close_progress_bars()
        term = isinstance(exc, Terminated)
        why = "stopped by SIGTERM" if term else "interrupted"
        print(f"prunescope: {interrupted_message(args, why)}", file=sys.stderr)
        return 143 if term else 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"prunescope: internal error: {type(exc).__name__}: {readable(str(exc))} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if debug_was is None:
            os.environ.pop("PRUNESCOPE_DEBUG", None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
