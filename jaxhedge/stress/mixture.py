"""Scenario-mixture markets and deep hedging trained on them (robust training).

:func:`mixture_paths` draws, for every path independently, a scenario kind (``calm`` with
probability ``calm_weight``, the others equally likely) and a severity ``s ~ U(0,
max_severity)`` (0 = calm, 1 = the named scenario, see ``Scenario.params``). All kinds are
simulated for all paths (each kind vmapped over per-path keys and severities, one path per
call) and each path keeps its own kind with ``jnp.where``: no Python branching per episode,
one compiled program. The loop over the (static, ~7) kinds unrolls at trace time.

:class:`RobustDeepHedging` is :class:`~jaxhedge.agents.deep_hedging.DeepHedging` whose
training (and pricing) episodes come from that mixture around the contract in
``hparams.env`` (a GBM env: its s0, sigma, mu, maturity and costs set the contract; the
premium stays the calm reference price). Evaluation, checkpoints and ``jaxhedge stress`` treat
it as deep hedging on the calm contract.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.rollout import RolloutResult, run_on_paths
from jaxhedge.stress.contract import Contract
from jaxhedge.stress.scenarios import SYNTHETIC

DEFAULT_MIXTURE = tuple(SYNTHETIC)  # calm and every synthetic stress


def mixture_weights(names: tuple[str, ...], calm_weight: float):
    """Probabilities of ``names``: ``calm_weight`` on calm, the rest shared equally
    (all equal when calm is not among ``names``)."""
    others = [n for n in names if n != "calm"]
    if "calm" not in names:
        return jnp.full((len(names),), 1.0 / len(names))
    if not others:
        return jnp.ones((1,))
    rest = (1.0 - calm_weight) / len(others)
    return jnp.asarray([calm_weight if n == "calm" else rest for n in names])


def check_mixture(names, calm_weight: float, max_severity: float) -> None:
    """ValueError naming the field and the allowed values."""
    names = tuple(names)
    if not names:
        raise ValueError(f"mixture.scenarios: give at least one of {sorted(SYNTHETIC)}")
    for n in names:
        if n not in SYNTHETIC:
            raise ValueError(f"mixture.scenarios: {n!r} is not a synthetic scenario; choose "
                             f"from {sorted(SYNTHETIC)}")
    if len(set(names)) != len(names):
        raise ValueError(f"mixture.scenarios: names must be distinct (got {list(names)})")
    if not 0.0 <= calm_weight <= 1.0:
        raise ValueError(f"mixture.calm_weight: must be in [0, 1] (got {calm_weight!r})")
    if not 0.0 < max_severity <= 3.0:
        raise ValueError(f"mixture.max_severity: must be in (0, 3] (got {max_severity!r})")


def mixture_paths(key, contract: Contract, n_paths: int, names=DEFAULT_MIXTURE,
                  calm_weight: float = 0.25, max_severity: float = 1.5):
    """``(MarketPaths, kind (n_paths,) int32, severity (n_paths,))``; fields (n_paths, N+1).

    ``kind[i]`` indexes ``names``. Jittable; ``contract`` may hold traced numbers.
    """
    names = tuple(names)
    n_steps, dt = contract.n_steps, contract.dt
    k_kind, k_sev, k_sim = jax.random.split(key, 3)
    logits = jnp.log(mixture_weights(names, calm_weight))
    kind = jax.random.categorical(k_kind, logits, shape=(n_paths,)).astype(jnp.int32)
    dtype = jnp.result_type(float)
    severity = jax.random.uniform(k_sev, (n_paths,), dtype, 0.0, max_severity)
    keys = jax.random.split(k_sim, n_paths)
    chosen = None
    for j, name in enumerate(names):
        scenario = SYNTHETIC[name]()

        def one(k, s, scenario=scenario):
            p = scenario.params(contract, s)
            return jax.tree.map(lambda a: a[0], type(scenario).simulate(k, p, 1, n_steps, dt))

        kind_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, j)
        paths = jax.vmap(one)(kind_keys, severity)
        paths = jax.tree.map(lambda a: a.astype(dtype), paths)
        if chosen is None:
            chosen = paths
        else:
            pick = (kind == j)[:, None]
            chosen = jax.tree.map(lambda new, old: jnp.where(pick, new, old), paths, chosen)
    return chosen, kind, severity


@dataclasses.dataclass(frozen=True)
class RobustDeepHedging(DeepHedging):
    """Deep hedging trained on a scenario mixture (module docstring).

    Attributes (beyond DeepHedging's):
      mixture: synthetic scenario names drawn per episode.
      calm_weight: probability of a calm episode.
      max_severity: severities are U(0, max_severity) (1 = the named scenario).
    """

    mixture: tuple[str, ...] = DEFAULT_MIXTURE
    calm_weight: float = 0.25
    max_severity: float = 1.5
    name: str = "deep_hedging_robust"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "mixture", tuple(self.mixture))
        if self.env.market != "gbm":
            raise ValueError(f"deep_hedging.env.market: robust training builds its mixture "
                             f"around a GBM contract (got {self.env.market!r})")
        check_mixture(self.mixture, self.calm_weight, self.max_severity)

    def simulate(self, key, hedger, hparams, n_paths: int | None = None,
                 keep_paths: bool = False) -> RolloutResult:
        """Episodes on mixture paths around ``hparams.env``'s contract (same key, same paths)."""
        n = self.n_paths if n_paths is None else n_paths
        contract = Contract.from_env(self.env, hparams.env)
        paths, _, _ = mixture_paths(key, contract, n, self.mixture, self.calm_weight,
                                    self.max_severity)
        paths = jax.lax.stop_gradient(paths)
        return run_on_paths(self.hedging_env, hparams.env, hedger, paths,
                            keep_paths=keep_paths)
