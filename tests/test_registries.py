"""Registries: a toy market and a toy hedger added through the registries alone run through
``hedge`` (Python and CLI), ``stress`` and ``eval``; the built-in specs give the numbers the
old if-chains gave; unknown names fail with one line and a suggestion.

The toy market is arithmetic Brownian motion (Bachelier): ``S_{t+dt} = S_t + mu s0 dt +
a sqrt(dt) Z`` with absolute vol ``a``, so ``S_T ~ N(s0 (1 + mu T), a^2 T)`` and the call is
worth Bachelier's ``(F - K) N(d) + a sqrt(T) n(d)`` (discounted, ``F`` the forward). The toy
hedger holds a fixed fraction of the Black-Scholes delta.
"""
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from scipy.special import ndtr

from jaxhedge import hedge, ledger, pricing
from jaxhedge.agents import (HedgerSpec, hedger_names, hedger_spec, register_hedger,
                             unregister_hedger)
from jaxhedge.cli import build_parser, main
from jaxhedge.contracts import Contract
from jaxhedge.env import EnvConfig, HedgingEnv, reference_premium
from jaxhedge.markets import (GBMParams, MarketPaths, MarketSpec, market_names, market_spec,
                              register_market, spec_for_params, unregister_market, validate)
from jaxhedge.markets import regime as regime_mod
from jaxhedge.pricing import bs_delta
from jaxhedge.rollout import simulate_paths

TOY_MARKET, TOY_HEDGER = "toy-abm", "toy-half-delta"
FRACTION = 0.5


# --------------------------------------------------------------------------- the toy market
@struct.dataclass
class ABMParams:
    s0: float = 100.0
    mu: float = 0.0  # relative drift: E[dS] = mu s0 dt
    abs_vol: float = 20.0  # money per sqrt(year)


def abm_validate(p):
    for name, ok in (("s0", p.s0 > 0), ("abs_vol", p.abs_vol > 0), ("mu", math.isfinite(p.mu))):
        if not ok:
            raise ValueError(f"toy-abm.{name}: out of range (got {getattr(p, name)!r})")
    return p


def abm_simulate(key, p, n_paths, n_steps, dt):
    dtype = jnp.result_type(p.s0, float)
    z = jax.random.normal(key, (n_paths, n_steps), dtype)
    incr = p.mu * p.s0 * dt + p.abs_vol * jnp.sqrt(dt) * z
    zero = jnp.zeros((n_paths, 1), dtype)
    spot = p.s0 + jnp.concatenate([zero, jnp.cumsum(incr, axis=1)], axis=1)
    return MarketPaths(spot=spot, vol=p.abs_vol / spot, cost_multiplier=jnp.ones_like(spot))


def bachelier_price(s0, strike, maturity, rate, div_yield, abs_vol, is_call=True):
    fwd = s0 * jnp.exp((rate - div_yield) * maturity)
    sd = abs_vol * jnp.sqrt(maturity)
    d = (fwd - strike) / sd
    sign = 1.0 if is_call else -1.0
    undiscounted = sign * (fwd - strike) * jax.scipy.stats.norm.cdf(sign * d) \
        + sd * jax.scipy.stats.norm.pdf(d)
    return jnp.exp(-rate * maturity) * undiscounted


TOY_MARKET_SPEC = MarketSpec(
    name=TOY_MARKET, params_cls=ABMParams, simulate=abm_simulate, validate=abm_validate,
    reference_price=lambda p, k, t, r, q, is_call, n: bachelier_price(p.s0, k, t, r, q,
                                                                      p.abs_vol, is_call),
    default_params=lambda s0, mu, sigma: ABMParams(s0=s0, mu=mu, abs_vol=sigma * s0),
    calm_vol=lambda p: p.abs_vol / p.s0, description="arithmetic Brownian motion (test)")


# --------------------------------------------------------------------------- the toy hedger
@struct.dataclass
class FractionDelta:
    fraction: float = FRACTION
    vol: float = float("nan")
    is_call: bool = True

    def __call__(self, obs):
        vol = jnp.where(jnp.isnan(self.vol), obs.vol, self.vol).astype(obs.spot.dtype)
        return self.fraction * bs_delta(obs.spot, obs.strike, obs.time_to_maturity, obs.rate,
                                        vol, obs.div_yield, self.is_call)


TOY_HEDGER_SPEC = HedgerSpec(
    name=TOY_HEDGER, description="half the BS delta (test)",
    build=lambda option, sigma=None, **_: FractionDelta(
        vol=float("nan") if sigma is None else sigma, is_call=option == "call"))


