"""The compiled part of training: one ``lax.scan`` of ``agent.update`` per chunk.

Randomness is a pure function of (member key, global step): update number ``t`` (0-based,
counted across chunks and restarts) uses ``fold_in(train_state.key, t)``. The carry holds the
same key all along, so N steps run straight, as N/2 + N/2, or as N/2 + a restart from a
checkpoint + N/2 are the same computation, bitwise.

Members: a block of ``H`` hyperparameter sets x ``S`` seeds is trained by one
``jit(vmap(vmap(.)))`` -- seeds on the inner axis, hparam sets on the outer -- so every
leaf of a members' ``TrainState`` has leading shape ``(H, S)`` and every hparams leaf ``(H,)``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = ["TrainState", "Train", "Members", "make_train", "make_members", "make_member_block",
           "member_keys", "stack_hparams", "all_finite", "strong_types", "ChunkSummary"]


@struct.dataclass
class TrainState:
    """What the trainer carries between chunks (one member; members add ``(H, S)`` in front).

    Attributes:
      agent_state: the agent's own pytree (params, optimizer state, ...).
      key: typed PRNG key (shape ``()``), constant over training; step ``t`` uses
        ``fold_in(key, t)``.
      step: int32 ``()``, updates done so far.
    """

    agent_state: Any
    key: jax.Array
    step: jax.Array


class Train(NamedTuple):
    """Pure single-member functions (not jitted; compose with jit/vmap as needed).

    init(key, hparams) -> TrainState
    train_chunk(train_state, hparams) -> (train_state, metrics): metrics[name] has shape
        ``(n_steps_per_chunk,)``, one value per update.
    """

    init: Callable
    train_chunk: Callable
    n_steps_per_chunk: int


class Members(NamedTuple):
    """Jitted functions over a block of ``H`` hparam sets x ``S`` seeds.

    init(keys[S], hparams[H]) -> TrainState[H, S]
    train_chunk(train_state[H, S], hparams[H]) -> (train_state[H, S], ChunkSummary[H, S])
    """

    init: Callable
    train_chunk: Callable
    n_steps_per_chunk: int


class ChunkSummary(NamedTuple):
    """Per-member summary of one chunk, small enough to copy to the host every chunk.

    Attributes:
      metrics: dict of ``(H, S)`` means over the chunk's updates.
      finite: bool ``(H, S)``: every loss of the chunk and every inexact leaf of the
        agent state after it are finite.
      first_bad: int32 ``(H, S)``: index within the chunk of the first non-finite loss
        (``n_steps_per_chunk`` when all losses are finite).
    """

    metrics: dict
    finite: jax.Array
    first_bad: jax.Array


def make_train(agent, n_steps_per_chunk: int) -> Train:
    """Single-member ``init`` / ``train_chunk`` for a :class:`~jaxhedge.agents.base.LearningAgent`.

    ``init`` splits the member key once: one half initialises the agent, the other is the
    training key kept in :class:`TrainState`.
    """
    n = int(n_steps_per_chunk)
    if n < 1:
        raise ValueError(f"n_steps_per_chunk: must be >= 1 (got {n_steps_per_chunk})")

    def init(key, hparams) -> TrainState:
        k_init, k_train = jax.random.split(key)
        return TrainState(agent_state=strong_types(agent.init(k_init, hparams)), key=k_train,
                          step=jnp.zeros((), jnp.int32))

    def train_chunk(train_state: TrainState, hparams):
        def body(ts: TrainState, _):
            # the step's key depends on the global step only, not on chunking
            key = jax.random.fold_in(ts.key, ts.step)
            agent_state, metrics = agent.update(key, ts.agent_state, hparams)
            return ts.replace(agent_state=agent_state, step=ts.step + 1), metrics

        return jax.lax.scan(body, train_state, None, length=n)

    return Train(init, train_chunk, n)


def strong_types(tree):
    """``tree`` with weak-typed leaves made strong (same dtype, same values).

    A state restored from a checkpoint is always strongly typed; making a fresh one strong
    too means both compile to the same program, so resuming is bitwise exact.
    """
    def strong(x):
        if not isinstance(x, jax.Array) or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        return jax.lax.convert_element_type(x, x.dtype)
    return jax.tree.map(strong, tree)


def all_finite(tree) -> jax.Array:
    """bool ``()``: every inexact (float/complex) leaf of ``tree`` is finite."""
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def _summarise(train_chunk, n):
    """train_chunk plus the cheap per-member reductions the host loop needs."""

    def chunk_and_summary(ts, hparams):
        ts, metrics = train_chunk(ts, hparams)
        loss_ok = jnp.isfinite(metrics["loss"])
        finite = jnp.all(loss_ok) & all_finite(ts.agent_state)
        first_bad = jnp.where(jnp.all(loss_ok), n, jnp.argmin(loss_ok)).astype(jnp.int32)
        means = {k: jnp.mean(v, axis=0) for k, v in metrics.items()}
        return ts, ChunkSummary(means, finite, first_bad)

    return chunk_and_summary


def make_members(agent, n_steps_per_chunk: int) -> Members:
    """Jitted ``(H, S)``-member versions of :func:`make_train` (hparams outer, seeds inner).

    Member ``(h, s)`` computes exactly what ``make_train`` computes for
    ``(keys[s], hparams[h])``; the test checks this against a loop over members.
    """
    single = make_train(agent, n_steps_per_chunk)
    init = jax.vmap(jax.vmap(single.init, in_axes=(0, None)), in_axes=(None, 0))
    chunk = _summarise(single.train_chunk, single.n_steps_per_chunk)
    chunk = jax.vmap(jax.vmap(chunk, in_axes=(0, None)), in_axes=(0, 0))
    return Members(jax.jit(init), jax.jit(chunk), single.n_steps_per_chunk)


def make_member_block(agent, n_steps_per_chunk: int) -> Members:
    """Like :func:`make_members` over ONE flat member axis ``M`` (used by sweeps).

    init(keys[M], hparams[M]) -> TrainState[M]; train_chunk(ts[M], hparams[M]) ->
    (ts[M], ChunkSummary[M]). Every member brings its own key and hparams, so a sweep can
    cut its members into blocks of any size (member m computes what ``make_train`` does).
    """
    single = make_train(agent, n_steps_per_chunk)
    chunk = _summarise(single.train_chunk, single.n_steps_per_chunk)
    return Members(jax.jit(jax.vmap(single.init)), jax.jit(jax.vmap(chunk)),
                   single.n_steps_per_chunk)


def member_keys(seed: int, n_seeds: int) -> jax.Array:
    """Typed keys ``(S,)``: seed index s gets ``fold_in(key(seed), s)``.

    ``fold_in`` (not ``split``) so that seed s is the same member whatever ``n_seeds`` is,
    and every hparam set sees the same S keys (common random numbers across the sweep).
    """
    base = jax.random.key(seed)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(n_seeds, dtype=jnp.uint32))


def stack_hparams(hparams_list) -> Any:
    """Stack a sequence of H hparams pytrees (same structure) into one with leaves ``(H,)``."""
    hparams_list = list(hparams_list)
    if not hparams_list:
        raise ValueError("hparams: need at least one hyperparameter set")
    # through numpy so leaves are never weakly typed (like hparams restored from a checkpoint)
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])),
                        *hparams_list)


def shard_members(train_state: TrainState, hparams):
    """Spread a ``(H, S)`` members block over all local devices (``jax.sharding``, not pmap).

    The hparam axis H is sharded when the device count divides it, else the seed axis S
    (hparams then replicated), else nothing moves. Members are independent, so each
    device trains its share with no communication, and the result equals the
    single-device run (tested). On CPU, ``jaxhedge.cpu.use_all_cores()`` gives one device
    per core.
    """
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    devices = jax.devices()
    n = len(devices)
    H, S = jax.tree.leaves(train_state.step)[0].shape[:2]
    if n == 1 or (H % n and S % n):
        return train_state, hparams
    mesh = Mesh(np.array(devices), ("members",))
    by_h = H % n == 0
    member_spec = NamedSharding(mesh, P("members") if by_h else P(None, "members"))
    hp_spec = NamedSharding(mesh, P("members") if by_h else P())
    return (jax.device_put(train_state, member_spec), jax.device_put(hparams, hp_spec))
