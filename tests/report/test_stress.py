"""Stress report: degradation ratios, verdicts written from the numbers, table files."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhedge.report.stress import (STRESS_COLUMNS, add_degradation, csv_text, degradation,
                                    heatmap, markdown, verdicts, worst_scenario)

SCENARIOS = ["calm", "vol_spike", "crash", "liquidity_drought", "gap_at_expiry"]


def _rows(es_by_agent):
    rows = []
    for agent, values in es_by_agent.items():
        for scenario, es in zip(SCENARIOS, values):
            rows.append({"agent": agent, "scenario": scenario, "shortfall_prob": 0.5,
                         "es_5": es, "es_10": es / 2, "mean_pnl": -0.1, "std_pnl": 1.0,
                         "mean_cost": 0.1, "turnover": 1.0})
    return add_degradation(rows)


def test_degradation_conventions():
    assert degradation(6.0, 2.0) == 3.0
    assert math.isinf(degradation(1.0, 0.0)) and degradation(0.0, 0.0) == 1.0


def test_verdict_names_the_largest_ratio_and_classifies():
    rows = _rows({"delta": [2.0, 2.6, 8.4, 4.0, 2.2], "naked": [10.0, 30.0, 9.0, 10.0, 12.0]})
    v = verdicts(rows)
    assert v["delta"].startswith("delta: worst under crash (ES 5% \u00d74.20 calm: 8.4 vs 2)")
    assert "breaks under crash (\u00d74.20), liquidity_drought (\u00d72.00)" in v["delta"]
    assert "strained by vol_spike (\u00d71.30)" in v["delta"]
    assert "survives gap_at_expiry (\u00d71.10)" in v["delta"]
    assert v["naked"].startswith("naked: worst under vol_spike (ES 5% \u00d73.00")
    assert v["naked"].endswith("survives gap_at_expiry (\u00d71.20), liquidity_drought "
                               "(\u00d71.00), crash (\u00d70.90)")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 100.0), min_size=5, max_size=5))
def test_verdict_agrees_with_the_table(values):
    rows = _rows({"x": values})
    ratios = {r["scenario"]: r["es_5_vs_calm"] for r in rows if r["scenario"] != "calm"}
    worst = worst_scenario(rows, "x")
    assert ratios[worst] == max(ratios.values())
    text = verdicts(rows)["x"]
    assert text.startswith(f"x: worst under {worst} ")
    for s, r in ratios.items():  # every scenario lands in the group its ratio says
        label = "breaks under" if r >= 2 else "strained by" if r >= 1.25 else "survives"
        group = text.split(label, 1)[1].split(";")[0]
        assert s in group


def test_infinite_ratio_is_written_as_such(tmp_path):
    rows = _rows({"seller": [0.0, 1.0, 0.0, 0.0, 0.0]})
    assert math.isinf(rows[1]["es_5_vs_calm"])
    assert "worst under vol_spike (ES 5% ES 5% > 0 vs 0 in calm" in verdicts(rows)["seller"]
    text = csv_text(rows)
    assert text.splitlines()[0] == ",".join(STRESS_COLUMNS) and ",inf" in text
    assert "| seller | vol_spike |" in markdown(rows, verdicts(rows), {"x": "absent"})
    path = heatmap(rows, tmp_path / "h.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_missing_calm_row_is_an_error():
    with pytest.raises(ValueError, match="no calm row"):
        add_degradation([{"agent": "a", "scenario": "crash", "es_5": 1.0}])


def test_csv_round_trips_full_precision():
    rows = _rows({"a": list(np.linspace(1.0, 3.0, 5) / 3)})
    lines = csv_text(rows).splitlines()[1:]
    es = [float(line.split(",")[3]) for line in lines]
    assert es == [r["es_5"] for r in rows]
