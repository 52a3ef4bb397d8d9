"""Environment-only rollout throughput: jaxhedge vs the same work in vectorised numpy.

Work: hedge a short ATM call under GBM with the Black-Scholes delta, proportional cost
eps, unwind charged, float32; counted in path-steps (one path advanced one rebalancing
date). The numpy reference draws its normals with numpy's generator and evaluates N(d1)
with ``scipy.special.ndtr`` (numpy has no erf); it is single-threaded.
"""
from __future__ import annotations

import time

import jax
import numpy as np

from jaxhedge import agents
from jaxhedge.bench.timing import best_of
from jaxhedge.env import EnvConfig, HedgingEnv
from jaxhedge.ledger import CostModel
from jaxhedge.markets import GBMParams
from jaxhedge.rollout import rollout

S0, STRIKE, SIGMA, MU, RATE, MATURITY, EPS = 100.0, 100.0, 0.2, 0.05, 0.02, 0.25, 1e-3
WORK = ("GBM, BS delta hedge of a short ATM call, proportional cost 1e-3, unwind charged, "
        "float32")


def numpy_rollout(rng: np.random.Generator, n_paths: int, n_steps: int, premium: float):
    """The same episode as the env, written directly in vectorised float32 numpy."""
    from scipy.special import ndtr

    f32 = np.float32
    dt = f32(MATURITY / n_steps)
    drift = f32((MU - 0.5 * SIGMA**2) * dt)
    vol_dt = f32(SIGMA * np.sqrt(dt))
    growth = f32(np.exp(RATE * dt))
    s = np.full(n_paths, S0, f32)
    cash = np.full(n_paths, premium, f32)
    shares = np.zeros(n_paths, f32)
    cost = np.zeros(n_paths, f32)
    for t in range(n_steps):
        tau = f32((n_steps - t) * dt)
        d1 = (np.log(s / f32(STRIKE)) + f32((RATE + 0.5 * SIGMA**2) * tau)) / f32(
            SIGMA * np.sqrt(tau))
        target = ndtr(d1).astype(f32)
        trade = target - shares
        c = f32(EPS) * np.abs(trade) * s
        cash -= trade * s + c
        cost += c
        shares = target
        z = rng.standard_normal(n_paths, dtype=f32)
        s = s * np.exp(drift + vol_dt * z)
        cash *= growth
    c = f32(EPS) * np.abs(shares) * s
    cash += shares * s - c
    cost += c
    return cash - np.maximum(s - f32(STRIKE), 0), cost


def setup(n_steps: int):
    """``(env, params, hedger)`` of the benchmark's work (module docstring)."""
    env = HedgingEnv(EnvConfig(market="gbm", n_steps=n_steps))
    params = env.default_params(GBMParams(s0=S0, mu=MU, sigma=SIGMA), strike=STRIKE,
                                maturity=MATURITY, rate=RATE, costs=CostModel(EPS))
    return env, params, agents.DeltaHedger()


def jax_runner(n_paths: int, n_steps: int):
    """(compiled run function, compile seconds, premium) for the jaxhedge rollout."""
    env, params, hedger = setup(n_steps)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = rollout.lower(key, env, params, hedger, n_paths, keep_paths=False).compile()
    compile_s = time.perf_counter() - t0
    run = lambda: jax.block_until_ready(compiled(key, params, hedger))
    return run, compile_s, float(params.premium)


def bench_jax(n_paths: int, n_steps: int, repeats: int) -> dict:
    """One batch size: compile apart, best of ``repeats`` runs."""
    run, compile_s, premium = jax_runner(n_paths, n_steps)
    out = run()
    best = best_of(run, repeats)
    return {"n_paths": n_paths, "n_steps": n_steps, "compile_s": compile_s, "run_s": best,
            "path_steps_per_s": n_paths * n_steps / best,
            "mean_pnl": float(out.pnl.mean()), "premium": premium}


def headline(n_paths: int, n_steps: int, repeats: int) -> dict:
    """JAX and numpy timed alternately in the same loop, best of ``repeats`` each.

    Alternating makes the ratio robust to background load that changes over time.
    """
    run, compile_s, premium = jax_runner(n_paths, n_steps)
    rng = np.random.default_rng(0)
    jax_pnl = run().pnl
    np_pnl, _ = numpy_rollout(rng, n_paths, n_steps, premium)
    jax_t, np_t = [], []
    for _ in range(repeats):
        jax_t.append(best_of(run, 1))
        np_t.append(best_of(lambda: numpy_rollout(rng, n_paths, n_steps, premium), 1))
    work = n_paths * n_steps
    return {
        "jax": {"n_paths": n_paths, "n_steps": n_steps, "compile_s": compile_s,
                "run_s": min(jax_t), "path_steps_per_s": work / min(jax_t),
                "mean_pnl": float(jax_pnl.mean())},
        "numpy": {"n_paths": n_paths, "n_steps": n_steps, "run_s": min(np_t),
                  "path_steps_per_s": work / min(np_t), "mean_pnl": float(np_pnl.mean())},
    }
