"""Tests for jaxhedge.risk (METHODS.md §6).

The numpy references below are written independently of the implementation: VaR from the
quantile definition by brute force with exact rational arithmetic, ES both as the exact
integral of the empirical quantile function and by the Acerbi–Tasche formula.
"""
from __future__ import annotations

import doctest
import math
from fractions import Fraction

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from jaxhedge import risk

# --------------------------------------------------------------------------- references
# 7/100 and 3/10 with n = 100 give n·α a few ulps ABOVE an integer in float64 / float32
# (7.000000000000001, 30.000002), which a naive ceil would round up to the next rank.
ALPHAS = [Fraction(1, 1000), Fraction(1, 100), Fraction(1, 20), Fraction(7, 100), Fraction(1, 10),
          Fraction(1, 8), Fraction(3, 10), Fraction(1, 3), Fraction(1, 2), Fraction(7, 10),
          Fraction(1, 1)]
SIZES = [1, 2, 3, 7, 10, 20, 37, 100, 101, 1000]


def ref_var(losses: np.ndarray, alpha: Fraction) -> float:
    """Lower (1−α)-quantile: smallest sample ℓ with #{L > ℓ} <= n·α (exact rationals)."""
    n = len(losses)
    cands = [v for v in np.unique(losses) if Fraction(int(np.sum(losses > v))) <= n * alpha]
    return float(min(cands))


def ref_es_integral(losses: np.ndarray, alpha: Fraction) -> float:
    """(1/α)∫_{1−α}^1 q_u du, q_u = x_(i) (ascending) on ((i−1)/n, i/n]; exact overlaps."""
    n = len(losses)
    xs = np.sort(losses)
    lo = 1 - alpha
    total = 0.0
    for i, x in enumerate(xs, start=1):
        a, b = Fraction(i - 1, n), Fraction(i, n)
        overlap = max(Fraction(0), min(b, Fraction(1)) - max(a, lo))
        if overlap > 0:
            total += float(overlap) * float(x)
    return total / float(alpha)


def ref_es_acerbi_tasche(losses: np.ndarray, alpha: Fraction) -> float:
    """ES = (1/α)(E[L·1{L > v}] + v·(α − P(L > v))) with v the (1−α)-quantile (ties OK)."""
    v = ref_var(losses, alpha)
    n = len(losses)
    tail = losses[losses > v]
    a = float(alpha)
    return (np.sum(tail) / n + v * (a - len(tail) / n)) / a


def _samples(rng, n, kind):
    if kind == "normal":
        return rng.standard_normal(n) * 3.0 + 0.5
    if kind == "ties":
        return rng.integers(-3, 4, size=n).astype(np.float64)
    return rng.standard_t(2, size=n)  # heavy tails


# --------------------------------------------------------------------------- reference tests
@pytest.mark.parametrize("kind", ["normal", "ties", "heavy"])
def test_var_es_match_numpy_reference_x64(x64, kind):
    rng = np.random.default_rng({"normal": 0, "ties": 1, "heavy": 2}[kind])
    var_j = jax.jit(risk.value_at_risk)
    es_j = jax.jit(risk.expected_shortfall)
    checked = 0
    for n in SIZES:
        x = _samples(rng, n, kind)
        xj = jnp.asarray(x)
        for alpha in ALPHAS:
            a = float(alpha)
            v = float(var_j(xj, a))
            e = float(es_j(xj, a))
            scale = 1e-12 * max(1.0, np.max(np.abs(x)))
            assert v == ref_var(x, alpha), (n, alpha)
            assert e == pytest.approx(ref_es_integral(x, alpha), abs=scale), (n, alpha)
            assert e == pytest.approx(ref_es_acerbi_tasche(x, alpha), abs=scale), (n, alpha)
            checked += 1
    assert checked == len(SIZES) * len(ALPHAS)


