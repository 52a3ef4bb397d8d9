"""Reading run directories: the trained agent of a member, ``run.json``, the contract
``eval`` and ``stress`` hedge it on.

The layer above :mod:`jaxhedge.train` and below its users (``eval``, ``stress``,
``reproduce``, the sweep, the user API): they load runs through here and never import
the trainer. Loading trusts nothing in the directory: the agent is rebuilt from registered
classes only (:mod:`jaxhedge.codec`), and a damaged newest checkpoint falls back to the
newest intact one with a warning (:func:`jaxhedge.train.checkpoint.restore_newest`).

Run directory layout: see :mod:`jaxhedge.train.runner`.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from jaxhedge.markets import market_spec
from jaxhedge.codec import SpecError, params_sha256
from jaxhedge.env import EnvConfig, HedgingEnv, reference_premium
from jaxhedge.train.checkpoint import (CheckpointMismatch, Checkpointer, CorruptCheckpoint,
                                       restore_newest)
from jaxhedge.train.callbacks import read_metrics
from jaxhedge.train.runner import RunDirError

__all__ = ["load_trained", "read_run_info", "read_metrics", "evaluation_setup", "check_run",
           "check_agent", "RunDirError", "params_sha256"]


def load_trained(run_dir: str | Path, member: int = 0):
    """``(agent, hparams, agent_state)`` of one member of the newest intact checkpoint.

    ``member`` indexes the flattened (hparam set, seed) block, ``m = h * n_seeds + s``.
    Arrays come back as host (numpy) arrays.

    Raises:
      RunDirError: no checkpoint, an unreadable one (naming the file), an agent spec that
        names an unregistered class, or ``member`` out of range; one line.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints").is_dir():
        raise RunDirError(f"{run_dir}: no checkpoint found")
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        restored = restore_newest(ckpt)
    except (CorruptCheckpoint, CheckpointMismatch, SpecError) as err:
        raise RunDirError(str(err).splitlines()[0]) from None
    finally:
        ckpt.close()
    if restored is None:
        raise RunDirError(f"{run_dir}: no checkpoint found")
    meta = restored.meta
    n_seeds, n_sets = int(meta["n_seeds"]), int(meta["n_hparam_sets"])
    if not (isinstance(member, (int, np.integer)) and 0 <= member < n_sets * n_seeds):
        raise RunDirError(f"member: must be in [0, {n_sets * n_seeds}) (got {member})")
    h, s = divmod(int(member), n_seeds)
    # host copies: restored arrays are committed to one device, and evaluation may shard
    # over all of them (rollout's shard_map)
    pick = lambda tree, *idx: jax.tree.map(lambda a: np.asarray(a[idx]), tree)  # noqa: E731
    return (restored.agent, pick(restored.hparams, h),
            pick(restored.train_state.agent_state, h, s))


def read_run_info(run_dir: str | Path) -> dict:
    """The content of ``RUN_DIR/run.json`` (RunDirError naming the file if unreadable)."""
    path = Path(run_dir) / "run.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: no run.json (the run never finished a chunk?)") from None
    except (OSError, ValueError) as err:
        raise RunDirError(f"{path}: unreadable ({str(err).splitlines()[0]})") from None
    if not isinstance(info, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def evaluation_setup(agent, hparams, market: str | None):
    """(env, params) of the agent's evaluation contract, optionally on another market kind.

    The contract is the agent's own training environment when its hparams hold one
    (deep hedging), else ``agent.evaluation_contract(hparams)``: a
    :class:`~jaxhedge.contracts.Contract`.
    Another market keeps s0, the drift and the calm vol (``MarketSpec.calm_vol``) of the
    training market and takes the rest from the other market's ``default_params``; the
    premium is that market's reference price.
    """
    if hasattr(hparams, "env") and hasattr(agent, "env"):
        config, params = agent.env, hparams.env
    elif hasattr(agent, "evaluation_contract"):
        env, params = agent.evaluation_contract(hparams).env()
        config = env.config
    else:
        raise ValueError(f"run_dir: {type(agent).__name__} has no evaluation contract")
    if market is not None and market != config.market:
        m = params.market
        sigma = market_spec(config.market).calm_vol(m)
        config = EnvConfig(market=market, n_steps=config.n_steps, option=config.option)
        params = params.replace(market=market_spec(market).default_params(
            float(m.s0), float(m.mu), float(sigma)))
        params = params.replace(premium=reference_premium(config, params))
    return HedgingEnv(config), params


def check_run(run_dir: str | Path, member: int = 0, spec=None) -> list:
    """The sanity gates (:mod:`jaxhedge.gates`) of one member of a trained run.

    Returns the :class:`~jaxhedge.gates.GateResult` list in :data:`~jaxhedge.gates.GATES`
    order; an agent without the full protocol fails a ``protocol`` check instead.
    """
    return check_agent(*load_trained(run_dir, member), spec)


def check_agent(agent, hparams, state, spec=None) -> list:
    """:func:`check_run` for an agent already loaded (``eval`` and ``stress`` gate every
    agent they load without reading the checkpoint twice)."""
    from jaxhedge import gates
    from jaxhedge.agents.base import missing_methods

    missing = missing_methods(agent)
    if missing:
        return [gates.GateResult("protocol", False, float(len(missing)),
                                 f"{type(agent).__name__} lacks {', '.join(missing)}")]
    return gates.agent_gates(agent, hparams, state, spec or gates.GateSpec())
