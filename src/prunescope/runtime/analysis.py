"""The ``runtime`` analysis (off by default: it needs a quiet machine): every level in every
format, and every pruned layer dense and sparse, at each batch size.

``analysis.runtime.synthetic`` adds levels that were never trained: the last level's
weights pruned further by global magnitude to the given sparsities (e.g. 0.9, 0.95, 0.98),
so that the crossover of sparse over dense can be found past where a CPU run's levels
end. They go to their own tables (``runtime_synthetic.csv``, ``runtime_layers_synthetic.csv``),
labelled by that name, never mixed with the run's levels.
"""

from __future__ import annotations

import logging

import pandas as pd
import torch
from pydantic import Field, field_validator

from prunescope.analysis.registry import AnalysisSpec, Figure, FindingInputs, register_analysis
from prunescope.config.schema import Section
from prunescope.errors import Unsupported, UserInputError
from prunescope.machine_load import load_average
from prunescope.models.probe import samples_independent
from prunescope.report import findings as F
from prunescope.report import sentences as S
from prunescope.report.figures import runtime as runtime_figure
from prunescope.runtime.formats import FORMATS
from prunescope.runtime.measure import Settings, measure_batch, say_once
from prunescope.training.precision import apply_threads, available_cores, usable_threads

log = logging.getLogger("prunescope")

COLUMNS = [
    "level",
    "network_sparsity",
    "format",
    "device",
    "threads",
    "batch_size",
    "latency_ms",
    "latency_ms_p90",
    "repetitions",
    "weight_bytes",
    "peak_memory_bytes",
    "energy_j",
    "max_abs_diff",
]
LAYER_COLUMNS = [
    "level",
    "network_sparsity",
    "stage",
    "layer",
    "sparsity",
    "format",
    "batch_size",
    "latency_ms",
]


