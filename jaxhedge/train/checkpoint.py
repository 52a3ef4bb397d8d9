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
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxhedge.train.loop import TrainState

__all__ = ["Checkpointer", "CheckpointMismatch"]

_ITEMS = ("train", "hparams", "meta")


class CheckpointMismatch(ValueError):
    """A checkpoint whose leaves do not fit the agent/hparams structure asked for."""


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

    def read_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint")
        return self._manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

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
        if hp_def.num_leaves != n_hp:
            raise CheckpointMismatch(
                f"{self.directory / str(step)}: checkpoint has {n_hp} hparams leaves, the "
                f"agent's hparams have {hp_def.num_leaves}")
        restored = self._manager.restore(step, args=ocp.args.Composite(
            train=ocp.args.StandardRestore(abstract(have)),
            hparams=ocp.args.StandardRestore(abstract(meta["hparams_leaves"]["spec"]))))
        train = jax.tree.unflatten(train_def, [restored["train"][_leaf_key(i)]
                                               for i in range(len(have))])
        train = train.replace(key=jax.random.wrap_key_data(train.key, impl=meta["key_impl"]))
        hparams = jax.tree.unflatten(hp_def, [restored["hparams"][_leaf_key(i)]
                                              for i in range(n_hp)])
        return train, hparams, meta


def _mismatch_message(where, want, have, paths) -> str:
    if len(want) != len(have):
        return (f"{where}: checkpoint has {len(have)} train-state leaves, the agent's state "
                f"has {len(want)} (different agent or network?)")
    i = next(i for i, (a, b) in enumerate(zip(want, have)) if a != b)
    return (f"{where}: leaf {paths[i]} is {have[i][1]}{have[i][0]} in the checkpoint but "
            f"{want[i][1]}{want[i][0]} for this agent")
