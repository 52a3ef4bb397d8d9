"""``run.json``: what a finished (or stopped) training run records.

Besides the settings, metrics and provenance, every member's price of the agent's own
evaluation contract, through the agent protocol (:mod:`jaxhedge.agents.base`)::

    price[h][s] = agent.price(state[h, s], hparams[h], agent.evaluation_contract(hparams[h]))

``evaluation_contract`` runs on the host (it may read hparams as Python numbers), once per
hparam set; ``price`` is jitted and vmapped over the seeds. An agent lacking either method
gets ``"price": null`` and a ``price_error`` naming the missing method; a pricing failure is
recorded the same way, never raised (the run is not lost to its report).
"""
from __future__ import annotations

import time

import jax
import numpy as np

from jaxhedge.agents.base import missing_methods
from jaxhedge.codec import params_sha256
from jaxhedge.runinfo import run_metadata

__all__ = ["run_info", "agent_prices"]


def run_info(agent, train_state, hparams, static: dict, step: int, resumed_from, last_rows,
             wall_s: float, compile_s: float, error, stop_reason: str | None = None) -> dict:
    """The content of ``run.json`` (``error``: the NonFiniteError that stopped it, or None;
    ``stop_reason``: why a callback ended it before ``n_steps``, or None)."""
    info = {
        "status": "non_finite" if error is not None else "completed",
        "error": str(error) if error is not None else None,
        "config": static["config"],
        "agent_name": static["agent_name"],
        "agent": static["agent"],
        "hparams": {jax.tree_util.keystr(p): np.asarray(v).tolist()
                    for p, v in jax.tree_util.tree_flatten_with_path(hparams)[0]},
        "seed": static["seed"], "n_seeds": static["n_seeds"],
        "n_hparam_sets": static["n_hparam_sets"],
        "n_members": static["n_hparam_sets"] * static["n_seeds"],
        "n_steps": static["n_steps"], "chunk": static["chunk"],
        "step": step, "resumed_from": resumed_from, "stop_reason": stop_reason,
        "wall_s": wall_s, "compile_s": compile_s,
        "final_metrics": last_rows,
        "params_sha256": params_sha256(train_state.agent_state),
        **run_metadata(),
    }
    info.update(agent_prices(agent, train_state.agent_state, hparams))
    return info


def agent_prices(agent, agent_state, hparams) -> dict:
    """``{"price": [H][S], "price_contract": [H] contract descriptions, "price_s"}``, or
    ``{"price": None, "price_error": "..."}``.

    ``agent_state`` leaves are ``(H, S, ...)``, ``hparams`` leaves ``(H, ...)``.
    """
    missing = [m for m in missing_methods(agent) if m in ("price", "evaluation_contract")]
    if missing:
        return {"price": None,
                "price_error": f"{type(agent).__name__} lacks {', '.join(missing)} "
                               f"(the agent protocol, jaxhedge.agents.base)"}
    t0 = time.perf_counter()
    try:
        price = jax.jit(jax.vmap(agent.price, in_axes=(0, None, None)))
        n_sets = int(jax.tree.leaves(agent_state)[0].shape[0])
        prices, contracts = [], []
        for h in range(n_sets):
            hp_h = jax.tree.map(lambda x: np.asarray(x)[h], hparams)
            contract = agent.evaluation_contract(hp_h)
            state_h = jax.tree.map(lambda x: x[h], agent_state)
            prices.append(np.asarray(price(state_h, hp_h, contract)).tolist())
            contracts.append(contract.describe())
        return {"price": prices, "price_contract": contracts,
                "price_s": time.perf_counter() - t0}
    except Exception as err:  # noqa: BLE001 - pricing is a report, never lose the run to it
        return {"price": None, "price_error": f"{type(err).__name__}: {err}".splitlines()[0]}
