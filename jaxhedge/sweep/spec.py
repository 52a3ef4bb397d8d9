"""Sweep files (TOML) -> a validated :class:`SweepSpec` -> groups of members.

A sweep file::

    [sweep]
    name = "rlop-lr"
    agent = "rlop"              # a key of jaxhedge.train.jobs.JOBS (or "toy")
    preset = "smoke"            # experiments/<agent>/<preset>.toml, or config = "job.toml"
    set = ["agent.n_envs=128"]  # --set style overrides of the base job
    search = "grid"             # "grid" | "random" | "optuna" (optuna: Ray backend only)
    n_samples = 16              # random/optuna: hyperparameter sets to draw
    seed = 0                    # sweep seed: member keys and random draws
    n_seeds = 2                 # seeds per hyperparameter set
    n_steps = 200               # updates per member (default: the job's train.n_steps)
    chunk = 100                 # updates per compiled chunk (default n_steps); the final
                                # metrics are the means over the last chunk
    metrics = ["loss"]          # ranking metrics (training metrics of the agent); first ranks
    mode = "min"                # "min" | "max"
    block_size = 0              # members per vmapped block; 0: from a memory estimate

    [dynamic]                   # leaves of the agent's hparams pytree (vmapped, no recompile)
    lr_policy = [1e-3, 3e-3]                                   # grid values
    sigma_hi = {distribution = "uniform", low = 0.2, high = 0.3}
    lr_price = {distribution = "loguniform", low = 1e-4, high = 1e-2}
    "env.costs.proportional" = {distribution = "choice", values = [0.0, 0.01]}

    [static]                    # job-config keys that change shapes/structure: one group
    "agent.width" = [16, 32]    # (= one compilation) per combination

Members: group g (a static combination, in file order) x hyperparameter set c x seed
index s. Member keys are ``fold_in(key(seed), s)`` -- the convention of
:func:`jaxhedge.train.member_keys` -- so results never depend on how members are cut into
blocks or spread over devices, a sweep member equals ``jaxhedge train`` run with its
hparams and seed index, and all sets share common random numbers. Random set c draws from
``numpy.random.default_rng([seed, c])``, so set c is the same whatever ``n_samples`` is.

Dynamic axes set hparams leaves only: values derived from them when a job is built (deep
hedging's premium from ``contract.sigma``) are not recomputed -- sweep such keys as static.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jaxhedge.config import (ConfigError, TrainConfig, apply_overrides, from_dict, read_toml,
                             to_dict)

__all__ = ["SweepSpec", "Axis", "Group", "ToyJob", "SWEEP_JOBS", "load_sweep", "spec_hash",
           "hparam_leaves", "member_configs"]

DISTRIBUTIONS = ("uniform", "loguniform", "choice")


@dataclasses.dataclass(frozen=True)
class ToyHParamsSection:
    learning_rate: float = 0.05
    nan_at_step: int = -1


@dataclasses.dataclass(frozen=True)
class ToyJob:
    """The trainer's tiny test agent (:class:`jaxhedge.train.toy.ToyAgent`) as a job, so
    sweeps can be tested in seconds. Not a hedging method."""

    batch: int = 64
    hparams: ToyHParamsSection = ToyHParamsSection()
    train: TrainConfig = TrainConfig()

    def build(self):
        import jax.numpy as jnp

        from jaxhedge.train.toy import ToyAgent, ToyHParams

        hp = ToyHParams(learning_rate=jnp.float32(self.hparams.learning_rate),
                        nan_at_step=jnp.int32(self.hparams.nan_at_step))
        return ToyAgent(batch=self.batch), hp


def _jobs() -> dict:
    from jaxhedge.train.jobs import JOBS

    return {**{k: v for k, v in JOBS.items() if k != "qlbs"}, "toy": ToyJob}


SWEEP_JOBS = ("deep-hedging", "rlop", "adaptive-qlbs", "toy")


@dataclasses.dataclass(frozen=True)
class SweepSection:
    """The ``[sweep]`` table (see the module docstring)."""

    agent: str
    name: str = "sweep"
    preset: str | None = None
    config: str | None = None
    set: tuple[str, ...] = ()
    search: Literal["grid", "random", "optuna"] = "grid"
    n_samples: int = 0
    seed: int = 0
    n_seeds: int = 1
    n_steps: int = 0
    chunk: int = 0
    metrics: tuple[str, ...] = ("loss",)
    mode: Literal["min", "max"] = "min"
    block_size: int = 0
    memory_fraction: float = 0.5
    keep_params: bool = True

    def __post_init__(self):
        for name, lo in (("n_samples", 0), ("seed", 0), ("n_seeds", 1), ("n_steps", 0),
                         ("chunk", 0), ("block_size", 0)):
            if getattr(self, name) < lo:
                raise ValueError(f"{name}: must be an integer >= {lo} (got {getattr(self, name)})")
        if not 0 < self.memory_fraction <= 1:
            raise ValueError(f"memory_fraction: must be in (0, 1] (got {self.memory_fraction})")
        if not self.metrics:
            raise ValueError("metrics: need at least one metric to rank by")
        if self.search != "grid" and self.n_samples < 1:
            raise ValueError(f"n_samples: must be >= 1 for search = {self.search!r}")
        if self.preset and self.config:
            raise ValueError("preset: give preset or config, not both")


@dataclasses.dataclass(frozen=True)
class _AxisSection:
    distribution: Literal["uniform", "loguniform", "choice"]
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class _SweepFile:
    sweep: SweepSection
    dynamic: dict[str, Any] = dataclasses.field(default_factory=dict)
    static: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Axis:
    """One dynamic axis: grid ``values`` or a distribution (uniform/loguniform: low, high;
    choice: values)."""

    name: str
    kind: Literal["grid", "uniform", "loguniform", "choice"]
    values: tuple = ()
    low: float | None = None
    high: float | None = None

    def sample(self, rng: np.random.Generator):
        if self.kind in ("grid", "choice"):
            return self.values[int(rng.integers(len(self.values)))]
        u = float(rng.random())
        if self.kind == "uniform":
            return self.low + (self.high - self.low) * u
        return math.exp(math.log(self.low) + (math.log(self.high) - math.log(self.low)) * u)


@dataclasses.dataclass(frozen=True)
class Group:
    """One static combination: ``static`` maps job keys to values; compiled once."""

    index: int
    static: dict
    job: Any  # the resolved job config (frozen dataclass)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep (what :func:`load_sweep` returns)."""

    section: SweepSection
    dynamic: tuple[Axis, ...]
    static: tuple[tuple[str, tuple], ...]
    raw: dict  # the parsed TOML, for plan.json / spec_hash
    source: str | None = None

    # convenience views
    @property
    def name(self) -> str:
        return self.section.name

    @property
    def n_configs(self) -> int:
        if self.section.search == "grid":
            return math.prod(len(a.values) for a in self.dynamic) if self.dynamic else 1
        return self.section.n_samples

    @property
    def n_groups(self) -> int:
        return math.prod(len(v) for _, v in self.static) if self.static else 1

    @property
    def members_per_group(self) -> int:
        return self.n_configs * self.section.n_seeds

    @property
    def n_members(self) -> int:
        return self.n_groups * self.members_per_group

    def groups(self) -> list[Group]:
        """The static combinations, each with its resolved job config."""
        keys = [k for k, _ in self.static]
        combos = itertools.product(*[v for _, v in self.static]) if self.static else [()]
        return [Group(i, dict(zip(keys, combo)), self._job(dict(zip(keys, combo))))
                for i, combo in enumerate(combos)]

    def _job(self, static: dict):
        s = self.section
        data: dict = {}
        if s.preset or s.config:
            from jaxhedge.train.jobs import preset_path

            path = Path(s.config) if s.config else preset_path(s.agent, s.preset)
            if not path.is_file():
                raise ConfigError(f"sweep.{'config' if s.config else 'preset'}: no such file {path}")
            data = read_toml(path)
        data = apply_overrides(data, s.set)
        for key, value in static.items():
            node = data
            *parents, last = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"static.{key}: {p} is a value, not a table")
            node[last] = value
        return from_dict(_jobs()[s.agent], data)

    def n_steps_for(self, job) -> int:
        return self.section.n_steps or job.train.n_steps

    def chunk_for(self, job) -> int:
        n = self.n_steps_for(job)
        return min(self.section.chunk or n, n)


