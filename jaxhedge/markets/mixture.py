"""The scenario mixture: each path its own stress scenario and severity (robust training).

:func:`mixture_paths` draws, for every path independently, a scenario kind (``calm`` with
probability ``calm_weight``, the others equally likely) and a severity ``s ~ U(0,
max_severity)`` (0 = calm, 1 = the named scenario, see ``Scenario.params``). All kinds are
simulated for all paths (each kind vmapped over per-path keys and severities, one path per
call) and each path keeps its own kind with ``jnp.where``: no Python branching per episode,
one compiled program. The loop over the (static, ~7) kinds unrolls at trace time.

:class:`ScenarioMixture` is the same sampler as a frozen, hashable object
``mixture(key, contract, n_paths) -> MarketPaths``: the ``path_sampler`` of
:class:`jaxhedge.agents.deep_hedging.DeepHedging` (deep hedging trained, and priced, on the
mixture around its contract). ``contract`` is read by duck typing, as in
:mod:`jaxhedge.markets.scenarios`.

>>> from types import SimpleNamespace
>>> c = SimpleNamespace(s0=100.0, mu=0.0, sigma=0.2, maturity=0.25, n_steps=4, dt=0.0625)
>>> mix = ScenarioMixture(("calm", "vol_spike"), calm_weight=0.5)
>>> mix(jax.random.key(0), c, 6).spot.shape
(6, 5)
>>> [round(float(w), 2) for w in mixture_weights(("calm", "crash", "vol_spike"), 0.5)]
[0.5, 0.25, 0.25]
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxhedge.markets.base import MarketPaths
from jaxhedge.markets.scenarios import SYNTHETIC, ContractLike

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


def mixture_paths(key, contract: ContractLike, n_paths: int, names=DEFAULT_MIXTURE,
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
class ScenarioMixture:
    """Path sampler of the scenario mixture (module docstring); frozen and hashable, so it
    can be a static field of an agent.

    Attributes:
      scenarios: synthetic scenario names drawn per path.
      calm_weight: probability of a calm path.
      max_severity: severities are U(0, max_severity) (1 = the named scenario).
    """

    scenarios: tuple[str, ...] = DEFAULT_MIXTURE
    calm_weight: float = 0.25
    max_severity: float = 1.5

    def __post_init__(self):
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        check_mixture(self.scenarios, self.calm_weight, self.max_severity)

    def __call__(self, key, contract: ContractLike, n_paths: int) -> MarketPaths:
        """``n_paths`` mixture paths around ``contract`` (fields (n_paths, N+1)); jittable,
        same key -> same paths."""
        paths, _, _ = mixture_paths(key, contract, n_paths, self.scenarios, self.calm_weight,
                                    self.max_severity)
        return paths