class RuntimeSettings(Section):
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 64],
        description="batch sizes timed (each at most the test set's size)",
    )
    # One thread is what a quiet measurement can reproduce; raise it to time a server.
    threads: int = Field(
        1, gt=0, le=4096, description="torch (and ONNX Runtime) threads while timing"
    )
    repetitions: int = Field(20, ge=3, description="interleaved timed calls per format")
    warmup: int = Field(3, ge=0, description="untimed calls per format before timing")
    formats: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="auto: every format, ONNX Runtime where it is installed",
    )
    synthetic: list[float] = Field(
        default_factory=list,
        description="extra sparsities pruned from the last level's weights (not trained)",
    )

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(b <= 0 for b in v):
            raise ValueError(f"batch sizes must be positive, got {v}")
        return v

    @field_validator("formats")
    @classmethod
    def _some_format(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one format (or auto)")
        unknown = [f for f in v if f != "auto" and f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format {unknown[0]!r}; choose auto or {', '.join(FORMATS)}")
        return v

    @field_validator("synthetic")
    @classmethod
    def _sparsities(cls, v: list[float]) -> list[float]:
        if any(not 0 < s < 1 for s in v):
            raise ValueError(f"synthetic sparsities must lie in (0, 1), got {v}")
        return v


def available_formats(wanted: list[str]) -> tuple[str, ...]:
    if wanted != ["auto"]:
        return tuple(wanted)
    try:
        import onnxruntime  # noqa: F401

        return tuple(FORMATS)
    except ImportError:  # auto: every format whose package is there
        return tuple(name for name, f in FORMATS.items() if not f.optional)


def settings_of(cfg) -> Settings:
    r = cfg.analysis.runtime
    return Settings(
        batch_sizes=tuple(r.batch_sizes),
        threads=usable_threads(r.threads),
        repetitions=r.repetitions,
        warmup=r.warmup,
        formats=available_formats(list(r.formats)),
    )


def synthetic_state(state: dict[str, torch.Tensor], keys: list[str], sparsity: float):
    """The weights with the smallest global magnitudes zeroed to ``sparsity`` of ``keys``,
    ranked as magnitude pruning ranks them (ties by flat index), on the device the state is
    on (``runtime --device cuda`` gives a CUDA state)."""
    from prunescope.pruning.magnitude import smallest
    from prunescope.pruning.masks import flat, unflat

    magnitude = flat(state, keys).abs().float()
    keep = torch.ones(magnitude.shape, dtype=torch.bool, device=magnitude.device)
    keep[smallest(magnitude, round(sparsity * len(keep)))] = False  # every weight ranked
    keep = unflat(keep, state, keys)
    return {**state, **{k: state[k] * keep[k] for k in keys}}


def timed_inputs(ctx, model, s: Settings) -> tuple[torch.Tensor, list[int]]:
    """The test inputs and the batch sizes to time them at. A model whose samples are not
    independent (a graph's nodes see each other) runs on all of them at once: one batch,
    of all the nodes, whatever ``batch_sizes`` says (and the table says how many)."""
    x_all = torch.cat([x for x, _ in ctx.batches(None, 250)])
    if not samples_independent(model, x_all[:2] if len(x_all) > 2 else x_all):
        say_once(f"runtime: the model reads all {len(x_all)} examples at once: timed as one batch")
        return x_all, [len(x_all)]
    big = max(s.batch_sizes)
    if len(x_all) < big:  # a batch of 450 recorded as batch_size=100000000 would be a lie
        raise UserInputError(
            f"analysis.runtime.batch_sizes: {big} is more than the {len(x_all)} test examples "
            f"it would time; choose at most {len(x_all)}"
        )
    return x_all[:big], list(s.batch_sizes)


def measure_model(ctx, model, level: int, sparsity: float, s: Settings):
    from prunescope.export import export_model

    layers = ctx.prunable_layers
    apply_threads(s.threads)
    x_all, sizes = timed_inputs(ctx, model, s)
    exported = None
    if "exported" in s.formats:
        try:
            exported = export_model(model, layers, [(x_all[: min(max(sizes), 64)], None)]).small
        except Unsupported as exc:  # no graph to export from: time the formats that need none
            say_once(f"runtime: the exported format is left out ({exc})")
    modules = dict(model.named_modules())
    rows, layer_rows = [], []
    for b in sizes:
        x = x_all[:b].to(ctx.device)
        fmt_rows, layer_ms = measure_batch(model, exported, layers, ctx.stage_of, x, s)
        for r in fmt_rows:
            rows.append(
                (
                    level,
                    sparsity,
                    r["format"],
                    ctx.device.type,
                    s.threads,
                    b,
                    r["latency_ms"],
                    r["latency_ms_p90"],
                    r["repetitions"],
                    r["weight_bytes"],
                    r["peak_memory_bytes"],
                    r["energy_j"],
                    r["max_abs_diff"],
                )
            )
        for layer, times in layer_ms.items():
            w = modules[layer].weight
            layer_sparsity = float((w == 0).sum()) / w.numel()
            for fmt, ms in times.items():
                layer_rows.append(
                    (level, sparsity, ctx.stage_of[layer], layer, layer_sparsity, fmt, b, ms)
                )
        log.info(
            "runtime: level %s, batch %d: %s",
            level,
            b,
            ", ".join(f"{r['format']} {r['latency_ms']:.2f} ms" for r in fmt_rows),
        )
    return rows, layer_rows


def runtime_tables(ctx, levels: list[int]) -> dict[str, pd.DataFrame]:
    s = settings_of(ctx.cfg)
    out = {
        "runtime": [],
        "runtime_layers": [],
        "runtime_synthetic": [],
        "runtime_layers_synthetic": [],
        "runtime_conditions": [],
    }
    for level in levels:
        model, _ = ctx.level(level)
        before = load_average()
        rows, layer_rows = measure_model(ctx, model, level, ctx.network_sparsity(level), s)
        out["runtime"] += rows
        out["runtime_layers"] += layer_rows
        out["runtime_conditions"].append(conditions(level, before, s.threads))
    last = max(ctx.levels())
    if ctx.cfg.analysis.runtime.synthetic and last in levels:
        model, _ = ctx.level(last)
        keys = [f"{layer}.weight" for layer in ctx.prunable_layers]
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for target in ctx.cfg.analysis.runtime.synthetic:
            synth = ctx.fresh_model()
            synth.load_state_dict(synthetic_state(state, keys, target))
            rows, layer_rows = measure_model(ctx, synth, last, target, s)
            out["runtime_synthetic"] += rows
            out["runtime_layers_synthetic"] += layer_rows
    columns = {"runtime_conditions": CONDITION_COLUMNS}
    return {
        name: pd.DataFrame(
            rows, columns=columns.get(name, LAYER_COLUMNS if "layers" in name else COLUMNS)
        )
        for name, rows in out.items()
    }


CONDITION_COLUMNS = ["level", "load_average", "cores", "threads"]


def conditions(level: int, before: float | None, threads: int) -> tuple:
    """The machine's load while a level was timed (the higher of before and after; NaN
    where the system reports none) and the cores this process may use."""
    after = load_average()
    loads = [x for x in (before, after) if x is not None]
    return (level, max(loads) if loads else float("nan"), available_cores(), threads)


def _finding(inp: FindingInputs) -> dict:
    if not inp.has("runtime"):
        return {}
    parts = [inp.tables.get(t) for t in ("runtime_layers", "runtime_layers_synthetic")]
    parts = [t for t in parts if t is not None]
    layers = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    found = F.runtime_finding(inp.tables["runtime"], layers, inp.layer_types)
    synthetic = inp.tables.get("runtime_synthetic")
    if synthetic is not None and not synthetic.empty:
        # the figure shows the synthetic sparsities beside the run's levels; the sentences
        # state the run's levels only
        both = pd.concat([inp.tables["runtime"], synthetic], ignore_index=True)
        found["ratios_shown"] = F.runtime_finding(both, layers, inp.layer_types)["ratios"]
    else:
        found["ratios_shown"] = found["ratios"]
    cond = inp.tables.get("runtime_conditions")
    if cond is not None and not cond.empty and cond["load_average"].notna().any():
        worst = cond.loc[cond["load_average"].idxmax()]
        found["load"] = {
            "max_load": float(worst["load_average"]),
            "cores": int(worst["cores"]),
            "under_load": bool((cond["load_average"] > cond["cores"]).any()),
        }
    return {"runtime": found}


register_analysis(
    AnalysisSpec(
        name="runtime",
        description="latency, memory and energy of every level dense, sparse, exported, hybrid "
        "and in ONNX Runtime (needs a quiet machine)",
        tables={
            "runtime": COLUMNS,
            "runtime_layers": LAYER_COLUMNS,
            "runtime_synthetic": COLUMNS,
            "runtime_layers_synthetic": LAYER_COLUMNS,
            "runtime_conditions": CONDITION_COLUMNS,
        },
        column_kinds={"cores": "integer", "threads": "integer"},
        compute=runtime_tables,
        settings=RuntimeSettings,
        depends_on=lambda cfg: {**cfg.analysis.runtime.model_dump(), "device": cfg.device},
        default=False,
        on_branches=False,
        finding=_finding,
        sentences=lambda s: (
            [S.runtime_sentence(s.summary["runtime"])]
            if (s.summary.get("runtime") or {}).get("ratios")
            else []
        ),
        figures=(Figure(runtime_figure.draw, ("runtime", "runtime_synthetic")),),
    )
)
