"""``jaxhedge shadow`` against the study's policy mode on the real SPY 2025Q2 episodes.

The oracle is :func:`jaxhedge.reproduce.study.hedging_part` itself (policy mode, float32,
the same agent and calibration surface): the shadow replay feeds the same episodes day by
day through the bundle's advisor and must reproduce its metrics and every episode's P&L to
the bit while no guardrail trips. ``MixAgent`` hedges from every observation field, so a
field fed differently would show.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flatbuffers")  # jax.export serialization of bundles

from jaxhedge.cli import main  # noqa: E402
from jaxhedge.reproduce.study import HEDGING_COLUMNS  # noqa: E402

SLICE = (28, 1.0)
METRICS = HEDGING_COLUMNS[6:12]  # the study's ledger metrics; shadow reports these


def _data_dir() -> Path:
    env = os.environ.get("JAXHEDGE_DATA_DIR")
    d = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data" / "options"
    if not (d / "spy_preprocessed_calls_25.csv").is_file():
        pytest.skip(f"shared option data not found at {d} (set JAXHEDGE_DATA_DIR)")
    return d


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 2-update MixAgent run, its bundle, SPY 2025Q2, and the study's 28d K/F=1.00 slice
    in float32 (the study's rows and per-episode P&L)."""
    from jaxhedge.data import load_period
    from jaxhedge.reproduce.agents import TrainedAgent
    from jaxhedge.reproduce.config import StudyConfig
    from jaxhedge.reproduce.study import hedging_part
    from jaxhedge.runs import load_trained
    from jaxhedge.serving import load_bundle
    from jaxhedge.serving.export import export_run
    from jaxhedge.serving.shadow import bundle_surface
    from jaxhedge.train import run_training
    from tests.serving.shadow_agent import MixAgent

    data = _data_dir()
    root = tmp_path_factory.mktemp("shadow")
    agent = MixAgent()
    run_training(agent, agent.default_hparams(), n_steps=2, chunk=1, run_dir=root / "run",
                 progress=False, tensorboard=False)
    bundle = load_bundle(export_run(root / "run", root / "bundle"))
    surface = bundle_surface(bundle)  # the run's agent, checked against the bundle
    pdata = load_period(data, "spy", "2025q2")
    config = StudyConfig(x64=False)
    _, hp, state = load_trained(root / "run")
    # the study gets the agent straight from the run, as `reproduce --agents` loads it
    ta = TrainedAgent("rlop", root / "run", agent, hp, state, surface.price_fn)
    study = hedging_part(pdata, *SLICE, ("rlop",), {"rlop": ta}, config)
    return {"data": data, "root": root, "bundle": bundle, "surface": surface, "pdata": pdata,
            "config": config, "study": study}


def test_cli_shadow_is_the_study_policy_mode_to_the_bit(setup, capsys):
    """The issue's command on one slice: no guardrail trips, and every metric and every
    episode's P&L equal the study's policy mode exactly."""
    out = setup["root"] / "out"
    assert main(["shadow", "--bundle", str(setup["bundle"].path), "--data", str(setup["data"]),
                 "--asset", "spy", "--period", "2025q2", "--slices", "28:1.00",
                 "--set", "x64=false", "--out", str(out)]) == 0
    assert "0 overridden" in capsys.readouterr().out
    row = pd.read_csv(out / "shadow.csv").iloc[0]
    policy = next(r for r in setup["study"].rows if r["mode"] == "policy")
    assert row["overridden"] == 0 and row["n_hedges"] == 62  # METHODS' SPY 2025Q2 28d count
    from jaxhedge.serving.shadow import METRICS as SHADOW_METRICS
    assert list(SHADOW_METRICS) == list(METRICS)
    for k in METRICS:
        assert row[k] == policy[k], k
    pnl = pd.read_csv(out / "pnl.csv")["pnl"].to_numpy(np.float32)
    np.testing.assert_array_equal(pnl, setup["study"].pnls["RLOP (policy)"])


def test_a_tripped_guardrail_is_counted_and_changes_the_hedge(setup):
    """``max_delta_distance = 0`` clips every hedge of the agent onto the BS delta: each such
    decision is counted and listed, the positions become the study's policy mode of a
    BS-delta policy at the same calibrated (sigma, mu), and the metrics leave the study's."""
    from jaxhedge.agents import DeltaHedger
    from jaxhedge.reproduce.study import policy_positions
    from jaxhedge.serving.guardrails import SANITY_TOL, AdvisorConfig, DeskConfig
    from jaxhedge.serving.shadow import shadow_replay

    limits = DeskConfig(advisor=AdvisorConfig(max_delta_distance=0.0))
    res = shadow_replay(setup["bundle"], setup["pdata"], setup["surface"], slices=[SLICE],
                        config=setup["config"], limits=limits)
    row = res.rows[0]
    e = res.episodes[SLICE]
    mask = np.asarray(e.step_mask)
    assert row["decisions"] == mask.sum()
    assert row["overridden"] == row["distance"] == len(res.overrides) > 0.9 * mask.sum()
    for o in res.overrides:
        assert o["flags"] == "distance" and o["used_hedge"] == o["bs_delta"]
        assert abs(o["agent_hedge"] - o["bs_delta"]) > SANITY_TOL
    sigma, mu = res.calibration[SLICE]
    want = np.asarray(policy_positions(DeltaHedger(), e, jnp.asarray(sigma), jnp.asarray(mu),
                                       setup["config"].cost))
    np.testing.assert_allclose(res.positions[SLICE][mask], want[mask], atol=2e-6)
    policy = next(r for r in setup["study"].rows if r["mode"] == "policy")
    assert row["rmse"] != policy["rmse"]


@pytest.mark.parametrize("argv, field", [
    (["--asset", "qqq"], "--asset"),
    (["--period", "2024q1"], "--period"),
    (["--slices", "30:1.00"], "--slices"),
    (["--data", "/nonexistent/options"], "--data"),
    (["--bundle", "/nonexistent/bundle"], "bundle /nonexistent/bundle"),
    (["--set", "cost=2"], "cost"),
    (["--out", "/proc/jaxhedge"], "--out"),
])
def test_bad_input_is_one_line_and_exit_2(argv, field, tmp_path, capsys):
    base = {"--bundle": str(tmp_path / "b"), "--data": str(tmp_path), "--asset": "spy",
            "--period": "2025q2"}
    flags = dict(zip(argv[::2], argv[1::2]))
    args = [a for k, v in {**base, **flags}.items() for a in (k, v)]
    assert main(["shadow", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and field in err and "\n" not in err


def test_a_bundle_without_a_source_run_is_refused(delta_bundle, tmp_path, capsys):
    """A classical bundle has no price surface to calibrate (sigma, mu) on: one line, exit 2."""
    assert main(["shadow", "--bundle", str(delta_bundle), "--data", str(tmp_path),
                 "--asset", "spy", "--period", "2025q2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --run:") and "\n" not in err


def test_a_run_that_is_not_the_bundles_is_refused(setup, delta_bundle, capsys):
    """``--run`` must be the run the bundle was exported from (params sha256), and exist."""
    base = ["shadow", "--bundle", str(delta_bundle), "--data", str(setup["data"]), "--asset",
            "spy", "--period", "2025q2", "--run"]
    for run, needle in [(setup["root"] / "run", "params sha256 differs"),
                        (setup["root"] / "nope", "no checkpoint found")]:
        assert main([*base, str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --run:") and needle in err and "\n" not in err
