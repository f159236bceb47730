"""``prunescope run``: IMP over every level, then the analyses and the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from prunescope import distributed
from prunescope.analysis.accuracy import write_accuracy
from prunescope.analysis.registry import settings_models
from prunescope.api import model_for, test_images
from prunescope.config import Config
from prunescope.config.request import ConfigRequest
from prunescope.data import PreparedData, prepare_from_config
from prunescope.errors import DataError, RunDirError, UserInputError
from prunescope.imp import IMP, Follower
from prunescope.machine_load import say_if_busy
from prunescope.models.describe import dense_record, describe
from prunescope.models.probe import check_output, forward_once
from prunescope.pruning.masks import prunable_weight_keys
from prunescope.rundir.data_check import check_data
from prunescope.rundir.files import check_no_link_below
from prunescope.rundir.layout import RunDir
from prunescope.rundir.session import WriteSession
from prunescope.training.device import describe_device, resolve_device
from prunescope.training.objective import scored_count
from prunescope.training.precision import apply_threads
from prunescope.trust import code_names, vouch

if TYPE_CHECKING:
    import torch

log = logging.getLogger("prunescope")


def check_runnable(cfg: Config) -> PreparedData:
    """Everything the config could have told us before a run directory is made: the device
    exists, the data load with the subsets asked for, the model fits the data and leaves
    something to prune, and every analysis subset fits the test set."""
    distributed.bind(cfg.device)  # under torchrun: one GPU per rank, or refused (cuda:N)
    if cfg.track.tensorboard:
        from prunescope.tracking import summary_writer_class

        summary_writer_class()  # tensorboard installed, or one line before anything exists
    data = prepare_from_config(cfg)
    model = model_for(cfg).eval()
    x, y = data.probe_batch()
    check_output(forward_once(model, x, cfg.model.name), y, len(data.classes), cfg.model.name)
    prunable_weight_keys(model, cfg.imp.exclude)
    for analysis in settings_models(cfg.analysis.plugins):  # every analysis's test subset
        subset = getattr(getattr(cfg.analysis, analysis), "test_subset", None)
        try:
            test_images(data, cfg, subset)
        except DataError as exc:
            where = f"analysis.{analysis}.test_subset"
            raise DataError(str(exc).replace("an analysis test_subset", where)) from None
    return data


def run(
    run_dir: str | Path,
    cfg: Config | ConfigRequest | None,
    *,
    analyze: bool = True,
    redo_from: int | None = None,
) -> None:
    """IMP on ``run_dir``. Under torchrun, rank 0 does all of this and the other ranks only
    train alongside it (``prunescope.distributed``)."""
    w = distributed.init()
    if not w.writer:
        return follow_run()
    try:
        lead_run(run_dir, cfg, analyze=analyze, redo_from=redo_from)
    finally:
        distributed.finish()


def follow_run() -> None:
    """A rank other than 0: rank 0's config, its own copy of the data and model, then every
    training phase rank 0 announces. It opens no file of the run directory."""
    cfg = distributed.broadcast_object()
    if cfg is None:  # rank 0 stopped before training
        return
    cfg = Config.model_validate(cfg)
    vouch(code_names(cfg))  # rank 0 imported it under the same command line's trust
    apply_threads(cfg.threads)
    device = distributed.bind(cfg.device)
    done = Follower(cfg, device).follow()
    if done is not None and done.get("analyze"):
        from prunescope.analysis.runner import follow_analyses

        follow_analyses(done["analyze"], cfg, device)
    distributed.finish()


def lead_run(
    run_dir: str | Path,
    cfg: Config | ConfigRequest | None,
    *,
    analyze: bool,
    redo_from: int | None,
) -> None:
    w = distributed.world()
    started = False
    try:
        with WriteSession(run_dir, cfg, redo_from=redo_from, preflight=check_runnable) as session:
            cfg, rd = session.cfg, session.rd
            check_data(rd, session.prepared, redo_from=redo_from)
            device = distributed.bind(cfg.device)
            threads = apply_threads(cfg.threads)
            say_if_busy()  # once the command is sure to run: a refusal stays one line
            imp = IMP(cfg, rd, device, data=session.prepared)
            distributed.broadcast_object(cfg.model_dump(mode="json"))
            started = True
            rd.session.update(
                threads=threads,
                precision=imp.trainer.precision,
                compile=imp.trainer.compiled,
                world_size=w.size,
            )
            train_and_analyze(imp, rd, cfg, device, analyze)
    finally:
        if not started:
            distributed.broadcast_object(None)  # the other ranks stop too


def train_and_analyze(imp: IMP, rd: RunDir, cfg: Config, device, analyze: bool) -> None:
    rd.manifest["layer_order"] = {
        **describe(imp.model),
        "dense": dense_record(imp.model, cfg.imp.exclude, imp.data.probe_batch()[0]),
    }
    rd.save_manifest()
    log.info(
        "IMP on %s: %s, dense level 0 and %d pruned levels, %s",
        cfg.model.name,
        cfg.data.name,
        cfg.imp.levels,
        describe_device(device),
    )
    imp.run(on_level=lambda level: write_accuracy(rd))
    # training is done: the other ranks analyse with rank 0, or exit
    distributed.broadcast_object({"analyze": str(rd.root) if analyze else None})
    write_accuracy(rd)
    log.info(
        "levels 0-%d trained (dense and %d pruned): %s", cfg.imp.levels, cfg.imp.levels, rd.root
    )
    if analyze:
        from prunescope.analysis.runner import analyze_run, raise_failures
        from prunescope.report.build import report_into_run

        analyze_run(rd, cfg, device)
        target = report_into_run(rd, cfg, [rd.root])
        say_findings(rd, cfg)
        log.info("report: %s", target / "index.html")
        raise_failures(rd)


def say_findings(rd: RunDir, cfg: Config) -> None:
    """The run's last words: its accuracy and headline numbers (the report has the rest)."""
    from prunescope.analysis.tables import read_table
    from prunescope.report.build import summary_of
    from prunescope.report.terminal import summary_lines

    lines = summary_lines(summary_of(rd.root), read_table(rd, "accuracy"), cfg.analysis.plugins)
    log.info("findings:\n  %s", "\n  ".join(lines))


