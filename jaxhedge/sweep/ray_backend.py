"""Ray Tune backend (optional extra ``jaxhedge[ray]``): one trial is one vmapped block.

* ``grid`` / ``random``: the blocks of the local plan become a ``tune.grid_search`` over
  block indices; a trial runs its block exactly as the local backend does (same files in
  ``OUT/blocks/``), so results equal the local run's and ``--collect`` works on either.
* ``optuna``: ``OptunaSearch`` (seeded TPE) proposes one hyperparameter set -- and a
  group when there are static axes -- per trial; the trial trains it for all seeds as one
  block and reports the mean over seeds of the first metric. Trial k is config k.

Every trial reports ``mean_<metric>`` / ``best_<metric>`` and a Tune checkpoint holding the
block's JSON (per-trial checkpoints). Resume: ``Tuner.restore(..., resume_errored=True)``
re-runs only unfinished or failed trials, and a trial whose block JSON already exists only
reads it -- the block files, written atomically last, are the ground truth.

The trainable runs in a Ray worker process: it sees that worker's devices (request GPUs
with ``gpus_per_trial``), and compiles its group once per trial.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxhedge.config import ConfigError
from jaxhedge.runinfo import atomic_write_json
from jaxhedge.sweep.blocks import Block
from jaxhedge.sweep.local import SweepDirError, block_path, prepare, run_block
from jaxhedge.sweep.spec import SweepSpec, spec_dict, spec_hash

__all__ = ["run_ray", "RayOutcome"]


class RayOutcome(NamedTuple):
    out: Path
    n_trials: int
    errors: list
    table: object  # DataFrame when all trials finished, else None


def _import_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ConfigError("backend: 'ray' needs the optional extra: "
                         "pip install 'jaxhedge[ray]'") from None
    return ray, tune


def _report(spec: SweepSpec, rec: dict, tune) -> None:
    """Metrics of a block for Tune, with the block JSON as the trial's checkpoint."""
    metric = spec.section.metrics[0]
    values = np.array([np.nan if m["metrics"][metric] is None or not m["finite"]
                       else m["metrics"][metric] for m in rec["members"]], float)
    ok = values[np.isfinite(values)]
    best = (ok.min() if spec.section.mode == "min" else ok.max()) if ok.size else np.nan
    metrics = {"block": rec["block"], "n_members": len(values), "n_finite": int(ok.size),
               f"mean_{metric}": float(ok.mean()) if ok.size else float("nan"),
               f"best_{metric}": float(best)}
    with tempfile.TemporaryDirectory() as tmp:
        atomic_write_json(Path(tmp) / "block.json", rec)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _block_trainable(spec: SweepSpec, out: str, blocks: dict, crash_blocks=()):
    """Function trainable running block ``config["block"]`` (skipped if already finished)."""
    def trainable(config):
        from ray import tune

        block = Block(**blocks[config["block"]])
        path = block_path(Path(out), block.index)
        if path.exists():
            rec = json.loads(path.read_text())
        else:
            if block.index in crash_blocks:  # test hook: an interrupted/crashing trial
                raise RuntimeError(f"injected crash in block {block.index}")
            rec = run_block(spec, Path(out), block, {}, spec.groups())
        _report(spec, rec, tune)
    return trainable


def _optuna_trainable(spec: SweepSpec, out: str):
    """Function trainable for one Optuna proposal: one hparam set x all seeds."""
    def trainable(config):
        from ray import tune

        path = _trial_path(Path(out), tune.get_context().get_trial_id())
        if path.exists():
            rec = json.loads(path.read_text())
        else:
            # numbered (config k, members k*S + s) by the driver once all trials are done
            S = spec.section.n_seeds
            group = int(config.get("group", 0))
            info = {"member": np.arange(S), "config": np.zeros(S, int),
                    "seed_index": np.arange(S),
                    "values": {a.name: np.full(S, config[a.name]) for a in spec.dynamic}}
            rec = run_block(spec, Path(out), Block(0, group, 0, S, S), {}, spec.groups(),
                            info=info, path=path)
        _report(spec, rec, tune)
    return trainable


def _trial_path(out: Path, trial_id: str) -> Path:
    return out / "trials" / f"{trial_id}.json"


