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
checkpoint is the last good chunk, and raises :class:`NonFiniteError`.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib
import io
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxhedge.runinfo import atomic_write_json, atomic_write_text, run_metadata
from jaxhedge.train.checkpoint import Checkpointer
from jaxhedge.train.loop import (TrainState, make_members, member_keys, shard_members,
                                 stack_hparams)

__all__ = ["NonFiniteError", "RunDirError", "RunResult", "run_training", "resume_training",
           "params_sha256", "agent_spec", "build_agent", "read_metrics"]

_ID_COLUMNS = ("step", "member", "hparam_set", "seed_index")


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or parameter; the run stopped before saving it.

    Attributes: ``step`` (first update whose loss was non-finite, 1-based count of updates,
    or the chunk's end if only the parameters were), ``member``, ``last_good_step``.
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
                 keep_checkpoints: int = 3, tensorboard: bool = True) -> RunResult:
    """Train ``agent`` for ``n_steps`` updates per member, ``chunk`` updates per compiled call.

    Args:
      agent: a :class:`~jaxhedge.agents.base.LearningAgent`.
      hparams: one hparams pytree, or a ``list`` of them (a sweep of H sets, same structure).
      seed, n_seeds: member keys (see module docstring).
      n_steps: total updates per member (the run stops there; a restored run continues to it).
      chunk: updates per compiled ``lax.scan``; also the metrics / checkpoint period.
      run_dir: output directory (created).
      config: the resolved configuration (JSON-able dict, e.g. ``config.to_dict(cfg)``);
        stored in every checkpoint and in ``run.json``.
      resume: continue from the newest checkpoint in ``run_dir`` if there is one (the
        checkpoint's hparams must equal ``hparams``). Without it an existing run is an error.
      progress: show a ``rich`` progress bar.
      keep_checkpoints: how many newest checkpoints to keep.
      tensorboard: also log metrics to ``run_dir/tb`` when ``tensorboardX`` is installed.

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
        restored = _restore(ckpt, latest, agent, hp)
        meta = restored[2]
        if (meta["seed"], meta["n_seeds"]) != (seed, n_seeds):
            ckpt.close()
            raise RunDirError(f"{run_dir}: run was started with seed={meta['seed']}, "
                              f"n_seeds={meta['n_seeds']} (got seed={seed}, n_seeds={n_seeds})")
        if not _trees_equal(restored[1], hp):
            ckpt.close()
            raise RunDirError(f"{run_dir}: hparams differ from the checkpoint's")
    static = {"agent_name": getattr(agent, "name", type(agent).__name__),
              "agent": agent_spec(agent), "seed": seed, "n_seeds": n_seeds,
              "n_hparam_sets": int(jax.tree.leaves(hp)[0].shape[0]) if jax.tree.leaves(hp) else 1,
              "chunk": chunk, "n_steps": n_steps, "x64": bool(jax.config.jax_enable_x64),
              "config": config}
    return _run(agent, hp, static, run_dir, ckpt, restored, progress, tensorboard)


def resume_training(run_dir: str | Path, n_steps: int | None = None, *, agent=None,
                    chunk: int | None = None, progress: bool = True,
                    keep_checkpoints: int = 3, tensorboard: bool = True) -> RunResult:
    """Continue the run in ``run_dir`` from its newest checkpoint to ``n_steps`` updates.

    Everything comes from the checkpoint: hparams, keys, step, seed, chunk, config and the
    agent, rebuilt from its recorded dataclass spec (pass ``agent`` when the agent could
    not be recorded; it must match the recorded one if there is one). ``n_steps`` defaults
    to the run's target. The result equals, bitwise, a run that never stopped.
    """
    run_dir = Path(run_dir)
    ckpt = Checkpointer(run_dir, keep=keep_checkpoints)
    latest = ckpt.latest_step()
    if latest is None:
        ckpt.close()
        raise RunDirError(f"{run_dir}: no checkpoint to resume from")
    meta = ckpt.read_meta(latest)
    if agent is None:
        if meta.get("agent") is None:
            ckpt.close()
            raise RunDirError(f"{run_dir}: the agent was not recorded; pass agent=")
        agent = build_agent(meta["agent"])
    if bool(meta.get("x64")) != bool(jax.config.jax_enable_x64):
        ckpt.close()
        raise RunDirError(f"{run_dir}: run used jax_enable_x64={meta.get('x64')}; "
                          f"resume with the same setting")
    hp_target = stack_hparams([agent.default_hparams()] * meta["n_hparam_sets"])
    restored = _restore(ckpt, latest, agent, hp_target)
    static = {k: meta[k] for k in ("agent_name", "agent", "seed", "n_seeds", "n_hparam_sets",
                                   "chunk", "n_steps", "x64", "config")}
    if n_steps is not None:
        static["n_steps"] = int(n_steps)
    if chunk is not None:
        static["chunk"] = int(chunk)
    return _run(agent, restored[1], static, run_dir, ckpt, restored, progress, tensorboard)


def params_sha256(tree) -> str:
    """SHA-256 over ``jax.tree.leaves(tree)`` in order: dtype, shape and raw bytes of each."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of ``RUN_DIR/metrics.jsonl`` (a torn last line from a crash is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