def test_var_es_match_reference_float32():
    """float32 α (e.g. 0.05 → 0.0500000007) must still give k = ceil(nα) for integer nα."""
    rng = np.random.default_rng(3)
    var_j = jax.jit(risk.value_at_risk)
    es_j = jax.jit(risk.expected_shortfall)
    for n in SIZES:
        x = rng.standard_normal(n).astype(np.float32)
        for alpha in ALPHAS:
            a = np.float32(float(alpha))
            v = var_j(jnp.asarray(x), a)
            e = es_j(jnp.asarray(x), a)
            assert v.dtype == jnp.float32 and e.dtype == jnp.float32
            assert float(v) == ref_var(x.astype(np.float64), alpha), (n, alpha)
            assert float(e) == pytest.approx(ref_es_integral(x.astype(np.float64), alpha),
                                             abs=2e-5 * max(1.0, float(np.abs(x).max())))


def test_small_sample_exact_values():
    L = jnp.arange(1.0, 11.0)  # n = 10
    assert float(risk.expected_shortfall(L, 0.05)) == 10.0  # nα = 0.5 → all weight on max
    assert float(risk.expected_shortfall(L, 0.1)) == 10.0  # nα = 1
    assert float(risk.expected_shortfall(L, 0.15)) == pytest.approx((10 + 0.5 * 9) / 1.5)
    assert float(risk.expected_shortfall(L, 1.0)) == pytest.approx(5.5)
    assert float(risk.value_at_risk(L, 0.1)) == 9.0
    assert float(risk.value_at_risk(L, 0.09)) == 10.0
    assert float(risk.value_at_risk(L, 0.11)) == 9.0
    assert float(risk.value_at_risk(L, 0.2)) == 8.0
    assert float(risk.value_at_risk(L, 1.0)) == 1.0
    # α → 0 (and α = 0) tends to the maximum rather than dividing by zero
    assert float(risk.expected_shortfall(L, 0.0)) == 10.0
    assert float(risk.value_at_risk(L, 0.0)) == 10.0
    # inf outside the tail does not poison the result
    Linf = jnp.array([-jnp.inf, 1.0, 2.0, 3.0])
    assert float(risk.expected_shortfall(Linf, 0.5)) == 2.5


def test_shortfall_family():
    pnl = jnp.array([-4.0, -1.0, 0.0, 2.0, 3.0])
    np.testing.assert_array_equal(risk.shortfall(pnl), [4.0, 1.0, 0.0, 0.0, 0.0])
    assert float(risk.shortfall_probability(pnl)) == pytest.approx(0.4)
    # ES 40% of SF = mean of the worst two shortfalls
    assert float(risk.es_shortfall(pnl, 0.4)) == pytest.approx(2.5)
    assert float(risk.es_shortfall(pnl, 0.2)) == pytest.approx(4.0)
    # smooth surrogate → indicator as temperature → 0, ½ at pnl = 0
    assert float(risk.smooth_shortfall_probability(pnl, 1e-4)) == pytest.approx(0.5)
    assert float(risk.smooth_shortfall_probability(pnl, 1.0)) == pytest.approx(
        np.mean(1 / (1 + np.exp(np.asarray(pnl)))), rel=1e-6)
    g = jax.grad(lambda p: risk.smooth_shortfall_probability(p, 0.5))(pnl)
    assert np.all(np.asarray(g) < 0)  # more P&L → lower shortfall probability


