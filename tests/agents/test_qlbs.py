"""Tests for the classic QLBS agent (METHODS.md §4.4): basis, oracle, reference numbers.

The key oracle is an independent plain-numpy implementation of the DP backward (and of the
FQI regression), written here from the spec: scipy's BSpline for the basis, explicit
loops over t, np.linalg.solve. It runs on the JAX-simulated paths (converted to numpy) and
must agree with the JAX price to 1e-8 in float64.
"""
from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import BSpline

from jaxhedge import ledger
from jaxhedge.agents.qlbs import (
    QLBSConfig,
    QLBSParams,
    QLBSResult,
    _qlbs_price_impl,
    bspline_basis,
    bspline_knots,
    qlbs_price,
    qlbs_price_multi,
    state_variable,
)

REF = QLBSParams()  # the spec's reference: put, S0=K=100, μ=.05, σ=.15, r=.03, T=1, λ=1e-3
SEEDS = jax.random.split(jax.random.key(2024), 5)


# --------------------------------------------------------------------------------------
# numpy oracle
# --------------------------------------------------------------------------------------


def np_knots(x_min, x_max, n_basis=12, degree=3):
    tau = np.linspace(x_min, x_max, n_basis)
    inner = [tau[j + 1 : j + 1 + degree].mean() for j in range(n_basis - degree - 1)]
    return np.r_[[tau[0]] * (degree + 1), inner, [tau[-1]] * (degree + 1)]


def np_design(x, knots, degree=3):
    """scipy design matrix, x of any shape -> x.shape + (n_basis,)."""
    flat = np.asarray(x, dtype=np.float64).ravel()
    dm = BSpline.design_matrix(flat, knots, degree).toarray()
    return dm.reshape(np.shape(x) + (dm.shape[1],))


def np_qlbs(spot, p: QLBSParams, option="put", pure=True, beh_hedges=None):
    """Plain-numpy QLBS from METHODS §4.4. spot (P, N+1). Returns dict.

    With ``beh_hedges`` (P, N) also runs FQI with those behaviour actions.
    """
    spot = np.asarray(spot, np.float64)
    n_paths, n1 = spot.shape
    n = n1 - 1
    dt = p.maturity / n
    gamma = np.exp(-p.rate * dt)
    lam = p.risk_aversion
    t_years = np.arange(n + 1) * dt
    x = np.log(spot) - (p.mu - 0.5 * p.sigma**2) * t_years
    knots = np_knots(x.min(), x.max())
    phi = np_design(x, knots)  # (P, N+1, M)
    m = phi.shape[-1]
    eye = np.eye(m)
    d_s = spot[:, 1:] - np.exp(p.rate * dt) * spot[:, :-1]
    payoff = np.maximum(p.strike - spot[:, -1], 0) if option == "put" else np.maximum(
        spot[:, -1] - p.strike, 0)

    a = np.zeros((n_paths, n))
    pi = np.zeros((n_paths, n + 1))
    q = np.zeros((n_paths, n + 1))
    var = np.zeros(n + 1)
    pi[:, n] = payoff
    var[n] = pi[:, n].var()
    q[:, n] = -pi[:, n] - lam * var[n]
    for t in range(n - 1, -1, -1):
        ph = phi[:, t, :]
        ds = d_s[:, t]
        ds_hat = ds - ds.mean()
        pi_hat = pi[:, t + 1] - pi[:, t + 1].mean()
        A = np.einsum("kn,km,k->nm", ph, ph, ds_hat**2) + 1e-3 * eye
        B = ph.T @ (pi_hat * ds_hat)
        if not pure:
            B = B + ph.T @ (ds / (2 * gamma * lam))
        a[:, t] = ph @ np.linalg.solve(A, B)
        pi[:, t] = gamma * (pi[:, t + 1] - a[:, t] * ds)
        var[t] = pi[:, t].var()
        r_t = gamma * a[:, t] * ds - lam * var[t]
        omega = np.linalg.solve(ph.T @ ph + 1e-3 * eye, ph.T @ (r_t + gamma * q[:, t + 1]))
        q[:, t] = ph @ omega
    out = dict(price=-q[:, 0].mean(), hedges=a, pi=pi, var=var, q0=q[:, 0],
               check=pi[:, 0].mean() + lam * np.sum(gamma ** np.arange(n + 1) * var))
    if beh_hedges is not None:
        ab = np.asarray(beh_hedges, np.float64)
        pib = np.zeros((n_paths, n + 1))
        pib[:, n] = payoff
        qs_next = -payoff - lam * payoff.var()
        for t in range(n - 1, -1, -1):
            ph = phi[:, t, :]
            ds = d_s[:, t]
            pib[:, t] = gamma * (pib[:, t + 1] - ab[:, t] * ds)
            r_t = gamma * ab[:, t] * ds - lam * pib[:, t].var()
            psi = np.concatenate([ph, ab[:, t, None] * ph, 0.5 * ab[:, t, None] ** 2 * ph], 1)
            w = np.linalg.solve(psi.T @ psi + 1e-3 * np.eye(3 * m),
                                psi.T @ (r_t + gamma * qs_next))
            u0, u1, u2 = (ph @ w[i * m:(i + 1) * m] for i in range(3))
            qs_next = u0 + a[:, t] * u1 + 0.5 * a[:, t] ** 2 * u2
        out["fqi_price"] = -qs_next.mean()
    return out


