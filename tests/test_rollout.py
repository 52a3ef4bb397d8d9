"""The correctness ladder: Monte Carlo, discrete-hedging error, Leland's cost, WW vs delta."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import agents, ledger
from jaxhedge.env import EnvConfig, HedgingEnv
from jaxhedge.markets import GBMParams, gbm
from jaxhedge.pricing import bs_gamma, bs_price
from jaxhedge.rollout import rollout

S0, K, SIGMA, R, T = 100.0, 100.0, 0.2, 0.03, 0.25


def make(n_steps, cost=0.0, mu=0.08, charge_entry=True, charge_unwind=True):
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=n_steps))
    params = env.default_params(GBMParams(s0=S0, mu=mu, sigma=SIGMA), strike=K, maturity=T,
                                rate=R, costs=ledger.CostModel(cost),
                                charge_entry=charge_entry, charge_unwind=charge_unwind)
    return env, params


def test_a_monte_carlo_price_matches_black_scholes():
    n = 400_000
    paths = gbm.simulate(jax.random.PRNGKey(0), GBMParams(s0=S0, mu=R, sigma=SIGMA), n, 1, T)
    disc = np.exp(-R * T) * np.asarray(ledger.payoff(paths.spot[:, -1], K), np.float64)
    se = disc.std() / np.sqrt(n)
    assert abs(disc.mean() - float(bs_price(S0, K, T, R, SIGMA))) < 3 * se


def test_b_hedging_error_falls_like_one_over_sqrt_n():
    """Doubling the rebalancing frequency multiplies the P&L std by ~1/sqrt(2)."""
    stds = []
    for n_steps in (16, 32, 64, 128):
        env, params = make(n_steps)
        out = rollout(jax.random.PRNGKey(1), env, params, agents.DeltaHedger(), 40_000)
        stds.append(float(jnp.std(out.pnl)))
    ratios = np.array(stds[1:]) / np.array(stds[:-1])
    assert np.all(np.abs(ratios - 1 / np.sqrt(2)) < 0.1), (stds, ratios)


def test_c_delta_hedge_cost_matches_leland():
    """Mean cost ~ eps sqrt(2/pi) sigma sqrt(dt) sum_t E[S_t^2 Gamma_t] (rebalancing trades only)."""
    n_steps, eps = 64, 1e-3
    env, params = make(n_steps, cost=eps, charge_entry=False, charge_unwind=False)
    out = rollout(jax.random.PRNGKey(2), env, params, agents.DeltaHedger(), 40_000)
    dt = T / n_steps
    t_idx = jnp.arange(1, n_steps)
    s = out.spot[:, 1:n_steps]
    gamma = bs_gamma(s, K, T - t_idx * dt, R, SIGMA)
    leland = eps * np.sqrt(2 / np.pi) * SIGMA * np.sqrt(dt) * float(
        jnp.sum(jnp.mean(s**2 * gamma, axis=0)))
    mean_cost = float(jnp.mean(out.cost))
    assert abs(mean_cost / leland - 1) < 0.2, (mean_cost, leland)


def test_d_whalley_wilmott_beats_delta_on_mean_variance_at_one_percent_cost():
    risk_aversion = 1.0  # the band's lambda is also the mean-variance criterion's
    env, params = make(64, cost=0.01)
    key = jax.random.PRNGKey(4)

    def utility(hedger):
        pnl = np.asarray(rollout(key, env, params, hedger, 40_000).pnl, np.float64)
        return pnl.mean() - 0.5 * risk_aversion * pnl.var()

    ww = utility(agents.WhalleyWilmottHedger(risk_aversion=risk_aversion))
    delta = utility(agents.DeltaHedger())
    assert ww > delta, (ww, delta)


def test_zero_cost_band_is_the_delta_hedge():
    env, params = make(16)
    key = jax.random.PRNGKey(5)
    a = rollout(key, env, params, agents.WhalleyWilmottHedger(risk_aversion=1.0), 1_000)
    b = rollout(key, env, params, agents.DeltaHedger(), 1_000)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-5)


def test_naked_pnl_is_premium_grown_minus_payoff():
    env, params = make(8, cost=0.01)
    out = rollout(jax.random.PRNGKey(6), env, params, agents.NakedHedger(), 500)
    expected = float(params.premium) * np.exp(R * T) - np.maximum(out.spot[:, -1] - K, 0)
    np.testing.assert_allclose(out.pnl, expected, rtol=1e-5, atol=1e-4)
    assert float(jnp.max(out.cost)) == 0.0


def test_paths_and_pnl_do_not_depend_on_device_count(tmp_path):
    """Blocks are keyed by index, so 2 XLA devices give bitwise the same result as 1."""
    import os
    import subprocess
    import sys

    code = (
        "import jax, numpy as np\n"
        "from jaxhedge import agents, ledger\n"
        "from jaxhedge.env import EnvConfig, HedgingEnv\n"
        "from jaxhedge.markets import GBMParams\n"
        "from jaxhedge.rollout import rollout\n"
        "env = HedgingEnv(EnvConfig(market='gbm', n_steps=8))\n"
        "p = env.default_params(GBMParams(s0=100., mu=0.05, sigma=0.2), strike=100.,\n"
        "    maturity=0.25, costs=ledger.CostModel(1e-3))\n"
        "out = rollout(jax.random.PRNGKey(5), env, p, agents.DeltaHedger(), 5000,\n"
        "    block_paths=1000)\n"
        "np.save(OUT, np.asarray(out.pnl))\n"
        "print(len(jax.devices()))\n"
    )
    results = []
    for n_dev in (1, 2):
        out = tmp_path / f"pnl{n_dev}.npy"
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_dev}"}
        proc = subprocess.run([sys.executable, "-c", code.replace("OUT", repr(str(out)))],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-1] == str(n_dev)
        results.append(np.load(out))
    assert results[0].shape == (5000,)
    np.testing.assert_array_equal(results[0], results[1])
