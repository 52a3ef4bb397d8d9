"""The thin host loop: compiled chunks, metrics files, checkpoints, ``run.json``.

Run directory layout::

    RUN_DIR/
      checkpoints/<step>/{train,hparams,meta}/   orbax; the newest ``keep`` steps
      metrics.jsonl     one JSON row per chunk per member (append-only)
      metrics.csv       the same rows as CSV
      run.json          written atomically at the end (or when stopped by a non-finite chunk)

Members: ``H`` hyperparameter sets (pass a list of hparams) x ``S = n_seeds`` seeds; member
index ``m = h * S + s``. Seed index ``s`` uses ``fold_in(key(seed), s)`` for every ``h``.

Per chunk the host copies only the chunk means of the metrics and one finite flag per
member; if any member went non-finite the loop stops before saving, so the newest
checkpoint is the last good chunk, and raises :class:`NonFiniteError` naming the first bad
update. Everything around the chunks -- metrics files, TensorBoard, checkpoints, the
progress bar -- is a callback (:mod:`jaxhedge.train.callbacks`); ``run.json`` is built by
:mod:`jaxhedge.train.record`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxhedge.codec import SpecError, agent_spec, build_agent, params_sha256  # noqa: F401
from jaxhedge.runinfo import atomic_write_json
from jaxhedge.train.callbacks import (CheckpointCallback, MetricsFiles, ProgressBar, RunContext,
                                      TensorBoard, metric_rows, read_metrics)
from jaxhedge.train.checkpoint import (CheckpointMismatch, Checkpointer, CorruptCheckpoint,
                                       Restored, restore_newest)
from jaxhedge.train.loop import (TrainState, make_members, member_keys, shard_members,
                                 stack_hparams)
from jaxhedge.train.record import run_info

__all__ = ["NonFiniteError", "RunDirError", "RunResult", "run_training", "resume_training",
           "params_sha256", "agent_spec", "build_agent", "read_metrics"]


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or parameter; the run stopped before saving it.

    Attributes: ``step`` (the first update whose loss or resulting parameters were
    non-finite, as a 1-based count of updates; found inside the chunk), ``member`` (the
    earliest such member), ``last_good_step`` (the newest checkpoint, kept).
    """

    def __init__(self, message: str, step: int, member: int, last_good_step: int | None):
        super().__init__(message)
        self.step, self.member, self.last_good_step = step, member, last_good_step


class RunDirError(ValueError):
    """The run directory does not fit the request (existing run without resume, mismatch)."""


class RunResult(NamedTuple):
    """What :func:`run_training` returns.

    Attributes:
      run_dir: the run directory.
      train_state: members' :class:`TrainState`, leaves ``(H, S, ...)``.
      hparams: stacked hparams, leaves ``(H, ...)``.
      info: the content of ``run.json``.
    """

    run_dir: Path
    train_state: TrainState
    hparams: Any
    info: dict


# --------------------------------------------------------------------------- public API
def run_training(agent, hparams, seed: int = 0, n_steps: int = 1000, chunk: int = 100,
                 run_dir: str | Path = "runs/train", config: dict | None = None, *,
                 resume: bool = False, n_seeds: int = 1, progress: bool = True,
                 keep_checkpoints: int = 3, tensorboard: bool = True,
                 callbacks=()) -> RunResult:
    """Train ``agent`` for ``n_steps`` updates per member, ``chunk`` updates per compiled call.

    Args:
      agent: a :class:`~jaxhedge.agents.base.LearningAgent`.
      hparams: one hparams pytree, or a ``list`` of them (a sweep of H sets, same structure).
      seed, n_seeds: member keys (see module docstring).
      n_steps: total updates per member (the run stops there, or earlier when a callback
        sets ``ctx.stop_reason``; a restored run continues to it).
      chunk: updates per compiled ``lax.scan``; also the metrics / checkpoint period.
      run_dir: output directory (created).
      config: the resolved configuration (JSON-able dict, e.g. ``config.to_dict(cfg)``);
        stored in every checkpoint and in ``run.json``. An enabled ``validation`` section
        (:class:`~jaxhedge.train.validation.ValidationConfig`) stops the run early on the
        validation criterion (:class:`~jaxhedge.train.validation.EarlyStopping`).
      resume: continue from the newest checkpoint in ``run_dir`` if there is one (the
        checkpoint's hparams must equal ``hparams``). Without it an existing run is an error.
      progress: show a ``rich`` progress bar.
      keep_checkpoints: how many newest checkpoints to keep.
      tensorboard: also log metrics to ``run_dir/tb`` when ``tensorboardX`` is installed.
      callbacks: more :class:`~jaxhedge.train.callbacks.Callback` objects, called after
        the checkpoint of each chunk.

    Raises:
      NonFiniteError: a chunk produced a non-finite loss or parameter (not saved).
      RunDirError: existing run without ``resume``, or a checkpoint that does not match.
    """
    for name, value, lo in (("n_steps", n_steps, 0), ("chunk", chunk, 1), ("n_seeds", n_seeds, 1),
                            ("seed", seed, 0), ("keep_checkpoints", keep_checkpoints, 1)):
        if not isinstance(value, (int, np.integer)) or value < lo:
            raise ValueError(f"{name}: must be an integer >= {lo} (got {value!r})")
    hp = stack_hparams(hparams if isinstance(hparams, list) else [hparams])
    run_dir = Path(run_dir)
    ckpt = Checkpointer(run_dir, keep=keep_checkpoints)
    latest = ckpt.latest_step()
    restored = None
    if latest is not None:
        if not resume:
            ckpt.close()
            raise RunDirError(f"{run_dir}: already holds a run (checkpoint at step {latest:,}); "
                              f"resume it or use a new directory")
        restored = _restore(ckpt, run_dir, agent, hp)
        meta = restored.meta
        if (meta["seed"], meta["n_seeds"]) != (seed, n_seeds):
            ckpt.close()
            raise RunDirError(f"{run_dir}: run was started with seed={meta['seed']}, "
                              f"n_seeds={meta['n_seeds']} (got seed={seed}, n_seeds={n_seeds})")
        if not _trees_equal(restored.hparams, hp):
            ckpt.close()
            raise RunDirError(f"{run_dir}: hparams differ from the checkpoint's")
        _check_target(ckpt, restored.step, n_steps)
    static = {"agent_name": getattr(agent, "name", type(agent).__name__),
              "agent": agent_spec(agent), "seed": seed, "n_seeds": n_seeds,
              "n_hparam_sets": int(jax.tree.leaves(hp)[0].shape[0]) if jax.tree.leaves(hp) else 1,
              "chunk": chunk, "n_steps": n_steps, "x64": bool(jax.config.jax_enable_x64),
              "config": config}
    return _run(agent, hp, static, run_dir, ckpt, restored, progress, tensorboard, callbacks)