@pytest.fixture
def toys():
    assert TOY_MARKET not in market_names() and TOY_HEDGER not in hedger_names()
    register_market(TOY_MARKET_SPEC)
    register_hedger(TOY_HEDGER_SPEC)
    try:
        yield
    finally:
        unregister_market(TOY_MARKET)
        unregister_hedger(TOY_HEDGER)


def numpy_replay(spot, vol, premium, strike, maturity, rate, div_yield, eps, multipliers,
                 charge_entry=True, charge_unwind=True):
    """Independent float64 ledger (METHODS §2) of the toy hedger's call hedge, path by path."""
    spot, vol, m = (np.asarray(a, np.float64) for a in (spot, vol, multipliers))
    n_paths, n1 = spot.shape
    n_steps = n1 - 1
    dt = maturity / n_steps
    cash = np.full(n_paths, float(premium))
    shares = np.zeros(n_paths)
    for t in range(n_steps):
        tau = (n_steps - t) * dt
        s, v = spot[:, t], vol[:, t]
        d1 = (np.log(s / strike) + (rate - div_yield + 0.5 * v**2) * tau) / (v * np.sqrt(tau))
        target = FRACTION * np.exp(-div_yield * tau) * ndtr(d1)
        du = target - shares
        charged = t > 0 or charge_entry
        cash -= du * s + (eps * m[:, t] * np.abs(du) * s if charged else 0.0)
        shares = target
        cash = cash * np.exp(rate * dt) + shares * spot[:, t + 1] * np.expm1(div_yield * dt)
    s_T = spot[:, -1]
    cash += shares * s_T - (eps * m[:, -1] * np.abs(shares) * s_T if charge_unwind else 0.0)
    return cash - np.maximum(s_T - strike, 0.0)


# --------------------------------------------------------------------------- toy market itself
def test_toy_market_moments_and_price_match_closed_forms(toys):
    spec = market_spec(TOY_MARKET)
    p = validate(ABMParams(s0=100.0, mu=0.3, abs_vol=20.0))
    assert spec_for_params(p) is spec
    n, n_steps, T = 40_000, 8, 0.5
    spot = np.asarray(spec.simulate(jax.random.key(0), p, n, n_steps, T / n_steps).spot[:, -1],
                      np.float64)
    mean, var = 100.0 * (1 + 0.3 * T), 20.0**2 * T
    assert abs(spot.mean() - mean) < 4 * math.sqrt(var / n)
    assert abs(spot.var(ddof=1) - var) < 4 * var * math.sqrt(2 / (n - 1))
    # risk-neutral (mu = r = 0): the reference price is the mean payoff
    p0 = p.replace(mu=0.0)
    s_T = np.asarray(spec.simulate(jax.random.key(1), p0, n, n_steps, T / n_steps).spot[:, -1],
                     np.float64)
    payoff = np.maximum(s_T - 105.0, 0.0)
    price = float(spec.reference_price(p0, 105.0, T, 0.0, 0.0, True, n_steps))
    assert abs(payoff.mean() - price) < 4 * payoff.std(ddof=1) / math.sqrt(n)
    with pytest.raises(ValueError, match="toy-abm.abs_vol"):
        validate(ABMParams(abs_vol=-1.0))


