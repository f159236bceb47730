"""The paper's four findings, and the critical sparsity, measured on one run's tables.

Every function takes tidy tables (pandas DataFrames with the pinned columns)
and returns plain numbers, so that a script can read ``summary.json`` and a
test can build the tables by hand.

1. Later stages are pruned more: per pruned level, the Spearman rank
   correlation between a stage's position in the network and its sparsity
   (over the layers IMP prunes; excluded layers are left out), and whether it
   rises strictly from each stage to the next.
2. Fully pruned neurons: per level, how many neurons of pruned layers have all
   their incoming weights at zero (counted at each level, never summed over
   levels), the distinct neurons ever fully pruned, and the highest neuron
   sparsity.
3. Spread of zeroing effects: per level, the standard deviation, the
   interquartile range and the 5-95% range of the change in accuracy when one
   neuron is zeroed, and the rank correlation of each with network sparsity
   (so that tails narrowing is not read as the distribution narrowing). Beside
   it, the constant a zeroed neuron still emits through its BatchNorm, and,
   when both zeroing modes were computed, how often they agree.
4. Similarity to the baseline: per level and stage, the mean similarity of the
   stage's layers to the dense network, the rank correlation of stage position
   with it (negative: later stages drift further), and whether it falls
   strictly from each stage to the next.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd


def share(num: int | None, den: int | None) -> float | None:
    """``num`` of ``den`` as a fraction (None without a denominator)."""
    return None if not den else (num or 0) / den


def _f(x: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def spearman(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    sx, sy = pd.Series(np.asarray(x, dtype=float)), pd.Series(np.asarray(y, dtype=float))
    if len(sx) < 2 or sx.nunique() < 2 or sy.nunique() < 2:
        return float("nan")
    return float(sx.rank().corr(sy.rank()))


def critical_sparsity(accuracy: pd.DataFrame, margin: float) -> dict[str, Any]:
    """The first level whose accuracy falls more than ``margin`` below the dense level 0."""
    acc = accuracy.sort_values("level")
    base = acc[acc["level"] == 0]
    if base.empty:
        return {
            "baseline_accuracy": None,
            "margin": margin,
            "level": None,
            "network_sparsity": None,
        }
    base_acc = float(base["test_accuracy"].iloc[0])
    below = acc[(acc["level"] > 0) & (acc["test_accuracy"] < base_acc - margin)]
    out: dict[str, Any] = {
        "baseline_accuracy": base_acc,
        "margin": margin,
        "level": None,
        "network_sparsity": None,
        "test_accuracy": None,
        "drop": None,
        "last_level_within_margin": None,
    }
    within = acc[(acc["level"] > 0) & (acc["test_accuracy"] >= base_acc - margin)]
    if not below.empty:
        first = below.iloc[0]
        out.update(
            level=int(first["level"]),
            network_sparsity=float(first["network_sparsity"]),
            test_accuracy=float(first["test_accuracy"]),
            drop=base_acc - float(first["test_accuracy"]),
        )
        within = within[within["level"] < out["level"]]
    if not within.empty:
        out["last_level_within_margin"] = int(within["level"].iloc[-1])
    return out


def pruned_stage_sparsity(
    layers: pd.DataFrame, stage_order: list[str], exclude: list[str]
) -> pd.DataFrame:
    """Stage sparsity over the layers IMP prunes: columns level, network_sparsity, stage, position, sparsity."""
    df = layers[~layers["layer"].isin(exclude)]
    g = df.groupby(["level", "network_sparsity", "stage"], as_index=False)[
        ["weights", "zeros"]
    ].sum()
    g["sparsity"] = g["zeros"] / g["weights"]
    position = {s: i for i, s in enumerate(stage_order)}
    g["position"] = g["stage"].map(position)
    return g.sort_values(["level", "position"]).reset_index(drop=True)


def stage_order_finding(
    layers: pd.DataFrame,
    stage_order: list[str],
    exclude: list[str],
    critical_level: int | None = None,
) -> dict[str, Any]:
    st = pruned_stage_sparsity(layers, stage_order, exclude)
    per_level = []
    for level, g in st[st["level"] > 0].groupby("level"):
        rho = spearman(g["position"], g["sparsity"])
        increasing = bool((np.diff(g["sparsity"].to_numpy()) > 0).all())
        per_level.append(
            {
                "level": int(level),
                "network_sparsity": float(g["network_sparsity"].iloc[0]),
                "rho": _f(rho),
                "monotone_increasing": increasing,
                "stage_sparsity": {
                    s: float(v) for s, v in zip(g["stage"], g["sparsity"], strict=True)
                },
            }
        )
    considered = [p for p in per_level if critical_level is None or p["level"] < critical_level]
    rhos = [p["rho"] for p in considered if p["rho"] is not None]
    return {
        "stages": [s for s in stage_order if s in set(st["stage"])],
        "per_level": per_level,
        "levels_considered": len(considered),
        "levels_later_stages_pruned_more": sum(1 for r in rhos if r > 0),
        "levels_strictly_increasing": sum(1 for p in considered if p["monotone_increasing"]),
        "mean_rho": _f(np.mean(rhos)) if rhos else None,
    }


def dead_neuron_finding(
    dead: pd.DataFrame, neurons: pd.DataFrame, exclude: list[str]
) -> dict[str, Any]:
    """Fully pruned neurons of the pruned layers, counted at each level (never summed over
    levels: the same neuron stays dead), and the distinct neurons dead at some level."""
    d = dead[~dead["layer"].isin(exclude)]
    n = neurons[~neurons["layer"].isin(exclude)]
    per_level = []
    for level, g in d.groupby("level"):
        ns = n[n["level"] == level]["sparsity"]
        per_level.append(
            {
                "level": int(level),
                "network_sparsity": float(g["network_sparsity"].iloc[0]),
                "fully_pruned": int(g["fully_pruned"].sum()),
                "neurons": int(g["neurons"].sum()),
                "max_neuron_sparsity": _f(ns.max()) if len(ns) else None,
                "layers_with_fully_pruned": sorted(g[g["fully_pruned"] > 0]["layer"].tolist()),
            }
        )
    with_dead = [p["level"] for p in per_level if p["fully_pruned"] > 0]
    ever = n[n["sparsity"] >= 1.0][["layer", "neuron"]].drop_duplicates()
    return {
        "per_level": per_level,
        "levels_with_fully_pruned": len(with_dead),
        "first_level_with_fully_pruned": with_dead[0] if with_dead else None,
        "last_level_fully_pruned": per_level[-1]["fully_pruned"] if per_level else 0,
        "distinct_fully_pruned": len(ever),
    }


SPREADS = {
    "std": "standard deviation",
    "iqr": "interquartile range",
    "tails": "5th-95th percentile range",
}


def _spread_row(level: int, g: pd.DataFrame) -> dict[str, Any]:
    d = g["delta_accuracy"]
    q = d.quantile([0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "level": int(level),
        "network_sparsity": float(g["network_sparsity"].iloc[0]),
        "neurons": len(d),
        "std": _f(d.std(ddof=0)),
        "q1": _f(q[0.25]),
        "median": _f(q[0.5]),
        "q3": _f(q[0.75]),
        "iqr": _f(q[0.75] - q[0.25]),
        "p05": _f(q[0.05]),
        "p95": _f(q[0.95]),
        "tails": _f(q[0.95] - q[0.05]),
        "min": _f(d.min()),
        "max": _f(d.max()),
    }


def zeroing_spread_finding(
    zeroing: pd.DataFrame, critical_level: int | None = None
) -> dict[str, Any]:
    """How the spread of single-neuron zeroing effects changes with sparsity, measured three
    ways (standard deviation, interquartile range, 5-95% range), so that a narrowing of the
    tails is not reported as a narrowing of the whole distribution."""
    per_level = [_spread_row(level, g) for level, g in zeroing.groupby("level")]
    considered = [p for p in per_level if critical_level is None or p["level"] < critical_level]
    out: dict[str, Any] = {
        "per_level": per_level,
        "levels_considered": len(considered),
        "rho_sparsity_std": None,
        "first_std": None,
        "last_std": None,
        "spreads": {},
    }
    if considered:
        sparsity = [p["network_sparsity"] for p in considered]
        for key in SPREADS:
            out["spreads"][key] = {
                "first": considered[0][key],
                "last": considered[-1][key],
                "rho": _f(spearman(sparsity, [p[key] for p in considered])),
            }
        out["rho_sparsity_std"] = out["spreads"]["std"]["rho"]
        out["first_std"], out["last_std"] = considered[0]["std"], considered[-1]["std"]
        out["first_level"], out["last_level"] = considered[0]["level"], considered[-1]["level"]
    return out


def bn_constant_finding(bn: pd.DataFrame, stage_order: list[str]) -> dict[str, Any]:
    """The constant a zeroed neuron still emits through its BatchNorm, per stage (last level)."""
    last = bn[bn["level"] == bn["level"].max()]
    a = last.assign(abs=last["constant"].abs())
    by_stage = a.groupby("stage")["abs"].median()
    stages = [s for s in stage_order if s in by_stage.index]
    return {
        "level": int(last["level"].iloc[0]),
        "neurons": len(a),
        "median_abs": _f(a["abs"].median()),
        "stage_median_abs": {s: _f(by_stage[s]) for s in stages},
        "share_above_0_1": _f((a["abs"] > 0.1).mean()),
    }


def zeroing_modes_finding(weights: pd.DataFrame, output: pd.DataFrame) -> dict[str, Any]:
    """Zeroing as the paper defines it against zeroing after BatchNorm, neuron by neuron."""
    keys = ["level", "layer", "neuron"]
    m = weights[[*keys, "delta_accuracy"]].merge(
        output[[*keys, "delta_accuracy"]], on=keys, suffixes=("_weights", "_output")
    )
    same = (m["delta_accuracy_weights"] - m["delta_accuracy_output"]).abs() < 1e-12
    return {
        "neurons": len(m),
        "same_change": int(same.sum()),
        "rho": _f(spearman(m["delta_accuracy_weights"], m["delta_accuracy_output"])),
    }


def similarity_finding(
    similarity: pd.DataFrame,
    stage_order: list[str],
    metric: str = "cosine",
    critical_level: int | None = None,
) -> dict[str, Any]:
    s = similarity[(similarity["reference"] == "baseline") & (similarity["metric"] == metric)]
    position = {st: i for i, st in enumerate(stage_order)}
    per_level = []
    for level, g in s.groupby("level"):
        by_stage = g.groupby("stage")["value"].mean()
        stages = sorted(by_stage.index, key=lambda st: position.get(st, len(position)))
        per_level.append(
            {
                "level": int(level),
                "network_sparsity": float(g["network_sparsity"].iloc[0]),
                "stage_mean": {st: _f(by_stage[st]) for st in stages},
                "rho_stage_similarity": _f(
                    spearman([position[st] for st in stages], [by_stage[st] for st in stages])
                ),
                "mean": _f(g["value"].mean()),
            }
        )
    considered = [p for p in per_level if critical_level is None or p["level"] < critical_level]
    rhos = [p["rho_stage_similarity"] for p in considered if p["rho_stage_similarity"] is not None]
    strict = sum(
        1
        for p in considered
        if len(p["stage_mean"]) > 1
        and all(
            b is not None and a is not None and b < a
            for a, b in itertools.pairwise(p["stage_mean"].values())
        )
    )
    lowest = (
        min(considered, key=lambda p: p["mean"] if p["mean"] is not None else math.inf)
        if considered
        else None
    )
    return {
        "metric": metric,
        "per_level": per_level,
        "levels_considered": len(considered),
        "levels_later_stages_less_similar": sum(1 for r in rhos if r < 0),
        "levels_strictly_decreasing": strict,
        "mean_rho": _f(np.mean(rhos)) if rhos else None,
        "lowest_level": lowest["level"] if lowest else None,
        "lowest_mean": lowest["mean"] if lowest else None,
        "last_considered": considered[-1] if considered else None,
    }


# Frankle et al. (2020) call two networks linearly connected (in one basin) when the error
# barrier on the line between them is below 2 points of accuracy.
# Frankle et al.'s criterion for one basin: an error barrier of at most 2 points. It is
# applied to the barrier above the straight line between the ends (analysis/barriers.py),
# which a smooth path between ends of different error does not exceed.
CONNECTED_ERROR_POINTS = 2.0


def _path_rows(conn: pd.DataFrame, barriers: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per level and reference: both barriers in error points and in loss."""
    wide = barriers.set_index(["level", "reference", "metric"])
    out = []
    for (level, reference), g in conn.groupby(["level", "reference"]):
        g = g.sort_values("alpha")
        err, loss = wide.loc[(level, reference, "error")], wide.loc[(level, reference, "loss")]
        acc = g["test_accuracy"].to_numpy()
        out.append(
            {
                "level": int(level),
                "reference": reference,
                "network_sparsity": float(g["network_sparsity"].iloc[0]),
                "error_barrier_frankle": _f(err["barrier_frankle"]),
                "error_barrier_linear": _f(err["barrier_linear"]),
                "error_argmax_alpha": _f(err["argmax_alpha"]),
                "loss_barrier_frankle": _f(loss["barrier_frankle"]),
                "loss_barrier_linear": _f(loss["barrier_linear"]),
                "loss_argmax_alpha": _f(loss["argmax_alpha"]),
                "end_gap_points": _f(100 * abs(acc[-1] - acc[0])),
                "level_accuracy_on_path": _f(acc[-1]),
            }
        )
    return out


