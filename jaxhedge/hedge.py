"""Run a hedger over many simulated paths and summarise it: the engine behind ``jaxhedge hedge``.

Paths are processed in chunks of at most ``chunk_paths`` (one compiled program reused for
every chunk, so memory stays bounded and long runs can show progress). Chunk ``i`` uses the
key ``fold_in(PRNGKey(seed), i)``: the same seed and chunk size give the same paths for
every hedger (common random numbers).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge import agents, markets, risk
from jaxhedge.env import EnvConfig, EnvParams, HedgingEnv, validate_env_params
from jaxhedge.ledger import CostModel
from jaxhedge.rollout import RolloutResult, rollout

DEFAULT_CHUNK_PATHS = 65_536


def default_market(name: str, s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2):
    """Built-in market of each kind around a spot ``s0`` and a (diffusive) vol ``sigma``.

    heston: v0 = theta = sigma^2, kappa = 2, xi = 0.5, rho = -0.7. merton: one jump a year on
    average, log jump N(-0.10, 0.15^2). regime: calm sigma / stress 3 sigma, 2% per step of
    entering stress, 10% of leaving, costs x3 and two jumps a year in stress.
    """
    if name == "gbm":
        return markets.GBMParams(s0=s0, mu=mu, sigma=sigma)
    if name == "heston":
        return markets.HestonParams(s0=s0, mu=mu, v0=sigma**2, kappa=2.0, theta=sigma**2,
                                    xi=0.5, rho=-0.7)
    if name == "merton":
        return markets.MertonParams(s0=s0, mu=mu, sigma=sigma, jump_intensity=1.0,
                                    jump_mean=-0.10, jump_std=0.15)
    if name == "regime":
        return markets.two_state(calm_sigma=sigma, stress_sigma=3 * sigma, s0=s0, mu=mu)
    raise ValueError(f"market: unknown market {name!r}; choose one of {sorted(markets.MARKETS)}")


def make_hedger(name: str, option: str = "call", risk_aversion: float = 1.0):
    """A classical hedger by name: ``delta``, ``ww`` (Whalley–Wilmott) or ``naked``."""
    is_call = option == "call"
    if name == "delta":
        return agents.DeltaHedger(is_call=is_call)
    if name == "ww":
        return agents.WhalleyWilmottHedger(risk_aversion=risk_aversion, is_call=is_call)
    if name == "naked":
        return agents.NakedHedger()
    raise ValueError(f"agent: unknown agent {name!r}; choose one of {sorted(agents.CLASSICAL)}")


@dataclasses.dataclass
class HedgeReport:
    metrics: dict[str, float]
    wall_s: float
    compile_s: float
    path_steps_per_s: float
    pnl: np.ndarray
    cost: np.ndarray


def run_hedge(env: HedgingEnv, params: EnvParams, hedger, n_paths: int, seed: int = 0,
              chunk_paths: int = DEFAULT_CHUNK_PATHS,
              on_chunk: Callable[[int, int], None] | None = None) -> HedgeReport:
    """Roll ``hedger`` out over ``n_paths`` paths and compute :func:`risk.hedge_metrics`."""
    validate_env_params(env.config, params)
    if n_paths < 1:
        raise ValueError(f"paths: must be >= 1 (got {n_paths})")
    chunk = min(chunk_paths, n_paths)
    n_chunks = math.ceil(n_paths / chunk)
    base = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    compiled = rollout.lower(jax.random.fold_in(base, 0), env, params, hedger, chunk,
                              keep_paths=False).compile()
    compile_s = time.perf_counter() - t0
    results: list[RolloutResult] = []
    t1 = time.perf_counter()
    for i in range(n_chunks):
        out = compiled(jax.random.fold_in(base, i), params, hedger)
        results.append(jax.tree.map(np.asarray, jax.block_until_ready(out)))
        if on_chunk is not None:
            on_chunk(i + 1, n_chunks)
    run_s = time.perf_counter() - t1
    pnl = np.concatenate([r.pnl for r in results])[:n_paths]
    cost = np.concatenate([r.cost for r in results])[:n_paths]
    turnover = np.concatenate([r.turnover for r in results])[:n_paths]
    metrics = {k: float(v) for k, v in
               risk.hedge_metrics(jnp.asarray(pnl), jnp.asarray(cost),
                                  jnp.asarray(turnover)).items()}
    path_steps = n_chunks * chunk * env.n_steps
    return HedgeReport(metrics=metrics, wall_s=compile_s + run_s, compile_s=compile_s,
                       path_steps_per_s=path_steps / run_s, pnl=pnl, cost=cost)


def build(market: str, n_steps: int, option: str = "call", s0: float = 100.0,
          strike: float | None = None, maturity: float = 30 / 252, sigma: float = 0.2,
          mu: float = 0.0, rate: float = 0.0, cost: float = 0.0,
          charge_entry: bool = True, charge_unwind: bool = True):
    """The (env, params) pair behind ``jaxhedge hedge``; premium = the market's own price."""
    env = HedgingEnv(EnvConfig(market=market, n_steps=n_steps, option=option))
    if sigma <= 0:
        raise ValueError(f"sigma: must be > 0 (got {sigma:g})")
    params = env.default_params(
        default_market(market, s0=s0, mu=mu, sigma=sigma),
        strike=s0 if strike is None else strike, maturity=maturity, rate=rate,
        costs=CostModel(proportional=cost), charge_entry=charge_entry,
        charge_unwind=charge_unwind)
    return env, params