# --------------------------------------------------------------------------- hedge
def test_toy_market_and_hedger_through_hedge_and_cli(toys, tmp_path):
    kw = dict(option="call", s0=100.0, maturity=30 / 252, sigma=0.2, rate=0.02, cost=0.002)
    env, params = hedge.build(TOY_MARKET, 8, **kw)
    assert isinstance(params.market, ABMParams) and float(params.market.abs_vol) == 20.0
    expected_premium = float(bachelier_price(100.0, 100.0, 30 / 252, 0.02, 0.0, 20.0))
    np.testing.assert_allclose(float(params.premium), expected_premium, rtol=1e-6)
    hedger = hedge.make_hedger(TOY_HEDGER, "call", risk_aversion=3.0)
    assert isinstance(hedger, FractionDelta)

    n_paths, seed = 1000, 3
    report = hedge.run_hedge(env, params, hedger, n_paths, seed=seed)
    # the paths run_hedge's (single) chunk hedges, replayed by an independent numpy ledger
    paths = simulate_paths(jax.random.fold_in(jax.random.PRNGKey(seed), 0), env, params,
                           n_paths)
    expect = numpy_replay(paths.spot, paths.vol, params.premium, 100.0, 30 / 252, 0.02, 0.0,
                          0.002, paths.cost_multiplier)
    np.testing.assert_allclose(report.pnl, expect, rtol=0, atol=2e-3)
    assert np.std(report.pnl) > 0.1  # the replay compares something that varies

    out = tmp_path / "cli"
    rc = main(["hedge", "--market", TOY_MARKET, "--agent", TOY_HEDGER, "--paths", str(n_paths),
               "--steps", "8", "--cost", "0.002", "--rate", "0.02", "--seed", str(seed),
               "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    np.testing.assert_allclose(res["premium"], expected_premium, rtol=1e-6)
    assert res["mean_pnl"] == pytest.approx(report.metrics["mean_pnl"], rel=1e-6, abs=1e-9)
    assert res["es_5"] == pytest.approx(report.metrics["es_5"], rel=1e-6, abs=1e-9)


# --------------------------------------------------------------------------- stress
def test_toy_hedger_through_stress(toys):
    from jaxhedge.stress import Crash
    from jaxhedge.stress.run import run_stress, scenario_paths

    res = run_stress(["delta", TOY_HEDGER], "crash", n_paths=500, seed=2, n_steps=6,
                     keep_pnl=True, log=lambda *_: None)
    assert {(r["agent"], r["scenario"]) for r in res.rows} == {
        (a, s) for a in ("delta", TOY_HEDGER) for s in ("calm", "crash")}
    c = res.contract
    for scenario_name in ("calm", "crash"):
        scenario = res.scenarios[[s.name for s in res.scenarios].index(scenario_name)]
        paths = scenario_paths(scenario, c, 500, seed=2)
        # stress builds classical hedgers at the contract's sigma
        vol = np.full(paths.spot.shape, float(c.sigma))
        expect = numpy_replay(paths.spot, vol, float(c.premium()), float(c.strike),
                              float(c.maturity), float(c.rate), float(c.div_yield),
                              float(c.cost), paths.cost_multiplier)
        np.testing.assert_allclose(res.pnl[(TOY_HEDGER, scenario_name)], expect, rtol=0,
                                   atol=2e-3)
    assert isinstance(res.scenarios[1], Crash)
    with pytest.raises(ValueError, match=r"did you mean 'toy-half-delta'\?"):
        run_stress(["toy-half-delat"], "calm", n_paths=10)


# --------------------------------------------------------------------------- eval
def test_toy_market_through_eval(toys, tmp_path):
    from jaxhedge.agents.deep_hedging import DeepHedging
    from jaxhedge.evaluate import evaluate_run
    from jaxhedge.train import run_training

    agent = DeepHedging(EnvConfig(market="gbm", n_steps=4), n_paths=64, widths=(8,))
    hp = agent.default_hparams(GBMParams(s0=100.0, mu=0.0, sigma=0.2),
                               costs=ledger.CostModel(0.001))
    run_dir = tmp_path / "run"
    run_training(agent, hp, n_steps=2, chunk=2, run_dir=run_dir, progress=False,
                 tensorboard=False)
    out = tmp_path / "eval"
    evaluate_run(run_dir, out, market=TOY_MARKET, n_paths=300, seed=1)
    res = json.loads((out / "results.json").read_text())
    assert res["market"] == TOY_MARKET
    assert set(res["agents"]) == {"deep_hedging", "delta", "ww"}
    # s0, drift and calm vol (0.2) carried over: abs vol 0.2 * 100; premium = Bachelier
    expected = float(bachelier_price(100.0, float(hp.env.strike), float(hp.env.maturity),
                                     float(hp.env.rate), float(hp.env.div_yield), 20.0))
    np.testing.assert_allclose(res["premium"], expected, rtol=1e-6)
    assert all(math.isfinite(r["mean_pnl"]) for r in res["agents"].values())


# --------------------------------------------------------------------------- built-ins
def test_builtin_reference_prices_equal_the_closed_forms():
    s0, mu, sigma, k, T, r, q, n = 100.0, 0.03, 0.25, 105.0, 0.5, 0.02, 0.01, 20
    old = {
        "gbm": lambda m, c: pricing.bs_price(s0, k, T, r, sigma, q, c),
        "merton": lambda m, c: pricing.merton_price(s0, k, T, r, sigma, 1.0, -0.10, 0.15, q, c),
        "heston": lambda m, c: pricing.heston_price(s0, k, T, r, 2.0, sigma**2, 0.5, -0.7,
                                                    sigma**2, q, c),
        "regime": lambda m, c: pricing.bs_price(s0, k, T, r, _regime_vol_numpy(m, n), q, c),
    }
    assert set(market_names()) == set(old)
    for name in market_names():
        spec = market_spec(name)
        m = spec.default_params(s0, mu, sigma)
        assert spec_for_params(m) is spec and isinstance(m, spec.params_cls)
        assert float(m.s0) == s0 and float(m.mu) == mu
        np.testing.assert_allclose(float(spec.calm_vol(m)), sigma, rtol=1e-6)
        for is_call in (True, False):
            got = float(spec.reference_price(m, k, T, r, q, is_call, n))
            np.testing.assert_allclose(got, float(old[name](m, is_call)), rtol=1e-5)
            config = EnvConfig(market=name, n_steps=n, option="call" if is_call else "put")
            env_params = HedgingEnv(config).default_params(m, strike=k, maturity=T, rate=r,
                                                           div_yield=q)
            assert float(env_params.premium) == got == float(reference_premium(config,
                                                                               env_params))
            contract = Contract.from_env(config, env_params)
            np.testing.assert_allclose(float(contract.sigma), sigma, rtol=1e-6)
    # the old hard-coded default numbers
    h = market_spec("heston").default_params(s0, mu, sigma)
    assert (float(h.kappa), float(h.xi), float(h.rho)) == (2.0, 0.5, -0.7)
    np.testing.assert_allclose([float(h.v0), float(h.theta)], [sigma**2] * 2, rtol=1e-6)
    g = market_spec("regime").default_params(s0, mu, sigma)
    np.testing.assert_allclose(np.asarray(g.sigmas), [sigma, 3 * sigma], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g.transition), [[0.98, 0.02], [0.10, 0.90]],
                               rtol=1e-6)


def _regime_vol_numpy(m, n_steps):
    """sqrt of the mean over t = 0..N-1 of E[sigma_{s_t}^2], the chain started in its state."""
    p = np.asarray(m.transition, np.float64)
    var = np.asarray(m.sigmas, np.float64) ** 2
    d = np.eye(p.shape[0])[int(m.initial_state)]
    total = 0.0
    for _ in range(n_steps):
        total += d @ var
        d = d @ p
    return math.sqrt(total / n_steps)


def test_regime_average_vol_matches_numpy():
    m = regime_mod.two_state(calm_sigma=0.1, stress_sigma=0.5, p_calm_to_stress=0.2)
    np.testing.assert_allclose(float(regime_mod.average_vol(m, 12)), _regime_vol_numpy(m, 12),
                               rtol=1e-6)


def _choices(parser, command, option):
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in sub._actions if option in a.option_strings).choices)


