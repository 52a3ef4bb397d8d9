"""Checkpoints of a members block in ``RUN_DIR/checkpoints/<step>/`` (orbax-checkpoint).

Each checkpoint holds three orbax items:

* ``train``: the :class:`~jaxhedge.train.loop.TrainState` of all members (agent state,
  raw ``uint32`` key data, step) as a flat dict ``{"00000": leaf, ...}`` in
  ``jax.tree.leaves`` order;
* ``hparams``: the stacked hparams ``(H, ...)`` as a flat dict of leaves, the same way;
* ``meta``: JSON -- the step, the leaves' tree paths, shapes and dtypes, the PRNG
  implementation, the run's static settings and resolved config.

Why flat leaves: orbax then never has to understand agent-specific pytree nodes (NNX
``State``, optax named tuples, empty nodes, static fields); the target structure always
comes from the caller (``jax.eval_shape`` of ``init``), so restoring is exact and a
mismatched checkpoint is reported instead of silently reshaped. Typed PRNG keys are stored
as ``jax.random.key_data`` and rewrapped with the recorded implementation.

Atomicity is orbax's: a step is written to ``<step>.orbax-checkpoint-tmp-*`` and renamed
to ``<step>`` only when complete, so a crash mid-save leaves the previous checkpoint as the
latest readable one; leftover tmp dirs are ignored and removed when the manager opens.

Damage after the fact (a truncated array file, garbage metadata, a missing item directory)
is :class:`CorruptCheckpoint`; :func:`restore_newest` then falls back to the newest intact
step with a :class:`CheckpointWarning` naming both steps. The agent is rebuilt from the
metadata by :func:`jaxhedge.codec.build_agent` (registered classes only).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxhedge.codec import build_agent
from jaxhedge.train.loop import TrainState, make_members, member_keys, stack_hparams

__all__ = ["Checkpointer", "CheckpointMismatch", "CorruptCheckpoint", "CheckpointWarning",
           "Restored", "restore_newest"]

_ITEMS = ("train", "hparams", "meta")


class CheckpointMismatch(ValueError):
    """A checkpoint whose leaves do not fit the agent/hparams structure asked for."""


class CorruptCheckpoint(ValueError):
    """A checkpoint step whose files cannot be read back (the message names the file)."""


class CheckpointWarning(UserWarning):
    """The newest checkpoint was unreadable; an older intact one was used."""

#: what orbax / tensorstore / json raise on damaged files (JSONDecodeError and
#: UnicodeDecodeError are ValueErrors; a missing item directory is a KeyError)
_READ_ERRORS = (ValueError, KeyError, OSError, TypeError)
_META_KEYS = ("seed", "n_seeds", "n_hparam_sets", "key_impl", "train_leaves", "hparams_leaves")


def _leaf_key(i: int) -> str:
    return f"{i:05d}"


def _flat(tree) -> tuple[dict, list[str]]:
    leaves_with_path = jax.tree_util.tree_flatten_with_path(tree)[0]
    return ({_leaf_key(i): leaf for i, (_, leaf) in enumerate(leaves_with_path)},
            [jax.tree_util.keystr(path) for path, _ in leaves_with_path])


def _describe(flat: dict) -> list[list]:
    return [[list(np.shape(v)), str(np.dtype(v.dtype))] for v in flat.values()]


def _raw_key(ts: TrainState) -> TrainState:
    return ts.replace(key=jax.random.key_data(ts.key))


class Checkpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for members' train states.

    Args:
      run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
      keep: how many most recent checkpoints to keep.
      read_only: open without creating anything (inspecting or resuming).
    """

    def __init__(self, run_dir: str | Path, keep: int = 3, read_only: bool = False):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only,
            # a crash mid-save leaves <step>.orbax-checkpoint-tmp-*; drop it on open
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=_ITEMS)

    # ------------------------------------------------------------------ query
    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def meta_path(self, step: int) -> Path:
        """The JSON file holding step ``step``'s metadata (named in error messages)."""
        return self.directory / str(step) / "meta" / "metadata"

    def read_meta(self, step: int | None = None) -> dict:
        """Step ``step``'s metadata (default: the newest step).

        Raises:
          CorruptCheckpoint: the file is missing, not JSON, or lacks the trainer's keys.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint")
        try:
            meta = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except _READ_ERRORS as err:
            raise CorruptCheckpoint(f"{self.meta_path(step)}: unreadable checkpoint metadata "
                                    f"({_first_line(err)})") from None
        missing = [k for k in _META_KEYS if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise CorruptCheckpoint(f"{self.meta_path(step)}: checkpoint metadata lacks "
                                    f"{', '.join(missing)}")
        return meta

    def delete(self, step: int) -> None:
        """Remove step ``step`` (used for unreadable steps newer than the one resumed)."""
        self._manager.delete(step)

    # ------------------------------------------------------------------ save
    def save(self, train_state: TrainState, hparams: Any, meta: dict) -> int:
        """Start saving (asynchronously) at ``step = train_state.step`` (same for all members).

        Arrays are copied off the device before this returns; the file writes finish in the
        background (call :meth:`wait` before reading the checkpoint from elsewhere).
        """
        step = int(np.asarray(train_state.step).reshape(-1)[0])
        train, train_paths = _flat(_raw_key(train_state))
        hp, hp_paths = _flat(hparams)
        meta = {**meta, "step": step,
                "key_impl": str(jax.random.key_impl(train_state.key)),
                "train_leaves": {"paths": train_paths, "spec": _describe(train)},
                "hparams_leaves": {"paths": hp_paths, "spec": _describe(hp)}}
        self._manager.save(step, args=ocp.args.Composite(
            train=ocp.args.StandardSave(train), hparams=ocp.args.StandardSave(hp),
            meta=ocp.args.JsonSave(meta)))
        return step

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    # ------------------------------------------------------------------ restore
    def restore(self, step: int, train_target: Any, hparams_target: Any):
        """Restore ``(train_state, hparams, meta)`` at ``step`` into the given structures.

        Args:
          train_target: a ``TrainState`` (arrays or ``jax.ShapeDtypeStruct``, e.g. from
            ``jax.eval_shape(members.init, keys, hparams)``) whose structure, shapes and
            dtypes the checkpoint must match; its key leaf is a typed key.
          hparams_target: an hparams pytree with the checkpoint's structure (only the
            treedef and the number of leaves are used; shapes/dtypes come from the file, so
            the saved hparams are restored exactly).

        Raises:
          CheckpointMismatch: different number of leaves, shapes or dtypes.
        """
        meta = self.read_meta(step)
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])

        def abstract(spec):
            return {_leaf_key(i): jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype),
                                                       sharding=sharding)
                    for i, (shape, dtype) in enumerate(spec)}

        train_abs = jax.eval_shape(_raw_key, train_target)
        train_leaves, train_def = jax.tree.flatten(train_abs)
        want = [[list(x.shape), str(np.dtype(x.dtype))] for x in train_leaves]
        have = meta["train_leaves"]["spec"]
        if want != have:
            raise CheckpointMismatch(_mismatch_message(self.directory / str(step), want, have,
                                                       meta["train_leaves"]["paths"]))
        hp_def = jax.tree.structure(hparams_target)
        n_hp = len(meta["hparams_leaves"]["spec"])
        fill = None
        if hp_def.num_leaves != n_hp:
            fill = _added_hparams(hparams_target, meta["hparams_leaves"].get("paths"))
            if fill is None:
                raise CheckpointMismatch(
                    f"{self.directory / str(step)}: checkpoint has {n_hp} hparams leaves, the "
                    f"agent's hparams have {hp_def.num_leaves}")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                train=ocp.args.StandardRestore(abstract(have)),
                hparams=ocp.args.StandardRestore(abstract(meta["hparams_leaves"]["spec"]))))
        except _READ_ERRORS as err:
            raise CorruptCheckpoint(f"{self.directory / str(step)}: unreadable checkpoint "
                                    f"arrays ({_first_line(err)})") from None
        train = jax.tree.unflatten(train_def, [restored["train"][_leaf_key(i)]
                                               for i in range(len(have))])
        train = train.replace(key=jax.random.wrap_key_data(train.key, impl=meta["key_impl"]))
        saved = [restored["hparams"][_leaf_key(i)] for i in range(n_hp)]
        if fill is not None:  # hparam fields added since the run: their values in the target
            by_path = dict(zip(meta["hparams_leaves"]["paths"], saved))
            saved = [by_path.get(path, value) for path, value in fill]
        hparams = jax.tree.unflatten(hp_def, saved)
        return train, hparams, meta


def _added_hparams(target, saved_paths):
    """``[(path, target value)]`` of ``target``'s leaves when the checkpoint's hparams are
    ``target``'s minus some fields added since (e.g. ``contracts.dt_hi``), else None.

    The added fields take the target's values: the defaults when restoring with the agent's
    ``default_hparams()``, which are chosen so that a former run means what it meant.
    """
    if not saved_paths:
        return None
    flat = [(jax.tree_util.keystr(p), v)
            for p, v in jax.tree_util.tree_flatten_with_path(target)[0]]
    paths = [p for p, _ in flat]
    if len(set(saved_paths)) != len(saved_paths) or not set(saved_paths) < set(paths):
        return None
    if any(isinstance(v, jax.ShapeDtypeStruct) for p, v in flat if p not in saved_paths):
        return None
    return flat


def _mismatch_message(where, want, have, paths) -> str:
    if len(want) != len(have):
        return (f"{where}: checkpoint has {len(have)} train-state leaves, the agent's state "
                f"has {len(want)} (different agent or network?)")
    i = next(i for i, (a, b) in enumerate(zip(want, have)) if a != b)
    return (f"{where}: leaf {paths[i]} is {have[i][1]}{have[i][0]} in the checkpoint but "
            f"{want[i][1]}{want[i][0]} for this agent")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 120 else line[:117] + "..."


class Restored(NamedTuple):
    """What :func:`restore_newest` returns: the step, the members' ``TrainState``
    ``(H, S, ...)``, stacked hparams ``(H, ...)``, the metadata and the agent."""

    step: int
    train_state: TrainState
    hparams: Any
    meta: dict
    agent: Any


def restore_newest(ckpt: Checkpointer, agent=None, hparams=None, *,
                   drop_corrupt: bool = False) -> Restored | None:
    """The newest checkpoint that reads back intact, or None when there is none at all.

    Args:
      agent: the agent whose state to restore; None rebuilds it from the metadata
        (:func:`jaxhedge.codec.build_agent`, registered classes only).
      hparams: stacked hparams with the checkpoint's structure; None uses the agent's
        ``default_hparams()`` (the values always come from the checkpoint).
      drop_corrupt: delete the unreadable steps newer than the one restored (a resumed
        run saves those steps again).

    A damaged newest step is skipped with a :class:`CheckpointWarning` naming it and the
    step used. Raises :class:`CorruptCheckpoint` (the newest step's, naming its file) when
    no step is intact, :class:`CheckpointMismatch` for an intact step that does not fit
    ``agent``, and :class:`jaxhedge.codec.SpecError` for an agent spec naming an
    unregistered class.
    """
    bad: list[tuple[int, CorruptCheckpoint]] = []
    for step in reversed(ckpt.all_steps()):
        try:
            restored = _restore_step(ckpt, step, agent, hparams)
        except CorruptCheckpoint as err:
            bad.append((step, err))
            continue
        if bad:
            warnings.warn(f"checkpoint step {bad[0][0]:,} is unreadable ({bad[0][1]}); "
                          f"using step {step:,}", CheckpointWarning, stacklevel=2)
            if drop_corrupt:
                for s, _ in bad:
                    ckpt.delete(s)
        return restored
    if bad:
        raise bad[0][1]
    return None


def _restore_step(ckpt: Checkpointer, step: int, agent, hparams) -> Restored:
    meta = ckpt.read_meta(step)
    if agent is None:
        if meta.get("agent") is None:
            raise CheckpointMismatch(f"{ckpt.meta_path(step)}: the agent was not recorded; "
                                     f"pass agent=")
        agent = build_agent(meta["agent"], source=ckpt.meta_path(step))
    try:
        n_sets, seed, n_seeds = (int(meta["n_hparam_sets"]), int(meta["seed"]),
                                 int(meta["n_seeds"]))
    except (TypeError, ValueError):
        raise CorruptCheckpoint(f"{ckpt.meta_path(step)}: n_hparam_sets, seed and n_seeds "
                                f"must be integers") from None
    if hparams is None:
        hparams = stack_hparams([agent.default_hparams()] * n_sets)
    keys = member_keys(seed, n_seeds)
    target = jax.eval_shape(make_members(agent, 1).init, keys, hparams)
    train_state, hparams, meta = ckpt.restore(step, target, hparams)
    return Restored(step, train_state, hparams, meta, agent)