def _inside(alpha: float | None) -> bool:
    return alpha is not None and 0.0 < alpha < 1.0


def _reference_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    worst_loss = max(rows, key=lambda p: p["loss_barrier_linear"] or 0.0) if rows else None
    worst_err = max(rows, key=lambda p: p["error_barrier_linear"] or 0.0) if rows else None
    return {
        "levels_considered": len(rows),
        "levels_connected": sum(
            1 for p in rows if (p["error_barrier_linear"] or 0.0) <= CONNECTED_ERROR_POINTS
        ),
        "levels_connected_frankle": sum(
            1 for p in rows if (p["error_barrier_frankle"] or 0.0) <= CONNECTED_ERROR_POINTS
        ),
        "levels_bump_inside": sum(
            1
            for p in rows
            if _inside(p["loss_argmax_alpha"]) and (p["loss_barrier_linear"] or 0) > 0
        ),
        "max_error_barrier_linear": worst_err["error_barrier_linear"] if worst_err else None,
        "max_error_barrier_linear_level": worst_err["level"] if worst_err else None,
        "max_loss_barrier_linear": worst_loss["loss_barrier_linear"] if worst_loss else None,
        "max_loss_barrier_linear_level": worst_loss["level"] if worst_loss else None,
        "max_error_barrier_frankle": _f(max((p["error_barrier_frankle"] or 0.0) for p in rows))
        if rows
        else None,
    }