def hparam_leaves(hparams) -> dict[str, Any]:
    """``{"env.costs.proportional": leaf, ...}``: the hparams pytree's leaves by dotted path."""
    import jax

    return {jax.tree_util.keystr(p, simple=True, separator="."): leaf
            for p, leaf in jax.tree_util.tree_flatten_with_path(hparams)[0]}


def _flatten_axes(table: dict, prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables -> dotted names; a table with ``distribution`` is an axis."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "distribution" not in value:
            out.update(_flatten_axes(value, name + "."))
        else:
            out[name] = value
    return out


def _parse_axis(name: str, value, search: str) -> Axis:
    where = f"dynamic.{name}"
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: needs at least one value")
        return Axis(name, "grid", tuple(value))
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a list of grid values or a table with "
                          f"distribution = one of {DISTRIBUTIONS} (got {value!r})")
    a = from_dict(_AxisSection, value, where)
    if search == "grid":
        raise ConfigError(f"{where}: a distribution needs search = 'random' or 'optuna' "
                          f"(or give grid values as a list)")
    if a.distribution == "choice":
        if not a.values:
            raise ConfigError(f"{where}.values: choice needs at least one value")
        return Axis(name, "choice", tuple(a.values))
    if a.low is None or a.high is None or not a.low < a.high:
        raise ConfigError(f"{where}: {a.distribution} needs low < high (got low={a.low}, "
                          f"high={a.high})")
    if a.distribution == "loguniform" and a.low <= 0:
        raise ConfigError(f"{where}.low: loguniform needs low > 0 (got {a.low})")
    return Axis(name, a.distribution, low=a.low, high=a.high)