# --------------------------------------------------------------------------- agent spec
def agent_spec(agent) -> dict | None:
    """JSON description of a dataclass agent (class path + init fields), or None if the
    agent is not a dataclass of plain values (then resuming needs ``agent=``)."""
    try:
        return _encode(agent) if dataclasses.is_dataclass(agent) else None
    except TypeError:
        return None


def build_agent(spec: dict):
    """Rebuild an agent from :func:`agent_spec` (imports the class; only dataclasses)."""
    return _decode(spec)


def _encode(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        cls = type(x)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(x, f.name))
                           for f in dataclasses.fields(x) if f.init}}
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        return {"__dict__": {k: _encode(v) for k, v in x.items()}}
    if x is None or type(x) in (bool, int, float, str):
        return x
    raise TypeError(f"cannot record {type(x).__name__} in an agent spec")


def _decode(x):
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if not isinstance(x, dict):
        return x
    if "__tuple__" in x:
        return tuple(_decode(v) for v in x["__tuple__"])
    if "__dict__" in x:
        return {k: _decode(v) for k, v in x["__dict__"].items()}
    module, _, qualname = x["__dataclass__"].partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise RunDirError(f"agent spec: {x['__dataclass__']} is not a dataclass")
    return obj(**{k: _decode(v) for k, v in x["fields"].items()})


# --------------------------------------------------------------------------- internals
def _restore(ckpt: Checkpointer, step: int, agent, hp):
    meta = ckpt.read_meta(step)
    keys = member_keys(meta["seed"], meta["n_seeds"])
    members = make_members(agent, 1)
    target = jax.eval_shape(members.init, keys, hp)
    try:
        return ckpt.restore(step, target, hp)
    except ValueError as err:
        ckpt.close()
        raise RunDirError(str(err).splitlines()[0]) from None


def _trees_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return (jax.tree.structure(a) == jax.tree.structure(b) and
            all(np.asarray(x).dtype == np.asarray(y).dtype and
                np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
                for x, y in zip(la, lb)))


