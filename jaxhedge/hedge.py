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
from jaxhedge.rollout import PATH_BLOCK, RolloutResult, rollout
from jaxhedge.validate import MAX_STEPS, check_int, check_memory, check_seed, prng_key

DEFAULT_CHUNK_PATHS = 65_536
#: XLA temporaries of one compiled rollout chunk, in float arrays of (block, n_steps + 1):
#: measured with ``compiled.memory_analysis().temp_size_in_bytes`` (docs/validation.md);
#: markets not listed get the largest.
ROLLOUT_ARRAYS = {"gbm": 4.0, "heston": 7.0, "merton": 21.3, "regime": 26.5}


def rollout_memory_bytes(market: str, n_paths: int, n_steps: int, itemsize: int = 4,
                         chunk_paths: int = DEFAULT_CHUNK_PATHS) -> float:
    """Estimated peak memory of one chunk of :func:`run_hedge`: the market's arrays per
    path-step (:data:`ROLLOUT_ARRAYS`) x paths per block x (n_steps + 1) x itemsize."""
    block = min(n_paths, chunk_paths, PATH_BLOCK)
    factor = ROLLOUT_ARRAYS.get(market, max(ROLLOUT_ARRAYS.values()))
    return factor * block * (n_steps + 1) * itemsize


def check_rollout_size(market: str, n_paths: int, n_steps: int, itemsize: int = 4,
                       chunk_paths: int = DEFAULT_CHUNK_PATHS) -> None:
    """ValueError (one line, with the estimate) when a rollout would not fit in memory."""
    check_int("--steps", n_steps, 1, MAX_STEPS)
    block = min(n_paths, chunk_paths, PATH_BLOCK)
    check_memory("--paths x --steps",
                 rollout_memory_bytes(market, n_paths, n_steps, itemsize, chunk_paths),
                 f"{market}: blocks of {block:,} paths x {n_steps:,} steps")


def default_market(name: str, s0: float = 100.0, mu: float = 0.0, sigma: float = 0.2):
    """Built-in market of kind ``name`` around a spot ``s0`` and a (diffusive) vol ``sigma``.

    The market's :attr:`~jaxhedge.markets.MarketSpec.default_params`; for the built-ins:
    heston: v0 = theta = sigma^2, kappa = 2, xi = 0.5, rho = -0.7. merton: one jump a year on
    average, log jump N(-0.10, 0.15^2). regime: calm sigma / stress 3 sigma, 2% per step of
    entering stress, 10% of leaving, costs x3 and two jumps a year in stress.
    """
    return markets.market_spec(name).default_params(s0, mu, sigma)


def make_hedger(name: str, option: str = "call", risk_aversion: float = 1.0, **options):
    """A registered classical hedger by name (:func:`jaxhedge.agents.hedger_names`: ``delta``,
    ``ww`` (Whalley–Wilmott), ``naked`` built in); ``options`` as in
    :mod:`jaxhedge.agents.registry`."""
    return agents.build_hedger(name, option, risk_aversion=risk_aversion, **options)


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
    check_seed("seed", seed)
    check_rollout_size(env.config.market, n_paths, env.n_steps,
                       jnp.zeros((), float).dtype.itemsize, chunk_paths)
    chunk = min(chunk_paths, n_paths)
    n_chunks = math.ceil(n_paths / chunk)
    base = jax.random.PRNGKey(seed) if seed < 2**32 else prng_key(seed)
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
