"""Synthetic slice batches for the calibration tests, and the shared data locator."""
import os
from pathlib import Path

import numpy as np
import pytest

from jaxhedge.data import SliceBatch


def shared_data_dir() -> Path:
    env = os.environ.get("JAXHEDGE_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "options"


def synthetic_batch(n_slices=8, n_quotes=(10, 16), seed=0, lo=0.85, hi=1.15, taus=(14, 28)):
    """Quotes of n_slices slices (prices filled later); two expiries per slice, F ~ 50–400,
    r ~ 0–5%, K/F spread over [lo, hi]; slice i has a random number of quotes (padding).

    Returns a SliceBatch with price = 0 on real quotes (callers fill it), float64 numpy."""
    rng = np.random.default_rng(seed)
    n_max = n_quotes[1]
    f = np.ones((n_slices, n_max)); k = np.ones_like(f); tau = np.full_like(f, 0.1)
    df = np.ones_like(f); spot = np.ones_like(f); rate = np.zeros_like(f)
    mask = np.zeros((n_slices, n_max), bool)
    for i in range(n_slices):
        m = int(rng.integers(n_quotes[0], n_quotes[1] + 1))
        s0 = rng.uniform(50, 400)
        r = rng.uniform(0.0, 0.05)
        t = np.where(np.arange(m) % 2 == 0, taus[0], taus[1]) / 365.0
        fwd = s0 * np.exp(r * t)
        mny = np.sort(rng.uniform(lo, hi, m))
        f[i, :m], k[i, :m], tau[i, :m] = fwd, mny * fwd, t
        df[i, :m], spot[i, :m], rate[i, :m] = np.exp(-r * t), s0, r
        mask[i, :m] = True
    keys = tuple((f"2020-01-{i + 1:02d}", 28) for i in range(n_slices))
    return SliceBatch(strike=k, tau=tau, forward=f, discount=df, price=np.zeros_like(f),
                      spot=spot, rate=rate, mask=mask, keys=keys)


def with_prices(batch, prices, noise=0.0, seed=1):
    """Copy of batch with price = prices + noise·F·N(0, 1) on real quotes, floored at the
    no-arbitrage lower bound (as the shared files clamp C_eur)."""
    rng = np.random.default_rng(seed)
    p = np.asarray(prices, np.float64) + noise * batch.forward * rng.standard_normal(
        np.shape(prices))
    lower = batch.discount * np.maximum(batch.forward - batch.strike, 0.0)
    p = np.where(batch.mask, np.maximum(p, lower), 0.1)
    return batch.replace(price=p)


@pytest.fixture
def synth():
    return synthetic_batch, with_prices
