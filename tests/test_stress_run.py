"""The stress runner and ``jaxhedge stress`` (common random numbers, outputs, bad input)."""
import csv
import json
import math

import numpy as np
import pytest

from jaxhedge.cli import main
from jaxhedge.ledger import payoff
from jaxhedge.report.stress import STRESS_COLUMNS, worst_scenario
from jaxhedge.contracts import Contract
from jaxhedge.markets.scenarios import Calm, Crash, LiquidityDrought, VolSpike
from jaxhedge.stress.run import (StressAgent, classical_hedger, common_contract, hedge_paths,
                                 run_stress, scenario_paths)

def test_every_agent_hedges_the_same_paths():
    """Common random numbers: each agent's P&L equals hedging independently drawn paths."""
    res = run_stress(["delta", "naked", "ww"], "crash,liquidity_drought", n_paths=1000, seed=4,
                     n_steps=8, keep_pnl=True, log=lambda *_: None)
    c = res.contract
    for scenario in (Crash(), LiquidityDrought()):
        paths = scenario_paths(scenario, c, 1000, seed=4)
        # naked: Pi_T = premium - payoff(S_T) pins down S_T path by path
        expect = float(c.premium()) - np.asarray(payoff(paths.spot[:, -1], c.strike, True))
        np.testing.assert_allclose(res.pnl[("naked", scenario.name)], expect, rtol=1e-5,
                                   atol=1e-4)
        for name in ("delta", "ww"):
            pnl, _, _ = hedge_paths(c, classical_hedger(name, c), paths)
            np.testing.assert_array_equal(res.pnl[(name, scenario.name)], pnl)
    # scenario paths do not depend on which other scenarios run
    alone = run_stress(["naked"], "crash", n_paths=1000, seed=4, n_steps=8, keep_pnl=True)
    np.testing.assert_array_equal(alone.pnl[("naked", "crash")], res.pnl[("naked", "crash")])


def test_rows_columns_degradation_and_verdicts():
    res = run_stress(["delta", "delta"], "vol_spike,gap_at_expiry", n_paths=1000, n_steps=8)
    assert [r["agent"] for r in res.rows[:2]] == ["delta", "delta-2"]
    a = [r for r in res.rows if r["agent"] == "delta"]
    b = [r for r in res.rows if r["agent"] == "delta-2"]
    assert [{k: r[k] for k in STRESS_COLUMNS[1:]} for r in a] == \
        [{k: r[k] for k in STRESS_COLUMNS[1:]} for r in b]  # same paths, same hedger
    calm = next(r for r in a if r["scenario"] == "calm")
    for r in a:
        assert set(STRESS_COLUMNS) <= set(r)
        assert math.isclose(r["es_5_vs_calm"], r["es_5"] / calm["es_5"], rel_tol=1e-12)
        assert r["es_10"] <= r["es_5"] + 1e-9 and 0 <= r["shortfall_prob"] <= 1
    worst = worst_scenario(res.rows, "delta")
    assert res.verdicts["delta"].startswith(f"delta: worst under {worst} ")


def test_common_contract_rejects_disagreeing_trained_agents():
    a = StressAgent("a", contract=Contract(cost=0.01))
    b = StressAgent("b", contract=Contract(cost=0.02))
    with pytest.raises(ValueError, match=r"agents: trained runs hedge different contracts"):
        common_contract([a, b])
    assert common_contract([a, StressAgent("delta")], n_steps=7).n_steps == 7
    with pytest.raises(ValueError, match=r"agents: 'oracle' is neither a classical hedger"):
        run_stress(["oracle"], "calm", n_paths=10)
    with pytest.raises(ValueError, match=r"scenarios: a list of Scenario objects must start"):
        run_stress(["delta"], [Crash()], n_paths=10)
    with pytest.raises(ValueError, match=r"vol_spike\.start/end"):  # checked before simulating
        run_stress(["delta"], [Calm(), VolSpike(start=0.1, end=0.2)], n_paths=10, n_steps=2)
    # the scenarios (markets layer) do not validate the contract; the stress runner does
    with pytest.raises(ValueError, match=r"contract\.sigma: must be in \(0, 5\]"):
        scenario_paths(Calm(), Contract(sigma=-0.1), 10, 0)


def test_cli_writes_all_outputs(tmp_path, capsys):
    rc = main(["stress", "--agents", "delta", "ww", "naked", "--scenarios",
               "vol_spike,gap_at_expiry", "--paths", "800", "--steps", "8", "--seed", "2",
               "--out", str(tmp_path)])
    assert rc == 0
    with open(tmp_path / "stress.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0])[:len(STRESS_COLUMNS)] == STRESS_COLUMNS and len(rows) == 9
    res = json.loads((tmp_path / "stress.json").read_text())
    assert res["n_paths"] == 800 and res["seed"] == 2 and "git_sha" in res
    assert [s["name"] for s in res["scenarios"]] == ["calm", "vol_spike", "gap_at_expiry"]
    for r_csv, r_json in zip(rows, res["rows"]):
        assert float(r_csv["es_5"]) == pytest.approx(r_json["es_5"], rel=1e-12)
    md = (tmp_path / "stress.md").read_text()
    assert "## Verdicts" in md and "ww: worst under" in md
    png = (tmp_path / "stress_heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "naked: worst under" in out and "wrote" in out
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp files


def test_cli_skips_absent_historical_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXHEDGE_DATA_DIR", str(tmp_path / "nowhere"))
    rc = main(["stress", "--agents", "delta", "--scenarios", "spy_2020q1,crash", "--paths",
               "300", "--steps", "4", "--out", str(tmp_path / "out")])
    assert rc == 0
    res = json.loads((tmp_path / "out" / "stress.json").read_text())
    assert "spy_2020q1" in res["skipped"] and "not found" in res["skipped"]["spy_2020q1"]
    assert {r["scenario"] for r in res["rows"]} == {"calm", "crash"}
    assert "skipped spy_2020q1" in capsys.readouterr().out
    assert "Skipped scenarios" in (tmp_path / "out" / "stress.md").read_text()


@pytest.mark.parametrize("args,needle", [
    (["--scenarios", "crsh"], "did you mean 'crash'"),
    (["--agents", "oracle"], "agents: 'oracle'"),
    (["--paths", "1"], "--paths"),
    (["--steps", "0"], "--steps"),
    (["--boot", "0"], "--boot"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    base = {"--agents": ["delta"], "--scenarios": ["calm"], "--paths": ["100"]}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = [value]
    argv = ["stress", "--out", str(tmp_path)] + [x for k, v in base.items() for x in (k, *v)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "stress.csv").exists()
