"""``prunescope run``: IMP over every level, then the analyses and the report."""

from __future__ import annotations

import logging
from pathlib import Path

from prunescope.analysis.accuracy import write_accuracy
from prunescope.config import Config
from prunescope.errors import UserInputError
from prunescope.imp import IMP
from prunescope.models import stage_of_layer
from prunescope.rundir.session import WriteSession
from prunescope.training.device import describe_device, resolve_device

log = logging.getLogger("prunescope")


def run(
    run_dir: str | Path, cfg: Config | None, *, analyze: bool = True, redo_from: int | None = None
) -> None:
    device_name = cfg.device if cfg is not None else "auto"
    with WriteSession(run_dir, cfg, device_name, redo_from=redo_from) as session:
        cfg, rd = session.cfg, session.rd
        device = resolve_device(cfg.device)
        imp = IMP(cfg, rd, device)
        rd.manifest["layer_order"] = {
            "stages": list(imp.model.stages),
            "layers": list(stage_of_layer(imp.model)),
        }
        rd.save_manifest()
        log.info(
            "IMP on %s: %s, %d levels, %s",
            cfg.model.name,
            cfg.data.name,
            cfg.imp.levels,
            describe_device(device),
        )
        imp.run(on_level=lambda level: write_accuracy(rd))
        write_accuracy(rd)
        log.info("all %d levels trained: %s", cfg.imp.levels + 1, rd.root)
        if analyze:
            from prunescope.analysis.runner import analyze_run
            from prunescope.report.build import build_report, record_report

            analyze_run(rd, cfg, device)
            target = rd.root / "report"
            build_report([rd.root], target, rd, cfg)
            record_report(rd, target)
            log.info("report: %s", target / "index.html")


def analyze(
    run_dir: str | Path,
    overrides: list[str],
    only: list[str] | None,
    levels: list[int] | None,
    force: bool,
) -> None:
    """``prunescope analyze``: the stored config, with analysis/report settings changeable by --set."""
    from prunescope.analysis.runner import analyze_run
    from prunescope.config.load import apply_overrides, parse_override, resolve, validate
    from prunescope.rundir.session import open_run_dir

    cfg = None
    if overrides:
        for item in overrides:
            key = parse_override(item)[0]
            if key[0] not in ("analysis", "report", "device"):
                raise UserInputError(
                    f"--set {item!r}: analyze may change analysis.*, report.* and device only"
                )
        _, stored = open_run_dir(run_dir)
        cfg = resolve(
            validate(apply_overrides(stored.model_dump(mode="json", exclude_none=True), overrides))
        )
    with WriteSession(run_dir, cfg, cfg.device if cfg else "auto", create=False) as session:
        device = resolve_device(session.cfg.device)
        analyze_run(session.rd, session.cfg, device, only=only, levels=levels, force=force)