def _ends(rows: list[dict[str, Any]], accuracy: pd.DataFrame | None) -> dict[str, Any] | None:
    """The level's accuracy at α = 1 (BatchNorm re-estimated) against accuracy.csv's."""
    if accuracy is None or accuracy.empty:
        return None
    by_level = accuracy.set_index("level")["test_accuracy"]
    drops = [
        100 * (float(by_level[p["level"]]) - p["level_accuracy_on_path"])
        for p in rows
        if p["reference"] == "previous" and p["level"] in by_level.index
    ]
    if not drops:
        return None
    return {"levels": len(drops), "min_points": _f(min(drops)), "max_points": _f(max(drops))}


def connectivity_finding(
    conn: pd.DataFrame,
    critical_level: int | None = None,
    barriers: pd.DataFrame | None = None,
    accuracy: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Per level and reference, both barriers (``connectivity_barriers.csv``; derived from
    ``conn`` for runs analysed before that table existed): one basin when the error rises
    at most 2 points above the straight line between the ends; where the worst point lies;
    and how far the path's BatchNorm-re-estimated ends sit from ``accuracy.csv``."""
    if barriers is None or barriers.empty:
        from prunescope.analysis.barriers import barrier_table

        barriers = barrier_table(conn)
    per_level = _path_rows(conn, barriers)
    out: dict[str, Any] = {"per_level": per_level, "threshold_points": CONNECTED_ERROR_POINTS}
    for reference in ("previous", "baseline"):
        rows = [
            p
            for p in per_level
            if p["reference"] == reference
            and (critical_level is None or p["level"] < critical_level)
        ]
        out[reference] = _reference_summary(rows)
    out["ends"] = _ends(per_level, accuracy)
    return out


def export_finding(export: pd.DataFrame) -> dict[str, Any]:
    """What the structured export of the last level removes and keeps."""
    last = export[export["level"] == export["level"].max()]
    t = last[
        [
            "neurons",
            "removed",
            "kept_constant",
            "params_before",
            "params_after",
            "flops_before",
            "flops_after",
        ]
    ].sum()
    return {
        "level": int(last["level"].iloc[0]),
        "network_sparsity": float(last["network_sparsity"].iloc[0]),
        "neurons": int(t["neurons"]),
        "removed": int(t["removed"]),
        "kept_empty": int(t["kept_constant"]),
        "params_share": _f(t["params_after"] / t["params_before"]),
        "flops_share": _f(t["flops_after"] / t["flops_before"]),
        "max_abs_diff": _f(last["max_abs_diff"].max()),
    }


def group_finding(groups: pd.DataFrame) -> dict[str, Any]:
    """Which declared layer group (attention vs MLP) is pruned more, at the last level and
    at how many of the pruned levels."""
    pruned = groups[groups["level"] > 0]
    wide = pruned.pivot_table(index="level", columns="group", values="sparsity")
    most = wide.idxmax(axis=1)
    last = int(wide.index.max())
    return {
        "level": last,
        "network_sparsity": float(pruned.loc[pruned["level"] == last, "network_sparsity"].iloc[0]),
        "last": {g: _f(v) for g, v in wide.loc[last].items()},
        "most_pruned": str(most.loc[last]),
        "levels_most_pruned": int((most == most.loc[last]).sum()),
        "levels": len(wide),
    }


def controls_finding(
    accuracy: pd.DataFrame,
    controls: dict[str, dict[str, pd.DataFrame]],
    stage_order: list[str],
    exclude: list[str],
) -> dict[str, Any]:
    """Each control branch against IMP: the accuracy gap (control − IMP) per pruned level, and,
    where it has sparsity tables, whether its later stages are pruned more too."""
    imp = accuracy.set_index("level")["test_accuracy"]
    out: dict[str, Any] = {}
    for kind, tables in controls.items():
        acc = tables["accuracy"].set_index("level")
        levels = [int(lv) for lv in acc.index if lv > 0 and lv in imp.index]
        gaps = [
            {
                "level": lv,
                "network_sparsity": float(acc.loc[lv, "network_sparsity"]),
                "gap": float(acc.loc[lv, "test_accuracy"] - imp[lv]),
            }
            for lv in levels
        ]
        entry: dict[str, Any] = {
            "per_level": gaps,
            "mean_gap": _f(np.mean([g["gap"] for g in gaps])) if gaps else None,
            "last": gaps[-1] if gaps else None,
            "levels_below_imp": sum(1 for g in gaps if g["gap"] < 0),
        }
        if "sparsity_layers" in tables and not tables["sparsity_layers"].empty:
            st = stage_order_finding(tables["sparsity_layers"], stage_order, exclude)
            entry["stage_mean_rho"] = st["mean_rho"]
            entry["stage_sparsity_last"] = (
                st["per_level"][-1]["stage_sparsity"] if st["per_level"] else {}
            )
        out[kind] = entry
    return out


def crossover(points: pd.DataFrame) -> float | None:
    """The lowest layer sparsity from which sparse beats dense at every measured point above
    (columns sparsity, ratio = sparse / dense latency); None when it never does."""
    p = points.sort_values("sparsity")
    faster = (p["ratio"] < 1.0).to_numpy()
    if not faster.any() or not faster[-1]:
        return None
    i = len(faster) - 1
    while i > 0 and faster[i - 1]:
        i -= 1
    return float(p["sparsity"].iloc[i])


def runtime_finding(
    runtime: pd.DataFrame, layers: pd.DataFrame, layer_types: dict[str, str]
) -> dict[str, Any]:
    """Each format's latency against dense per level and batch size, and per layer type the
    sparsity at which a sparse layer overtakes the dense one."""
    ratios = []
    for (level, batch), g in runtime.groupby(["level", "batch_size"]):
        dense = g[g["format"] == "dense"]["latency_ms"]
        if dense.empty or not math.isfinite(float(dense.iloc[0])):
            continue
        for _, r in g.iterrows():
            ratios.append(
                {
                    "level": int(level),
                    "network_sparsity": float(r["network_sparsity"]),
                    "batch_size": int(batch),
                    "format": r["format"],
                    "ratio": _f(r["latency_ms"] / float(dense.iloc[0])),
                    "right": bool(math.isfinite(r["latency_ms"])),
                }
            )
    per_type: dict[str, dict[str, Any]] = {}
    if not layers.empty:
        wide = (
            layers[layers["format"].isin(["dense", "sparse"])]
            .pivot_table(
                index=["level", "network_sparsity", "layer", "sparsity", "batch_size"],
                columns="format",
                values="latency_ms",
            )
            .reset_index()
        )
        wide["ratio"] = wide["sparse"] / wide["dense"]
        wide["type"] = wide["layer"].map(lambda lay: layer_types.get(lay, "other"))
        for (kind, batch), g in wide.groupby(["type", "batch_size"]):
            per_type.setdefault(kind, {})[str(int(batch))] = {
                "crossover_sparsity": crossover(g),
                "best_ratio": _f(g["ratio"].min()),
                "points": len(g),
            }
    return {"ratios": ratios, "layer_types": per_type}
