"""What a learning agent is, so one trainer (``jaxhedge.train``) serves them all.

A learning agent is a frozen, hashable Python object holding its STATIC configuration
(shapes, network widths, objective names, number of parallel environments) and four pure
methods. Everything numeric that may be swept lives in the ``hparams`` pytree (a
``flax.struct.dataclass`` of scalars), so ``jax.vmap`` over seeds and hyperparameters works:

    agent.default_hparams() -> HParams                      # dynamic, vmappable
    agent.init(key, hparams) -> AgentState                  # pytree: params, opt state, ...
    agent.update(key, state, hparams) -> (AgentState, dict[str, Array])   # one iteration
    agent.hedger(state, hparams) -> hedger                  # pytree-callable obs -> shares
    agent.price(state, hparams, obs) -> Array               # the agent's own price, if any

``update`` is one training iteration (simulate a batch, compute the loss, one optimizer
step) and must be jittable with no host callbacks, so the trainer can ``lax.scan`` it.
The metrics dict has scalar values with the same keys every iteration (it is stacked by
the scan); ``"loss"`` is always present. The hedger returned by :meth:`hedger` works with
:func:`jaxhedge.rollout.rollout`, exactly like the classical hedgers.

Networks are flax NNX modules split once into ``(graphdef, params)`` (:mod:`jaxhedge.nets`);
the agent keeps the graphdef as static config and the params as a plain pytree in
``AgentState``, so the compiled loop never sees NNX objects.
"""
from __future__ import annotations

from typing import Any, Protocol

import jax


class LearningAgent(Protocol):
    name: str

    def default_hparams(self) -> Any: ...

    def init(self, key: jax.Array, hparams: Any) -> Any: ...

    def update(self, key: jax.Array, state: Any, hparams: Any) -> tuple[Any, dict]: ...

    def hedger(self, state: Any, hparams: Any) -> Any: ...