def resume_training(run_dir: str | Path, n_steps: int | None = None, *, agent=None,
                    chunk: int | None = None, progress: bool = True,
                    keep_checkpoints: int = 3, tensorboard: bool = True,
                    callbacks=()) -> RunResult:
    """Continue the run in ``run_dir`` from its newest intact checkpoint to ``n_steps``.

    A damaged newer checkpoint is skipped (and deleted) with a
    :class:`~jaxhedge.train.checkpoint.CheckpointWarning`; ``n_steps`` below the updates
    already done is a :class:`RunDirError`.

    Everything comes from the checkpoint: hparams, keys, step, seed, chunk, config and the
    agent, rebuilt from its recorded dataclass spec (pass ``agent`` when the agent could
    not be recorded; it must match the recorded one if there is one). ``n_steps`` defaults
    to the run's target. The result equals, bitwise, a run that never stopped.
    """
    run_dir = Path(run_dir)
    ckpt = Checkpointer(run_dir, keep=keep_checkpoints)
    if ckpt.latest_step() is None:
        ckpt.close()
        raise RunDirError(f"{run_dir}: no checkpoint to resume from")
    x64 = _peek_meta(ckpt).get("x64")
    if x64 is not None and bool(x64) != bool(jax.config.jax_enable_x64):
        ckpt.close()
        raise RunDirError(f"{run_dir}: run used jax_enable_x64={x64}; "
                          f"resume with the same setting")
    restored = _restore(ckpt, run_dir, agent, None)
    meta = restored.meta
    static = {k: meta.get(k) for k in ("agent_name", "agent", "seed", "n_seeds",
                                       "n_hparam_sets", "chunk", "n_steps", "x64", "config")}
    if n_steps is not None:
        static["n_steps"] = int(n_steps)
    if chunk is not None:
        static["chunk"] = int(chunk)
    _check_target(ckpt, restored.step, static["n_steps"])
    if not isinstance(static["chunk"], int) or static["chunk"] < 1:
        ckpt.close()
        raise RunDirError(f"chunk: must be an integer >= 1 (got {static['chunk']!r})")
    return _run(restored.agent, restored.hparams, static, run_dir, ckpt, restored, progress,
                tensorboard, callbacks)


# --------------------------------------------------------------------------- internals
def _restore(ckpt: Checkpointer, run_dir: Path, agent, hp) -> Restored:
    """The newest intact checkpoint (unreadable newer steps are dropped, with a warning)."""
    try:
        restored = restore_newest(ckpt, agent, hp, drop_corrupt=True)
    except (CorruptCheckpoint, CheckpointMismatch, SpecError) as err:
        ckpt.close()
        raise RunDirError(str(err).splitlines()[0]) from None
    if restored is None:
        ckpt.close()
        raise RunDirError(f"{run_dir}: no checkpoint to resume from")
    return restored


def _peek_meta(ckpt: Checkpointer) -> dict:
    """The newest readable metadata ({} if none reads)."""
    for step in reversed(ckpt.all_steps()):
        try:
            return ckpt.read_meta(step)
        except CorruptCheckpoint:
            continue
    return {}