def _number_optuna_trials(spec: SweepSpec, out: Path) -> None:
    """Trial files -> ``blocks/block_k.json`` with config k in order of completion (one
    trial at a time by default, so that order is the order TPE proposed them)."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "trials").glob("*.json"))]
    recs.sort(key=lambda r: r["finished_at"])
    S = spec.section.n_seeds
    for k, rec in enumerate(recs):
        rec["block"] = k
        for m in rec["members"]:
            m.update(block=k, config=k, member=k * S + m["seed_index"])
        atomic_write_json(block_path(out, k), rec)


def _optuna_space(spec: SweepSpec, tune) -> dict:
    space = {}
    for a in spec.dynamic:
        if a.kind == "uniform":
            space[a.name] = tune.uniform(a.low, a.high)
        elif a.kind == "loguniform":
            space[a.name] = tune.loguniform(a.low, a.high)
        else:
            space[a.name] = tune.choice(list(a.values))
    if spec.n_groups > 1:
        space["group"] = tune.choice(list(range(spec.n_groups)))
    return space


def _prepare_optuna(spec: SweepSpec, out: Path, resume: bool) -> None:
    path = out / "plan.json"
    h = spec_hash(spec)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["spec_hash"] != h:
            raise SweepDirError(f"out: {out} holds a different sweep; use a new --out")
        if not resume:
            raise SweepDirError(f"out: {out} already holds this sweep; pass --resume")
        return
    atomic_write_json(path, {"spec_hash": h, "spec": spec_dict(spec), "raw": spec.raw,
                             "n_members": spec.n_members, "plan": None})


def run_ray(spec: SweepSpec, out: str | Path, *, resume: bool = False,
            address: str | None = None, max_concurrent: int | None = None,
            max_block: int | None = None, gpus_per_trial: float = 0.0,
            cpus_per_trial: float = 1.0, crash_blocks=(), write_results: bool = True,
            verbose: int = 0) -> RayOutcome:
    """Run ``spec`` as a Ray Tune experiment in ``OUT/ray/tune`` (see module docstring).

    Uses the running Ray instance, else ``ray.init(address)`` (``None``: a local one,
    shut down again at the end). ``crash_blocks`` is a test hook: those blocks' trials
    raise, as an interrupted sweep would. Raises ConfigError when ray is not installed.
    """
    ray, tune = _import_ray()
    out = Path(out).absolute()
    optuna = spec.section.search == "optuna"
    if optuna:
        _prepare_optuna(spec, out, resume)
    else:
        plan = prepare(spec, out, resume=resume, max_block=max_block)
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 0)
        started = True
    try:
        storage, name = out / "ray", "tune"
        if optuna:
            trainable = _optuna_trainable(spec, str(out))
        else:
            blocks = {b.index: b.__dict__ for b in plan.blocks}
            trainable = _block_trainable(spec, str(out), blocks, tuple(crash_blocks))
        trainable = tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
        exp = storage / name
        if resume and tune.Tuner.can_restore(str(exp)):
            tuner = tune.Tuner.restore(str(exp), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(trainable, param_space=_param_space(spec, tune, plan if not optuna else None),
                               tune_config=_tune_config(spec, tune, max_concurrent),
                               run_config=tune.RunConfig(
                                   name=name, storage_path=str(storage), verbose=verbose,
                                   failure_config=tune.FailureConfig(max_failures=0)))
        results = tuner.fit()
        errors = [_last_line(e) for e in results.errors]
        n_trials = len(results)
    finally:
        if started:
            ray.shutdown()
    table = None
    if optuna and not errors:
        _number_optuna_trials(spec, out)
    if not errors and write_results:
        if not optuna:
            missing = [b.index for b in plan.blocks if not block_path(out, b.index).exists()]
            if missing:
                raise SweepDirError(f"out: blocks {missing[:5]} missing after the Ray run")
        from jaxhedge.sweep.results import write_results as _write

        table = _write(spec, out)
    elif errors:
        print(f"{len(errors)} trial(s) failed (first: {errors[0]}); rerun with --resume")
    return RayOutcome(out, n_trials, errors, table)


def _last_line(err) -> str:
    """The exception's own message (Ray wraps it in a traceback with colour codes)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", x).strip() for x in str(err).splitlines()]
    return next((x for x in reversed(lines) if x), type(err).__name__)


def _param_space(spec: SweepSpec, tune, plan) -> dict:
    if plan is None:
        return _optuna_space(spec, tune)
    return {"block": tune.grid_search([b.index for b in plan.blocks])}


def _tune_config(spec: SweepSpec, tune, max_concurrent):
    if spec.section.search != "optuna":
        return tune.TuneConfig(max_concurrent_trials=max_concurrent)
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    metric = f"mean_{spec.section.metrics[0]}"
    # one trial at a time by default: the TPE proposals, hence the sweep, are reproducible
    search = ConcurrencyLimiter(OptunaSearch(metric=metric, mode=spec.section.mode,
                                             seed=spec.section.seed),
                                max_concurrent=max_concurrent or 1)
    return tune.TuneConfig(search_alg=search, num_samples=spec.section.n_samples)
