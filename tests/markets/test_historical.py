"""Historical market: exact one-path replay, stationary block bootstrap, CSV loading, real data."""
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxhedge.markets import historical
from jaxhedge.markets.historical import (
    HistoricalParams,
    bootstrap_indices,
    historical_path,
    load_chain_spot,
    load_spot_series,
    simulate_block_bootstrap,
)


def data_dir() -> Path:
    env = os.environ.get("JAXHEDGE_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "options"


def _prices(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(np.r_[0.0, rng.normal(0.0003, 0.012, n - 1)]))


def test_historical_path_reproduces_input_exactly(x64):
    p = _prices()
    out = historical_path(p, dt=1 / 252, vol_window=20)
    assert out.spot.shape == (1, p.size) and out.spot.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(out.spot[0]), p)
    np.testing.assert_array_equal(np.asarray(out.cost_multiplier), 1.0)
    # vol: sample vol at t = 0, plain trailing 20-return realised vol from t = 20 on
    r = np.diff(np.log(p))
    np.testing.assert_allclose(float(out.vol[0, 0]), r.std(ddof=1) * np.sqrt(252), rtol=1e-12)
    for t in (20, 57, p.size - 1):
        np.testing.assert_allclose(float(out.vol[0, t]), np.sqrt(np.mean(r[t - 20:t] ** 2) * 252), rtol=1e-10)
    t = 5  # blend: 5 observed squared returns + 15 sample-variance fills
    expect = np.sqrt((np.sum(r[:5] ** 2) + 15 * r.var(ddof=1)) / 20 * 252)
    np.testing.assert_allclose(float(out.vol[0, t]), expect, rtol=1e-10)


def test_historical_path_float32_default():
    p = _prices()
    out = historical_path(pd.Series(p))
    assert out.spot.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out.spot[0]), p.astype(np.float32))


def test_historical_path_rejects_bad_prices():
    with pytest.raises(ValueError, match=r"historical\.prices"):
        historical_path(np.array([1.0, -1.0, 2.0]))


def test_bootstrap_returns_come_from_input(x64):
    rng = np.random.default_rng(1)
    r = np.round(rng.normal(0.0, 0.01, 50), 4) + np.arange(50) * 1e-6  # well separated values
    params = HistoricalParams(log_returns=jnp.asarray(r), s0=50.0, mean_block_length=4.0)
    out = jax.jit(simulate_block_bootstrap, static_argnums=(2, 3))(jax.random.key(0), params, 200, 60, 1 / 252)
    assert np.all(np.asarray(out.spot[:, 0]) == 50.0)
    sim_r = np.diff(np.log(np.asarray(out.spot)), axis=1).ravel()
    dist = np.min(np.abs(sim_r[:, None] - r[None, :]), axis=1)
    assert np.max(dist) < 1e-9
    # and all of the input set gets used
    hit = np.argmin(np.abs(sim_r[:, None] - r[None, :]), axis=1)
    assert np.unique(hit).size == r.size


def test_bootstrap_mean_block_length_and_wraparound():
    n, L = 30, 8.0
    idx = np.asarray(jax.jit(bootstrap_indices, static_argnums=(1, 3, 4))(jax.random.key(3), n, L, 4000, 100))
    assert idx.min() >= 0 and idx.max() < n
    cont = idx[:, 1:] == (idx[:, :-1] + 1) % n
    # a new block lands on the continuation index with prob 1/n, so breaks occur w.p. p(1 - 1/n)
    q = (1 / L) * (1 - 1 / n)
    breaks = 1.0 - cont.mean()
    assert abs(breaks - q) < 4 * np.sqrt(q * (1 - q) / cont.size), (breaks, q)
    # implied mean block length (steps per block) matches L
    mean_len = 1.0 / (breaks + (1 / L) / n)
    assert abs(mean_len - L) < 0.05 * L
    # wrap-around happens: index n-1 followed by 0 within a block
    assert np.any((idx[:, :-1] == n - 1) & (idx[:, 1:] == 0))
    # block starts are uniform over the input: the first index of each path
    counts = np.bincount(idx[:, 0], minlength=n)
    e = idx.shape[0] / n
    assert np.sum((counts - e) ** 2 / e) < n - 1 + 4 * np.sqrt(2 * (n - 1))


