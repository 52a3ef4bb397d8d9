"""Guardrails between a policy and an order: input ranges, hedge sanity, pre-trade limits.

Three layers, applied by :func:`jaxhedge.serving.advisor.advise` in this order:

1. **Refusals** (the whole request; ValueError, exit 2 from the CLI): a snapshot older than
   ``advisor.max_snapshot_age_s`` (or more than ``advisor.max_clock_skew_s`` in the future),
   invalid numbers in the book or snapshot (:mod:`jaxhedge.serving.inputs`).
2. **Position guards** (:func:`position_guards`, traced inside the advisor's one compiled
   call): a position whose inputs (moneyness S/K, tau, sigma, cost, option type) lie outside
   the model card's training ranges falls back to the BS delta, flagged ``ood``; an agent
   hedge that is non-finite or outside the sanity range (``[0, e^{-q tau}]`` for a call,
   ``[-e^{-q tau}, 0]`` for a put; the hedge of one SHORT option) is clipped into it, flagged
   ``sanity``; one farther than ``advisor.max_delta_distance`` from the BS delta is clipped
   to that distance, flagged ``distance``.
3. **Pre-trade limits** (:func:`apply_limits`, per underlying, host side), in this order:
   ``kill_switch`` (the flag, or the file ``kill_file`` exists) blocks every order;
   ``price_collar`` blocks when the snapshot spot is more than that fraction away from the
   snapshot's ``reference_price`` (or no reference price is given); ``max_order_shares`` and
   ``max_order_notional`` reduce an order; ``position_limit`` (per underlying, else the
   default) reduces an order that would take ``|holding + order|`` above it (an order that
   shrinks ``|position|`` always passes; one that would have to flip to comply is blocked);
   ``max_daily_notional`` reduces orders once the day's traded notional (given, plus the
   earlier orders of the request, underlyings in sorted order) would exceed it.
   Every reduction or block names its limit.

The config is a TOML file (``experiments/desk/limits.toml`` is an example)::

    [advisor]
    max_snapshot_age_s = 900
    max_delta_distance = 0.25
    [limits]
    max_order_shares = 20000
    position_limit = 100000
    position_limits = { XOP = 40000 }
    kill_file = "KILL"          # relative to the TOML file's directory
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax.numpy as jnp

from jaxhedge.config import from_dict, read_toml

SANITY_TOL = 1e-6  # float32 slack before a hedge counts as outside the sanity range


def _positive(name, v, allow_none=True, allow_zero=False):
    if v is None and allow_none:
        return
    ok = v is not None and math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(f"{name}: must be a finite number {'>=' if allow_zero else '>'} 0 "
                         f"or none (got {v!r})")


@dataclasses.dataclass(frozen=True)
class AdvisorConfig:
    """``[advisor]``: request refusals and position guards."""

    max_snapshot_age_s: float = 900.0
    max_clock_skew_s: float = 60.0
    max_delta_distance: float = 0.25

    def __post_init__(self):
        _positive("max_snapshot_age_s", self.max_snapshot_age_s, allow_none=False)
        _positive("max_clock_skew_s", self.max_clock_skew_s, allow_none=False, allow_zero=True)
        _positive("max_delta_distance", self.max_delta_distance, allow_none=False,
                  allow_zero=True)


@dataclasses.dataclass(frozen=True)
class Limits:
    """``[limits]``: pre-trade limits; ``none`` (or absent) = no limit. Shares and money."""

    max_order_shares: float | None = None
    max_order_notional: float | None = None
    max_daily_notional: float | None = None
    position_limit: float | None = None
    position_limits: dict[str, float] = dataclasses.field(default_factory=dict)
    price_collar: float | None = None
    kill_switch: bool = False
    kill_file: str | None = None

    def __post_init__(self):
        for name in ("max_order_shares", "max_order_notional", "max_daily_notional",
                     "price_collar"):
            _positive(name, getattr(self, name))
        _positive("position_limit", self.position_limit, allow_zero=True)
        for k, v in self.position_limits.items():
            _positive(f"position_limits.{k}", v, allow_none=False, allow_zero=True)
        if self.price_collar is not None and self.price_collar >= 1:
            raise ValueError(f"price_collar: must be < 1 (a fraction; got {self.price_collar})")

    def killed(self) -> bool:
        return self.kill_switch or (self.kill_file is not None and Path(self.kill_file).exists())


@dataclasses.dataclass(frozen=True)
class DeskConfig:
    advisor: AdvisorConfig = AdvisorConfig()
    limits: Limits = Limits()


def load_limits(path) -> DeskConfig:
    """The TOML limits file (module docstring); ConfigError (a ValueError) naming the field."""
    path = Path(path)
    cfg = from_dict(DeskConfig, read_toml(path, "limits"))
    kill = cfg.limits.kill_file
    if kill is not None and not Path(kill).is_absolute():
        cfg = dataclasses.replace(cfg, limits=dataclasses.replace(
            cfg.limits, kill_file=str(path.parent / kill)))
    return cfg


# --------------------------------------------------------------------------- position guards
def position_guards(agent_hedge, bs_delta, is_call, tau, div_yield, inputs: dict, ranges,
                    option_ok, max_distance):
    """Traced guards of module docstring layer 2; every argument shaped ``(n,)``.

    ``inputs`` maps each key of the card's ``training_ranges`` to its values and ``ranges``
    to ``(lo, hi)`` floats (``-inf``/``inf`` for unbounded). Returns ``(used_hedge, flags)``
    with ``flags`` a dict of bool arrays: ``ood`` (per range key too, as ``ood_<key>``, and
    ``ood_option``), ``sanity``, ``distance``.
    """
    flags = {}
    ood = ~option_ok
    flags["ood_option"] = ~option_ok
    for key, x in inputs.items():
        lo, hi = ranges[key]
        out = (x < lo) | (x > hi)
        flags[f"ood_{key}"] = out
        ood = ood | out
    cap = jnp.exp(-div_yield * tau)
    lo = jnp.where(is_call, 0.0, -cap)
    hi = jnp.where(is_call, cap, 0.0)
    finite = jnp.isfinite(agent_hedge)
    h = jnp.where(finite, agent_hedge, bs_delta)
    insane = ~finite | (h < lo - SANITY_TOL) | (h > hi + SANITY_TOL)
    h = jnp.clip(h, lo, hi)
    far = jnp.abs(h - bs_delta) > max_distance + SANITY_TOL
    h = jnp.clip(h, bs_delta - max_distance, bs_delta + max_distance)
    flags["ood"] = ood
    flags["sanity"] = insane & ~ood
    flags["distance"] = far & ~ood
    return jnp.where(ood, bs_delta, h), flags


# --------------------------------------------------------------------------- order limits
def _toward_zero(x: float) -> float:
    return float(math.floor(abs(x)) * (1 if x >= 0 else -1))


def apply_limits(limits: Limits, underlying: str, holding: float, desired: float,
                 price: float, reference_price: float | None,
                 notional_used: float) -> tuple[float, list[str]]:
    """``(order shares, reasons)`` for one underlying's desired order (module docstring)."""
    if desired == 0:
        return 0.0, []
    if limits.killed():
        return 0.0, ["blocked: kill_switch"]
    if limits.price_collar is not None:
        if reference_price is None:
            return 0.0, ["blocked: price_collar (no reference_price in the snapshot)"]
        dev = abs(price / reference_price - 1.0)
        if dev > limits.price_collar:
            return 0.0, [f"blocked: price_collar (spot {price:g} is {dev:.2%} from reference "
                         f"{reference_price:g}, max {limits.price_collar:.2%})"]
    order, reasons = desired, []

    def cap(new, why):
        nonlocal order
        if abs(new) < abs(order):
            order = new
            reasons.append(f"{'blocked' if new == 0 else 'reduced'}: {why}")

    if limits.max_order_shares is not None:
        cap(math.copysign(min(abs(order), math.floor(limits.max_order_shares)), order),
            f"max_order_shares ({limits.max_order_shares:g})")
    if limits.max_order_notional is not None:
        cap(math.copysign(min(abs(order), math.floor(limits.max_order_notional / price)), order),
            f"max_order_notional ({limits.max_order_notional:g})")
    plimit = limits.position_limits.get(underlying, limits.position_limit)
    if plimit is not None:
        final = holding + order
        if abs(final) > plimit and abs(final) >= abs(holding):
            allowed = _toward_zero(max(-plimit, min(plimit, final)) - holding)
            if allowed * order <= 0:
                allowed = 0.0
            cap(allowed, f"position_limit ({plimit:g} for {underlying})")
    if limits.max_daily_notional is not None:
        room = max(limits.max_daily_notional - notional_used, 0.0)
        cap(math.copysign(min(abs(order), math.floor(room / price)), order),
            f"max_daily_notional ({limits.max_daily_notional:g}, "
            f"{notional_used:g} already used)")
    return (0.0 if order == 0 else float(order)), reasons
