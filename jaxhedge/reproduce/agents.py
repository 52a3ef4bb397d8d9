"""The trained RL agents of the study: given as run directories, or trained on demand.

"QLBS" in the papers' tables is their network agent, Adaptive-QLBS (METHODS §4.2), and
"RLOP" is RLOP (§4.3); both price as a BS price at a learned, state-dependent vol, so
both give a differentiable surface for :func:`jaxhedge.calibrate.surface.fit_surface`.
Classic Halperin QLBS (§4.4) prices one contract per Monte Carlo DP run and has no
surface to calibrate (docs/calibration.md).

The surface is the agent's price at cost input eps = 0: market quotes (``C_eur``, mids)
carry no trading cost, so the static fit and the surface delta use the frictionless
price; policy mode feeds the study's eps to the policy, which trades at that cost.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from jaxhedge.reproduce.config import AGENT_OF_MODEL, StudyConfig

__all__ = ["TrainedAgent", "load_agents", "train_agents", "model_of_agent"]

_MODEL_OF_AGENT_NAME = {"adaptive_qlbs": "aqlbs", "adaptive-qlbs": "aqlbs", "rlop": "rlop"}


@dataclasses.dataclass
class TrainedAgent:
    """One trained agent and its price surface (``price_fn`` for ``fit_surface``)."""

    model: str
    run_dir: Path
    agent: Any
    hparams: Any
    state: Any
    price_fn: Callable


def model_of_agent(agent) -> str:
    name = getattr(agent, "name", type(agent).__name__)
    try:
        return _MODEL_OF_AGENT_NAME[name]
    except KeyError:
        raise ValueError(f"--agents: a {name} run cannot serve the study; give Adaptive-QLBS "
                         f"(model aqlbs) or RLOP (model rlop) runs") from None


def _load(run_dir: Path) -> TrainedAgent:
    from jaxhedge.calibrate.surface import agent_price_fn
    from jaxhedge.runs import load_trained

    agent, hparams, state = load_trained(run_dir)
    model = model_of_agent(agent)
    return TrainedAgent(model, Path(run_dir), agent, hparams, state,
                        agent_price_fn(agent, state, cost=0.0))


def load_agents(run_dirs) -> dict[str, TrainedAgent]:
    """``{model: TrainedAgent}`` of the given run directories (one per model at most)."""
    out: dict[str, TrainedAgent] = {}
    for rd in run_dirs:
        rd = Path(rd)
        if not (rd / "checkpoints").is_dir():
            raise ValueError(f"--agents: no trained run at {rd}")
        ta = _load(rd)
        if ta.model in out:
            raise ValueError(f"--agents: two runs for model {ta.model} ({out[ta.model].run_dir}, "
                             f"{rd}); give one")
        out[ta.model] = ta
    return out


def _last(val: dict, key: str):
    """``key`` of the last evaluation's worst member (score: the row's)."""
    last = val.get("last") or {}
    if key == "score":
        return last.get("score", float("nan"))
    return next((m.get(key) for m in last.get("members", []) if m.get(key)), None)


def train_agents(models, config: StudyConfig, out: Path, log=print) -> dict[str, Path]:
    """Train each RL model of ``models`` with its ``config`` preset into ``out/agents/<model>``.

    A finished run already there (``run.json`` present) is reused, so re-running the study
    does not retrain; delete the directory to train afresh. A preset with an enabled
    ``[validation]`` section stops early on it (the trainer reads the section from the
    run's config); the log says where and why.
    """
    from jaxhedge.config import to_dict
    from jaxhedge.train import run_training
    from jaxhedge.train.jobs import load_job

    dirs = {}
    for model in models:
        spec = getattr(config, model)
        run_dir = Path(out) / "agents" / model
        dirs[model] = run_dir
        if (run_dir / "run.json").exists():
            log(f"using the trained {model} agent in {run_dir}")
            continue
        overrides = list(spec.overrides)
        if spec.n_steps:
            overrides.append(f"train.n_steps={spec.n_steps}")
        job = load_job(AGENT_OF_MODEL[model], spec.preset, None, overrides)
        agent, hparams = job.build()
        log(f"training {AGENT_OF_MODEL[model]} ({spec.preset} preset, at most "
            f"{job.train.n_steps} updates) into {run_dir}")
        info = run_training(agent, hparams, run_dir=run_dir, config=to_dict(job),
                            **dataclasses.asdict(job.train)).info
        val = info.get("validation") or {}
        met = val.get("met_at_step")
        log(f"{model}: {info['step']:,} updates in {info['wall_s']:.0f}s; "
            + (f"validation criterion met at step {met:,}" if met is not None else
               f"validation criterion NOT met ({info.get('stop_reason') or 'update cap'}; "
               f"last score {_last(val, 'score'):.3g}, needs <= 1; gates failed: "
               f"{', '.join(_last(val, 'gates_failed') or []) or 'not run'})"
               if val else "no validation criterion"))
    return dirs