def _check_target(ckpt: Checkpointer, done: int, n_steps) -> None:
    if not isinstance(n_steps, (int, np.integer)) or n_steps < done:
        ckpt.close()
        raise RunDirError(f"n_steps: the run has done {done:,} updates; resuming needs "
                          f"n_steps >= {done:,} (got {n_steps!r})")


def _trees_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return (jax.tree.structure(a) == jax.tree.structure(b) and
            all(np.asarray(x).dtype == np.asarray(y).dtype and
                np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
                for x, y in zip(la, lb)))


def _run(agent, hp, static, run_dir: Path, ckpt: Checkpointer, restored, progress: bool,
         tensorboard: bool, callbacks=()) -> RunResult:
    t_start = time.perf_counter()
    H, S = static["n_hparam_sets"], static["n_seeds"]
    n_steps, chunk = static["n_steps"], static["chunk"]
    compile_s = 0.0
    if restored is None:
        keys = member_keys(static["seed"], S)
        t0 = time.perf_counter()
        init = make_members(agent, chunk).init.lower(keys, hp).compile()
        compile_s += time.perf_counter() - t0
        ts, resumed_from = init(keys, hp), None
    else:
        ts, resumed_from = restored.train_state, restored.step
    ts, hp = shard_members(ts, hp)  # members over all local devices (no-op on one)
    step = int(np.asarray(ts.step).reshape(-1)[0])
    ctx = RunContext(run_dir, static, hp, H, S, step, resumed_from, ts, step, agent=agent)
    callbacks = [MetricsFiles(), *([TensorBoard()] if tensorboard else []),
                 CheckpointCallback(ckpt), *_config_callbacks(static["config"], callbacks),
                 *callbacks,
                 *([ProgressBar(f"{static['agent_name']} x{H * S}")] if progress else [])]
    compiled: dict[int, Any] = {}
    error: NonFiniteError | None = None
    try:
        for cb in callbacks:
            cb.on_start(ctx)
        last_rows = [r for r in read_metrics(run_dir) if r["step"] == step]
        while step < n_steps and ctx.stop_reason is None:
            n = min(chunk, n_steps - step)
            if n not in compiled:
                t0 = time.perf_counter()
                compiled[n] = make_members(agent, n).train_chunk.lower(ts, hp).compile()
                compile_s += time.perf_counter() - t0
            new_ts, summary = compiled[n](ts, hp)
            summary = jax.device_get(summary)  # (H, S) means and flags: small
            if not summary.finite.all():
                # replay the chunk from its start with every update checked: exact step
                _, summary = jax.device_get(make_members(agent, n).locate(ts, hp))
                error = _non_finite(summary, step, S, ctx.last_saved)
                break
            ts, step = new_ts, step + n
            ctx.train_state, ctx.step = ts, step
            last_rows = metric_rows(summary.metrics, step, H, S)
            for cb in callbacks:
                cb.on_chunk(ctx, step, last_rows, summary)
        info = run_info(agent, ts, hp, static, step, resumed_from, last_rows,
                        time.perf_counter() - t_start, compile_s, error, ctx.stop_reason)
    except BaseException:
        for cb in callbacks:
            cb.on_end(ctx, None)  # close files, wait for the last save, stop the bar
        raise
    for cb in callbacks:
        cb.on_end(ctx, info)  # the checkpointer waits for its last save here
    atomic_write_json(run_dir / "run.json", info)
    if error is not None:
        raise error
    return RunResult(run_dir, ts, hp, info)


def _config_callbacks(config, given) -> list:
    """The callbacks a run's resolved config asks for: an enabled ``[validation]`` section
    adds :class:`~jaxhedge.train.validation.EarlyStopping` (unless one was given), so a
    resumed run (whose config comes from its checkpoint) stops on the same criterion."""
    from jaxhedge.train.validation import EarlyStopping, ValidationConfig

    section = (config or {}).get("validation") if isinstance(config, dict) else None
    if not section or not section.get("enabled") or any(
            isinstance(cb, EarlyStopping) for cb in given):
        return []
    return [EarlyStopping(ValidationConfig(**section))]


def _non_finite(summary, step: int, S: int, last_saved: int) -> NonFiniteError:
    bad = np.argwhere(~np.asarray(summary.finite))
    first = np.asarray(summary.first_bad)
    # earliest failing update among the bad members (loss or parameters, per update)
    h, s = min(bad.tolist(), key=lambda hs: first[hs[0], hs[1]])
    bad_step = step + int(first[h, s]) + 1  # 1-based count of the first bad update
    member = h * S + s
    more = f", {len(bad) - 1} more member(s)" if len(bad) > 1 else ""
    return NonFiniteError(
        f"non-finite loss or parameters at step {bad_step:,} (member {member}{more}); "
        f"last good checkpoint: step {last_saved:,}", bad_step, member, last_saved)
