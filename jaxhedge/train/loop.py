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

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxhedge.validate import prng_key

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
    locate(train_state[H, S], hparams[H]) -> (train_state[H, S], ChunkSummary[H, S]): the
      same chunk, with every update's agent state checked; its ``first_bad`` is exact.
      Only run on a chunk that ``train_chunk`` reported non-finite (the host keeps the
      chunk's start state, and the steps' keys depend on the global step only, so the
      replay retraces the same updates).
    """

    init: Callable
    train_chunk: Callable
    n_steps_per_chunk: int
    locate: Callable | None = None


class ChunkSummary(NamedTuple):
    """Per-member summary of one chunk, small enough to copy to the host every chunk.

    Attributes:
      metrics: dict of ``(H, S)`` means over the chunk's updates.
      finite: bool ``(H, S)``: every loss of the chunk and every inexact leaf of the
        agent state after every update are finite.
      first_bad: int32 ``(H, S)``: index within the chunk of the first update whose loss
        is non-finite (from ``locate``: whose loss or resulting agent state is), and
        ``n_steps_per_chunk`` when there is none. ``train_chunk`` checks the agent state
        at the chunk's end only (checking every update's parameters costs a reduction over
        all of them per update, about a third of a small sweep's throughput).
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
        return jax.lax.scan(_update_body(agent, hparams, False), train_state, None, length=n)

    return Train(init, train_chunk, n)


def _update_body(agent, hparams, flag: bool):
    """The scan body: one update at the global step; with ``flag`` it also emits, per
    update, whether that update's loss and the agent state after it are finite (so the
    first bad update is found inside a chunk, not at its end)."""
    def body(ts: TrainState, _):
        # the step's key depends on the global step only, not on chunking
        key = jax.random.fold_in(ts.key, ts.step)
        agent_state, metrics = agent.update(key, ts.agent_state, hparams)
        ts = ts.replace(agent_state=agent_state, step=ts.step + 1)
        if not flag:
            return ts, metrics
        ok = jnp.all(jnp.isfinite(metrics["loss"])) & all_finite(agent_state)
        return ts, (metrics, ok)
    return body


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


def _summarise(agent, n, exact: bool = False):
    """One chunk of updates plus the cheap per-member reductions the host loop needs.

    The fast path (``exact=False``) checks each update's loss and the agent state at the
    chunk's end; ``exact=True`` checks the agent state after every update as well.
    """

    def chunk_and_summary(ts, hparams):
        if exact:
            ts, (metrics, ok) = jax.lax.scan(_update_body(agent, hparams, True), ts, None,
                                             length=n)
            finite = jnp.all(ok)
        else:
            ts, metrics = jax.lax.scan(_update_body(agent, hparams, False), ts, None, length=n)
            ok = jnp.isfinite(metrics["loss"])
            finite = jnp.all(ok) & all_finite(ts.agent_state)
        first_bad = jnp.where(jnp.all(ok), n, jnp.argmin(ok)).astype(jnp.int32)
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
    members = lambda fn: jax.jit(jax.vmap(jax.vmap(fn, in_axes=(0, None)),  # noqa: E731
                                          in_axes=(0, 0)))
    n = single.n_steps_per_chunk
    return Members(jax.jit(init), members(_summarise(agent, n)), n,
                   members(_summarise(agent, n, exact=True)))


def make_member_block(agent, n_steps_per_chunk: int) -> Members:
    """Like :func:`make_members` over ONE flat member axis ``M`` (used by sweeps).

    init(keys[M], hparams[M]) -> TrainState[M]; train_chunk(ts[M], hparams[M]) ->
    (ts[M], ChunkSummary[M]). Every member brings its own key and hparams, so a sweep can
    cut its members into blocks of any size (member m computes what ``make_train`` does).
    """
    single = make_train(agent, n_steps_per_chunk)
    n = single.n_steps_per_chunk
    return Members(jax.jit(jax.vmap(single.init)), jax.jit(jax.vmap(_summarise(agent, n))), n,
                   jax.jit(jax.vmap(_summarise(agent, n, exact=True))))


def member_keys(seed: int, n_seeds: int) -> jax.Array:
    """Typed keys ``(S,)``: seed index s gets ``fold_in(key(seed), s)``.

    ``fold_in`` (not ``split``) so that seed s is the same member whatever ``n_seeds`` is,
    and every hparam set sees the same S keys (common random numbers across the sweep).
    """
    # all 64 bits of the seed (jax.random.key keeps 32 without x64); same key below 2**32
    base = jax.random.wrap_key_data(prng_key(seed))
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


def fit(agent, hparams, key, n_updates: int):
    """Train one member: ``init`` then ``n_updates`` updates in one ``lax.scan``
    (:func:`make_train`), compiled once per ``(agent, n_updates)`` (the agent is hashable;
    new hparams or keys of the same structure reuse the program).

    Returns ``(agent_state, metrics)``, each metric stacked over updates, shape
    ``(n_updates,)``. For notebooks and tests; runs with checkpoints go through
    :mod:`jaxhedge.train.runner`.
    """
    return _compiled_fit(agent, int(n_updates))(key, hparams)


@functools.lru_cache(maxsize=32)
def _compiled_fit(agent, n_updates: int):
    train = make_train(agent, n_updates)

    @jax.jit
    def run(key, hparams):
        ts, metrics = train.train_chunk(train.init(key, hparams), hparams)
        return ts.agent_state, metrics

    return run
