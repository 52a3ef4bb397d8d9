"""What an agent is, so one trainer (``jaxhedge.train``), ``eval``, ``stress``, the sweep and
the user API (:mod:`jaxhedge.api`) serve them all.

A learning agent is a frozen, hashable Python object holding its STATIC configuration
(shapes, network widths, objective names, number of parallel environments) and pure
methods. Everything numeric that may be swept lives in the ``hparams`` pytree (a
``flax.struct.dataclass`` of scalars), so ``jax.vmap`` over seeds and hyperparameters works:

    agent.default_hparams() -> HParams                      # dynamic, vmappable
    agent.init(key, hparams) -> AgentState                  # pytree: params, opt state, ...
    agent.update(key, state, hparams) -> (AgentState, dict[str, Array])   # one iteration
    agent.hedger(state, hparams) -> hedger                  # pytree-callable obs -> shares
    agent.price(state, hparams, contract) -> Array          # the agent's price of a Contract
    agent.evaluation_contract(hparams) -> Contract          # what eval / run.json price

``update`` is one training iteration (simulate a batch, compute the loss, one optimizer
step) and must be jittable with no host callbacks, so the trainer can ``lax.scan`` it.
The metrics dict has scalar values with the same keys every iteration (it is stacked by
the scan); ``"loss"`` is always present. The hedger returned by :meth:`hedger` works with
:func:`jaxhedge.rollout.rollout`, exactly like the classical hedgers.

``price(state, hparams, contract)`` is the price, in the contract's money units, at which
the agent would sell the short option ``contract`` (:class:`jaxhedge.contracts.Contract`)
at t = 0: the learned price head for RLOP and Adaptive-QLBS, the indifference price
(premium + risk of the hedged position) for deep hedging. It is jittable; the contract's
numeric leaves may carry a batch shape, and the price has that shape.

``evaluation_contract(hparams)`` is the contract the agent is judged on by default (the
centre of its training distribution, or the one contract it was trained on); ``run.json``
records ``price(state, hparams, evaluation_contract(hparams))`` for every member.

Networks are flax NNX modules split once into ``(graphdef, params)`` (:mod:`jaxhedge.nets`);
the agent keeps the graphdef as static config and the params as a plain pytree in
``AgentState``, so the compiled loop never sees NNX objects.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

from jaxhedge.contracts import Contract


@runtime_checkable
class Hedger(Protocol):
    """A pytree-callable ``hedger(obs) -> shares`` (obs: :class:`jaxhedge.env.Observation`)."""

    def __call__(self, obs) -> jax.Array: ...


@runtime_checkable
class LearningAgent(Protocol):
    """The protocol every trainable agent implements (module docstring)."""

    name: str

    def default_hparams(self) -> Any: ...

    def init(self, key: jax.Array, hparams: Any) -> Any: ...

    def update(self, key: jax.Array, state: Any, hparams: Any) -> tuple[Any, dict]: ...

    def hedger(self, state: Any, hparams: Any) -> Hedger: ...

    def price(self, state: Any, hparams: Any, contract: Contract) -> jax.Array: ...

    def evaluation_contract(self, hparams: Any) -> Contract: ...


PROTOCOL_METHODS = ("default_hparams", "init", "update", "hedger", "price",
                    "evaluation_contract")


def missing_methods(agent) -> list[str]:
    """Names of the protocol methods ``agent`` lacks (empty for a complete agent).

    >>> missing_methods(object())
    ['default_hparams', 'init', 'update', 'hedger', 'price', 'evaluation_contract']
    """
    return [m for m in PROTOCOL_METHODS if not callable(getattr(agent, m, None))]
