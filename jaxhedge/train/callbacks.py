"""What the host loop does around each compiled chunk, as callbacks (the brax/Stoix way).

:func:`jaxhedge.train.runner.run_training` only runs chunks; everything else is a
:class:`Callback` called at three points:

* ``on_start(ctx)`` -- before the first chunk (after init or restore);
* ``on_chunk(ctx, step, rows, summary)`` -- after each finite chunk: ``step`` updates
  done, ``rows`` the per-member metric rows (:func:`metric_rows`), ``summary`` the host
  copy of the chunk's :class:`~jaxhedge.train.loop.ChunkSummary`; ``ctx.train_state`` is
  the new state;
* ``on_end(ctx, info)`` -- once, always: ``info`` is the ``run.json`` content (a callback
  may add to it), or None when the loop was interrupted by an exception (close files, stop
  bars).

A callback stops the run early by setting ``ctx.stop_reason`` (e.g.
:class:`jaxhedge.train.validation.EarlyStopping`).

A non-finite chunk calls no ``on_chunk``: nothing of it is written or saved.

The callbacks of a run: :class:`MetricsFiles` (``metrics.jsonl`` + ``metrics.csv``),
:class:`TensorBoard`, :class:`CheckpointCallback`, :class:`ProgressBar`.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jaxhedge.runinfo import atomic_write_text
from jaxhedge.train.checkpoint import Checkpointer

__all__ = ["RunContext", "Callback", "MetricsFiles", "TensorBoard", "ProgressBar",
           "CheckpointCallback", "metric_rows", "read_metrics", "read_jsonl", "ID_COLUMNS"]

ID_COLUMNS = ("step", "member", "hparam_set", "seed_index")


@dataclasses.dataclass
class RunContext:
    """What callbacks may read (and the loop updates).

    Attributes:
      run_dir: the run directory.
      static: the run's static settings (agent spec, seed, chunk, n_steps, config...).
      hparams: stacked hparams ``(H, ...)``.
      n_hparam_sets, n_seeds: H and S.
      start_step: updates done when the loop started.
      resumed_from: the checkpoint step resumed from, or None for a fresh run.
      train_state: the newest finite members' state (updated before ``on_chunk``).
      step: updates done.
      last_saved: the newest checkpoint step (set by :class:`CheckpointCallback`).
      agent: the agent being trained.
      stop_reason: set by a callback (in ``on_start`` or ``on_chunk``) to end the run after
        the current chunk; the state it saw is already checkpointed (:class:`CheckpointCallback`
        runs first). Recorded in ``run.json``.
    """

    run_dir: Path
    static: dict
    hparams: Any
    n_hparam_sets: int
    n_seeds: int
    start_step: int
    resumed_from: int | None
    train_state: Any
    step: int
    last_saved: int | None = None
    agent: Any = None
    stop_reason: str | None = None


class Callback(Protocol):
    def on_start(self, ctx: RunContext) -> None: ...

    def on_chunk(self, ctx: RunContext, step: int, rows: list[dict], summary) -> None: ...

    def on_end(self, ctx: RunContext, info: dict | None) -> None: ...


def metric_rows(means: dict, step: int, H: int, S: int) -> list[dict]:
    """One row per member ``m = h * S + s``: ids, then the chunk means sorted by name."""
    rows = []
    for h in range(H):
        for s in range(S):
            row = {"step": step, "member": h * S + s, "hparam_set": h, "seed_index": s}
            row.update({k: float(np.asarray(v)[h, s]) for k, v in sorted(means.items())})
            rows.append(row)
    return rows


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file a run appends to (a torn last line from a crash is
    skipped; a missing file has no rows)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Rows of ``RUN_DIR/metrics.jsonl`` (a torn last line from a crash is skipped)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


# --------------------------------------------------------------------------- metrics files
class MetricsFiles:
    """``metrics.jsonl`` and ``metrics.csv``, appended per chunk.

    On start a fresh run empties both; a resumed run drops the rows past its checkpoint
    (written by a crashed process after its last save), so the files end up byte-identical
    to a run that never stopped.
    """

    def on_start(self, ctx: RunContext) -> None:
        _truncate_metrics(ctx.run_dir, -1 if ctx.resumed_from is None else ctx.resumed_from)

    def on_chunk(self, ctx: RunContext, step: int, rows: list[dict], summary) -> None:
        run_dir = ctx.run_dir
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

    def on_end(self, ctx: RunContext, info: dict | None) -> None:
        pass


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


# --------------------------------------------------------------------------- tensorboard
class TensorBoard:
    """Scalars ``member<m>/<metric>`` in ``RUN_DIR/tb`` (only when tensorboardX is installed)."""

    def __init__(self):
        self.writer = None

    def on_start(self, ctx: RunContext) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(str(ctx.run_dir / "tb"))

    def on_chunk(self, ctx: RunContext, step: int, rows: list[dict], summary) -> None:
        if self.writer is None:
            return
        for r in rows:
            for k, v in r.items():
                if k not in ID_COLUMNS:
                    self.writer.add_scalar(f"member{r['member']}/{k}", v, step)

    def on_end(self, ctx: RunContext, info: dict | None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --------------------------------------------------------------------------- checkpoints
class CheckpointCallback:
    """Saves the members after every chunk (and the initial state of a fresh run); the
    checkpointer is closed, waiting for the last asynchronous save, at the end."""

    def __init__(self, ckpt: Checkpointer):
        self.ckpt = ckpt

    def on_start(self, ctx: RunContext) -> None:
        if ctx.resumed_from is None:
            ctx.last_saved = self.ckpt.save(ctx.train_state, ctx.hparams, ctx.static)
        else:
            ctx.last_saved = ctx.resumed_from

    def on_chunk(self, ctx: RunContext, step: int, rows: list[dict], summary) -> None:
        ctx.last_saved = self.ckpt.save(ctx.train_state, ctx.hparams, ctx.static)

    def on_end(self, ctx: RunContext, info: dict | None) -> None:
        self.ckpt.close()


# --------------------------------------------------------------------------- progress
class ProgressBar:
    """``rich`` progress over updates, showing the mean loss over members."""

    def __init__(self, label: str = "train"):
        self.label, self.bar, self.task = label, None, None

    def on_start(self, ctx: RunContext) -> None:
        total = ctx.static["n_steps"]
        if total > ctx.step:
            from rich.progress import Progress, TextColumn
            self.bar = Progress(*Progress.get_default_columns(), TextColumn("{task.fields[info]}"),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total, completed=ctx.step, info="")

    def on_chunk(self, ctx: RunContext, step: int, rows: list[dict], summary) -> None:
        if self.bar is not None:
            loss = np.mean([r["loss"] for r in rows]) if rows and "loss" in rows[0] else np.nan
            self.bar.update(self.task, completed=step, info=f"step {step:,} loss {loss:.4g}")

    def on_end(self, ctx: RunContext, info: dict | None) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
