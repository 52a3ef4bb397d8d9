"""Vectorised episodes: one compiled program, ``lax.scan`` over time on a batch of paths.

Layout (why it is fast): all paths are simulated up front in blocks, transposed to
time-major, and the scan walks dates with each date's market data as contiguous rows,
so every step is a handful of fused elementwise loops over the batch. The hedger is
applied with ``jax.vmap`` over paths, so any per-path hedger works. The step itself is
:meth:`HedgingEnv.transition`, the same code ``env.step`` runs.

Paths come in blocks of ``min(n_paths, PATH_BLOCK)``; block ``b`` is simulated from
``fold_in(key, b)``. So two hedgers rolled out with the same key see identical paths
(common random numbers), and the paths do not depend on how many devices run them. With
several devices (e.g. ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` on a 2-core
CPU) the blocks are sharded over them.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxhedge import ledger
from jaxhedge.env import EnvParams, HedgingEnv
from jaxhedge.markets.base import MarketPaths

PATH_BLOCK = 1024


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


def simulate_paths(key, env: HedgingEnv, params: EnvParams, n_paths: int) -> MarketPaths:
    """``n_paths`` market paths (fields (n_paths, N+1)) in key-derived blocks, device-sharded."""
    block = min(n_paths, PATH_BLOCK)
    n_blocks = math.ceil(n_paths / block)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n_blocks))
    keys = _shard_leading_axis(keys)
    simulate = functools.partial(env._simulate, params=params.market, n_paths=block,
                                 n_steps=env.n_steps, dt=env.dt(params))
    paths = jax.vmap(lambda k: simulate(k))(keys)
    return jax.tree.map(lambda a: a.reshape(n_blocks * block, -1)[:n_paths], paths)


def run_on_paths(env: HedgingEnv, params: EnvParams, hedger, paths: MarketPaths
                 ) -> RolloutResult:
    """Hedge every path of ``paths`` (fields (n_paths, N+1)) with ``hedger``."""
    n_paths = paths.spot.shape[0]
    dtype = paths.spot.dtype
    account = ledger.open_account(jnp.full((n_paths,), params.premium, dtype))
    time_major = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), paths)
    now = jax.tree.map(lambda a: a[:-1], time_major)
    nxt = jax.tree.map(lambda a: a[1:], time_major)
    broadcast = lambda x: jnp.broadcast_to(x, (n_paths,))

    def body(account, xs):
        t, now, nxt = xs
        obs = jax.tree.map(broadcast, env.observation(t, now, account, params))
        action = jax.vmap(hedger)(obs)
        account, _, _, pnl = env.transition(t, account, now, nxt, action, params)
        return account, (action, pnl)

    steps = jnp.arange(env.n_steps, dtype=jnp.int32)
    account, (actions, pnls) = jax.lax.scan(body, account, (steps, now, nxt))
    return RolloutResult(pnl=pnls[-1], cost=account.cost, turnover=account.turnover,
                         spot=paths.spot, positions=jnp.moveaxis(actions, 0, -1))


@functools.partial(jax.jit, static_argnames=("env", "n_paths"))
def rollout(key, env: HedgingEnv, params: EnvParams, hedger, n_paths: int) -> RolloutResult:
    """``n_paths`` episodes of ``hedger`` in ``env`` (compiled once per shape)."""
    return run_on_paths(env, params, hedger, simulate_paths(key, env, params, n_paths))


def episode(key, env: HedgingEnv, params: EnvParams, hedger) -> RolloutResult:
    """One gymnax-style episode (``reset`` then ``step`` under ``lax.scan``), shapes ()."""
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


def _shard_leading_axis(x):
    """Spread the leading (block) axis over all devices when it divides evenly."""
    devices = jax.devices()
    if len(devices) == 1 or x.shape[0] % len(devices):
        return x
    mesh = Mesh(np.array(devices), ("paths",))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec("paths")))