def analyze_branches(
    rd: RunDir,
    request: ConfigRequest | None,
    device: torch.device,
    only: list[str] | None,
    *,
    plugins: list[str],
    levels: list[int] | None,
    force: bool,
) -> None:
    """The run's controls, with the same settings: the analyses asked for that are measured
    on branches (``AnalysisSpec.on_branches``); costly on-request ones stay with the run."""
    from prunescope.analysis.registry import analyses, analysis_names
    from prunescope.analysis.runner import analyze_run
    from prunescope.branch import branch_dirs

    branches = branch_dirs(rd.root)
    if not branches:
        return
    specs = analyses(plugins)
    asked = only or analysis_names(default_only=True, plugins=plugins)
    wanted = [n for n in asked if specs[n].on_branches]
    if left := [n for n in asked if n not in wanted]:
        log.info("%s: measured on the run, not on its controls", ", ".join(left))
    if not wanted:
        return
    for branch in branches:
        with WriteSession(branch, request, create=False) as b:
            log.info("analysing branch %s", branch.name)
            analyze_run(b.rd, b.cfg, device, only=wanted, levels=levels, force=force)


def analyze(
    run_dir: str | Path,
    overrides: list[str],
    only: str | list[str] | None,
    levels: list[int] | None,
    force: bool,
) -> None:
    """``prunescope analyze``: the stored config, with analysis/report settings changeable by
    --set; ``only``: ``--only``'s text (or names), checked against the run's analyses."""
    from prunescope.analysis.runner import analyze_run, parse_only, raise_failures
    from prunescope.config.load import parse_override
    from prunescope.report.build import rebuild_stale_report

    for item in overrides:
        key = parse_override(item)[0]
        if key[0] not in ("analysis", "report", "device", "threads"):
            raise UserInputError(
                f"--set {item!r}: analyze may change analysis.*, report.*, device and threads only"
            )
    request = ConfigRequest(overrides=tuple(overrides)) if overrides else None
    # checked before the changed settings are recorded: a refused command changes nothing
    with WriteSession(run_dir, request, create=False, preflight=check_runnable) as session:
        if isinstance(only, str) or only is None:
            only = parse_only(only, session.cfg.analysis.plugins)
        device = resolve_device(session.cfg.device)
        session.rd.session["threads"] = apply_threads(session.cfg.threads)
        say_if_busy()
        analyze_run(session.rd, session.cfg, device, only=only, levels=levels, force=force)
        analyze_branches(
            session.rd,
            request,
            device,
            only,
            plugins=session.cfg.analysis.plugins,
            levels=levels,
            force=force,
        )
        rebuild_stale_report(session.rd, session.cfg)
        raise_failures(session.rd)