# --------------------------------------------------------------------------------------
# basis
# --------------------------------------------------------------------------------------


def test_knots_follow_spec(x64):
    k = np.asarray(bspline_knots(-1.3, 2.1, 12, 3))
    tau = np.linspace(-1.3, 2.1, 12)
    assert k.shape == (16,)
    np.testing.assert_allclose(k[:4], tau[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(k[-4:], tau[11], rtol=0, atol=1e-15)
    expect_inner = [(tau[j + 1] + tau[j + 2] + tau[j + 3]) / 3 for j in range(8)]
    np.testing.assert_allclose(k[4:12], expect_inner, rtol=0, atol=1e-14)
    np.testing.assert_allclose(k, np_knots(-1.3, 2.1), rtol=0, atol=1e-15)


@pytest.mark.parametrize("lo,hi", [(3.9, 5.2), (-0.7, 0.45)])
def test_basis_matches_scipy(x64, lo, hi):
    knots = np.asarray(bspline_knots(lo, hi))
    rng = np.random.default_rng(0)
    # random points, every knot, and both end points (the right end is the trap).
    x = np.r_[rng.uniform(lo, hi, 2000), knots, lo, hi, np.nextafter(hi, lo)]
    ours = np.asarray(bspline_basis(jnp.asarray(x), jnp.asarray(knots)))
    ref = np_design(x, knots)
    assert ours.shape == (x.size, 12)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
    # the maximum gets the last basis function = 1 (non-zero), the minimum the first.
    assert ours[-2, -1] == pytest.approx(1.0, abs=1e-12)
    assert ours[-3, 0] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("use_x64", [False, True])
def test_basis_partition_of_unity(use_x64):
    with jax.enable_x64(use_x64):
        lo, hi = 4.0, 5.2
        x = jnp.linspace(lo, hi, 5001)  # closed interval [τ_0, τ_11]
        phi = bspline_basis(x, bspline_knots(lo, hi))
        tol = 1e-12 if use_x64 else 1e-5
        np.testing.assert_allclose(np.asarray(phi.sum(-1)), 1.0, rtol=0, atol=tol)
        assert float(phi.min()) >= -tol
        assert float(phi[-1, -1]) > 0.99  # right end point not dropped


# --------------------------------------------------------------------------------------
# numpy oracle (float64)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        QLBSConfig(n_steps=24),
        QLBSConfig(n_steps=6, risk_hedge_pure=False),
        QLBSConfig(n_paths=3000, n_steps=12, option="call"),
    ],
    ids=["put-dp24", "put-dp6-nonpure", "call-dp12"],
)
def test_dp_matches_numpy_oracle(x64, cfg):
    res = qlbs_price(jax.random.key(7), cfg, REF)
    assert res.price.dtype == jnp.float64
    ora = np_qlbs(res.spot, REF, option=cfg.option, pure=cfg.risk_hedge_pure)
    # prices of order 5 (100 for the non-pure hedge): 1e-8 relative to 1.
    scale = max(1.0, abs(ora["price"]))
    assert abs(float(res.price) - ora["price"]) < 1e-8 * scale
    np.testing.assert_allclose(np.asarray(res.hedges), ora["hedges"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(res.pi), ora["pi"], rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(np.asarray(res.variances), ora["var"], rtol=1e-9)
    assert abs(float(res.check) - ora["check"]) < 1e-8 * scale
    # the knots are the spec's on the simulated X
    x = np.asarray(state_variable(res.spot, REF))
    np.testing.assert_allclose(np.asarray(res.knots), np_knots(x.min(), x.max()), atol=1e-13)


def test_fqi_matches_numpy_oracle(x64):
    cfg = QLBSConfig(n_steps=6, method="fqi")
    res = qlbs_price(jax.random.key(11), cfg, REF)
    # behaviour actions are a*·u with u in [1 − η, 1 + η]
    ratio = np.asarray(res.behaviour_hedges) / np.asarray(res.hedges)
    assert ratio.min() >= 1 - REF.fqi_eta - 1e-12 and ratio.max() <= 1 + REF.fqi_eta + 1e-12
    assert ratio.std() > 0.2  # really randomised (U[0.5, 1.5] has std 0.289)
    ora = np_qlbs(res.spot, REF, beh_hedges=res.behaviour_hedges)
    assert abs(float(res.dp_price) - ora["price"]) < 1e-8
    assert abs(float(res.price) - ora["fqi_price"]) < 1e-8
    # the FQI Q*_0 is the same number on every path (X_0 and a*_0 are)
    assert float(np.ptp(np.asarray(res.q0))) < 1e-9


@pytest.mark.parametrize("option", ["put", "call"])
def test_pi_recursion_is_the_ledger(x64, option):
    """The DP's backward Π_t = γ(Π_{t+1} − a_t ΔS_t) is the self-financing ledger run forward:
    ``ledger.replay`` of the DP hedges a_t on the same paths from premium Π_0 (no costs,
    cash at r) marks to Π_t at every date and ends at Π_N = h(S_N), pnl 0 on every path."""
    p = REF.replace(rate=0.05)
    cfg = QLBSConfig(n_paths=2000, n_steps=6, option=option)
    res = qlbs_price(jax.random.key(4), cfg, p)
    params = ledger.LedgerParams(rate=p.rate, dt=p.maturity / cfg.n_steps)
    tape = ledger.replay(res.spot, res.hedges, res.pi[:, 0], p.strike, params, option == "call")
    scale = 1.0 + np.abs(np.asarray(res.hedges) * np.asarray(res.spot[:, :-1])).max()
    np.testing.assert_allclose(tape.values, res.pi, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(tape.pnl, 0.0, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(res.pi[:, -1], ledger.payoff(res.spot[:, -1], p.strike,
                                                            option == "call"), atol=1e-13)
    assert float(np.abs(np.asarray(res.hedges)).mean()) > 0.1  # the hedge really trades


def test_fqi_and_dp_share_paths(x64):
    key = jax.random.key(3)
    dp = qlbs_price(key, QLBSConfig(n_steps=6), REF)
    fqi = qlbs_price(key, QLBSConfig(n_steps=6, method="fqi"), REF)
    np.testing.assert_array_equal(np.asarray(dp.spot), np.asarray(fqi.spot))
    assert float(dp.price) == float(fqi.dp_price)
    assert float(fqi.price) != float(fqi.dp_price)


def test_qr_solver_equals_normal_equations(x64):
    # method='fqi' runs the DP first, so one pair of compiles covers both recursions.
    key = jax.random.key(5)
    base = QLBSConfig(n_paths=4000, n_steps=6, method="fqi")
    normal = qlbs_price(key, dataclasses.replace(base, solver="normal"), REF)
    qr = qlbs_price(key, dataclasses.replace(base, solver="qr"), REF)
    assert abs(float(normal.price) - float(qr.price)) < 1e-9
    assert abs(float(normal.dp_price) - float(qr.dp_price)) < 1e-9
    np.testing.assert_allclose(np.asarray(normal.hedges), np.asarray(qr.hedges), atol=1e-9)


# --------------------------------------------------------------------------------------
# reference numbers (METHODS §4.4), float64, 5 seeds, 10,000 paths
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ref_runs():
    with jax.enable_x64(True):
        out = {}
        for name, cfg in {
            "dp24": QLBSConfig(n_steps=24),
            "dp6": QLBSConfig(n_steps=6),
            "fqi6": QLBSConfig(n_steps=6, method="fqi"),
        }.items():
            r = qlbs_price_multi(SEEDS, cfg, REF)
            assert r.price.dtype == jnp.float64
            out[name] = jax.tree_util.tree_map(np.asarray, r)
        return out


def test_reference_dp24(ref_runs):
    price = ref_runs["dp24"].price
    assert price.shape == (5,)
    assert abs(price.mean() - 4.93) <= 0.06, price
    assert price.std(ddof=1) < 0.1  # spec: 0.04 across seeds


def test_reference_fqi6(ref_runs):
    price = ref_runs["fqi6"].price
    assert abs(price.mean() - 4.64) <= 0.07, price
    assert price.std(ddof=1) < 0.12  # spec: 0.05


def test_reference_dp6(ref_runs):
    price = ref_runs["dp6"].price
    assert abs(price.mean() - 4.64) <= 0.05, price


def test_bs_reference_price(ref_runs):
    np.testing.assert_allclose(ref_runs["dp24"].bs_price, 4.5296, atol=1e-4)
    # QLBS price is above BS (risk premium for the discrete, imperfect hedge)
    assert (ref_runs["dp24"].price > ref_runs["dp24"].bs_price).all()


def test_builtin_identity(ref_runs):
    """−Q_0 ≈ mean Π_0 + λ Σ γ^t V_t.

    Not exact: Q_t is a projection of R_t + γQ_{t+1} on 12 spline functions of X_t, and
    the projection residual averaged over paths is ~1e-4 (spec: agrees to ~2e−4; measured
    ≤ 1.6e−4 on these seeds). 1e−3 is 20 % of a cent on a ~4.9 price and still far below
    the λ-term itself (λ Σγ^tV_t ≈ 0.4 for DP24), so a wrong V_t, γ or sign would fail.
    """
    for name in ("dp24", "dp6"):
        r = ref_runs[name]
        np.testing.assert_allclose(r.price, r.check, rtol=0, atol=1e-3)
        # and the penalty term being tested is material
        assert (r.check - r.pi[:, :, 0].mean(-1) > 0.05).all()


def test_result_shapes(ref_runs):
    r = ref_runs["dp24"]
    assert r.hedges.shape == (5, 10_000, 24)
    assert r.pi.shape == (5, 10_000, 25)
    assert r.variances.shape == (5, 25)
    assert r.q0.shape == (5, 10_000)
    assert r.knots.shape == (5, 16)
    # put hedge: short stock. The bulk is delta-like; the extreme paths at late t sit
    # where an edge spline has only a handful of paths and the 1e-3 ridge barely binds,
    # so a few hedges blow up (measured: ~0.1 % of |a| > 1.5, min about -76). That is the
    # method as specified, so only quantiles are checked.
    q01, q50, q99 = np.quantile(r.hedges, [0.01, 0.5, 0.99])
    assert -1.3 < q01 and -0.6 < q50 < -0.2 and q99 < 0.2
    assert (np.abs(r.hedges) > 1.5).mean() < 0.01
    # Π_N is the payoff
    np.testing.assert_allclose(r.pi[..., -1], np.maximum(100 - r.spot[..., -1], 0))


def test_float32_close_to_float64(ref_runs):
    """float32 (default) uses the QR solver; on the same keys it lands within 1e-3."""
    for name, cfg in {"dp24": QLBSConfig(n_steps=24),
                      "fqi6": QLBSConfig(n_steps=6, method="fqi")}.items():
        r32 = qlbs_price_multi(SEEDS, cfg, REF)
        assert r32.price.dtype == jnp.float32
        p32 = np.asarray(r32.price, np.float64)
        assert np.isfinite(p32).all()
        np.testing.assert_allclose(p32, ref_runs[name].price, rtol=0, atol=1e-3)


# --------------------------------------------------------------------------------------
# variants, determinism, tracing
# --------------------------------------------------------------------------------------


def test_non_pure_hedge_differs(x64):
    """Keeping ΔS/(2γλ) in B with λ = 0.001: the spec calls the prices nonsense.

    The mean-variance term dominates the hedge (ΔS/(2γλ) = 500·ΔS) and the price jumps
    from ~4.9 to O(100) (measured 85–115 across seeds). Documented, not asserted as a
    value; we only check it is computed (finite) and clearly differs from the pure hedge.
    """
    key = jax.random.key(1)
    pure = qlbs_price(key, QLBSConfig(n_steps=24), REF)
    mixed = qlbs_price(key, QLBSConfig(n_steps=24, risk_hedge_pure=False), REF)
    assert np.isfinite(float(mixed.price))
    assert abs(float(mixed.price) - float(pure.price)) > 1.0
    assert np.abs(np.asarray(mixed.hedges - pure.hedges)).max() > 0.1


def test_same_key_same_result():
    cfg = QLBSConfig(n_paths=2000, n_steps=6, method="fqi")
    a = qlbs_price(jax.random.key(42), cfg, REF)
    b = qlbs_price(jax.random.key(42), cfg, REF)
    c = qlbs_price(jax.random.key(43), cfg, REF)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert float(a.price) != float(c.price)


def test_multi_equals_single(x64):
    cfg = QLBSConfig(n_paths=2000, n_steps=6)
    keys = jax.random.split(jax.random.key(9), 2)
    multi = qlbs_price_multi(keys, cfg, REF)
    for i in range(2):
        single = qlbs_price(keys[i], cfg, REF)
        assert abs(float(single.price) - float(multi.price[i])) < 1e-10


def test_no_retrace_for_new_params():
    traced = jax.jit(chex.assert_max_traces(_qlbs_price_impl, n=1), static_argnums=1)
    cfg = QLBSConfig(n_paths=1000, n_steps=4)
    key = jax.random.key(0)
    r1 = traced(key, cfg, REF)
    r2 = traced(key, cfg, REF.replace(sigma=0.25, strike=105.0, risk_aversion=0.01))
    assert float(r1.price) != float(r2.price)  # the params really changed the result
    # the public jitted entry point shares the same behaviour
    size = qlbs_price._cache_size()
    qlbs_price(key, cfg, REF)
    qlbs_price(key, cfg, REF.replace(mu=0.1))
    assert qlbs_price._cache_size() == size + 1


def test_result_is_pytree():
    r = qlbs_price(jax.random.key(0), QLBSConfig(n_paths=500, n_steps=3), REF)
    assert isinstance(r, QLBSResult)
    assert len(jax.tree_util.tree_leaves(r)) == len(dataclasses.fields(QLBSResult))


@pytest.mark.parametrize(
    "kwargs",
    [dict(option="straddle"), dict(method="sarsa"), dict(solver="svd"), dict(n_basis=3),
     dict(n_steps=0)],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        QLBSConfig(**kwargs)
