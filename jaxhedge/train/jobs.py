"""Training jobs: a typed TOML config per learning agent -> ``(agent, hparams)``.

A job config has the sections ``[agent]`` (the agent's static settings), ``[env]`` (market
kind, rebalancing dates, option type), ``[contract]`` (the market and contract numbers) and
``[train]`` (:class:`jaxhedge.config.TrainConfig`). Presets are TOML files under
``experiments/<agent>/<preset>.toml`` in the source tree; ``--set section.key=value``
overrides any field.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxhedge.config import TrainConfig, load_config
from jaxhedge.env import EnvConfig
from jaxhedge.ledger import CostModel

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@dataclasses.dataclass(frozen=True)
class EnvSection:
    market: str = "gbm"
    n_steps: int = 20
    option: str = "call"

    def build(self) -> EnvConfig:
        return EnvConfig(market=self.market, n_steps=self.n_steps, option=self.option)


@dataclasses.dataclass(frozen=True)
class ContractSection:
    """Market and contract numbers; the market's other parameters are the built-in ones
    of :func:`jaxhedge.hedge.default_market`. ``strike = 0`` means at the money (= s0)."""

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
class DeepHedgingSection:
    n_paths: int = 2048
    widths: tuple[int, ...] = (32, 32)
    objective: str = "entropic"
    band: bool = False
    alpha: float = 0.05
    risk_aversion: float = 1.0
    learning_rate: float = 1e-3


@dataclasses.dataclass(frozen=True)
class DeepHedgingJob:
    agent: DeepHedgingSection = DeepHedgingSection()
    env: EnvSection = EnvSection()
    contract: ContractSection = ContractSection()
    train: TrainConfig = TrainConfig()

    def build(self):
        from jaxhedge.agents.deep_hedging import DeepHedging
        from jaxhedge.hedge import default_market

        agent = DeepHedging(env=self.env.build(), **dataclasses.asdict(self.agent))
        c = self.contract
        hparams = agent.default_hparams(
            default_market(self.env.market, s0=c.s0, mu=c.mu, sigma=c.sigma),
            strike=c.strike or c.s0, maturity=c.maturity, rate=c.rate,
            costs=CostModel(proportional=c.cost))
        return agent, hparams


def _rlop_job():
    from jaxhedge.agents.rlop import RLOPPreset
    return RLOPPreset


def _adaptive_qlbs_job():
    from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBSPreset
    return AdaptiveQLBSPreset


JOBS = {"deep-hedging": DeepHedgingJob, "rlop": _rlop_job, "adaptive-qlbs": _adaptive_qlbs_job}


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
    job = JOBS[agent]
    job = job if isinstance(job, type) else job()  # lazily imported job classes
    return load_config(job, path, overrides)
