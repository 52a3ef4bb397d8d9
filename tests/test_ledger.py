"""The ledger against an independent plain-numpy replay of the same trade tape."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import ledger


def numpy_replay(spots, positions, premium, strike, eps, eta, fee, rate, q, dt,
                 charge_entry, charge_unwind, is_call, mult):
    """Loop-by-loop ledger written from METHODS §2 alone (one path)."""
    n = len(positions)

    def cost(du, s, m):
        return m * (eps * abs(du) * s + eta * du * du * s + (fee if du != 0 else 0.0))

    total_cost, turnover = 0.0, abs(positions[0])
    entry = cost(positions[0], spots[0], mult[0]) if charge_entry else 0.0
    cash = premium - positions[0] * spots[0] - entry
    total_cost += entry
    u = positions[0]
    for t in range(1, n + 1):
        s = spots[t]
        cash = cash * np.exp(rate * dt) + u * s * (np.exp(q * dt) - 1.0)
        new_u = positions[t] if t < n else 0.0
        tc = cost(new_u - u, s, mult[t])
        if t == n and not charge_unwind:
            tc = 0.0
        cash -= (new_u - u) * s + tc
        total_cost += tc
        turnover += abs(new_u - u)
        u = new_u
    payoff = max(spots[-1] - strike, 0.0) if is_call else max(strike - spots[-1], 0.0)
    return cash - payoff, total_cost, turnover


@pytest.mark.parametrize(
    "charge_entry,charge_unwind,is_call", list(itertools.product([True, False], repeat=3)))
def test_replay_matches_numpy_reference_float64(x64, charge_entry, charge_unwind, is_call):
    rng = np.random.default_rng(7)
    n_paths, n = 64, 13
    spots = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, (n_paths, n + 1)), axis=1))
    positions = rng.uniform(-0.5, 1.2, (n_paths, n))
    positions[:, 3] = positions[:, 2]  # a zero trade: the fixed fee must not apply
    mult = rng.uniform(0.5, 3.0, (n_paths, n + 1))
    premium = rng.uniform(2, 8, n_paths)
    eps, eta, fee, rate, q, dt, strike = 4e-3, 1e-3, 0.01, 0.03, 0.015, 1 / 52, 101.0
    params = ledger.LedgerParams(
        costs=ledger.CostModel(eps, eta, fee), rate=rate, div_yield=q, dt=dt,
        charge_entry=charge_entry, charge_unwind=charge_unwind)
    got = ledger.replay(spots, positions, premium, strike, params, is_call, mult)
    assert got.pnl.dtype == jnp.float64
    ref = np.array([numpy_replay(spots[i], positions[i], premium[i], strike, eps, eta, fee,
                                 rate, q, dt, charge_entry, charge_unwind, is_call, mult[i])
                    for i in range(n_paths)])
    scale = np.abs(ref).max(axis=0)
    np.testing.assert_allclose(got.pnl, ref[:, 0], rtol=1e-6, atol=1e-6 * scale[0])
    np.testing.assert_allclose(got.cost, ref[:, 1], rtol=1e-6)
    np.testing.assert_allclose(got.turnover, ref[:, 2], rtol=1e-6)


def test_zero_cost_zero_rate_is_gains_from_trading(x64):
    """Without costs, r and q: V_T = p + sum_t u_t (S_{t+1} - S_t) exactly."""
    rng = np.random.default_rng(1)
    spots = 1 + np.abs(rng.normal(0, 0.1, (5, 9))).cumsum(axis=1)
    positions = rng.normal(size=(5, 8))
    got = ledger.replay(spots, positions, 0.3, 1.0, ledger.LedgerParams(), True)
    expected = 0.3 + (positions * np.diff(spots, axis=1)).sum(axis=1)
    np.testing.assert_allclose(got.terminal_value, expected, rtol=1e-12)
    np.testing.assert_allclose(got.cost, 0.0)


def test_cash_grows_at_rate_and_dividends_paid():
    """Holding cash only grows at e^{rT}; holding one share earns the dividend yield."""
    with jax.enable_x64(True):
        spots = np.full((1, 5), 50.0)
        params = ledger.LedgerParams(rate=0.05, div_yield=0.02, dt=0.25)
        cash_only = ledger.replay(spots, np.zeros((1, 4)), 10.0, 0.0, params, False)
        np.testing.assert_allclose(cash_only.terminal_value, 10 * np.exp(0.05), rtol=1e-12)
        # One share bought with borrowed cash at a flat price: the P&L is the dividends
        # (each compounded at r) minus the interest on the borrowed 50.
        one = ledger.replay(spots, np.ones((1, 4)), 0.0, 0.0, params, False)
        divs = sum(50 * np.expm1(0.02 * 0.25) * np.exp(0.05 * 0.25 * k) for k in range(4))
        np.testing.assert_allclose(one.terminal_value, divs - 50 * np.expm1(0.05), rtol=1e-10)


def test_transaction_cost_components():
    c = ledger.CostModel(proportional=0.01, quadratic=0.1, fixed=0.5)
    assert float(ledger.transaction_cost(0.0, 10.0, c)) == 0.0
    np.testing.assert_allclose(ledger.transaction_cost(-2.0, 10.0, c, 2.0),
                               2 * (0.01 * 2 * 10 + 0.1 * 4 * 10 + 0.5), rtol=1e-6)


def test_replay_float32_default_and_jit():
    spots = jnp.linspace(1.0, 1.1, 6)[None]
    out = jax.jit(ledger.replay, static_argnums=(5,))(
        spots, jnp.full((1, 5), 0.5), 0.05, 1.0, ledger.LedgerParams(), True)
    assert out.pnl.dtype == jnp.float32
    assert out.values.shape == (1, 6)


def test_where_applies_a_step_only_under_the_mask():
    """``where(mask, new, old)`` takes every field of ``new`` where mask, else of ``old``;
    a masked trade leaves the frozen accounts bit-for-bit unchanged."""
    rng = np.random.default_rng(3)
    old = ledger.LedgerState(*(jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
                               for _ in range(4)))
    mask = jnp.asarray([True, False, True])
    new = ledger.trade(old, jnp.full((4, 3), 0.7), 2.0, ledger.LedgerParams(
        costs=ledger.CostModel(proportional=0.01)))
    got = ledger.where(mask, new, old)
    for f in ("cash", "shares", "cost", "turnover"):
        g, n, o = (np.asarray(getattr(x, f)) for x in (got, new, old))
        np.testing.assert_array_equal(g[:, [0, 2]], n[:, [0, 2]])
        np.testing.assert_array_equal(g[:, 1], o[:, 1])
    assert not np.array_equal(np.asarray(new.cash[:, 1]), np.asarray(old.cash[:, 1]))
