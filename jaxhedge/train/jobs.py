"""Training jobs: a typed TOML config per learning agent -> ``(agent, hparams)``.

A job config has the sections ``[agent]`` (the agent's own frozen dataclass of static
settings), agent-specific sections (``[hparams]``, or ``[contract]`` for deep hedging) and
``[train]`` (:class:`jaxhedge.config.TrainConfig`). Presets are TOML files under
``experiments/<agent>/<preset>.toml`` in the source tree; ``--set section.key=value``
overrides any field.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS, AdaptiveQLBSHParams
from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.agents.qlbs import QLBSConfig, QLBSParams
from jaxhedge.agents.rlop import RLOP, RLOPHParams
from jaxhedge.config import TrainConfig, load_config
from jaxhedge.ledger import CostModel
from jaxhedge.markets import market_spec
from jaxhedge.markets.mixture import ScenarioMixture, check_mixture
from jaxhedge.train.validation import ValidationConfig
from jaxhedge.validate import prng_key

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@dataclasses.dataclass(frozen=True)
class ContractSection:
    """Market and contract numbers; the market's other parameters are the built-in ones
    of the market's ``MarketSpec.default_params``. ``strike = 0`` means at the money (= s0)."""

    s0: float = 100.0
    strike: float = 0.0
    maturity: float = 30 / 252
    rate: float = 0.0
    sigma: float = 0.2
    mu: float = 0.0
    cost: float = 0.0

    def __post_init__(self):
        for name, ok, allowed in (("s0", self.s0 > 0, "> 0"), ("strike", self.strike >= 0, ">= 0"),
                                  ("maturity", self.maturity > 0, "> 0"),
                                  ("sigma", self.sigma > 0, "> 0"),
                                  ("cost", 0 <= self.cost < 1, "in [0, 1)")):
            if not ok:
                raise ValueError(f"{name}: must be {allowed} (got {getattr(self, name)!r})")


@dataclasses.dataclass(frozen=True)
class MixtureSection:
    """``[mixture]``: train on a stress-scenario mixture (:mod:`jaxhedge.markets.mixture`)
    instead of the contract's market. Empty ``scenarios`` (the default) = plain training."""

    scenarios: tuple[str, ...] = ()
    calm_weight: float = 0.25
    max_severity: float = 1.5

    def __post_init__(self):
        if self.scenarios:
            try:
                check_mixture(self.scenarios, self.calm_weight, self.max_severity)
            except ValueError as err:  # the config loader prefixes the section name
                raise ValueError(str(err).removeprefix("mixture.")) from None


@dataclasses.dataclass(frozen=True)
class DeepHedgingJob:
    """``[agent]`` is :class:`~jaxhedge.agents.deep_hedging.DeepHedging` itself (its
    environment in ``[agent.env]``); ``[contract]`` the market and contract numbers;
    ``[mixture]`` optional robust training on stress scenarios."""

    agent: DeepHedging = DeepHedging()
    contract: ContractSection = ContractSection()
    train: TrainConfig = TrainConfig()
    mixture: MixtureSection = MixtureSection()

    def build(self):

        c = self.contract
        agent = self.agent
        if self.mixture.scenarios:
            m = self.mixture
            # the name is the one robust runs always had (run.json's agent_name)
            agent = dataclasses.replace(
                agent, name="deep_hedging_robust",
                path_sampler=ScenarioMixture(m.scenarios, m.calm_weight, m.max_severity))
        hparams = agent.default_hparams(
            market_spec(agent.env.market).default_params(c.s0, c.mu, c.sigma),
            strike=c.strike or c.s0, maturity=c.maturity, rate=c.rate,
            costs=CostModel(proportional=c.cost))
        return agent, hparams


@dataclasses.dataclass(frozen=True)
class AdaptiveQLBSJob:
    """``[agent]`` is :class:`~jaxhedge.agents.adaptive_qlbs.AdaptiveQLBS` (static settings);
    ``[hparams]`` its :class:`~jaxhedge.agents.adaptive_qlbs.AdaptiveQLBSHParams`
    (``learning_rate``, ``risk_aversion``) with the training distribution in
    ``[hparams.contracts]`` (:class:`jaxhedge.contracts.ContractDistribution`; a key missing
    there takes that class's default, so the presets list every field); ``[train]``;
    ``[validation]`` the early-stopping criterion
    (:class:`~jaxhedge.train.validation.ValidationConfig`, off unless ``enabled``).
    Presets: ``experiments/adaptive_qlbs/{paper,smoke,study}.toml``."""

    agent: AdaptiveQLBS = AdaptiveQLBS()
    hparams: AdaptiveQLBSHParams = AdaptiveQLBSHParams()
    train: TrainConfig = TrainConfig()
    validation: ValidationConfig = ValidationConfig()

    def __post_init__(self):
        try:
            self.hparams.contracts.validate()
        except ValueError as err:  # "contracts.x: ..." -> "hparams.contracts.x: ..."
            raise ValueError(f"hparams.{err}") from None

    def build(self) -> tuple[AdaptiveQLBS, AdaptiveQLBSHParams]:
        return self.agent, self.hparams