def test_cli_choices_are_the_registries(toys):
    parser = build_parser()
    assert _choices(parser, "hedge", "--market") == market_names()
    assert _choices(parser, "eval", "--market") == market_names()
    assert _choices(parser, "hedge", "--agent") == hedger_names()
    assert TOY_MARKET in market_names() and TOY_HEDGER in hedger_names()
    assert {"gbm", "heston", "merton", "regime"} <= set(market_names())
    assert {"delta", "ww", "naked"} <= set(hedger_names())


# --------------------------------------------------------------------------- errors
def test_unknown_names_one_line_with_suggestion(tmp_path, capsys):
    for fn, bad, good in ((market_spec, "hestn", "heston"), (hedger_spec, "detla", "delta"),
                          (hedge.default_market, "mertn", "merton"),
                          (hedge.make_hedger, "naekd", "naked"),
                          (lambda n: EnvConfig(market=n), "regim", "regime")):
        with pytest.raises(ValueError) as err:
            fn(bad)
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and f"did you mean {good!r}?" in msg, msg
    assert str(pytest.raises(ValueError, EnvConfig, market="hestn").value).startswith(
        "env.market: unknown market 'hestn'")
    for args, needle in ((["--market", "hestn"], "did you mean 'heston'?"),
                         (["--agent", "detla"], "did you mean 'delta'?")):
        assert main(["hedge", *args, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and "--" in err, err
    assert not (tmp_path / "results.json").exists()
    with pytest.raises(TypeError, match="unknown market params type"):
        spec_for_params(object())


def test_duplicate_registrations_are_refused(toys):
    with pytest.raises(ValueError, match="already registered"):
        register_market(TOY_MARKET_SPEC)
    with pytest.raises(ValueError, match="already belongs to market 'toy-abm'"):
        register_market(dataclasses.replace(TOY_MARKET_SPEC, name="toy-abm-2"))
    with pytest.raises(ValueError, match="already registered"):
        register_hedger(HedgerSpec(name="delta", build=lambda option, **_: None))
    assert "toy-abm-2" not in market_names()


@pytest.mark.parametrize("name", ["gbm", "heston", "merton", "regime"])
def test_with_calm_vol_inverts_calm_vol(name):
    """Agents that re-price another contract on their market (deep hedging) set its vol
    through ``with_calm_vol``; reading it back with ``calm_vol`` gives the same number and
    leaves every other parameter as it was."""
    spec = market_spec(name)
    p = spec.default_params(100.0, 0.05, 0.2)
    q = spec.with_calm_vol(p, 0.37)
    assert float(spec.calm_vol(q)) == pytest.approx(0.37, rel=1e-6)
    changed = [a for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q))
               if not np.array_equal(np.asarray(a), np.asarray(b))]
    assert len(changed) == 1  # only the vol moved
