"""Stress scenarios: each produces the statistics it promises; bad parameters are rejected."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.markets import gbm, merton, regime
from jaxhedge.contracts import Contract, validate_contract
from jaxhedge.markets.scenarios import (Calm, Crash, GapAtExpiry, LiquidityDrought, RegimeSwitch,
                                        ScenarioUnavailable, VolOfVol, VolSpike,
                                        simulate_with_gaps, spike_steps)
from jaxhedge.stress import historical as hist
from jaxhedge.stress.registry import resolve_scenarios

C = Contract(s0=100.0, strike=100.0, maturity=30 / 252, sigma=0.2, n_steps=30, cost=0.002)
N_PATHS = 10_000
KEY = jax.random.PRNGKey(11)


def _log_returns(paths):
    return np.diff(np.log(np.asarray(paths.spot, np.float64)), axis=1)


def _std_close(sample, expected, k=4.0):
    """Sample std within k standard errors (s.e. of a std ~ std / sqrt(2 n))."""
    sample = np.ravel(sample)
    se = expected / math.sqrt(2 * sample.size)
    assert abs(sample.std() - expected) < k * se, (sample.std(), expected, se)


def test_calm_is_gbm_at_contract_sigma():
    p = Calm().paths(KEY, C, N_PATHS)
    assert p.spot.shape == (N_PATHS, 31) and p.spot.dtype == jnp.float32
    _std_close(_log_returns(p), 0.2 * math.sqrt(C.dt))
    st = np.asarray(p.spot[:, -1], np.float64)
    assert abs(st.mean() - 100.0) < 4 * st.std() / math.sqrt(st.size)
    np.testing.assert_array_equal(np.asarray(p.cost_multiplier), 1.0)


def test_same_key_same_paths_and_different_key_differs():
    a, b = Crash().paths(KEY, C, 500), Crash().paths(KEY, C, 500)
    np.testing.assert_array_equal(np.asarray(a.spot), np.asarray(b.spot))
    c = Crash().paths(jax.random.PRNGKey(12), C, 500)
    assert not np.array_equal(np.asarray(a.spot), np.asarray(c.spot))


def test_vol_spike_realised_vol_inside_and_outside_window():
    s = VolSpike()  # x3 over [0.3, 0.7) of the life: steps 9..20 of 30
    inside = np.asarray(spike_steps(s.start, s.end, 30))
    assert np.flatnonzero(inside).tolist() == list(range(9, 21))
    p = s.paths(KEY, C, N_PATHS)
    r = _log_returns(p)
    sd = 0.2 * math.sqrt(C.dt)
    _std_close(r[:, inside[:-1]], 3 * sd)
    _std_close(r[:, ~inside[:-1]], sd)
    vol = np.asarray(p.vol[0])
    np.testing.assert_allclose(vol[inside], 0.6, rtol=1e-6)
    np.testing.assert_allclose(vol[~inside], 0.2, rtol=1e-6)


def test_vol_spike_at_severity_zero_is_the_calm_market():
    s = VolSpike(multiplier=4.0)
    a = s.simulate(KEY, s.params(C, 0.0), 300, 30, C.dt)
    b = gbm.simulate(KEY, Calm().params(C), 300, 30, C.dt)
    np.testing.assert_allclose(np.asarray(a.spot), np.asarray(b.spot), rtol=1e-6)


def test_crash_jump_counts_sizes_and_uncompensated_mean():
    s = Crash()  # jumps mostly in [-20%, -10%], 0.5 expected per life
    p = s.params(C)
    paths, counts, logj = merton.simulate_with_jumps(KEY, p, N_PATHS, 30, C.dt)
    per_path = np.asarray(counts).sum(axis=1)
    assert abs(per_path.mean() - 0.5) < 4 * math.sqrt(0.5 / N_PATHS)
    single = np.asarray(logj)[np.asarray(counts) == 1]
    assert single.size > 2000
    assert abs(single.mean() - s.log_jump_mean) < 4 * s.log_jump_std / math.sqrt(single.size)
    assert abs(single.std() - s.log_jump_std) < 4 * s.log_jump_std / math.sqrt(2 * single.size)
    ret = np.expm1(single)
    share = np.mean((ret >= -0.20) & (ret <= -0.10))
    assert abs(share - 0.9545) < 4 * math.sqrt(0.9545 * 0.0455 / single.size)
    # the crash is not compensated: E[S_T] = s0 exp((mu + lambda k) T)
    lam = 0.5 / C.maturity
    k = math.expm1(s.log_jump_mean + 0.5 * s.log_jump_std**2)
    st = np.asarray(paths.spot[:, -1], np.float64)
    assert abs(st.mean() - 100 * math.exp(lam * k * C.maturity)) < 4 * st.std() / math.sqrt(
        st.size)
    assert st.mean() < 97.0


def _liquidity_reference(spot, dt, sigma, base, slope, window):
    """numpy: base * (1 + slope * max(0, rv_t / sigma - 1)), rv from the last `window` returns."""
    r = np.diff(np.log(spot.astype(np.float64)), axis=1)
    n, steps = r.shape
    out = np.empty((n, steps + 1))
    for t in range(steps + 1):
        seen = r[:, max(0, t - window):t]
        ssq = (seen**2).sum(axis=1) + (window - seen.shape[1]) * sigma**2 * dt
        rv = np.sqrt(ssq / (window * dt))
        out[:, t] = base * (1 + slope * np.maximum(rv / sigma - 1, 0))
    return out


def test_liquidity_drought_multiplier_formula_and_ledger_costs():
    from jaxhedge.stress.run import classical_hedger, hedge_paths

    s = LiquidityDrought()  # base 10, slope 1, window 5
    p = s.paths(KEY, C, 4000)
    cm = np.asarray(p.cost_multiplier, np.float64)
    ref = _liquidity_reference(np.asarray(p.spot), C.dt, 0.2, 10.0, 1.0, 5)
    np.testing.assert_allclose(cm, ref, rtol=2e-3)
    assert cm.min() >= 10.0 - 1e-4 and np.all(cm[:, 0] == 10.0)
    assert cm.mean() > 10.5  # rises whenever realised vol exceeds sigma
    rv_proxy = np.abs(_log_returns(p))[:, -5:].sum(axis=1)
    assert np.corrcoef(rv_proxy, cm[:, -1])[0, 1] > 0.5
    # the multiplier reaches the ledger: same paths with costs x1 cost between 1/max and 1/10
    delta = classical_hedger("delta", C)
    _, cost_liq, _ = hedge_paths(C, delta, p)
    _, cost_one, _ = hedge_paths(C, delta, p.replace(cost_multiplier=jnp.ones_like(p.spot)))
    ratio = cost_liq / cost_one
    assert np.all(ratio >= 10.0 - 1e-3) and np.all(ratio <= cm.max(axis=1) + 1e-3)


def test_regime_switch_occupancy_costs_and_vols():
    s = RegimeSwitch()
    p = s.params(C)
    paths, states = regime.simulate_with_states(KEY, p, N_PATHS, 30, C.dt)
    states = np.asarray(states)
    # expected share of stress dates from the chain started calm (numpy propagation)
    trans = np.asarray(p.transition, np.float64)
    d, occ = np.array([1.0, 0.0]), []
    for _ in range(31):
        occ.append(d[1])
        d = d @ trans
    per_path = states.mean(axis=1)
    assert abs(per_path.mean() - np.mean(occ)) < 4 * per_path.std() / math.sqrt(N_PATHS)
    vol, cm = np.asarray(paths.vol), np.asarray(paths.cost_multiplier)
    np.testing.assert_allclose(vol[states == 1], 0.6, rtol=1e-6)
    np.testing.assert_allclose(vol[states == 0], 0.2, rtol=1e-6)
    np.testing.assert_allclose(cm[states == 1], 5.0, rtol=1e-6)
    np.testing.assert_allclose(cm[states == 0], 1.0, rtol=1e-6)
    # calm steps (no jumps there) have the calm diffusion vol
    r = _log_returns(paths)
    _std_close(r[states[:, :-1] == 0], 0.2 * math.sqrt(C.dt))
    # per-step probabilities come from the per-life rates
    p_in, p_out = s.transition_probs(30)
    np.testing.assert_allclose([trans[0, 1], trans[1, 0]], [float(p_in), float(p_out)], rtol=1e-6)
    np.testing.assert_allclose(trans[0, 1], -math.expm1(-1.0 / 30), rtol=1e-6)
    np.testing.assert_allclose(trans[1, 0], -math.expm1(-1.0 / (0.25 * 30)), rtol=1e-6)


def test_vol_of_vol_heston_statistics():
    s = VolOfVol()  # xi 1.0, rho -0.7, kappa 2, v0 = theta = 0.04
    p = s.simulate(KEY, s.params(C), N_PATHS, 30, C.dt)
    v = np.asarray(p.vol, np.float64) ** 2
    assert np.all(v >= 0)
    vt, vn = v[:, :-1], v[:, 1:]
    ok = vt > 1e-3  # away from the QE mass at 0
    dv = vn - vt - 2.0 * (0.04 - vt) * C.dt
    xi2 = np.mean(dv[ok] ** 2 / (vt[ok] * C.dt))
    assert abs(math.sqrt(xi2) - 1.0) < 0.1
    r = _log_returns(p)
    corr = np.corrcoef(r[ok], dv[ok])[0, 1]
    assert -0.8 < corr < -0.55
    st = np.asarray(p.spot[:, -1], np.float64)
    assert abs(st.mean() - 100.0) < 4 * st.std() / math.sqrt(st.size)


def test_gap_at_expiry_only_in_the_last_step():
    s = GapAtExpiry()  # +-10% with probability 0.5, half of them down
    paths, gap = simulate_with_gaps(KEY, s.params(C), N_PATHS, 30, C.dt)
    g = np.asarray(gap, np.float64)
    assert set(np.round(np.unique(g), 6)) <= {-0.1, 0.0, 0.1}
    hit = g != 0
    assert abs(hit.mean() - 0.5) < 4 * math.sqrt(0.25 / N_PATHS)
    assert abs(np.mean(g[hit] < 0) - 0.5) < 4 * math.sqrt(0.25 / hit.sum())
    r = _log_returns(paths)
    sd = 0.2 * math.sqrt(C.dt)
    _std_close(r[:, :-1], sd)
    _std_close(r[:, -1] - np.log1p(g), sd)
    st = np.asarray(paths.spot[:, -1], np.float64)  # mean-zero gaps: E[S_T] unchanged
    assert abs(st.mean() - 100.0) < 4 * st.std() / math.sqrt(st.size)


def test_daily_rescaling_of_sparse_returns():
    prices = np.array([100.0, 110.0, 99.0, 100.0])
    dates = np.array(["2020-01-06", "2020-01-07", "2020-01-09", "2020-01-13"],
                     dtype="datetime64[D]")  # gaps of 1, 2 and 2 weekdays
    r = hist.daily_log_returns(prices, dates)
    np.testing.assert_allclose(r, np.diff(np.log(prices)) / np.sqrt([1, 2, 2]))


def test_spy_2020q1_bootstrap_draws_rescaled_real_returns():
    path = hist.data_dir() / "spy_preprocessed_calls_20q1.csv"
    if not path.is_file():
        pytest.skip(f"shared option data not found at {path} (set JAXHEDGE_DATA_DIR)")
    s = hist.HistoricalWindow(source="spy_2020q1")
    source = s.step_returns(C)
    assert 30 <= source.size <= 40
    p = s.paths(KEY, C, 2000)
    incr = _log_returns(p)
    dist = np.abs(incr.ravel()[:, None] - source[None, :]).min(axis=1)
    assert dist.max() < 1e-4  # every step is one of the window's returns
    # stationary bootstrap: each return equally likely, so the mean square matches
    m2 = (incr**2).mean(axis=0)
    assert abs(m2.mean() - (source**2).mean()) < 4 * m2.std() / math.sqrt(m2.size) + 1e-6
    # 2020Q1 was violent: annualised vol far above the calm 20%
    assert math.sqrt((source**2).mean() / C.dt) > 0.4


def test_sp500_2008_from_arch():
    pytest.importorskip("arch", reason="optional 'arch' package not installed")
    s = hist.HistoricalWindow(source="sp500_2008")
    prices, dates = hist.load_window("sp500_2008")
    assert 500 <= prices.size <= 506 and str(dates[0]).startswith("2008-01")
    p = s.paths(KEY, C, 500)
    assert np.isfinite(np.asarray(p.spot)).all()


def test_missing_data_is_unavailable_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXHEDGE_DATA_DIR", str(tmp_path))
    with pytest.raises(ScenarioUnavailable, match="spy_2020q1: data file .* not found"):
        hist.HistoricalWindow(source="xop_2020q1".replace("xop", "spy")).paths(KEY, C, 10)


@pytest.mark.parametrize("make,needle", [
    (lambda: VolSpike(multiplier=0.0), r"vol_spike\.multiplier: must be in \(0, 20\]"),
    (lambda: VolSpike(start=0.8, end=0.5), r"vol_spike\.end: must be > start"),
    (lambda: VolSpike(start=-0.1), r"vol_spike\.start: must be in \[0, 1\)"),
    (lambda: Crash(jump_lo=-1.5), r"crash\.jump_lo: must be in \(-1, 1\)"),
    (lambda: Crash(jump_lo=-0.05, jump_hi=-0.1), r"crash\.jump_hi: must be > jump_lo"),
    (lambda: Crash(expected_jumps=0.0), r"crash\.expected_jumps"),
    (lambda: LiquidityDrought(base=0.5), r"liquidity_drought\.base: must be in \[1, 1000\]"),
    (lambda: LiquidityDrought(window=0), r"liquidity_drought\.window"),
    (lambda: RegimeSwitch(stress_duration=0.0), r"regime_switch\.stress_duration"),
    (lambda: VolOfVol(rho=-1.5), r"vol_of_vol\.rho: must be in \[-1, 1\]"),
    (lambda: GapAtExpiry(prob=1.5), r"gap_at_expiry\.prob: must be in \[0, 1\]"),
    (lambda: GapAtExpiry(size=float("nan")), r"gap_at_expiry\.size"),
    (lambda: hist.HistoricalWindow(source="moon"), r"historical\.source|moon"),
])
def test_invalid_parameters_are_rejected_with_the_field(make, needle):
    with pytest.raises(ValueError, match=needle):
        make()


def test_contract_dependent_checks():
    with pytest.raises(ValueError, match=r"vol_spike\.start/end: .* holds no rebalancing step"):
        VolSpike(start=0.1, end=0.2).check(Contract(n_steps=2))
    with pytest.raises(ValueError, match=r"contract\.sigma: must be in \(0, 5\]"):
        validate_contract(Contract(sigma=-0.1))
    with pytest.raises(ValueError, match=r"contract\.n_steps"):
        validate_contract(Contract(n_steps=0))


def test_scenario_names_resolve_with_calm_first_and_suggestions():
    names = [s.name for s in resolve_scenarios("crash, vol_spike")]
    assert names == ["calm", "crash", "vol_spike"]
    everything = [s.name for s in resolve_scenarios("all")]
    assert everything[0] == "calm" and {"spy_2020q1", "xop_2020q1", "sp500_2008",
                                        "gap_at_expiry", "vol_of_vol"} <= set(everything)
    with pytest.raises(ValueError, match=r"unknown scenario 'crsh' \(did you mean 'crash'\?\)"):
        resolve_scenarios("calm,crsh")


def test_layers_point_one_way():
    """markets/ (scenarios, mixture) imports nothing above it, not even lazily or for type
    hints (import-linter counts those too); train/ does not import stress/."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "jaxhedge"

    def imported(path):
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            elif isinstance(node, ast.Import):
                names.extend(a.name for a in node.names)
        return names

    above_markets = ("jaxhedge.contracts", "jaxhedge.env", "jaxhedge.rollout", "jaxhedge.ledger",
                     "jaxhedge.risk", "jaxhedge.agents", "jaxhedge.train", "jaxhedge.stress")
    for name in ("scenarios.py", "mixture.py"):
        mods = imported(root / "markets" / name)
        assert "jaxhedge.markets.base" in mods or "jaxhedge.markets" in mods  # parsed for real
        assert not [m for m in mods if m.startswith(above_markets)], (name, mods)
    for path in sorted((root / "train").glob("*.py")):
        assert not [m for m in imported(path) if m.startswith("jaxhedge.stress")], path
