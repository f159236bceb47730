"""The findings as sentences, built from the numbers in ``summary.json``.

Which way a sentence goes (rises or falls, narrows or widens) is decided by the
data, and each sentence says which levels it was measured on and how: a claim
is worded no stronger than the numbers behind it. Sentences are plain text
(the page escapes them).
"""

from __future__ import annotations

from typing import Any

from prunescope.report.findings import SPREADS
from prunescope.wording import plural

Finding = tuple[str, str]  # (title, text)


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def trend(rho: float | None, up: str, down: str, flat: str) -> str:
    """A direction only where the rank correlation supports one: |ρ| ≥ 0.7 states it,
    0.4 ≤ |ρ| < 0.7 says it "tends to", anything weaker is no monotone trend."""
    if rho is None or abs(rho) < 0.4:
        return flat
    word = up if rho > 0 else down
    return word if abs(rho) >= 0.7 else f"tends to {WEAK.get(word, word)}"


WEAK = {"widens": "widen", "narrows": "narrow", "rises": "rise", "falls": "fall"}


def _span(levels: list[int]) -> str:
    if not levels:
        return "no level"
    return f"level {levels[0]}" if len(levels) == 1 else f"levels {levels[0]}-{levels[-1]}"


def critical_finding(crit: dict[str, Any], pruned_levels: list[int]) -> Finding:
    margin = 100 * crit["margin"]
    if crit.get("level") is None:
        return (
            "Critical sparsity: not reached.",
            f"No level's test accuracy falls more than {margin:g} points below the dense "
            f"network's {pct(crit['baseline_accuracy'], 2)}, so findings 1, 3 and 4 are measured "
            f"on every level.",
        )
    before = [lv for lv in pruned_levels if lv < crit["level"]]
    return (
        f"Critical sparsity: {pct(crit['network_sparsity'])}.",
        f"Level {crit['level']} is the first whose test accuracy ({pct(crit['test_accuracy'], 2)}) "
        f"falls more than {margin:g} points below the dense network's "
        f"{pct(crit['baseline_accuracy'], 2)} (a drop of {100 * crit['drop']:.2f} points). "
        f"Findings 1, 3 and 4 are measured on the levels before it ({_span(before)} of the pruned "
        f"levels; level 0 too where a finding uses the dense network).",
    )


def stage_order_finding(st: dict[str, Any], crit_level: int | None) -> Finding:
    title = "Later stages pruned more?"
    if not st["levels_considered"]:
        return title, "No pruned level before the critical sparsity to measure."
    considered = [p for p in st["per_level"] if crit_level is None or p["level"] < crit_level]
    last = considered[-1]
    stages = ", ".join(f"{s} {pct(v)}" for s, v in last["stage_sparsity"].items())
    n = st["levels_considered"]
    return (
        title,
        f"At {st['levels_later_stages_pruned_more']} of {plural(n, 'pruned level')} "
        f"({_span([p['level'] for p in considered])}), stage sparsity rises with stage depth by "
        f"rank (Spearman ρ between stage position and sparsity > 0; mean ρ = "
        f"{num(st['mean_rho'])}); it rises strictly from each stage to the next at "
        f"{st['levels_strictly_increasing']} of them. At level {last['level']} "
        f"({pct(last['network_sparsity'])} sparse): {stages}.",
    )


def dead_neuron_finding(dn: dict[str, Any]) -> Finding:
    title = "Fully pruned neurons:"
    last = dn["per_level"][-1]
    keeps = pct(1 - (last["max_neuron_sparsity"] or 0))
    if dn["first_level_with_fully_pruned"] is None:
        return (
            title,
            f"None: no neuron of a pruned layer has all its incoming weights pruned at any of the "
            f"{plural(len(dn['per_level']), 'level')}. At the last level ({last['level']}, "
            f"{pct(last['network_sparsity'])} sparse) the sparsest neuron keeps {keeps} of its "
            "fan-in.",
        )
    first = next(p for p in dn["per_level"] if p["level"] == dn["first_level_with_fully_pruned"])
    return (
        title,
        f"They appear from level {first['level']} ({pct(first['network_sparsity'])} sparse: "
        f"{first['fully_pruned']} of {first['neurons']} neurons, in "
        f"{', '.join(first['layers_with_fully_pruned'])}). At the last level ({last['level']}, "
        f"{pct(last['network_sparsity'])} sparse) {last['fully_pruned']} of {last['neurons']} "
        f"neurons have no incoming weight left; {dn['distinct_fully_pruned']} distinct neurons "
        f"were fully pruned at some level (each level's count is in the figure).",
    )