def _run(agent, hp, static, run_dir: Path, ckpt: Checkpointer, restored, progress: bool,
         tensorboard: bool) -> RunResult:
    t_start = time.perf_counter()
    compile_s = 0.0
    H, S = static["n_hparam_sets"], static["n_seeds"]
    n_steps, chunk = static["n_steps"], static["chunk"]
    keys = member_keys(static["seed"], S)
    if restored is None:
        members = make_members(agent, chunk)
        t0 = time.perf_counter()
        init = members.init.lower(keys, hp).compile()
        compile_s += time.perf_counter() - t0
        ts = init(keys, hp)
        _truncate_metrics(run_dir, -1)  # a fresh run owns the files
        ckpt.save(ts, hp, static)
        resumed_from = None
    else:
        ts = restored[0]
        resumed_from = int(np.asarray(ts.step).reshape(-1)[0])
        _truncate_metrics(run_dir, resumed_from)  # rows past the checkpoint never happened
    ts, hp = shard_members(ts, hp)  # members over all local devices (no-op on one)
    step = int(np.asarray(ts.step).reshape(-1)[0])
    last_saved = step
    compiled: dict[int, Any] = {}
    last_rows = _rows_at(run_dir, step)
    writer = _tb_writer(run_dir) if tensorboard else None
    error: NonFiniteError | None = None
    bar = _Bar(progress, f"{static['agent_name']} x{H * S}", n_steps, step)
    try:
        while step < n_steps:
            n = min(chunk, n_steps - step)
            if n not in compiled:
                t0 = time.perf_counter()
                compiled[n] = make_members(agent, n).train_chunk.lower(ts, hp).compile()
                compile_s += time.perf_counter() - t0
            new_ts, summary = compiled[n](ts, hp)
            summary = jax.device_get(summary)  # (H, S) means and flags: small
            if not summary.finite.all():
                error = _non_finite(summary, step, n, S, last_saved)
                break
            ts, step = new_ts, step + n
            last_rows = _metric_rows(summary.metrics, step, H, S)
            _append_metrics(run_dir, last_rows)
            if writer is not None:
                for r in last_rows:
                    for k, v in r.items():
                        if k not in _ID_COLUMNS:
                            writer.add_scalar(f"member{r['member']}/{k}", v, step)
            last_saved = ckpt.save(ts, hp, static)
            bar.advance(step, last_rows)
    finally:
        bar.close()
        ckpt.close()  # waits for the last async save
        if writer is not None:
            writer.close()
    info = _run_info(agent, ts, hp, static, step, resumed_from, last_rows,
                     time.perf_counter() - t_start, compile_s, error)
    atomic_write_json(run_dir / "run.json", info)
    if error is not None:
        raise error
    return RunResult(run_dir, ts, hp, info)


def _non_finite(summary, step: int, n: int, S: int, last_saved: int) -> NonFiniteError:
    bad = np.argwhere(~np.asarray(summary.finite))
    first = np.asarray(summary.first_bad)
    # earliest failing update among the bad members (chunk end if only params went bad)
    h, s = min(bad.tolist(), key=lambda hs: first[hs[0], hs[1]])
    bad_step = step + min(int(first[h, s]), n - 1) + 1
    member = h * S + s
    more = f", {len(bad) - 1} more member(s)" if len(bad) > 1 else ""
    return NonFiniteError(
        f"non-finite loss or parameters at step {bad_step:,} (member {member}{more}); "
        f"last good checkpoint: step {last_saved:,}", bad_step, member, last_saved)


def _metric_rows(means: dict, step: int, H: int, S: int) -> list[dict]:
    rows = []
    for h in range(H):
        for s in range(S):
            row = {"step": step, "member": h * S + s, "hparam_set": h, "seed_index": s}
            row.update({k: float(np.asarray(v)[h, s]) for k, v in sorted(means.items())})
            rows.append(row)
    return rows


