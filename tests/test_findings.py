"""Findings computed from tables built by hand, where each value is known."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from prunescope.report.findings import (
    critical_sparsity,
    dead_neuron_finding,
    similarity_finding,
    spearman,
    stage_order_finding,
    zeroing_spread_finding,
)

STAGES = ["stem", "stage1", "stage2", "fc"]


def accuracy(values):
    return pd.DataFrame(
        {
            "level": range(len(values)),
            "network_sparsity": [1 - 0.8**k for k in range(len(values))],
            "test_accuracy": values,
            "test_loss": [1.0] * len(values),
        }
    )


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): 1 - 6*(0+1+1)/(3*8) = 0.5
    assert spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))


def test_critical_sparsity():
    c = critical_sparsity(accuracy([0.90, 0.91, 0.895, 0.885, 0.80]), margin=0.01)
    assert c["level"] == 3 and c["drop"] == pytest.approx(0.015)
    assert c["network_sparsity"] == pytest.approx(1 - 0.8**3)
    assert c["last_level_within_margin"] == 2
    none = critical_sparsity(accuracy([0.90, 0.91, 0.90]), margin=0.01)
    assert none["level"] is None and none["last_level_within_margin"] == 2


def layers_table():
    # level 1: stem 10%, stage1 20%, stage2 30%; level 2: stem 40%, stage1 30%, stage2 50%; fc excluded
    rows = []
    for level, sparsities in ((0, (0, 0, 0)), (1, (0.1, 0.2, 0.3)), (2, (0.4, 0.3, 0.5))):
        for stage, s in zip(STAGES[:3], sparsities, strict=True):
            rows.append((level, 0.1 * level, stage, f"{stage}.conv", 100, round(100 * s), s))
        rows.append((level, 0.1 * level, "fc", "fc", 50, 0, 0.0))
    return pd.DataFrame(
        rows,
        columns=["level", "network_sparsity", "stage", "layer", "weights", "zeros", "sparsity"],
    )


def test_stage_order_finding():
    f = stage_order_finding(layers_table(), STAGES, exclude=["fc"])
    assert f["stages"] == ["stem", "stage1", "stage2"]  # fc holds only the excluded classifier
    by_level = {p["level"]: p for p in f["per_level"]}
    assert by_level[1]["rho"] == pytest.approx(1.0) and by_level[1]["monotone_increasing"]
    assert by_level[2]["rho"] == pytest.approx(0.5) and not by_level[2]["monotone_increasing"]
    assert f["levels_later_stages_pruned_more"] == 2 and f["levels_strictly_increasing"] == 1
    assert f["mean_rho"] == pytest.approx(0.75)
    # with the critical level at 2, only level 1 counts
    assert (
        stage_order_finding(layers_table(), STAGES, ["fc"], critical_level=2)["levels_considered"]
        == 1
    )
    # including the never-pruned classifier changes the answer, which is why it is left out
    assert stage_order_finding(layers_table(), STAGES, exclude=[])["per_level"][0]["rho"] < 1


def test_dead_neuron_finding():
    dead = pd.DataFrame(
        {
            "level": [1, 1, 2, 2],
            "network_sparsity": [0.2, 0.2, 0.36, 0.36],
            "stage": ["a", "b"] * 2,
            "layer": ["x", "fc"] * 2,
            "neurons": [8, 10] * 2,
            "fully_pruned": [0, 3, 2, 5],
        }
    )
    neurons = pd.DataFrame(
        {
            "level": [1, 1, 2, 2],
            "network_sparsity": [0.2, 0.2, 0.36, 0.36],
            "stage": "a",
            "layer": "x",
            "neuron": [0, 1, 0, 1],
            "fan_in": 4,
            "zeros": [1, 2, 4, 4],
            "sparsity": [0.25, 0.5, 1.0, 1.0],
        }
    )
    f = dead_neuron_finding(dead, neurons, exclude=["fc"])
    assert [p["fully_pruned"] for p in f["per_level"]] == [0, 2]
    # counted at each level, never summed over levels: 2 at level 2, the same 2 neurons in all
    assert f["last_level_fully_pruned"] == 2 and f["first_level_with_fully_pruned"] == 2
    assert f["distinct_fully_pruned"] == 2 and f["levels_with_fully_pruned"] == 1
    assert f["per_level"][0]["max_neuron_sparsity"] == 0.5
    assert f["per_level"][1]["layers_with_fully_pruned"] == ["x"]


def test_zeroing_spread_finding():
    rows = []
    for level, deltas in ((0, [0.0, -0.02]), (1, [0.01, -0.03]), (2, [0.02, -0.06])):
        for i, d in enumerate(deltas):
            rows.append((level, 0.3 * level, "s", "l", i, 0.9, 0.9 + d, d, 0.3, 0.3))
    z = pd.DataFrame(
        rows,
        columns=[
            "level",
            "network_sparsity",
            "stage",
            "layer",
            "neuron",
            "base_accuracy",
            "accuracy",
            "delta_accuracy",
            "base_loss",
            "loss",
        ],
    )
    f = zeroing_spread_finding(z)
    assert [p["std"] for p in f["per_level"]] == pytest.approx([0.01, 0.02, 0.04])
    assert f["rho_sparsity_std"] == pytest.approx(1.0)
    assert f["first_std"] == pytest.approx(0.01) and f["last_std"] == pytest.approx(0.04)
    assert f["per_level"][2]["min"] == pytest.approx(-0.06)
    # two values a, b: quartiles interpolate linearly, IQR = |a-b|/2, 5-95% range = 0.9|a-b|
    assert [p["iqr"] for p in f["per_level"]] == pytest.approx([0.01, 0.02, 0.04])
    assert [p["tails"] for p in f["per_level"]] == pytest.approx([0.018, 0.036, 0.072])
    assert f["spreads"]["iqr"] == pytest.approx({"first": 0.01, "last": 0.04, "rho": 1.0})


def similarity_table():
    rows = []
    for level in (1, 2):
        for stage, layer, value in (
            ("stem", "c1", 0.95),
            ("stage1", "c2", 0.9 - 0.1 * level),
            ("stage1", "c3", 0.8 - 0.1 * level),
            ("stage2", "c4", 0.5),
        ):
            rows.append((level, 0.2 * level, "baseline", 0, stage, layer, "cosine", value))
            rows.append((level, 0.2 * level, "previous", level - 1, stage, layer, "cosine", 1.0))
    return pd.DataFrame(
        rows,
        columns=[
            "level",
            "network_sparsity",
            "reference",
            "reference_level",
            "stage",
            "layer",
            "metric",
            "value",
        ],
    )


def test_similarity_finding():
    f = similarity_finding(similarity_table(), STAGES, "cosine")
    by_level = {p["level"]: p for p in f["per_level"]}
    assert by_level[1]["stage_mean"] == pytest.approx({"stem": 0.95, "stage1": 0.75, "stage2": 0.5})
    assert by_level[1]["rho_stage_similarity"] == pytest.approx(-1.0)
    assert f["levels_later_stages_less_similar"] == 2
    assert f["levels_strictly_decreasing"] == 2  # 0.95 > 0.75 > 0.5 and 0.95 > 0.65 > 0.5
    assert f["lowest_level"] == 2 and f["lowest_mean"] == pytest.approx(
        (0.95 + 0.7 + 0.6 + 0.5) / 4
    )


def test_all_findings_is_json_ready():
    import json

    tables = {
        "accuracy": accuracy([0.9, 0.9, 0.7]),
        "sparsity_layers": layers_table(),
        "similarity": similarity_table(),
    }
    from prunescope.analysis.registry import FindingInputs
    from prunescope.report.build import findings

    crit = critical_sparsity(tables["accuracy"], 0.02)
    f = findings(FindingInputs(tables, STAGES, ["fc"], crit))
    assert f["critical_sparsity"]["level"] == 2
    assert f["later_stages_pruned_more"]["levels_considered"] == 1
    json.dumps(f, allow_nan=False)


def test_the_wording_says_which_spread_narrows():
    """A std that narrows while the IQR holds is a narrowing of the tails, and says so."""
    from prunescope.report.sentences import zeroing_spread_finding as words

    rows = []
    # every level: 8 neurons at -0.01 .. +0.01 (the IQR stays), two tails that shrink
    for level, tail in ((0, 0.20), (1, 0.15), (2, 0.10), (3, 0.05)):
        deltas = [-tail, -0.01, -0.005, 0.0, 0.0, 0.0, 0.0, 0.005, 0.01, tail]
        for i, d in enumerate(deltas):
            rows.append((level, 0.2 * level, "s", "l", i, 0.9, 0.9 + d, d, 0.3, 0.3))
    z = pd.DataFrame(rows, columns=ZEROING_COLUMNS)
    f = zeroing_spread_finding(z)
    assert f["spreads"]["std"]["rho"] == pytest.approx(-1.0)
    assert f["spreads"]["iqr"]["rho"] is None  # the IQR is the same at every level
    _, text = words(f)
    assert "the standard deviation goes from" in text and "narrows with sparsity" in text
    # quartiles at positions 2.25 and 6.75 of the 10 sorted values: -0.375 and +0.375 points
    assert (
        "the interquartile range goes from 0.75 to 0.75 points and shows no monotone trend" in text
    )
    assert "What narrows is the standard deviation and the 5th-95th percentile range" in text


ZEROING_COLUMNS = [
    "level",
    "network_sparsity",
    "stage",
    "layer",
    "neuron",
    "base_accuracy",
    "accuracy",
    "delta_accuracy",
    "base_loss",
    "loss",
]


def test_bn_constant_and_zeroing_modes_by_hand():
    from prunescope.report.findings import bn_constant_finding, zeroing_modes_finding

    bn = pd.DataFrame(
        {
            "level": [1, 2, 2, 2, 2],
            "network_sparsity": [0.2, 0.36, 0.36, 0.36, 0.36],
            "stage": ["stem", "stem", "stem", "stage1", "stage1"],
            "layer": ["a", "a", "a", "b", "b"],
            "neuron": [0, 0, 1, 0, 1],
            "constant": [9.0, -0.4, 0.6, 0.05, -0.2],
        }
    )
    f = bn_constant_finding(bn, STAGES)  # the last level only
    assert f["level"] == 2 and f["neurons"] == 4
    assert f["stage_median_abs"] == pytest.approx({"stem": 0.5, "stage1": 0.125})
    assert f["median_abs"] == pytest.approx(0.3) and f["share_above_0_1"] == pytest.approx(0.75)
    keys = {"level": [1, 1, 1], "layer": ["a", "a", "b"], "neuron": [0, 1, 0]}
    w = pd.DataFrame({**keys, "delta_accuracy": [-0.1, 0.0, -0.3]})
    o = pd.DataFrame({**keys, "delta_accuracy": [-0.1, -0.2, -0.25]})
    m = zeroing_modes_finding(w, o)
    assert m["neurons"] == 3 and m["same_change"] == 1


def test_sentences_say_which_levels_they_measure():
    from prunescope.report.sentences import critical_finding
    from prunescope.report.sentences import zeroing_spread_finding as words

    crit = {
        "level": 3,
        "network_sparsity": 0.488,
        "test_accuracy": 0.7,
        "baseline_accuracy": 0.9,
        "drop": 0.2,
        "margin": 0.02,
    }
    _, text = critical_finding(crit, [1, 2, 3, 4])
    assert "measured on the levels before it (levels 1-2 of the pruned levels" in text
    rows = []
    for level, deltas in ((0, [0.0, -0.02]), (1, [0.01, -0.03]), (2, [0.02, -0.06]), (3, [0, 0])):
        for i, d in enumerate(deltas):
            rows.append((level, 0.3 * level, "s", "l", i, 0.9, 0.9 + d, d, 0.3, 0.3))
    f = zeroing_spread_finding(pd.DataFrame(rows, columns=ZEROING_COLUMNS), critical_level=3)
    _, text = words(f)
    assert text.startswith("Over levels 0-2 (3 levels)")  # not the last level, 3


def _path(level: int, reference: str, errors: list[float], losses: list[float]) -> pd.DataFrame:
    alpha = [i / (len(errors) - 1) for i in range(len(errors))]
    return pd.DataFrame(
        {
            "level": level,
            "network_sparsity": 1 - 0.8**level,
            "reference": reference,
            "reference_level": level - 1 if reference == "previous" else 0,
            "alpha": alpha,
            "test_accuracy": [1 - e / 100 for e in errors],
            "test_loss": losses,
        }
    )


def test_a_smooth_path_between_unequal_ends_is_one_basin():
    """Levels 0 -> 1 improve smoothly, 47.4% -> 42.0% error: Frankle's barrier is half the
    gap between the ends (2.7 points, 'not connected' by his 2-point rule), the barrier
    above the straight line is 0 and the finding says one basin. A path with a real bump
    (level 2 to the dense network) is not."""
    from prunescope.analysis.barriers import barrier_naive, barrier_table

    smooth_err = [47.4, 46.0, 44.6, 43.3, 42.0]  # below the line between its ends
    bump_err = [47.4, 49.0, 53.0, 48.0, 40.0]
    conn = pd.concat(
        [
            _path(1, "previous", smooth_err, [1.285, 1.25, 1.22, 1.195, 1.173]),
            _path(1, "baseline", smooth_err, [1.285, 1.25, 1.22, 1.195, 1.173]),
            _path(2, "previous", [42.0, 41.8, 41.5, 41.3, 41.0], [1.2, 1.19, 1.18, 1.17, 1.16]),
            _path(2, "baseline", bump_err, [1.285, 1.40, 1.55, 1.35, 1.10]),
        ],
        ignore_index=True,
    )
    table = barrier_table(conn)
    for (level, ref, metric), row in table.set_index(["level", "reference", "metric"]).iterrows():
        g = conn[(conn["level"] == level) & (conn["reference"] == ref)]
        values = (100 * (1 - g["test_accuracy"]) if metric == "error" else g["test_loss"]).tolist()
        assert (
            row["barrier_frankle"],
            row["barrier_linear"],
            row["argmax_alpha"],
        ) == pytest.approx(barrier_naive(g["alpha"].tolist(), values))
    err = table[
        (table["metric"] == "error") & (table["level"] == 1) & (table["reference"] == "previous")
    ]
    assert float(err["barrier_frankle"].iloc[0]) == pytest.approx((47.4 - 42.0) / 2)
    assert float(err["barrier_linear"].iloc[0]) == pytest.approx(0.0, abs=1e-9)
    bump = table[
        (table["metric"] == "error") & (table["level"] == 2) & (table["reference"] == "baseline")
    ]
    # the line at alpha 0.5 is 43.7: the path is 53.0 there, 9.3 points above, inside the path
    assert float(bump["barrier_linear"].iloc[0]) == pytest.approx(53.0 - 43.7)
    assert float(bump["argmax_alpha"].iloc[0]) == 0.5

    from prunescope.report.findings import connectivity_finding
    from prunescope.report.sentences import connectivity_finding as words

    found = connectivity_finding(conn, None, table)
    assert found["previous"]["levels_connected"] == 2  # both consecutive paths: one basin
    assert found["previous"]["levels_connected_frankle"] == 1  # Frankle's: only level 2
    assert (
        found["baseline"]["levels_connected"] == 1 and found["baseline"]["levels_bump_inside"] == 1
    )
    _, text = words(found, batchnorm=False)
    assert "at 2 of 2 levels" in text and "inside the path at 1 of them" in text


@pytest.mark.parametrize(
    ("lo", "hi", "words"),
    [
        (0.7, 2.55, "0.70 to 2.55 points below"),
        (-0.2, 2.05, "between 0.20 points above and 2.05 points below"),
        (-1.5, -0.25, "0.25 to 1.50 points above"),
    ],
)
def test_the_path_ends_against_accuracy_csv_are_worded_by_their_sign(lo, hi, words):
    """A BatchNorm-re-estimated end can sit above accuracy.csv's: the showcase run's span
    was -0.20 to 2.05 points "below", which read as nonsense."""
    from prunescope.report.sentences import _ends_words

    assert _ends_words({"levels": 8, "min_points": lo, "max_points": hi}) == words