def zeroing_spread_finding(zs: dict[str, Any]) -> Finding:
    title = "Spread of zeroing effects:"
    parts, narrows, widens = [], [], []
    for key, name in SPREADS.items():
        sp = zs["spreads"][key]
        way = trend(sp["rho"], "widens", "narrows", "shows no monotone trend")
        (narrows if way == "narrows" else widens if way == "widens" else []).append(name)
        parts.append(
            f"the {name} goes from {num(100 * sp['first'], 2)} to {num(100 * sp['last'], 2)} "
            f"points and {way} with sparsity (ρ = {num(sp['rho'])})"
        )
    verdict = ""
    if narrows and len(narrows) < len(SPREADS):
        verdict = f" What narrows is the {' and the '.join(narrows)}, not every measure of spread."
    levels = f"levels {zs['first_level']}-{zs['last_level']}"
    return (
        title,
        f"Over {levels} ({plural(zs['levels_considered'], 'level')}), for the change in test "
        f"accuracy from zeroing one neuron: {'; '.join(parts)}.{verdict}",
    )


def bn_constant_finding(bn: dict[str, Any], modes: dict[str, Any] | None) -> Finding:
    stages = ", ".join(f"{s} {num(v)}" for s, v in bn["stage_median_abs"].items())
    text = (
        "Zeroing a neuron's incoming weights and bias (the paper's definition) does not silence "
        "a neuron that a BatchNorm follows: the BatchNorm then emits β − γμ/√(σ²+ε) at every "
        f"pixel. At level {bn['level']} the median |constant| over {bn['neurons']} such neurons "
        f"is {num(bn['median_abs'])} ({stages} by stage); {pct(bn['share_above_0_1'])} of them "
        "emit more than 0.1 in magnitude."
    )
    if modes:
        text += (
            f" Zeroing after the BatchNorm instead gives the same accuracy change in "
            f"{modes['same_change']} of {modes['neurons']} ablations (every neuron at every "
            f"level; Spearman ρ between the two changes = {num(modes['rho'])})."
        )
    else:
        text += (
            ' Set analysis.zeroing.mode = "both" to measure zeroing after the BatchNorm beside it.'
        )
    return "What zeroing leaves:", text


def similarity_finding(metric: str, sm: dict[str, Any], batchnorm: bool = True) -> Finding:
    last = sm["last_considered"]
    stages = ", ".join(f"{s} {num(v, 3)}" for s, v in last["stage_mean"].items())
    n = sm["levels_considered"]
    return (
        f"Similarity to the baseline ({metric}):",
        f"Measured on each prunable module's output{' (before its BatchNorm)' if batchnorm else ''}. "
        "Later stages are less "
        f"similar to the dense network than earlier ones at {sm['levels_later_stages_less_similar']} "
        f"of {plural(n, 'level')} by rank (mean ρ between stage position and similarity = "
        f"{num(sm['mean_rho'])}), and strictly from each stage to the next at "
        f"{sm['levels_strictly_decreasing']} of them. The mean over layers is lowest at level "
        f"{sm['lowest_level']} ({num(sm['lowest_mean'], 3)}). At level {last['level']} "
        f"({pct(last['network_sparsity'])} sparse) the stage means are: {stages}.",
    )


def _basin(part: dict[str, Any], threshold: float, what: str) -> str:
    n = part["levels_considered"]
    inside = part["levels_bump_inside"]
    return (
        f"{what}: the error rises at most {threshold:g} points above the straight line between "
        f"the ends at {part['levels_connected']} of {plural(n, 'level')} (largest rise "
        f"{num(part['max_error_barrier_linear'])} points, level "
        f"{part['max_error_barrier_linear_level']}); the loss bulges above that line inside "
        f"the path at {inside} of them (largest {num(part['max_loss_barrier_linear'], 3)}, level "
        f"{part['max_loss_barrier_linear_level']}). Frankle's barrier (worst point above the "
        f"mean of the ends), which counts half of any gap between the ends, is within "
        f"{threshold:g} points at {part['levels_connected_frankle']} of them (largest "
        f"{num(part['max_error_barrier_frankle'])})"
    )


def _ends_words(ends: dict[str, Any]) -> str:
    """Drops below accuracy.csv, in points; a negative drop is a rise, said as one."""
    lo, hi = ends["min_points"], ends["max_points"]
    if lo is None or hi is None:
        return "n/a points from"
    if lo >= 0:
        return f"{num(lo)} to {num(hi)} points below"
    if hi <= 0:
        return f"{num(-hi)} to {num(-lo)} points above"
    return f"between {num(-lo)} points above and {num(hi)} points below"


def connectivity_finding(cf: dict[str, Any], batchnorm: bool = True) -> Finding:
    """The paper's hypothesis that pruned networks find "a similar basin", tested against
    the straight line between the ends (analysis/barriers.py)."""
    threshold = cf["threshold_points"]
    text = (
        _basin(cf["previous"], threshold, "Each level and the previous one")
        + ". "
        + _basin(cf["baseline"], threshold, "Each level and the dense network")
        + "."
    )
    if batchnorm:
        text += " BatchNorm statistics are re-estimated at every point of the path"
        if ends := cf.get("ends"):
            text += f", which puts a level's own accuracy {_ends_words(ends)} accuracy.csv's"
        text += "."
    return "One basin? (linear mode connectivity):", text