def run_branch(
    run_dir: str | Path,
    kind_name: str,
    *,
    analyze: bool = True,
    overrides: tuple[str, ...] = (),
) -> Path:
    """``prunescope branch RUN KIND``: train (or resume) a control branch of a complete run,
    analyse it, and rebuild the run's report with the control beside it. ``overrides`` may
    change only what a resume may (threads, device, data.root, analysis settings)."""
    from prunescope.branch import BranchIMP, branch_dir, branch_kind, check_parent_complete
    from prunescope.rundir.session import resumable_changes

    kind = branch_kind(kind_name)
    with WriteSession(run_dir, create=False) as parent:
        check_parent_complete(parent.rd, parent.cfg)
        cfg = ConfigRequest(overrides=tuple(overrides)).build(parent.cfg)
        resumable_changes(parent.cfg, cfg, "a branch keeps its run's settings")
        if cfg.imp.levels != parent.cfg.imp.levels:
            raise UserInputError(
                f"--set imp.levels={cfg.imp.levels}: a branch has its run's levels "
                f"(0-{parent.cfg.imp.levels})"
            )
        root = branch_dir(parent.rd.root, kind.name)
        check_no_link_below(parent.rd.root, root, "a branch")
        with WriteSession(root, cfg, preflight=check_runnable) as session:
            cfg, rd = session.cfg, session.rd
            same_data_as_parent(parent.rd, session.prepared)
            check_data(rd, session.prepared)
            device = resolve_device(cfg.device)
            rd.session["threads"] = apply_threads(cfg.threads)
            say_if_busy()
            imp = BranchIMP(cfg, rd, device, parent.rd, kind, data=session.prepared)
            rd.manifest["layer_order"] = parent.rd.manifest.get("layer_order")
            rd.save_manifest()
            log.info("branch %s of %s: %s", kind.name, parent.rd.root, kind.description)
            imp.run(on_level=lambda level: write_accuracy(rd))
            write_accuracy(rd)
            if analyze:
                from prunescope.analysis.runner import analyze_run

                analyze_run(rd, cfg, device)
        if analyze:
            from prunescope.analysis.runner import raise_failures
            from prunescope.report.build import rebuild_stale_report

            rebuild_stale_report(parent.rd, parent.cfg)
            raise_failures(session.rd)
    return root


def same_data_as_parent(parent: RunDir, data: PreparedData) -> None:
    """A control must see exactly the run's images (the fingerprints must agree)."""
    from prunescope.data.fingerprint import data_fingerprint

    want = parent.manifest.get("data_fingerprint") or {}
    if want and want.get("sha256") != data_fingerprint(data)["sha256"]:
        raise RunDirError(
            f"the data under data.root differ from the data {parent.root} was trained on; a "
            f"control branch must see the same images"
        )


def export_level(run_dir: str | Path, level: int, out: str | Path) -> Path:
    """``prunescope export RUN --level K --out DIR``: the level as a smaller dense network."""
    import torch

    from prunescope.analysis.context import AnalysisContext
    from prunescope.api import read_level
    from prunescope.export import EXPORT, export_model, reasons, write_export
    from prunescope.export_files import check_export_target
    from prunescope.rundir.level_files import read_metrics
    from prunescope.rundir.session import open_run_dir

    out = Path(out)
    check_export_target(out)
    rd, cfg = open_run_dir(run_dir)
    model, _ = read_level(rd, cfg, level)
    ctx = AnalysisContext(rd, cfg, torch.device("cpu"))
    batches = ctx.batches(cfg.analysis.export.test_subset, 250)
    res = export_model(model, ctx.prunable_layers, batches)
    meta = {
        "model": {"name": cfg.model.name, **ctx.data.model_inputs().recordable()},
        "run": str(rd.root.resolve()),
        "level": level,
        "network_sparsity": read_metrics(rd, level)["network_sparsity"],
        "test_images": sum(scored_count(y) for _, y in batches),
        "max_abs_diff": res.max_abs_diff,
        "max_rel_diff": res.max_rel_diff,
        **res.totals(),
        "layers": {
            layer: {
                "neurons": p.neurons,
                "removed": len(p.removed),
                "kept_empty": len(p.kept),
                "kept_because": reasons(p),
                "params_before": res.params_before[layer],
                "params_after": res.params_after[layer],
                "flops_before": res.flops_before[layer],
                "flops_after": res.flops_after[layer],
            }
            for layer, p in res.plans.items()
        },
    }
    write_export(out, res.small, res.plans, meta)
    t = res.totals()
    log.info(
        "exported level %d: parameters of the pruned layers %s -> %s, FLOPs %s -> %s, largest "
        "output difference %.2g (%s)",
        level,
        f"{t['params_before']:,}",
        f"{t['params_after']:,}",
        f"{t['flops_before']:,}",
        f"{t['flops_after']:,}",
        res.max_abs_diff,
        out / EXPORT,
    )
    return out


def measure_runtime(
    run_dir: str | Path,
    *,
    levels: list[int] | None,
    overrides: list[str],
    force: bool = False,
) -> None:
    """``prunescope runtime RUN``: the runtime analysis with its settings from the command line
    (more threads than cores are cut to the cores, with one line: see ``usable_threads``)."""
    analyze(run_dir, overrides, ["runtime"], levels, force)
