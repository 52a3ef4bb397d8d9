"""Local backend: a sweep's blocks one after another on this machine's devices.

Sweep directory::

    OUT/plan.json                    spec, its hash, the blocks (written once, reused on resume)
    OUT/blocks/block_XXXX.json       one per finished block (written atomically, last)
    OUT/blocks/block_XXXX/checkpoints/  the block's final train states (orbax; optional) --
                                     a run directory: ``jaxhedge eval OUT/blocks/block_0003
                                     --member j`` evaluates its member j
    OUT/results.csv|.parquet, best.json, best.md, plots/   (:mod:`jaxhedge.sweep.results`)

A block is finished exactly when its JSON exists, so ``resume`` (and every job-array task)
skips it; an interrupted block is simply run again. Each block is one
``jit(vmap(train_chunk))`` over a flat member axis sharded over a 1-D mesh of all local
devices; a group's blocks share one padded size, so the group compiles once.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge.runinfo import atomic_write_json
from jaxhedge.sweep.blocks import MIN_SHARE, Block, Plan, plan_sweep
from jaxhedge.sweep.mesh import member_mesh, pad_members, shard_members_axis
from jaxhedge.config import ConfigError
from jaxhedge.sweep.spec import SweepSpec, member_configs, spec_dict, spec_hash

__all__ = ["run_local", "prepare", "GroupRunner", "block_path", "SweepOutcome", "SweepDirError"]


class SweepDirError(ValueError):
    """The output directory does not fit the request (another sweep, missing blocks...)."""


class SweepOutcome(NamedTuple):
    out: Path
    plan: Plan
    ran: list[int]  # blocks computed by this call
    skipped: list[int]  # blocks found finished
    table: Any  # pandas DataFrame when every block is finished, else None


def block_path(out: Path, index: int) -> Path:
    return Path(out) / "blocks" / f"block_{index:04d}.json"


def prepare(spec: SweepSpec, out: str | Path, *, resume: bool = False, array: bool = False,
            collect: bool = False, max_block: int | None = None,
            budget_bytes: float | None = None) -> Plan:
    """The sweep's plan: read from ``OUT/plan.json`` when it exists (same spec required),
    else computed and written. An existing sweep needs ``resume`` (or array/collect mode)."""
    if spec.section.search == "optuna":
        raise ConfigError("search: 'optuna' is adaptive and needs --backend ray "
                         "(use 'grid' or 'random' locally)")
    out = Path(out)
    path = out / "plan.json"
    h = spec_hash(spec)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["spec_hash"] != h:
            raise SweepDirError(f"out: {out} holds a different sweep (spec {saved['spec_hash']}, "
                                f"this file {h}); use a new --out")
        if not (resume or array or collect):
            raise SweepDirError(f"out: {out} already holds this sweep; pass --resume to "
                                f"continue it or use a new --out")
        return Plan.from_dict(saved["plan"])
    if collect:
        raise SweepDirError(f"out: no sweep at {out} to collect")
    if array and not (spec.section.block_size or max_block):
        raise SweepDirError("block_size: job arrays need a fixed block size (sweep.block_size "
                            "or --max-block), or a plan.json written by --plan-only first")
    plan = plan_sweep(spec, max_block=max_block, budget_bytes=budget_bytes)
    atomic_write_json(path, {"spec_hash": h, "spec": spec_dict(spec), "raw": spec.raw,
                             "n_members": spec.n_members, "plan": plan.to_dict()})
    return plan


class GroupRunner:
    """One group's compiled programs (init + one chunk program per chunk length)."""

    def __init__(self, spec: SweepSpec, group, block_size: int, mesh=None):
        from jaxhedge.train.loop import make_member_block, member_keys

        self.spec, self.group = spec, group
        self.agent, self.base_hp = group.job.build()
        self.n_steps, self.chunk = spec.n_steps_for(group.job), spec.chunk_for(group.job)
        self.mesh = mesh if mesh is not None else member_mesh()
        n_dev = self.mesh.devices.size
        # a plan made on another device count is re-padded here; every device gets at
        # least MIN_SHARE members (see blocks.MIN_SHARE: bitwise invariance)
        self.size = max(-(-block_size // n_dev), MIN_SHARE) * n_dev
        self.programs = {n: make_member_block(self.agent, n) for n in self._chunks()}
        # the trainer's keys: seed index s of every config is the trainer's seed s
        self.seed_keys = member_keys(spec.section.seed, spec.section.n_seeds)
        self.compiled: dict = {}
        self.compile_s = 0.0

    def _chunks(self) -> list[int]:
        sizes, done = [], 0
        while done < self.n_steps:
            sizes.append(min(self.chunk, self.n_steps - done))
            done += sizes[-1]
        return sizes

    def members(self, start: int, stop: int) -> dict:
        """Host arrays for members ``[start, stop)`` of the group: config, seed index and
        every dynamic hparam value."""
        S = self.spec.section.n_seeds
        j = np.arange(start, stop)
        cfg, seed_idx = j // S, j % S
        return {"member": self.group.index * self.spec.members_per_group + j,
                "config": cfg, "seed_index": seed_idx,
                "values": member_configs(self.spec, cfg)}

    def hparams(self, values: dict, m: int):
        """Stacked hparams ``(m,)``: base leaves repeated, dynamic leaves set (leaf dtype)."""
        leaves, treedef = jax.tree_util.tree_flatten_with_path(self.base_hp)
        out = []
        for path, leaf in leaves:
            name = jax.tree_util.keystr(path, simple=True, separator=".")
            base = np.asarray(leaf)
            if name in values:
                out.append(np.asarray(values[name]).astype(base.dtype))
            else:
                out.append(np.repeat(base[None], m, axis=0))
        return jax.tree_util.tree_unflatten(treedef, out)

    def run(self, block: Block, info: dict | None = None):
        """Train the block; returns ``(members, summary, train_state, hparams)`` unpadded
        on the host: ``summary`` holds final metrics and finiteness per member. ``info``
        (as from :meth:`members`) gives the members explicitly (Optuna trials)."""
        info = self.members(block.start, block.stop) if info is None else info
        m = len(info["seed_index"])
        hp = pad_members(self.hparams(info["values"], m), self.size)
        seed_idx = pad_members(info["seed_index"], self.size)
        keys = self.seed_keys[jnp.asarray(seed_idx)]
        keys, hp = shard_members_axis((keys, hp), self.mesh)
        init = self._compiled("init", self.programs[self.chunk].init, keys, hp)
        # pin every leaf to the member sharding: the compiled programs are reused
        # (process-wide cache) and must see exactly the shardings they were built for
        ts = shard_members_axis(init(keys, hp), self.mesh)
        finite = np.ones(self.size, bool)
        first_bad = np.full(self.size, -1, np.int64)
        step, metrics = 0, {}
        for n in self._chunks():
            fn = self._compiled(n, self.programs[n].train_chunk, ts, hp)
            ts_start = ts
            ts, summary = fn(ts, hp)
            ts = shard_members_axis(ts, self.mesh)
            summary = jax.device_get(summary)
            newly = finite & ~np.asarray(summary.finite)
            if newly.any():  # the exact first bad update: replay the chunk, every step checked
                locate = self._compiled(("locate", n), self.programs[n].locate, ts_start, hp)
                summary = summary._replace(first_bad=np.asarray(
                    jax.device_get(locate(ts_start, hp)[1].first_bad)))
            first_bad[newly] = step + np.asarray(summary.first_bad)[newly] + 1  # 1-based
            finite &= np.asarray(summary.finite)
            metrics = summary.metrics
            step += n
        host = jax.device_get(ts)
        unpad = lambda tree: jax.tree.map(lambda x: x[:m], tree)
        summary = {"metrics": {k: np.asarray(v)[:m] for k, v in metrics.items()},
                   "finite": finite[:m], "first_bad_step": first_bad[:m], "step": step}
        return info, summary, unpad(host), unpad(jax.device_get(hp))

    def _compiled(self, name, fn, *args):
        if name not in self.compiled:
            # process-wide cache: a resumed or repeated sweep in the same process (tests,
            # notebooks) does not compile the same program again
            key = (self.agent, name, self.chunk, self.size,
                   tuple(d.id for d in self.mesh.devices.flat),
                   jax.tree.structure(args), tuple(str(getattr(x, "dtype", type(x)))
                                                   for x in jax.tree.leaves(args)))
            if key not in _COMPILED:
                t0 = time.perf_counter()
                _COMPILED[key] = fn.lower(*args).compile()
                self.compile_s += time.perf_counter() - t0
            self.compiled[name] = _COMPILED[key]
        return self.compiled[name]


_COMPILED: dict = {}


def block_record(spec: SweepSpec, group, block: Block, info: dict, summary: dict, ts,
                 wall_s: float, compile_s: float) -> dict:
    """The JSON of a finished block: one entry per member (plain numbers, NaN -> null)."""
    from jaxhedge.codec import params_sha256

    rows = []
    for i in range(len(info["member"])):
        state_i = jax.tree.map(lambda x: x[i], ts.agent_state)
        row = {"member": int(info["member"][i]), "group": group.index,
               "block": block.index, "config": int(info["config"][i]),
               "seed_index": int(info["seed_index"][i]),
               "hparams": {k: _plain(v[i]) for k, v in info["values"].items()},
               "metrics": {k: _plain(v[i]) for k, v in summary["metrics"].items()},
               "finite": bool(summary["finite"][i]),
               "first_bad_step": int(summary["first_bad_step"][i]),
               "params_sha256": params_sha256(state_i)}
        rows.append(row)
    return {"block": block.index, "group": group.index, "static": group.static,
            "start": block.start, "stop": block.stop, "size": block.size,
            "n_steps": summary["step"], "wall_s": wall_s, "compile_s": compile_s,
            "run_id": uuid.uuid4().hex, "finished_at": time.time(), "members": rows}


def _plain(x):
    x = np.asarray(x).item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def save_params(run_dir: Path, runner: GroupRunner, ts, hp) -> None:
    """The block's final states as a run directory (members ``(m, 1)``: ``load_trained``
    and ``jaxhedge eval --member j`` work on it)."""
    from jaxhedge.config import to_dict
    from jaxhedge.train.checkpoint import Checkpointer
    from jaxhedge.codec import agent_spec

    m = len(jax.tree.leaves(hp)[0])
    ts2 = jax.tree.map(lambda x: x[:, None], ts)
    meta = {"agent_name": getattr(runner.agent, "name", type(runner.agent).__name__),
            "agent": agent_spec(runner.agent), "seed": runner.spec.section.seed, "n_seeds": 1,
            "n_hparam_sets": m, "chunk": runner.chunk, "n_steps": runner.n_steps,
            "x64": bool(jax.config.jax_enable_x64), "config": to_dict(runner.group.job),
            "note": "sweep block: member j = block offset j; its seed index is in the block JSON"}
    ckpt = Checkpointer(run_dir, keep=1)
    try:
        ckpt.save(ts2, hp, meta)
    finally:
        ckpt.close()


def run_block(spec: SweepSpec, out: Path, block: Block, runners: dict, groups: list,
              mesh=None, info: dict | None = None, path: Path | None = None) -> dict:
    """Run one block (compiling its group on first use) and write its files atomically
    (to ``path``, default ``block_path(out, block.index)``; params beside it)."""
    path = block_path(out, block.index) if path is None else Path(path)
    group = groups[block.group]
    if block.group not in runners:
        runners[block.group] = GroupRunner(spec, group, block.size, mesh)
    runner = runners[block.group]
    c0 = runner.compile_s
    t0 = time.perf_counter()
    info, summary, ts, hp = runner.run(block, info)
    wall = time.perf_counter() - t0
    if spec.section.keep_params:
        save_params(path.with_suffix(""), runner, ts, hp)
    rec = block_record(spec, group, block, info, summary, ts, wall, runner.compile_s - c0)
    atomic_write_json(path, rec)  # last: marks the block finished
    return rec


def run_local(spec: SweepSpec, out: str | Path, *, resume: bool = False,
              block_index: int | None = None, num_blocks: int | None = None,
              collect: bool = False, max_block: int | None = None,
              budget_bytes: float | None = None, progress: bool = True,
              write_results: bool = True) -> SweepOutcome:
    """Run (or resume, or run a job-array slice of) a sweep on the local devices.

    Args:
      resume: skip blocks already finished in ``out``.
      block_index, num_blocks: job-array mode: run blocks ``b`` with ``b % num_blocks ==
        block_index`` (finished ones skipped, so a retried task is cheap).
      collect: run nothing; merge finished blocks into the results.
      max_block: cap on members per block.
      budget_bytes: memory budget for the block size (default: from the device).
    When every block is finished, the results are written (``write_results``) and returned.
    """
    out = Path(out)
    array = num_blocks is not None
    if array and not (block_index is not None and 0 <= block_index < num_blocks):
        raise ConfigError(f"block_index: must be in [0, {num_blocks}) with --num-blocks "
                         f"(got {block_index})")
    plan = prepare(spec, out, resume=resume, array=array, collect=collect,
                   max_block=max_block, budget_bytes=budget_bytes)
    mine = [b for b in plan.blocks if not array or b.index % num_blocks == block_index]
    done = {b.index for b in plan.blocks if block_path(out, b.index).exists()}
    todo = [] if collect else [b for b in mine if b.index not in done]
    skipped = [b.index for b in mine if b.index in done]
    ran: list[int] = []
    if todo:
        groups, runners, mesh = spec.groups(), {}, member_mesh()
        with _Bar(progress, f"{spec.name}: {len(todo)} block(s)", len(todo)) as bar:
            for b in todo:
                run_block(spec, out, b, runners, groups, mesh)
                ran.append(b.index)
                bar()
    missing = [b.index for b in plan.blocks if not block_path(out, b.index).exists()]
    table = None
    if not missing and write_results:
        from jaxhedge.sweep.results import write_results as _write

        table = _write(spec, out)
    elif collect and missing:
        raise SweepDirError(f"out: {len(missing)} of {len(plan.blocks)} blocks not finished "
                            f"(first: {missing[:5]}); run the remaining tasks or --resume")
    return SweepOutcome(out, plan, ran, skipped, table)


class _Bar:
    def __init__(self, enabled: bool, label: str, total: int):
        self.enabled, self.label, self.total, self.bar = enabled, label, total, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import Progress
            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(self.task) if self.bar else None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def write_plan_only(spec: SweepSpec, out, max_block=None, budget_bytes=None) -> Plan:
    """Write ``OUT/plan.json`` and nothing else (before launching a job array)."""
    return prepare(spec, out, resume=True, max_block=max_block, budget_bytes=budget_bytes)


__all__ += ["run_block", "block_record", "write_plan_only"]