def _append_metrics(run_dir: Path, rows: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    path = run_dir / "metrics.csv"
    header = _csv_header(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header or list(rows[0]), extrasaction="ignore")
        if not header:
            w.writeheader()
        w.writerows(rows)


def _csv_header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _truncate_metrics(run_dir: Path, max_step: int) -> None:
    """Keep only rows with ``step <= max_step`` (all rows of a fresh run: ``-1`` drops all)."""
    jsonl, csv_path = run_dir / "metrics.jsonl", run_dir / "metrics.csv"
    if jsonl.exists():
        rows = [r for r in read_metrics(run_dir) if r["step"] <= max_step]
        atomic_write_text(jsonl, "".join(json.dumps(r) + "\n" for r in rows))
    if csv_path.exists():
        with open(csv_path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            body = [r for r in reader if header and len(r) == len(header)
                    and _int_or_none(r[0]) is not None and int(r[0]) <= max_step]
        out = io.StringIO()
        if header and max_step >= 0:
            w = csv.writer(out, lineterminator="\r\n")
            w.writerow(header)
            w.writerows(body)
        atomic_write_text(csv_path, out.getvalue())


def _int_or_none(text):
    try:
        return int(text)
    except ValueError:
        return None


def _rows_at(run_dir: Path, step: int) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["step"] == step]


def _run_info(agent, ts, hp, static, step, resumed_from, last_rows, wall_s, compile_s,
              error) -> dict:
    info = {
        "status": "non_finite" if error is not None else "completed",
        "error": str(error) if error is not None else None,
        "config": static["config"],
        "agent_name": static["agent_name"],
        "agent": static["agent"],
        "hparams": {jax.tree_util.keystr(p): np.asarray(v).tolist()
                    for p, v in jax.tree_util.tree_flatten_with_path(hp)[0]},
        "seed": static["seed"], "n_seeds": static["n_seeds"],
        "n_hparam_sets": static["n_hparam_sets"],
        "n_members": static["n_hparam_sets"] * static["n_seeds"],
        "n_steps": static["n_steps"], "chunk": static["chunk"],
        "step": step, "resumed_from": resumed_from,
        "wall_s": wall_s, "compile_s": compile_s,
        "final_metrics": last_rows,
        "params_sha256": params_sha256(ts.agent_state),
        **run_metadata(),
    }
    if hasattr(agent, "price"):
        info.update(_prices(agent, ts, hp))
    return info


def _prices(agent, ts, hp) -> dict:
    """The agent's own price per member, ``[H][S]`` (a failure is recorded, not raised)."""
    t0 = time.perf_counter()
    try:
        price = jax.jit(jax.vmap(jax.vmap(agent.price, in_axes=(0, None)), in_axes=(0, 0)))
        return {"price": np.asarray(price(ts.agent_state, hp)).tolist(),
                "price_s": time.perf_counter() - t0}
    except Exception as err:  # noqa: BLE001 - pricing is a report, never lose the run to it
        return {"price": None, "price_error": f"{type(err).__name__}: {err}".splitlines()[0]}


def _tb_writer(run_dir: Path):
    """A tensorboardX writer in ``run_dir/tb`` if tensorboardX is installed, else None."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"))


class _Bar:
    """``rich`` progress over updates, showing the mean loss over members."""

    def __init__(self, enabled: bool, label: str, total: int, done: int):
        self.bar = None
        if enabled and total > done:
            from rich.progress import Progress, TextColumn
            self.bar = Progress(*Progress.get_default_columns(), TextColumn("{task.fields[info]}"),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, completed=done, info="")

    def advance(self, step: int, rows: list[dict]):
        if self.bar is not None:
            loss = np.mean([r["loss"] for r in rows]) if rows and "loss" in rows[0] else np.nan
            self.bar.update(self.task, completed=step, info=f"step {step:,} loss {loss:.4g}")

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def load_trained(run_dir: str | Path, member: int = 0):
    """``(agent, hparams, agent_state)`` of one member of the newest checkpoint in ``run_dir``.

    ``member`` indexes the flattened (hparam set, seed) block, ``m = h * n_seeds + s``.
    """
    run_dir = Path(run_dir)
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        latest = ckpt.latest_step()
        if latest is None:
            raise RunDirError(f"{run_dir}: no checkpoint found")
        meta = ckpt.read_meta(latest)
        if meta.get("agent") is None:
            raise RunDirError(f"{run_dir}: the agent was not recorded")
        agent = build_agent(meta["agent"])
        hp_target = stack_hparams([agent.default_hparams()] * meta["n_hparam_sets"])
        train_state, hparams, _ = _restore(ckpt, latest, agent, hp_target)
    finally:
        ckpt.close()
    n_seeds = meta["n_seeds"]
    h, s = divmod(member, n_seeds)
    if not 0 <= h < meta["n_hparam_sets"]:
        raise RunDirError(f"member: must be in [0, {meta['n_hparam_sets'] * n_seeds}) "
                          f"(got {member})")
    # host copies: restored arrays are committed to one device, and evaluation may shard
    # over all of them (rollout's shard_map)
    pick = lambda tree, *idx: jax.tree.map(lambda a: np.asarray(a[idx]), tree)
    return agent, pick(hparams, h), pick(train_state.agent_state, h, s)
