"""Vectorised episodes: ``jax.jit`` of ``jax.vmap`` over paths of ``lax.scan`` over time.

Every path gets its own key split from one key, so two hedgers rolled out with the same key
see identical market paths (common random numbers).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge.env import EnvParams, HedgingEnv


@struct.dataclass
class RolloutResult:
    """Per-path outcomes, shapes (n_paths,) unless stated.

    Attributes:
      pnl: terminal hedging error Pi_T = V_T - h(S_T).
      cost: total transaction cost paid.
      turnover: total |du| traded (entry and close-out included).
      spot: (n_paths, N+1) the market path.
      positions: (n_paths, N) shares held over each step.
    """

    pnl: jax.Array
    cost: jax.Array
    turnover: jax.Array
    spot: jax.Array
    positions: jax.Array


def episode(key, env: HedgingEnv, params: EnvParams, hedger) -> RolloutResult:
    """One path: reset, then ``n_steps`` steps of ``hedger(obs)`` under ``lax.scan``."""
    obs, state = env.reset(key, params)

    def body(carry, _):
        obs, state = carry
        action = hedger(obs)
        obs, state, _, _, info = env.step(key, state, action, params)
        return (obs, state), (action, info["pnl"])

    (_, state), (actions, pnls) = jax.lax.scan(body, (obs, state), None, length=env.n_steps)
    return RolloutResult(pnl=pnls[-1], cost=state.account.cost,
                         turnover=state.account.turnover, spot=state.path.spot,
                         positions=actions)


@functools.partial(jax.jit, static_argnames=("env", "n_paths"))
def rollout(key, env: HedgingEnv, params: EnvParams, hedger, n_paths: int) -> RolloutResult:
    """``n_paths`` independent episodes of ``hedger`` in ``env`` (compiled once per shape)."""
    keys = jax.random.split(key, n_paths)
    return jax.vmap(episode, in_axes=(0, None, None, None))(keys, env, params, hedger)