@dataclasses.dataclass(frozen=True)
class QLBSSeeds:
    seed: int = 0
    n_seeds: int = 5


@dataclasses.dataclass(frozen=True)
class QLBSJob:
    """Halperin's QLBS is priced, not trained: ``[config]`` (static), ``[params]`` (the
    contract and lambda), ``[train]`` the seeds (``n_seeds`` Monte Carlo runs)."""

    config: QLBSConfig = QLBSConfig()
    params: QLBSParams = QLBSParams()
    train: QLBSSeeds = QLBSSeeds()


@dataclasses.dataclass(frozen=True)
class RLOPJob:
    """``jaxhedge train --agent rlop``: ``[agent]`` the :class:`~jaxhedge.agents.rlop.RLOP`
    fields, ``[hparams]`` the learning rates, ``[hparams.contracts]`` the training
    distribution (:class:`~jaxhedge.contracts.ContractDistribution` fields), ``[train]``,
    ``[validation]`` the early-stopping criterion (off unless ``enabled``)."""

    agent: RLOP = RLOP()
    hparams: RLOPHParams = RLOPHParams()
    train: TrainConfig = TrainConfig()
    validation: ValidationConfig = ValidationConfig()

    def __post_init__(self):
        try:
            self.hparams.contracts.validate()
        except ValueError as err:  # the config loader reports it as one line
            raise ValueError(f"hparams.{err}") from None

    def build(self) -> tuple[RLOP, RLOPHParams]:
        return self.agent, self.hparams


JOBS = {"deep-hedging": DeepHedgingJob, "rlop": RLOPJob, "adaptive-qlbs": AdaptiveQLBSJob,
        "qlbs": QLBSJob}


def preset_path(agent: str, preset: str) -> Path:
    return EXPERIMENTS / agent.replace("-", "_") / f"{preset}.toml"


def load_job(agent: str, preset: str | None = None, config: str | Path | None = None,
             overrides=()):
    """The resolved job config for ``agent`` from a preset name or a TOML file, plus overrides."""
    if agent not in JOBS:
        raise ValueError(f"agent: {agent!r} has no training job yet; choose one of {sorted(JOBS)}")
    path = Path(config) if config else (preset_path(agent, preset) if preset else None)
    if path is not None and not path.is_file():
        raise ValueError(f"{'config' if config else 'preset'}: no such file {path}")
    return load_config(JOBS[agent], path, overrides)


def load_preset_or_file(agent: str, name_or_path, overrides=()):
    """:func:`load_job` from either a preset name (``"paper"``) or a TOML path (anything
    with a suffix): what the agents' ``load_preset`` helpers take."""
    as_path = Path(name_or_path).suffix != ""
    return load_job(agent, None if as_path else str(name_or_path),
                    name_or_path if as_path else None, overrides)


def run_qlbs(job, run_dir: str | Path) -> dict:
    """Price with QLBS over ``job.train.n_seeds`` seeds; writes ``RUN_DIR/run.json``."""
    import time

    import jax
    import numpy as np

    from jaxhedge.agents.qlbs import qlbs_price_multi
    from jaxhedge.config import to_dict
    from jaxhedge.runinfo import atomic_write_json, run_metadata

    base = prng_key(job.train.seed)  # all 64 bits of the seed
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, np.arange(job.train.n_seeds))
    t0 = time.perf_counter()
    compiled = qlbs_price_multi.lower(keys, job.config, job.params).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = jax.block_until_ready(compiled(keys, job.params))
    wall_s = time.perf_counter() - t0
    prices = np.asarray(result.price, np.float64)
    info = {"agent_name": "qlbs", "config": to_dict(job), "status": "done",
            "prices": prices.tolist(), "price": float(prices.mean()),
            "price_std": float(prices.std(ddof=1)) if prices.size > 1 else 0.0,
            "bs_price": float(np.asarray(result.bs_price).ravel()[0]),
            "identity_gap": float(np.max(np.abs(-np.asarray(result.q0).mean(axis=-1)
                                                - np.asarray(result.check)))),
            "wall_s": wall_s, "compile_s": compile_s, **run_metadata()}
    atomic_write_json(Path(run_dir) / "run.json", info)
    return info