def load_sweep(path: str | Path, overrides=()) -> SweepSpec:
    """Read and validate a sweep file (``overrides``: ``sweep.n_steps=10`` style).

    Raises ConfigError (a ValueError) with one line naming the field: unknown keys (with a
    suggestion), an agent without a training job, a dynamic axis that is not a leaf of the
    hparams pytree (static settings are told to move to ``[static]``), unknown metrics.
    """
    data = read_toml(path, "sweep file")
    return spec_from_dict(apply_overrides(data, overrides), source=str(path))


def spec_from_dict(data: dict, source: str | None = None) -> SweepSpec:
    parsed = from_dict(_SweepFile, data)
    s = parsed.sweep
    jobs = _jobs()
    if s.agent not in jobs:
        extra = " (qlbs is priced, not trained)" if s.agent == "qlbs" else ""
        raise ConfigError(f"sweep.agent: {s.agent!r} cannot be swept{extra}; choose one of "
                          f"{sorted(jobs)}")
    axes = tuple(_parse_axis(n, v, s.search) for n, v in _flatten_axes(parsed.dynamic).items())
    static = []
    for key, values in _flatten_axes(parsed.static).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"static.{key}: expected a non-empty list of values (got {values!r})")
        static.append((key, tuple(values)))
    spec = SweepSpec(s, axes, tuple(static), data, source)
    _validate(spec)
    return spec


def _validate(spec: SweepSpec) -> None:
    """Check the dynamic axes and metrics against the first group's agent and hparams."""
    import jax

    from jaxhedge.train.loop import make_train

    groups = spec.groups()  # builds every static combination: bad static values fail here
    job = groups[0].job
    agent, hp = job.build()
    leaves = hparam_leaves(hp)
    agent_fields = {f.name for f in dataclasses.fields(agent)} if dataclasses.is_dataclass(agent) else set()
    job_fields = {f"{sec.name}.{f.name}" for sec in dataclasses.fields(job)
                  if dataclasses.is_dataclass(getattr(job, sec.name))
                  for f in dataclasses.fields(getattr(job, sec.name))}
    for axis in spec.dynamic:
        if axis.name in leaves:
            if np.ndim(leaves[axis.name]) != 0:
                raise ConfigError(f"dynamic.{axis.name}: is not a scalar hparam (shape "
                                  f"{np.shape(leaves[axis.name])})")
            continue
        tail = axis.name.partition(".")[2]
        if tail in leaves:
            raise ConfigError(f"dynamic.{axis.name}: name hparams by their path in the hparams "
                              f"pytree, without the job section: {tail!r}")
        short = axis.name.split(".")[-1]
        if axis.name in job_fields or short in agent_fields or axis.name.startswith("agent."):
            raise ConfigError(f"dynamic.{axis.name}: is static (it configures the agent and "
                              f"shapes the compiled program, it is not a leaf of the hparams "
                              f"pytree); list it under [static] as a job key")
        near = difflib.get_close_matches(axis.name, list(leaves), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(leaves)})"
        raise ConfigError(f"dynamic.{axis.name}: not an hparam of {spec.section.agent}{hint}")
    train = make_train(agent, 1)
    ts = jax.eval_shape(train.init, jax.random.key(0), hp)
    metrics = jax.eval_shape(train.train_chunk, ts, hp)[1]
    for m in spec.section.metrics:
        if m not in metrics:
            raise ConfigError(f"sweep.metrics: {m!r} is not a metric of {spec.section.agent} "
                              f"(choose from {sorted(metrics)})")


def member_configs(spec: SweepSpec, config_ids) -> dict[str, np.ndarray]:
    """Values of every dynamic axis for hyperparameter sets ``config_ids`` (vectorised)."""
    config_ids = np.asarray(config_ids, dtype=np.int64)
    out: dict[str, list] = {a.name: [] for a in spec.dynamic}
    if spec.section.search == "grid":
        sizes = [len(a.values) for a in spec.dynamic]
        for c in config_ids:
            idx = np.unravel_index(int(c), sizes) if sizes else ()
            for a, i in zip(spec.dynamic, idx):
                out[a.name].append(a.values[int(i)])
    else:
        for c in config_ids:
            rng = np.random.default_rng([spec.section.seed, int(c)])
            for a in spec.dynamic:
                out[a.name].append(a.sample(rng))
    return {k: np.asarray(v) for k, v in out.items()}


def spec_hash(spec: SweepSpec) -> str:
    """Hash of the parsed sweep file: a sweep directory belongs to one spec."""
    return hashlib.sha256(json.dumps(spec.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def spec_dict(spec: SweepSpec) -> dict:
    return {"section": to_dict(spec.section), "dynamic": [dataclasses.asdict(a) for a in spec.dynamic],
            "static": [[k, list(v)] for k, v in spec.static], "source": spec.source}