def test_bootstrap_vol_is_trailing_realized():
    r = np.random.default_rng(2).normal(0.0, 0.02, 40)
    params = HistoricalParams(log_returns=jnp.asarray(r, dtype=float), s0=1.0, mean_block_length=3.0, vol_window=5)
    out = jax.jit(simulate_block_bootstrap, static_argnums=(2, 3))(jax.random.key(1), params, 3, 12, 1 / 252)
    sim_r = np.diff(np.log(np.asarray(out.spot, np.float64)), axis=1)
    np.testing.assert_allclose(np.asarray(out.vol[:, 0]), r.std(ddof=1) * np.sqrt(252), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out.vol[:, 9]), np.sqrt(np.mean(sim_r[:, 4:9] ** 2, axis=1) * 252), rtol=1e-3)


def test_validate():
    ok = HistoricalParams.from_prices(_prices(), mean_block_length=5.0)
    historical.validate(ok)
    assert ok.s0 == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r"historical\.mean_block_length: must be >= 1"):
        historical.validate(ok.replace(mean_block_length=0.5))
    with pytest.raises(ValueError, match=r"historical\.log_returns"):
        historical.validate(ok.replace(log_returns=jnp.asarray([0.1, jnp.nan, 0.0])))
    with pytest.raises(ValueError, match=r"historical\.s0"):
        historical.validate(ok.replace(s0=0.0))


def test_load_spot_series_cleans(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text(
        "Date,SPY,other\n"
        "2025-01-03,101.0,x\n"
        "2025-01-02,100.0,x\n"
        "2025-01-03,101.0,y\n"  # duplicate date, same price
        "2025-01-06,,x\n"  # NaN
        "2025-01-07,-3,x\n"  # non-positive
        "not-a-date,99,x\n"
        "2025-01-08,abc,x\n"
        "2025-01-09,103.5,x\n"
    )
    res = load_spot_series(csv)
    assert list(res.prices.index.strftime("%Y-%m-%d")) == ["2025-01-02", "2025-01-03", "2025-01-09"]
    np.testing.assert_array_equal(res.prices.to_numpy(), [100.0, 101.0, 103.5])
    assert res.n_dropped == 4 and res.n_duplicates == 1
    prices, n_dropped, n_dup = res  # tuple-unpackable
    with pytest.raises(ValueError, match="column 'Close'"):
        load_spot_series(csv, price_col="Close")
    bad = tmp_path / "conflict.csv"
    bad.write_text("Date,SPY\n2025-01-02,100\n2025-01-02,101\n")
    with pytest.raises(ValueError, match="different prices"):
        load_spot_series(bad)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set JAXHEDGE_DATA_DIR to the options data folder)")
    return path


def test_real_spy_eod_series():
    f = _need(data_dir() / "spy_eod_and_box_rate.csv")
    res = load_spot_series(f, date_col="Date", price_col="SPY")
    s = res.prices
    assert len(s) + res.n_dropped + res.n_duplicates == len(pd.read_csv(f))
    assert len(s) > 150 and s.index.is_monotonic_increasing and s.index.is_unique
    assert s.index[0].year == 2025 and (s > 0).all()
    out = historical_path(s)
    np.testing.assert_array_equal(np.asarray(out.spot[0]), s.to_numpy().astype(np.float32))
    assert bool(jnp.all(jnp.isfinite(out.vol))) and 0.05 < float(out.vol[0, 0]) < 1.0
    params = historical.validate(HistoricalParams.from_prices(s, mean_block_length=5.0))
    boot = jax.jit(simulate_block_bootstrap, static_argnums=(2, 3))(jax.random.key(0), params, 64, 21, 1 / 252)
    assert boot.spot.shape == (64, 22) and bool(jnp.all(jnp.isfinite(boot.spot)))


def test_real_chain_spot_series():
    f = _need(data_dir() / "spy_preprocessed_calls_20q1.csv")
    res = load_chain_spot(f, symbol="SPY")
    assert len(res.prices) == 35  # README: 35 trading days in the file
    assert res.n_dropped == 0 and res.n_duplicates == len(pd.read_csv(f)) - 35
    # COVID quarter: the March 2020 drawdown is in the series
    assert res.prices.min() < 0.8 * res.prices.iloc[0]
