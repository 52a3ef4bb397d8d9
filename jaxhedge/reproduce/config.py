"""The study's configuration (``experiments/paper/study.toml``), loaded strictly.

Every choice the papers leave open that changes a number lives here or in
experiments/paper/README.md; the CLI flags of ``jaxhedge reproduce`` only select subsets
(parts, models, assets, periods) and agents.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxhedge.config import load_config

__all__ = ["AgentTraining", "StudyConfig", "load_study_config", "DEFAULT_CONFIG",
           "MODELS", "PARTS", "MODEL_LABELS", "AGENT_OF_MODEL"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "paper" / "study.toml"
MODELS = ("bs", "jd", "sv", "aqlbs", "rlop")
PARTS = ("static", "hedging")
#: table labels (the papers' names). "QLBS" is the papers' network agent, Adaptive-QLBS.
MODEL_LABELS = {"bs": "BS", "jd": "JD", "sv": "SV", "aqlbs": "AQLBS", "rlop": "RLOP"}
#: which trained agent (``jaxhedge train --agent``) provides each RL model.
AGENT_OF_MODEL = {"aqlbs": "adaptive-qlbs", "rlop": "rlop"}


@dataclasses.dataclass(frozen=True)
class AgentTraining:
    """How ``reproduce`` trains an agent when no ``--agents`` run is given.

    Attributes:
      preset: ``experiments/<agent>/<preset>.toml`` (the ``study`` presets stop early on
        their ``[validation]`` criterion, so ``n_steps`` is a cap).
      n_steps: updates (overrides the preset's ``train.n_steps``; 0 keeps the preset's).
      overrides: further ``--set``-style overrides of the preset.
    """

    preset: str = "study"
    n_steps: int = 0
    overrides: tuple[str, ...] = ()

    def __post_init__(self):
        if self.n_steps < 0:
            raise ValueError(f"n_steps: must be >= 0 (got {self.n_steps})")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Attributes:
      cost: proportional cost eps of the hedging backtest (METHODS §5.6: 4e-3).
      x64: run calibration and backtests in float64 (agents stay float32 networks).
      calib_iters: Levenberg-Marquardt iterations per start for BS / JD / SV / surfaces.
      surface_methods: how the RL surfaces are fitted (``calibrate.surface.METHODS``):
        the first is the one the hedging study uses and is labelled by the model's name in
        the static table; each further one adds static rows "<MODEL> (<fit>)" side by side.
      aqlbs, rlop: training of the RL agents when ``--agents`` does not provide them.
    """

    cost: float = 4e-3
    x64: bool = True
    calib_iters: int = 30
    surface_methods: tuple[str, ...] = ("authors-lm", "authors", "lm")
    aqlbs: AgentTraining = AgentTraining()
    rlop: AgentTraining = AgentTraining()

    def __post_init__(self):
        if not 0 <= self.cost < 1:
            raise ValueError(f"cost: must be in [0, 1) (got {self.cost})")
        if not 1 <= self.calib_iters <= 1000:
            raise ValueError(f"calib_iters: must be in [1, 1000] (got {self.calib_iters})")
        from jaxhedge.calibrate.surface import METHODS

        sm = self.surface_methods
        if (not isinstance(sm, tuple) or not sm or len(set(sm)) != len(sm)
                or not set(sm) <= set(METHODS)):
            raise ValueError(f"surface_methods: must be distinct entries of "
                             f"{', '.join(METHODS)} (got {sm!r})")


def load_study_config(path: str | Path | None = None, overrides=()) -> StudyConfig:
    """``experiments/paper/study.toml`` (or ``path``) with ``--set``-style overrides."""
    return load_config(StudyConfig, path if path is not None else DEFAULT_CONFIG, overrides)