def controls_finding(controls: dict[str, Any]) -> Finding:
    parts = []
    for kind, c in controls.items():
        if not c["per_level"]:
            continue
        last = c["last"]
        part = (
            f"{kind} is {num(100 * abs(last['gap']))} points "
            f"{'below' if last['gap'] < 0 else 'above'} IMP at level {last['level']} "
            f"({pct(last['network_sparsity'])} sparse; mean gap {num(100 * c['mean_gap'])} points, "
            f"below IMP at {c['levels_below_imp']} of {plural(len(c['per_level']), 'level')})"
        )
        if c.get("stage_mean_rho") is not None and kind == "random_global":
            part += (
                f"; its stages are pruned alike (mean ρ between stage position and sparsity "
                f"{num(c['stage_mean_rho'])})"
            )
        parts.append(part)
    return (
        "Controls (same data order, schedule and sparsities):",
        "; ".join(parts) + ". A negative gap is what IMP's own masks and weights buy.",
    )


def group_sentence(gf: dict[str, Any]) -> Finding:
    shares = ", ".join(f"{g} {pct(v)}" for g, v in gf["last"].items())
    return (
        "Which layers are pruned more?",
        f"At the last level ({gf['level']}, {pct(gf['network_sparsity'])} network sparsity) the "
        f"layer groups are this sparse: {shares}; {gf['most_pruned']} is the sparsest group at "
        f"{gf['levels_most_pruned']} of the {gf['levels']} pruned levels.",
    )


def export_sentence(ex: dict[str, Any]) -> Finding:
    return (
        "A smaller network?",
        f"The structured export of level {ex['level']} ({pct(ex['network_sparsity'])} sparse) "
        f"removes {ex['removed']} of {ex['neurons']} neurons of the pruned layers and keeps "
        f"{ex['kept_empty']} empty ones it cannot remove exactly; what remains has "
        f"{pct(ex['params_share'])} of the dense pruned layers' parameters and "
        f"{pct(ex['flops_share'])} of their FLOPs, and its outputs differ from the masked "
        f"network's by at most {ex['max_abs_diff']:.2g}.",
    )


def crossover_words(c: dict[str, Any]) -> str:
    """Where a sparse layer beats its dense version, as the numbers say it. No crossover is
    not "never": a best ratio below 1 was faster somewhere, only not up to the sparsest
    point (a crossover needs every point above it faster)."""
    if c["crossover_sparsity"] is not None:
        return f"from {pct(c['crossover_sparsity'])} layer sparsity"
    best, points = c["best_ratio"], c["points"]
    if best is not None and best < 1:
        return (
            f"not steadily: at best {num(best)}×, faster at some of {points} measurements but "
            "not at the sparsest"
        )
    return f"never: at best {num(best)}× the dense layer's latency over {points} measurements"


def runtime_sentence(rt: dict[str, Any]) -> Finding:
    ratios = [r for r in rt["ratios"] if r["format"] != "dense" and r["right"]]
    last = max(r["level"] for r in rt["ratios"])
    parts = []
    for b in sorted({r["batch_size"] for r in ratios}):
        at = [r for r in ratios if r["batch_size"] == b and r["level"] == last]
        parts.append(f"batch {b}: " + ", ".join(f"{r['format']} {num(r['ratio'])}×" for r in at))
    cross = [
        f"{kind} at batch {b}: {crossover_words(c)}"
        for kind, by_batch in rt["layer_types"].items()
        for b, c in by_batch.items()
    ]
    hybrid = [r for r in ratios if r["format"] == "hybrid" and r["level"] == last]
    pays = any(r["ratio"] is not None and r["ratio"] < 1 for r in hybrid)
    return (
        "What the sparsity buys at run time:",
        f"At the last level ({last}), latency relative to the dense network: {'; '.join(parts)}. "
        f"A sparse (CSR) layer beats its dense version: {'; '.join(cross) or 'not measured'}. "
        f"The paper's dense-early/sparse-late proposal, as the hybrid of the faster format per "
        f"stage, {'pays' if pays else 'does not pay'} end to end on this machine at that level."
        + load_caveat(rt.get("load")),
    )


def load_caveat(load: dict[str, Any] | None) -> str:
    """Timings taken on a busy machine say so (runtime_conditions.csv)."""
    if not load or not load["under_load"]:
        return ""
    return (
        f" These timings were taken on a busy machine (load up to {num(load['max_load'], 1)} on "
        f"{load['cores']} cores); the formats were timed interleaved, so load slows them alike, but it adds "
        f"noise: rerun on a quiet machine before quoting these numbers."
    )