def test_moments():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 50))
    xj = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(risk.mean(xj), x.mean(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(risk.std(xj), x.std(-1, ddof=0), rtol=1e-5)
    np.testing.assert_allclose(risk.rmse(xj), np.sqrt((x ** 2).mean(-1)), rtol=1e-5)


# --------------------------------------------------------------------------- Rockafellar–Uryasev
@pytest.mark.parametrize("n,alpha", [(10, 0.05), (10, 0.3), (37, 0.1), (200, 0.05), (99, 1.0)])
def test_rockafellar_uryasev_minimum_equals_es(x64, n, alpha):
    rng = np.random.default_rng(n)
    pnl = rng.standard_normal(n) * 2.0
    pnl[:3] = pnl[3]  # ties
    pj = jnp.asarray(pnl)
    es = float(risk.expected_shortfall(-pj, alpha))
    ru = jax.jit(jax.vmap(risk.cvar_rockafellar_uryasev, in_axes=(None, 0, None)))
    # piecewise linear and convex in w with kinks at the losses → minimum at a sample point
    vals = np.asarray(ru(pj, jnp.asarray(-pnl), alpha))
    assert vals.min() == pytest.approx(es, abs=1e-12)
    # ... attained at the VaR
    var = risk.value_at_risk(-pj, alpha)
    assert float(risk.cvar_rockafellar_uryasev(pj, var, alpha)) == pytest.approx(es, abs=1e-12)
    # a continuous optimiser agrees
    res = optimize.minimize_scalar(
        lambda w: float(risk.cvar_rockafellar_uryasev(pj, w, alpha)),
        bounds=(-pnl.max() - 1, -pnl.min() + 1), method="bounded",
        options={"xatol": 1e-10})
    assert res.fun == pytest.approx(es, abs=1e-8)
    # and every threshold gives an upper bound
    assert np.all(vals >= es - 1e-12)


def test_oce_entropic_minimum_equals_entropic_risk(x64):
    rng = np.random.default_rng(5)
    pnl = jnp.asarray(rng.standard_normal(300))
    lam = 2.0
    rho = float(risk.entropic_risk(pnl, lam))
    ell = lambda u: jnp.expm1(lam * u) / lam  # noqa: E731
    res = optimize.minimize_scalar(lambda w: float(risk.oce(pnl, w, ell)),
                                   bounds=(-10, 10), method="bounded", options={"xatol": 1e-10})
    assert res.fun == pytest.approx(rho, abs=1e-8)
    assert res.x == pytest.approx(rho, abs=1e-4)
    # ES as OCE
    a = 0.1
    assert float(risk.oce(pnl, 0.7, lambda u: jnp.maximum(u, 0.0) / a)) == pytest.approx(
        float(risk.cvar_rockafellar_uryasev(pnl, 0.7, a)))


# --------------------------------------------------------------------------- properties
SETTINGS = settings(max_examples=60, deadline=None)
# no subnormals: XLA on CPU flushes them to zero, which is not what is under test here
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False,
                   allow_subnormal=False)
samples = hnp.arrays(np.float64, st.sampled_from([1, 2, 5, 19, 40]), elements=finite)
alphas = st.floats(min_value=1e-3, max_value=1.0)

_var = jax.jit(risk.value_at_risk)
_es = jax.jit(risk.expected_shortfall)
_ent = jax.jit(risk.entropic_risk)


def _tol(x):
    return 1e-9 * max(1.0, float(np.max(np.abs(x))))


@SETTINGS
@given(samples, alphas, alphas)
def test_es_var_properties(x, a1, a2):
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        tol = _tol(x)
        lo, hi = sorted((a1, a2))
        es_lo, es_hi = float(_es(xj, lo)), float(_es(xj, hi))
        var_lo = float(_var(xj, lo))
        assert es_lo >= var_lo - tol  # ES ≥ VaR
        assert es_lo >= es_hi - tol  # monotone non-increasing in α
        assert es_hi >= x.mean() - tol  # ES ≥ mean
        assert x.min() <= var_lo <= x.max()  # VaR is a sample value within range
        assert var_lo in set(x.tolist())
        assert es_lo <= x.max() + tol
        assert float(_es(xj, 1.0)) == pytest.approx(x.mean(), abs=tol)  # ES_1 = mean
        e1, e5, e10 = (float(_es(xj, a)) for a in (0.01, 0.05, 0.1))
        assert e1 >= e5 - tol and e5 >= e10 - tol


@SETTINGS
@given(samples, alphas, finite, st.floats(min_value=1e-2, max_value=1e2))
def test_es_translation_and_homogeneity(x, a, c, lam):
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        es, var = float(_es(xj, a)), float(_var(xj, a))
        tol = 1e-9 * max(1.0, float(np.max(np.abs(x))), abs(c)) * max(1.0, lam)
        assert float(_es(xj + c, a)) == pytest.approx(es + c, abs=tol)
        assert float(_var(xj + c, a)) == pytest.approx(var + c, abs=tol)
        assert float(_es(lam * xj, a)) == pytest.approx(lam * es, abs=tol)
        assert float(_var(lam * xj, a)) == pytest.approx(lam * var, abs=tol)


@SETTINGS
@given(samples, st.floats(min_value=1e-3, max_value=1e2), st.floats(min_value=1e-3, max_value=1e2),
       finite)
def test_entropic_properties(x, l1, l2, c):
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        tol = 1e-9 * max(1.0, float(np.max(np.abs(x))), abs(c))
        lo, hi = sorted((l1, l2))
        r_lo, r_hi = float(_ent(xj, lo)), float(_ent(xj, hi))
        assert r_lo <= r_hi + tol  # non-decreasing in λ
        assert -x.mean() - tol <= r_lo <= -x.min() + tol  # between the two limits
        assert float(_ent(xj + c, lo)) == pytest.approx(r_lo - c, abs=tol)  # cash invariance
        ref = (special.logsumexp(-lo * x) - np.log(len(x))) / lo
        assert r_lo == pytest.approx(ref, abs=1e-9 * max(1.0, abs(ref)) + 1e-9 / lo)


def test_entropic_limits(x64):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(500) * 5
    xj = jnp.asarray(x)
    # λ → 0: −mean (accurate through the expm1 branch, no 1/λ blow-up)
    assert float(risk.entropic_risk(xj, 1e-10)) == pytest.approx(-x.mean(), abs=1e-8)
    assert float(risk.entropic_risk(xj, 0.0)) == pytest.approx(-x.mean(), abs=1e-12)
    # small λ: second-order expansion −mean + λ var / 2
    lam = 1e-4
    assert float(risk.entropic_risk(xj, lam)) == pytest.approx(-x.mean() + lam * x.var() / 2,
                                                              abs=1e-6)
    # λ → ∞: −min, within log(n)/λ
    r = float(risk.entropic_risk(xj, 1e6))
    assert -x.min() - np.log(len(x)) / 1e6 <= r <= -x.min() + 1e-12
    # float32, λ small: still close to −mean
    r32 = risk.entropic_risk(jnp.asarray(x, jnp.float32), 1e-6)
    assert r32.dtype == jnp.float32
    assert float(r32) == pytest.approx(-x.mean(), abs=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropic_stability_large_values(dtype):
    rng = np.random.default_rng(7)
    x = np.where(rng.random(1000) < 0.3, -1e4, 1e4).astype(dtype)
    x[:5] = [-1e4, 1e4, -9999.5, 9998.0, 0.0]
    ref = (special.logsumexp(-1.0 * x.astype(np.float64)) - np.log(len(x)))
    with jax.enable_x64(dtype == np.float64):
        r = risk.entropic_risk(jnp.asarray(x), 1.0)
        g = jax.grad(lambda p: risk.entropic_risk(p, 1.0))(jnp.asarray(x))
        assert r.dtype == dtype
        assert np.isfinite(float(r))
        assert float(r) == pytest.approx(ref, rel=1e-6)
        assert np.all(np.isfinite(np.asarray(g)))
        assert float(jnp.sum(g)) == pytest.approx(-1.0, rel=1e-5)  # gradient = −softmax weights
        # λ = 1e4 on unit-scale P&L
        y = rng.standard_normal(100).astype(dtype)
        ry = risk.entropic_risk(jnp.asarray(y), 1e4)
        refy = (special.logsumexp(-1e4 * y.astype(np.float64)) - np.log(100)) / 1e4
        assert float(ry) == pytest.approx(refy, rel=1e-5)


def test_indifference_price():
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal(100), jnp.float32)
    p = risk.entropic_indifference_price(x, 0.5)
    # adding the price as premium makes the position exactly acceptable (ρ = 0)
    assert float(risk.entropic_risk(x + p, 0.5)) == pytest.approx(0.0, abs=1e-5)
    base = x * 0.3
    p2 = risk.entropic_indifference_price(x, 0.5, base)
    assert float(risk.entropic_risk(x + p2, 0.5)) == pytest.approx(
        float(risk.entropic_risk(base, 0.5)), abs=1e-5)


# --------------------------------------------------------------------------- paths
def test_turnover_matches_loop():
    rng = np.random.default_rng(9)
    u = rng.standard_normal((4, 12))
    for entry in (True, False):
        for unwind in (True, False):
            ref = []
            for row in u:
                path = ([0.0] if entry else []) + list(row) + ([0.0] if unwind else [])
                ref.append(sum(abs(b - a) for a, b in zip(path[:-1], path[1:])))
            got = risk.turnover(jnp.asarray(u, jnp.float32), include_entry=entry,
                                include_unwind=unwind)
            np.testing.assert_allclose(got, ref, rtol=1e-5)
    # a single step: entry + unwind
    assert float(risk.turnover(jnp.array([0.4]))) == pytest.approx(0.8)
    assert float(risk.turnover(jnp.array([0.4]), include_entry=False, include_unwind=False)) == 0


def test_max_drawdown_matches_loop():
    rng = np.random.default_rng(10)
    v = np.cumsum(rng.standard_normal((5, 30)), axis=-1)
    ref = []
    for row in v:
        peak, dd = -np.inf, 0.0
        for val in row:
            peak = max(peak, val)
            dd = max(dd, peak - val)
        ref.append(dd)
    np.testing.assert_allclose(risk.max_drawdown(jnp.asarray(v, jnp.float32)), ref, rtol=1e-5,
                               atol=1e-5)
    assert float(risk.max_drawdown(jnp.arange(5.0))) == 0.0  # monotone up: no drawdown


# --------------------------------------------------------------------------- jit / vmap / dtype
SAMPLE_FNS = {
    "mean": lambda x: risk.mean(x),
    "std": lambda x: risk.std(x),
    "rmse": lambda x: risk.rmse(x),
    "shortfall_probability": lambda x: risk.shortfall_probability(x),
    "smooth_shortfall_probability": lambda x: risk.smooth_shortfall_probability(x, 0.3),
    "value_at_risk": lambda x: risk.value_at_risk(x, 0.1),
    "expected_shortfall": lambda x: risk.expected_shortfall(x, 0.07),
    "es_shortfall": lambda x: risk.es_shortfall(x, 0.1),
    "cvar_ru": lambda x: risk.cvar_rockafellar_uryasev(x, 0.2, 0.05),
    "entropic": lambda x: risk.entropic_risk(x, 1.5),
    "oce": lambda x: risk.oce(x, 0.1, jax.nn.relu),
    "turnover": lambda x: risk.turnover(x),
    "max_drawdown": lambda x: risk.max_drawdown(x),
}


@pytest.mark.parametrize("name", sorted(SAMPLE_FNS))
def test_batched_equals_loop_and_vmap(name):
    fn = SAMPLE_FNS[name]
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.standard_normal((2, 3, 41)), jnp.float32)
    batched = jax.jit(fn)(x)
    assert batched.shape == (2, 3)
    loop = np.array([[float(fn(x[i, j])) for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(batched, loop, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.vmap(fn))(x), loop, rtol=1e-6, atol=1e-6)


def test_alpha_traced_no_recompile_and_per_row_alpha():
    traces = {"n": 0}

    def f(x, a):
        traces["n"] += 1
        return risk.expected_shortfall(x, a), risk.value_at_risk(x, a)

    fj = jax.jit(f)
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.standard_normal(100), jnp.float32)
    for a in (0.01, 0.05, 0.1, 0.333, 1.0):
        es, var = fj(x, jnp.float32(a))
        assert float(es) == pytest.approx(float(risk.expected_shortfall(x, a)), rel=1e-6)
        assert float(var) == float(risk.value_at_risk(x, a))
    assert traces["n"] == 1
    # one α per batch row (broadcast against the batch shape)
    xb = jnp.asarray(rng.standard_normal((3, 50)), jnp.float32)
    al = jnp.array([0.05, 0.1, 0.5], jnp.float32)
    got = risk.expected_shortfall(xb, al)
    ref = [float(risk.expected_shortfall(xb[i], al[i])) for i in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # vmap over α
    grid = jnp.linspace(0.01, 1.0, 7)
    es_grid = jax.vmap(risk.expected_shortfall, in_axes=(None, 0))(x, grid)
    assert np.all(np.diff(np.asarray(es_grid)) <= 1e-6)


def test_es_gradient_is_tail_weights():
    L = jnp.arange(1.0, 11.0)
    g = np.asarray(jax.grad(risk.expected_shortfall)(L, 0.25))  # nα = 2.5
    np.testing.assert_allclose(g, [0] * 7 + [0.2, 0.4, 0.4], atol=1e-7)
    gw = jax.grad(risk.cvar_rockafellar_uryasev, argnums=1)(-L, 5.5, 0.25)
    assert float(gw) == pytest.approx(1 - 0.5 / 0.25)  # 1 − P(L > w)/α


@pytest.mark.parametrize("name", sorted(SAMPLE_FNS))
def test_dtypes_follow_inputs(name, x64):
    fn = SAMPLE_FNS[name]
    x = np.linspace(-1, 1, 9)
    assert fn(jnp.asarray(x, jnp.float32)).dtype == jnp.float32
    assert fn(jnp.asarray(x, jnp.float64)).dtype == jnp.float64


def test_dtype_default_float32_and_int_inputs():
    assert risk.expected_shortfall(np.arange(10), 0.1).dtype == jnp.float32
    assert risk.entropic_risk(jnp.arange(10), 1.0).dtype == jnp.float32
    assert float(risk.value_at_risk(np.arange(10), 0.1)) == 8.0


# --------------------------------------------------------------------------- hedge_metrics
EXPECTED_KEYS = ["mean_pnl", "std_pnl", "rmse", "shortfall_prob", "var_5", "es_5", "es_10",
                 "var_loss_5", "es_loss_1", "es_loss_5", "es_loss_10", "entropic_1", "mean_cost",
                 "turnover"]


def test_hedge_metrics_keys_and_values():
    rng = np.random.default_rng(13)
    pnl = rng.standard_normal(400) - 0.2
    cost = np.abs(rng.standard_normal(400)) * 0.1
    tov = np.abs(rng.standard_normal(400)) * 3
    m = risk.hedge_metrics(jnp.asarray(pnl, jnp.float32), jnp.asarray(cost, jnp.float32),
                           jnp.asarray(tov, jnp.float32))
    assert list(m) == EXPECTED_KEYS == list(risk.HEDGE_METRIC_KEYS)
    assert all(v.dtype == jnp.float32 and v.shape == () for v in m.values())
    sf = np.maximum(-pnl, 0)
    loss = -pnl
    ref = {
        "mean_pnl": pnl.mean(), "std_pnl": pnl.std(), "rmse": np.sqrt((pnl ** 2).mean()),
        "shortfall_prob": (pnl < 0).mean(),
        "var_5": ref_var(sf, Fraction(1, 20)),
        "es_5": np.sort(sf)[-20:].mean(), "es_10": np.sort(sf)[-40:].mean(),
        "var_loss_5": ref_var(loss, Fraction(1, 20)),
        "es_loss_1": np.sort(loss)[-4:].mean(), "es_loss_5": np.sort(loss)[-20:].mean(),
        "es_loss_10": np.sort(loss)[-40:].mean(),
        "entropic_1": special.logsumexp(-pnl) - np.log(400),
        "mean_cost": cost.mean(), "turnover": tov.mean(),
    }
    for k in EXPECTED_KEYS:
        assert float(m[k]) == pytest.approx(ref[k], rel=2e-5, abs=2e-6), k


def test_hedge_metrics_batched_jit_and_missing_inputs():
    rng = np.random.default_rng(14)
    pnl = jnp.asarray(rng.standard_normal((3, 64)), jnp.float32)
    m = jax.jit(risk.hedge_metrics)(pnl, jnp.ones_like(pnl), jnp.zeros_like(pnl))
    assert sorted(m) == sorted(EXPECTED_KEYS)  # jit returns dicts with sorted keys
    assert all(v.shape == (3,) for v in m.values())
    assert list(risk.hedge_metrics(pnl)) == EXPECTED_KEYS  # eager call keeps table order
    for i in range(3):
        mi = risk.hedge_metrics(pnl[i], jnp.ones_like(pnl[i]), jnp.zeros_like(pnl[i]))
        for k in EXPECTED_KEYS:
            assert float(m[k][i]) == pytest.approx(float(mi[k]), rel=1e-6, abs=1e-7), k
    m2 = risk.hedge_metrics(pnl[0])
    assert list(m2) == EXPECTED_KEYS
    assert math.isnan(float(m2["mean_cost"])) and math.isnan(float(m2["turnover"]))


def test_docstring_examples():
    res = doctest.testmod(risk, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 15 and res.failed == 0
