"""Vectorised episodes: one compiled program over many paths.

Layout (why it is fast). Paths are processed in blocks of ``block_paths`` (default
2,048). Inside a block the market is simulated, transposed to time-major, and a
``lax.scan`` walks the dates with every per-step array a few KB, so the whole step stays
in cache; ``lax.map`` runs the blocks one after another. Scanning all 65,536 paths at
once instead makes every per-step array 256 KB (a dozen per step) and the loop
memory-bound (measured: ``docs/architecture.md``, "Measured"). Blocks are spread over all devices with
``jax.shard_map`` (on CPU, ``jaxhedge.cpu.use_all_cores()`` makes one XLA device per
core). The hedger is applied with ``jax.vmap`` over paths, so any per-path hedger works,
and the step itself is :meth:`HedgingEnv.transition`, the same code ``env.step`` runs.

Shapes: ``rollout(key, env, params, hedger, n)`` -> :class:`RolloutResult` with ``pnl``,
``cost``, ``turnover`` ``(n,)``; with ``keep_paths`` also ``spot`` ``(n, N+1)`` and
``positions`` ``(n, N)``.

>>> from jaxhedge.agents import DeltaHedger
>>> from jaxhedge.env import EnvConfig
>>> from jaxhedge.markets import GBMParams
>>> env = HedgingEnv(EnvConfig(market="gbm", n_steps=4))
>>> params = env.default_params(GBMParams(s0=1.0, sigma=0.2), strike=1.0)
>>> out = rollout(jax.random.key(0), env, params, DeltaHedger(), 8)
>>> out.pnl.shape, out.spot.shape, out.positions.shape
((8,), (8, 5), (8, 4))

Randomness: block ``b`` is simulated from ``fold_in(key, b)``. Two hedgers rolled out
with the same key see identical paths (common random numbers), and the paths do not
depend on the number of devices, nor on the backend: the block is the unit of RANDOMNESS,
while how many blocks run at once is a separate, backend-aware choice
(:func:`default_parallel_blocks`): one after another on CPU (cache-resident steps), all
of a device's blocks vmapped into one program on an accelerator (a GPU wants the whole
batch per kernel; the sequential ``lax.map`` would launch ``n_blocks`` small ones per
date). Same key, same paths on CPU and GPU.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, PartitionSpec

from jaxhedge import ledger
from jaxhedge.env import EnvParams, HedgingEnv
from jaxhedge.markets.base import MarketPaths

PATH_BLOCK = 2048


def default_parallel_blocks(n_blocks_per_device: int, backend: str | None = None) -> int:
    """Blocks of one device run at once: 1 on CPU, all of them on GPU/TPU.

    >>> default_parallel_blocks(32, "cpu"), default_parallel_blocks(32, "gpu")
    (1, 32)
    """
    backend = backend or jax.default_backend()
    return 1 if backend == "cpu" else max(1, n_blocks_per_device)


@struct.dataclass
class RolloutResult:
    """Per-path outcomes, shapes (n_paths,) unless stated.

    Attributes:
      pnl: terminal hedging error Pi_T = V_T - h(S_T).
      cost: total transaction cost paid.
      turnover: total |du| traded (entry and close-out included).
      spot: (n_paths, N+1) the market path (None unless ``keep_paths``).
      positions: (n_paths, N) shares held over each step (None unless ``keep_paths``).
    """

    pnl: jax.Array
    cost: jax.Array
    turnover: jax.Array
    spot: jax.Array | None = None
    positions: jax.Array | None = None


def simulate_paths(key, env: HedgingEnv, params: EnvParams, n_paths: int,
                   block_paths: int = PATH_BLOCK) -> MarketPaths:
    """The market paths :func:`rollout` uses (fields (n_paths, N+1)), without hedging them."""
    block, n_blocks = _blocking(n_paths, block_paths, 1)
    keys = _block_keys(key, n_blocks)
    paths = jax.vmap(lambda k: _simulate_block(k, env, params, block))(keys)
    return jax.tree.map(lambda a: a.reshape(n_blocks * block, -1)[:n_paths], paths)


def run_on_paths(env: HedgingEnv, params: EnvParams, hedger, paths: MarketPaths,
                 keep_paths: bool = True, remat: bool = False) -> RolloutResult:
    """Hedge every path of ``paths`` (fields (n_paths, N+1)) with ``hedger``.

    ``keep_paths=False`` skips returning the spot paths and positions, which saves
    writing two (n_paths, N) arrays when only the P&L statistics are wanted.
    ``remat=True`` (for a gradient through the rollout, deep hedging's training): the
    backward scan recomputes each date's network activations from the carried account
    (``jax.checkpoint``) instead of the forward scan stacking every date's residuals and
    the backward slicing them back: on pfhedge's example (10k paths x 20 dates, 4 x 32 MLP)
    the train step falls from 157 to 91 ms on 2 CPU cores (the slicing was 37 % of op
    time; docs/performance.md). Same values; no effect on a pass without a gradient.
    """
    n_paths = paths.spot.shape[0]
    dtype = paths.spot.dtype
    account = ledger.open_account(jnp.full((n_paths,), params.premium, dtype))
    time_major = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), paths)
    now = jax.tree.map(lambda a: a[:-1], time_major)
    nxt = jax.tree.map(lambda a: a[1:], time_major)
    broadcast = lambda x: jnp.broadcast_to(x, (n_paths,))

    def one_step(account, t, now, nxt, last):
        obs = jax.tree.map(broadcast, env.observation(t, now, account, params))
        action = jax.vmap(hedger)(obs)
        account, _, _, _ = env.transition(t, account, now, nxt, action, params, last=last)
        return account, action

    def body(account, xs):
        account, action = one_step(account, *xs, last=False)
        return account, (action if keep_paths else None)

    if remat:  # see the docstring
        body = jax.checkpoint(body)

    # dates 0..N-2 in the scan (no conditional in the loop body), the close-out date apart
    steps = jnp.arange(env.n_steps, dtype=jnp.int32)
    head = lambda tree: jax.tree.map(lambda a: a[:-1], tree)
    final = lambda tree: jax.tree.map(lambda a: a[-1], tree)
    account, actions = jax.lax.scan(body, account, head((steps, now, nxt)))
    account, last_action = one_step(account, *final((steps, now, nxt)), last=True)
    # after the last step the position is closed out, so the cash is V_T
    pnl = account.cash - ledger.payoff(paths.spot[:, -1], params.strike, env.config.is_call)
    positions = None
    if keep_paths:
        positions = jnp.moveaxis(jnp.concatenate([actions, last_action[None]], axis=0), 0, -1)
    return RolloutResult(pnl=pnl, cost=account.cost, turnover=account.turnover,
                         spot=paths.spot if keep_paths else None, positions=positions)


@functools.partial(jax.jit, static_argnames=("env", "n_paths", "keep_paths", "block_paths",
                                             "parallel_blocks"))
def rollout(key, env: HedgingEnv, params: EnvParams, hedger, n_paths: int,
            keep_paths: bool = True, block_paths: int = PATH_BLOCK,
            parallel_blocks: int | None = None) -> RolloutResult:
    """``n_paths`` episodes of ``hedger`` in ``env`` (compiled once per shape).

    Same key, ``n_paths`` and ``block_paths`` give the same paths on any number of devices
    and any backend. ``parallel_blocks``: blocks of one device vmapped together (None: the
    backend's default, :func:`default_parallel_blocks`); it changes the schedule, not the
    paths (results agree to float rounding).
    """
    devices = jax.devices()
    block, n_blocks = _blocking(n_paths, block_paths, len(devices))
    keys = _block_keys(key, n_blocks)
    per_device = n_blocks // len(devices)
    if parallel_blocks is None:
        parallel_blocks = default_parallel_blocks(per_device)
    batch = min(parallel_blocks, per_device)

    def run_blocks(keys):
        def one_block(k):
            paths = _simulate_block(k, env, params, block)
            return run_on_paths(env, params, hedger, paths, keep_paths)
        return jax.lax.map(one_block, keys, batch_size=batch if batch > 1 else None)

    mesh = Mesh(np.array(devices), ("blocks",))
    spec = PartitionSpec("blocks")
    # check_vma=False: the per-block scans start from block-invariant values (premium),
    # which the varying-manual-axes type check would otherwise reject.
    out = jax.shard_map(run_blocks, mesh=mesh, in_specs=spec, out_specs=spec,
                        check_vma=False)(keys)
    return jax.tree.map(lambda a: a.reshape(n_blocks * block, *a.shape[2:])[:n_paths], out)


def _blocking(n_paths: int, block_paths: int, n_devices: int) -> tuple[int, int]:
    """(paths per block, number of blocks), the block count a multiple of ``n_devices``."""
    block = min(n_paths, block_paths)
    n_blocks = math.ceil(n_paths / block)
    return block, math.ceil(n_blocks / n_devices) * n_devices


def _block_keys(key, n_blocks: int):
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(n_blocks))


def _simulate_block(key, env: HedgingEnv, params: EnvParams, block: int) -> MarketPaths:
    return env._simulate(key, params.market, block, env.n_steps, env.dt(params))


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
