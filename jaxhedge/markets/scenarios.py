"""Stress-scenario simulators: a market plus a cost regime, scaled from a contract's numbers.

Every scenario is a frozen dataclass whose fields are its (validated) parameters. It gives

* ``simulate(key, params, n_paths, n_steps, dt) -> MarketPaths``: a pure, jittable market
  generator (``n_paths``/``n_steps`` static), vmappable over ``(key, params)``;
* ``params(contract, severity=1.0)``: that generator's parameter pytree for a contract.
  ``severity`` (a scalar, may be traced) scales the stress linearly from none (0: the calm
  market) through the named scenario (1) beyond; robust training draws it per episode;
* ``check(contract)``: host-side checks of the scenario against the contract (e.g. the spike
  window must hold a rebalancing step);
* ``paths(key, contract, n_paths)``: the scenario's paths (fields ``(n_paths, N+1)``).

``contract`` is read by duck typing (this module sits below :mod:`jaxhedge.contracts`): any
object with the numbers ``s0, sigma, mu, maturity`` and ``n_steps, dt`` works, usually a
:class:`jaxhedge.contracts.Contract`. Validating the contract itself
(:func:`jaxhedge.contracts.validate_contract`) is the caller's job.

>>> from types import SimpleNamespace
>>> c = SimpleNamespace(s0=100.0, mu=0.0, sigma=0.2, maturity=0.25, n_steps=5, dt=0.05)
>>> p = VolSpike().paths(jax.random.key(0), c, 3)
>>> p.spot.shape, p.vol.shape
((3, 6), (3, 6))
>>> [round(float(v), 2) for v in p.vol[0]]
[0.2, 0.2, 0.6, 0.6, 0.2, 0.2]

What each scenario is (sigma, T, N = the contract's calm vol, life and dates):

* ``calm``: GBM at sigma; costs x1.
* ``vol_spike``: GBM whose vol is ``multiplier * sigma`` (default 3) on the steps
  ``[ceil(start N), ceil(end N))`` (default 30%-70% of the life), sigma elsewhere; the vol a
  hedger observes is the vol in force.
* ``crash``: Merton jumps whose simple return is mostly in [jump_lo, jump_hi] = [-20%, -10%]:
  log jump ~ N(m, d^2) with ``m`` the mid of ``log(1 + lo), log(1 + hi)`` and ``d`` a quarter of
  their distance (95% of jumps in range), ``expected_jumps`` (0.5) per option life. The
  crash is NOT compensated in the drift (a real-world crash, E[S_T] = s0 e^{(mu + lambda k)T}).
* ``liquidity_drought``: GBM at ``sigma_multiplier * sigma`` with costs multiplied by
  ``m_t = base * (1 + slope * max(0, rv_t / sigma - 1))`` (base 10, slope 1), rv_t the
  trailing realised vol of the last ``window`` returns (5; before that many returns the
  missing ones count as calm, sigma^2 dt each; :func:`markets.historical.trailing_realized_vol`).
* ``regime_switch``: the two-state Markov chain of :mod:`jaxhedge.markets.regime`: calm
  (sigma, costs x1, no jumps) and stress (``stress_vol`` x sigma, costs x ``stress_cost``,
  ``stress_jumps`` jumps per life of log size N(-5%, 5%^2)); ``entries_per_life`` entries into
  stress per life while calm, mean stress spell ``stress_duration`` x the life.
* ``vol_of_vol``: Heston (Andersen QE) with v0 = theta = sigma^2, kappa 2, xi 1.0, rho -0.7.
* ``gap_at_expiry``: GBM plus, with probability ``prob`` (0.5), a gap of simple return
  ``+-size`` (10%; down with probability ``down_share``) in the last step (N-1, N], when the
  hedger can no longer trade; the gaps are mean zero by default (E[S_T] unchanged).

Historical windows (real data, loaded from files) subclass :class:`Scenario` in
``jaxhedge.stress.historical``; the scenario mixture of robust training is
:mod:`jaxhedge.markets.mixture`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxhedge.markets import _common as C
from jaxhedge.markets import gbm, heston, merton, regime
from jaxhedge.markets.base import MarketPaths
from jaxhedge.markets.historical import trailing_realized_vol
from jaxhedge.markets.merton import jump_compensator


class ContractLike(Protocol):
    """What a scenario reads from a contract (e.g. :class:`jaxhedge.contracts.Contract`).

    A protocol, not an import: markets sits below contracts (contracts -> env -> markets).
    """

    s0: Any
    mu: Any
    sigma: Any
    maturity: Any
    n_steps: int

    @property
    def dt(self) -> Any: ...


class ScenarioUnavailable(RuntimeError):
    """A scenario cannot be built here (e.g. its data file is absent); the message says why."""


# --------------------------------------------------------------------------- base class
@dataclasses.dataclass(frozen=True)
class Scenario:
    """Base class; subclasses set ``name`` and ``simulate`` and define ``params``."""

    name: ClassVar[str] = "scenario"
    simulate: ClassVar = staticmethod(gbm.simulate)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Contract-free parameter checks (ValueError naming ``<name>.<field>``)."""

    def check(self, contract: ContractLike) -> None:
        """Host-side checks of this scenario against the contract (ValueError naming
        ``<name>.<field>``); the contract's own checks are the caller's."""

    def params(self, contract: ContractLike, severity=1.0):
        raise NotImplementedError

    def paths(self, key, contract: ContractLike, n_paths: int) -> MarketPaths:
        """``n_paths`` paths of this scenario (fields (n_paths, N+1)); same key, same paths."""
        self.check(contract)
        return _simulate_jit(type(self).simulate, key, self.params(contract), n_paths,
                             contract.n_steps, contract.dt)

    def describe(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    def _require(self, field: str, ok: bool, allowed: str) -> None:
        if not ok:
            raise ValueError(f"{self.name}.{field}: must be {allowed} "
                             f"(got {getattr(self, field)!r})")

    def _in(self, field: str, lo: float, hi: float, lo_open=False, hi_open=False) -> None:
        v = getattr(self, field)
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = float("nan")
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (
            v < hi if hi_open else v <= hi)
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        self._require(field, ok, f"in {rng}")


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _simulate_jit(simulate, key, params, n_paths, n_steps, dt):
    return simulate(key, params, n_paths, n_steps, dt)


def _lerp(severity, calm, stressed):
    """calm + severity * (stressed - calm): severity 0 is calm, 1 the named scenario."""
    return calm + severity * (stressed - calm)


# --------------------------------------------------------------------------- calm
@dataclasses.dataclass(frozen=True)
class Calm(Scenario):
    """GBM at the contract's sigma; costs x1. The reference every ratio is taken against."""

    name: ClassVar[str] = "calm"
    simulate: ClassVar = staticmethod(gbm.simulate)

    def params(self, contract, severity=1.0):
        del severity
        return gbm.GBMParams(s0=contract.s0, mu=contract.mu, sigma=contract.sigma)


# --------------------------------------------------------------------------- vol spike
@struct.dataclass
class VolSpikeParams:
    s0: float = 1.0
    mu: float = 0.0
    sigma: float = 0.2
    multiplier: float = 3.0
    start: float = 0.3
    end: float = 0.7


def spike_steps(start, end, n_steps: int):
    """Boolean (n_steps + 1,): t in [ceil(start N), ceil(end N)) (1e-4 slack for rounding)."""
    t = jnp.arange(n_steps + 1)
    first = jnp.ceil(start * n_steps - 1e-4)
    last = jnp.ceil(end * n_steps - 1e-4)
    return (t >= first) & (t < last)


@C.fast_threefry
def simulate_vol_spike(key, params: VolSpikeParams, n_paths: int, n_steps: int, dt):
    """GBM with vol ``multiplier * sigma`` on the spike steps; vol field = vol in force."""
    dtype = C.float_dtype(params)
    f = lambda x: C.as_float(x, dtype)  # noqa: E731
    s0, mu, sigma, mult, dt = map(f, (params.s0, params.mu, params.sigma, params.multiplier, dt))
    sig = sigma * jnp.where(spike_steps(params.start, params.end, n_steps), mult, 1.0)
    sig = sig.astype(dtype)
    z = jax.random.normal(key, (n_paths, n_steps), dtype)
    incr = (mu - 0.5 * sig[:-1] ** 2) * dt + sig[:-1] * jnp.sqrt(dt) * z
    shape = (n_paths, n_steps + 1)
    return MarketPaths(spot=C.spot_from_log_increments(s0, incr),
                       vol=jnp.broadcast_to(sig, shape), cost_multiplier=jnp.ones(shape, dtype))


@dataclasses.dataclass(frozen=True)
class VolSpike(Scenario):
    """Vol x ``multiplier`` over the fraction ``[start, end)`` of the option's life."""

    name: ClassVar[str] = "vol_spike"
    simulate: ClassVar = staticmethod(simulate_vol_spike)
    multiplier: float = 3.0
    start: float = 0.3
    end: float = 0.7

    def validate(self):
        self._in("multiplier", 0.0, 20.0, lo_open=True)
        self._in("start", 0.0, 1.0, hi_open=True)
        self._in("end", 0.0, 1.0, lo_open=True)
        self._require("end", self.end > self.start, f"> start = {self.start:g}")

    def check(self, contract):
        n = contract.n_steps
        steps = int(jnp.sum(spike_steps(self.start, self.end, n)[:-1]))
        if steps < 1:
            raise ValueError(f"vol_spike.start/end: the window [{self.start:g}, {self.end:g}) "
                             f"holds no rebalancing step of the {n} (widen it or add steps)")

    def params(self, contract, severity=1.0):
        return VolSpikeParams(s0=contract.s0, mu=contract.mu, sigma=contract.sigma,
                              multiplier=_lerp(severity, 1.0, self.multiplier),
                              start=self.start, end=self.end)


# --------------------------------------------------------------------------- crash
@dataclasses.dataclass(frozen=True)
class Crash(Scenario):
    """Merton jumps of mostly ``[jump_lo, jump_hi]`` simple return, uncompensated."""

    name: ClassVar[str] = "crash"
    simulate: ClassVar = staticmethod(merton.simulate)
    jump_lo: float = -0.20
    jump_hi: float = -0.10
    expected_jumps: float = 0.5

    def validate(self):
        self._in("jump_lo", -1.0, 1.0, lo_open=True, hi_open=True)
        self._in("jump_hi", -1.0, 1.0, lo_open=True, hi_open=True)
        self._require("jump_hi", self.jump_hi > self.jump_lo, f"> jump_lo = {self.jump_lo:g}")
        self._in("expected_jumps", 0.0, 50.0, lo_open=True)

    @property
    def log_jump_mean(self) -> float:
        return 0.5 * (math.log1p(self.jump_lo) + math.log1p(self.jump_hi))

    @property
    def log_jump_std(self) -> float:
        return 0.25 * (math.log1p(self.jump_hi) - math.log1p(self.jump_lo))

    def params(self, contract, severity=1.0):
        lam = severity * self.expected_jumps / contract.maturity
        mj, sj = self.log_jump_mean, self.log_jump_std
        # merton.simulate compensates (drift mu - lam k); adding lam k back leaves the
        # diffusion drift at mu, so the crash moves the mean (a real-world crash)
        return merton.MertonParams(s0=contract.s0, mu=contract.mu + lam * jump_compensator(mj, sj),
                                   sigma=contract.sigma, jump_intensity=lam, jump_mean=mj,
                                   jump_std=sj)


# --------------------------------------------------------------------------- liquidity
@struct.dataclass
class LiquidityParams:
    s0: float = 1.0
    mu: float = 0.0
    sigma: float = 0.2
    ref_sigma: float = 0.2
    base: float = 10.0
    slope: float = 1.0
    window: int = struct.field(pytree_node=False, default=5)


def liquidity_multiplier(log_returns, dt, ref_sigma, base, slope, window: int):
    """``base * (1 + slope * max(0, rv_t / ref_sigma - 1))``, (n_paths, N+1) from (n_paths, N).

    rv_t = trailing realised vol of the last ``window`` log returns up to t, the missing ones
    before t = window counted as calm (``ref_sigma^2 dt`` each).
    """
    dtype = log_returns.dtype
    rv = trailing_realized_vol(log_returns, jnp.asarray(dt, dtype), window,
                               jnp.asarray(ref_sigma, dtype) ** 2 * dt)
    return base * (1.0 + slope * jnp.maximum(rv / ref_sigma - 1.0, 0.0))


@C.fast_threefry
def simulate_liquidity(key, params: LiquidityParams, n_paths: int, n_steps: int, dt):
    """GBM at ``sigma`` with the liquidity cost multiplier of :func:`liquidity_multiplier`."""
    dtype = C.float_dtype(params)
    f = lambda x: C.as_float(x, dtype)  # noqa: E731
    s0, mu, sigma, ref, base, slope, dt = map(
        f, (params.s0, params.mu, params.sigma, params.ref_sigma, params.base, params.slope, dt))
    z = jax.random.normal(key, (n_paths, n_steps), dtype)
    incr = (mu - 0.5 * sigma**2) * dt + sigma * jnp.sqrt(dt) * z
    shape = (n_paths, n_steps + 1)
    return MarketPaths(spot=C.spot_from_log_increments(s0, incr), vol=C.full(shape, sigma, dtype),
                       cost_multiplier=liquidity_multiplier(incr, dt, ref, base, slope,
                                                            params.window))


@dataclasses.dataclass(frozen=True)
class LiquidityDrought(Scenario):
    """Costs x ``base`` (10), rising by ``slope`` per unit of realised vol above sigma."""

    name: ClassVar[str] = "liquidity_drought"
    simulate: ClassVar = staticmethod(simulate_liquidity)
    base: float = 10.0
    slope: float = 1.0
    window: int = 5
    sigma_multiplier: float = 1.0

    def validate(self):
        self._in("base", 1.0, 1000.0)
        self._in("slope", 0.0, 100.0)
        self._require("window", isinstance(self.window, int) and 1 <= self.window <= 252,
                      "an integer in [1, 252]")
        self._in("sigma_multiplier", 0.0, 20.0, lo_open=True)

    def params(self, contract, severity=1.0):
        return LiquidityParams(
            s0=contract.s0, mu=contract.mu,
            sigma=contract.sigma * _lerp(severity, 1.0, self.sigma_multiplier),
            ref_sigma=contract.sigma, base=_lerp(severity, 1.0, self.base),
            slope=severity * self.slope, window=self.window)


# --------------------------------------------------------------------------- regime switch
@dataclasses.dataclass(frozen=True)
class RegimeSwitch(Scenario):
    """Calm/stress Markov chain on (sigma, cost multiplier, jump intensity)."""

    name: ClassVar[str] = "regime_switch"
    simulate: ClassVar = staticmethod(regime.simulate)
    stress_vol: float = 3.0
    stress_cost: float = 5.0
    stress_jumps: float = 1.0
    entries_per_life: float = 1.0
    stress_duration: float = 0.25

    def validate(self):
        self._in("stress_vol", 0.0, 20.0, lo_open=True)
        self._in("stress_cost", 0.0, 1000.0)
        self._in("stress_jumps", 0.0, 50.0)
        self._in("entries_per_life", 0.0, 100.0)
        self._in("stress_duration", 0.0, 100.0, lo_open=True)

    def transition_probs(self, n_steps: int, severity=1.0):
        """Per-step (p calm->stress, p stress->calm) from the per-life rates."""
        p_in = -jnp.expm1(-severity * self.entries_per_life / n_steps)
        p_out = -jnp.expm1(-1.0 / (self.stress_duration * n_steps))
        return p_in, p_out

    def params(self, contract, severity=1.0):
        p_in, p_out = self.transition_probs(contract.n_steps, severity)
        return regime.two_state(
            calm_sigma=contract.sigma,
            stress_sigma=contract.sigma * _lerp(severity, 1.0, self.stress_vol),
            p_calm_to_stress=p_in, p_stress_to_calm=p_out,
            stress_cost_multiplier=_lerp(severity, 1.0, self.stress_cost),
            stress_jump_intensity=severity * self.stress_jumps / contract.maturity,
            jump_mean=-0.05, jump_std=0.05, s0=contract.s0, mu=contract.mu)


# --------------------------------------------------------------------------- vol of vol
@dataclasses.dataclass(frozen=True)
class VolOfVol(Scenario):
    """Heston with v0 = theta = sigma^2 and a high vol of vol ``xi``, ``rho`` ~ -0.7."""

    name: ClassVar[str] = "vol_of_vol"
    simulate: ClassVar = staticmethod(heston.simulate)
    xi: float = 1.0
    rho: float = -0.7
    kappa: float = 2.0

    def validate(self):
        self._in("xi", 0.0, 5.0)
        self._in("rho", -1.0, 1.0)
        self._in("kappa", 0.0, 100.0, lo_open=True)

    def params(self, contract, severity=1.0):
        v = contract.sigma**2
        return heston.HestonParams(s0=contract.s0, mu=contract.mu, v0=v, kappa=self.kappa,
                                   theta=v, xi=severity * self.xi, rho=self.rho)


# --------------------------------------------------------------------------- gap at expiry
@struct.dataclass
class GapParams:
    s0: float = 1.0
    mu: float = 0.0
    sigma: float = 0.2
    size: float = 0.10
    prob: float = 0.5
    down_share: float = 0.5


@C.fast_threefry
def simulate_with_gaps(key, params: GapParams, n_paths: int, n_steps: int, dt):
    """GBM plus a gap in the last step: ``(MarketPaths, gap (n_paths,))``.

    ``gap`` is the gap's simple return (0, +size or -size); S_N = S_{N-1} e^{diffusion} (1 + gap).
    """
    dtype = C.float_dtype(params)
    f = lambda x: C.as_float(x, dtype)  # noqa: E731
    s0, mu, sigma, size, prob, down, dt = map(
        f, (params.s0, params.mu, params.sigma, params.size, params.prob, params.down_share, dt))
    k_z, k_g, k_d = jax.random.split(key, 3)
    z = jax.random.normal(k_z, (n_paths, n_steps), dtype)
    incr = (mu - 0.5 * sigma**2) * dt + sigma * jnp.sqrt(dt) * z
    gapped = jax.random.bernoulli(k_g, jnp.clip(prob, 0.0, 1.0), (n_paths,))
    sign = jnp.where(jax.random.bernoulli(k_d, down, (n_paths,)), -1.0, 1.0).astype(dtype)
    gap = jnp.where(gapped, sign * size, 0.0).astype(dtype)
    incr = incr.at[:, -1].add(jnp.log1p(gap))
    shape = (n_paths, n_steps + 1)
    paths = MarketPaths(spot=C.spot_from_log_increments(s0, incr), vol=C.full(shape, sigma, dtype),
                        cost_multiplier=jnp.ones(shape, dtype))
    return paths, gap


@C.fast_threefry
def simulate_gap(key, params: GapParams, n_paths: int, n_steps: int, dt) -> MarketPaths:
    return simulate_with_gaps(key, params, n_paths, n_steps, dt)[0]


@dataclasses.dataclass(frozen=True)
class GapAtExpiry(Scenario):
    """With probability ``prob``, a +-``size`` gap in the last step, after the last trade."""

    name: ClassVar[str] = "gap_at_expiry"
    simulate: ClassVar = staticmethod(simulate_gap)
    size: float = 0.10
    prob: float = 0.5
    down_share: float = 0.5

    def validate(self):
        self._in("size", 0.0, 1.0, lo_open=True, hi_open=True)
        self._in("prob", 0.0, 1.0)
        self._in("down_share", 0.0, 1.0)

    def params(self, contract, severity=1.0):
        return GapParams(s0=contract.s0, mu=contract.mu, sigma=contract.sigma, size=self.size,
                         prob=jnp.clip(severity * self.prob, 0.0, 1.0),
                         down_share=self.down_share)


#: The synthetic scenarios, by name (default parameters); the stress registry
#: (``jaxhedge.stress.registry.all_scenarios``) adds the historical windows.
SYNTHETIC: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (Calm, VolSpike, Crash, LiquidityDrought, RegimeSwitch, VolOfVol,
                              GapAtExpiry)}
