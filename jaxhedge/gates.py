r"""Sanity gates: checks a trained agent must pass before any table ranks it.

An agent's numbers reach a desk only if its hedge and its price surface are those of an
option at all. Every gate is a model-free property of European options (or, for
``bs_price``, of the Black-Scholes world the RL agents must reproduce at zero friction),
evaluated on a grid of contracts around the agent's evaluation contract:

* ``hedge_ratio`` -- the policy's t = 0 hedge of a short call lies in ``[0, e^{-q tau}]``,
  of a short put in ``[-e^{-q tau}, 0]``;
* ``surface_delta`` -- the same bounds for ``d price / d S`` of the agent's price surface
  (what a surface-delta hedger trades);
* ``price_finite`` -- prices finite, and their Black-Scholes implied vols valid wherever the
  price lies strictly inside the no-arbitrage bounds;
* ``price_bounds`` -- ``max(S e^{-q tau} - K e^{-r tau}, 0) <= C <= S e^{-q tau}`` for a call,
  ``max(K e^{-r tau} - S e^{-q tau}, 0) <= P <= K e^{-r tau}`` for a put;
* ``strike_monotone`` -- calls non-increasing, puts non-decreasing in K;
* ``strike_convex`` -- convex in K (non-negative butterfly prices);
* ``maturity_monotone`` -- non-decreasing in tau (checked at r = q = 0, where it holds for
  both calls and puts);
* ``bs_price`` -- at cost = drift = rate = 0 on GBM, within ``bs_rel_tol`` of Black-Scholes
  wherever the BS price is at least ``bs_min_price`` of spot (relative errors of nearly
  worthless options say nothing).

The surface gates apply to agents with a price SURFACE (a price head valid for any
contract: RLOP, Adaptive-QLBS, closed forms). An indifference price computed for the one
contract an agent was trained on (deep hedging) is checked for ``hedge_ratio``,
``price_finite`` and ``price_bounds`` only; the rest report "n/a".

Tolerances are in units of spot (prices) and of shares (hedges), stated in
:class:`GateSpec`; ``docs/gates.md`` gives the reasons for each.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge import pricing
from jaxhedge.contracts import Contract

GATES = ("hedge_ratio", "surface_delta", "price_finite", "price_bounds", "strike_monotone",
         "strike_convex", "maturity_monotone", "bs_price")
SURFACE_ONLY = ("surface_delta", "strike_monotone", "strike_convex", "maturity_monotone",
                "bs_price")


@dataclasses.dataclass(frozen=True)
class GateSpec:
    """The contract grid and the tolerances of the gates.

    Attributes:
      moneyness: strikes as multiples of the evaluation contract's spot.
      maturity_fractions: lives as fractions of its maturity (ascending).
      vol_factors: vols as multiples of its sigma.
      hedge_tol: slack on the hedge-ratio bounds, in shares per option.
      price_tol: slack on price bounds and shape checks, in units of spot.
      bs_rel_tol: largest relative distance to Black-Scholes allowed by ``bs_price``.
      bs_min_price: ``bs_price`` checks only contracts whose BS price is at least this
        fraction of spot.
    """

    moneyness: tuple[float, ...] = (0.85, 0.9, 0.95, 0.975, 1.0, 1.025, 1.05, 1.1, 1.15)
    maturity_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    vol_factors: tuple[float, ...] = (0.75, 1.0, 1.25)
    hedge_tol: float = 0.02
    price_tol: float = 2e-4
    bs_rel_tol: float = 0.05
    bs_min_price: float = 2e-3

    def __post_init__(self):
        for name in ("moneyness", "maturity_fractions", "vol_factors"):
            v = getattr(self, name)
            if len(v) < 1 or any(not np.isfinite(x) or x <= 0 for x in v):
                raise ValueError(f"gates.{name}: must be non-empty positive finite numbers")
        if list(self.moneyness) != sorted(self.moneyness) or len(self.moneyness) < 3:
            raise ValueError("gates.moneyness: must be ascending with at least 3 strikes")
        if list(self.maturity_fractions) != sorted(self.maturity_fractions):
            raise ValueError("gates.maturity_fractions: must be ascending")
        for name in ("hedge_tol", "price_tol", "bs_rel_tol", "bs_min_price"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"gates.{name}: must be a finite number >= 0 (got {v!r})")


@dataclasses.dataclass(frozen=True)
class GateResult:
    """One gate's verdict. ``passed`` is None when the gate does not apply to the agent;
    ``worst`` is the largest violation found (0 when none), in the gate's units."""

    name: str
    passed: bool | None
    worst: float
    detail: str

    @property
    def status(self) -> str:
        return "n/a" if self.passed is None else ("pass" if self.passed else "FAIL")


def contract_grid(contract: Contract, spec: GateSpec, *, frictionless: bool = False) -> Contract:
    """The gate grid around ``contract``: leaves shaped ``(n_vol, n_tau, n_strike)``.

    ``frictionless`` sets cost, drift, rate and dividend yield to 0 (the ``bs_price`` and
    ``maturity_monotone`` world).
    """
    vol = jnp.asarray(spec.vol_factors)[:, None, None] * float(contract.sigma)
    tau = jnp.asarray(spec.maturity_fractions)[None, :, None] * float(contract.maturity)
    strike = jnp.asarray(spec.moneyness)[None, None, :] * float(contract.s0)
    shape = (len(spec.vol_factors), len(spec.maturity_fractions), len(spec.moneyness))
    full = lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.result_type(float)), shape)  # noqa: E731
    zero = 0.0 if frictionless else None
    pick = lambda v: full(zero if zero is not None else v)  # noqa: E731
    return contract.replace(s0=full(contract.s0), strike=full(strike), maturity=full(tau),
                            sigma=full(vol), mu=pick(contract.mu), rate=pick(contract.rate),
                            div_yield=pick(contract.div_yield), cost=pick(contract.cost))


def _fail(name, worst, tol, what) -> GateResult:
    ok = bool(np.isfinite(worst) and worst <= tol)
    return GateResult(name, ok, float(worst), f"{what}: worst {worst:.3g} (tolerance {tol:.3g})")


def _bounds(c: Contract, is_call: bool):
    disc_s = np.asarray(c.s0 * jnp.exp(-c.div_yield * c.maturity))
    disc_k = np.asarray(c.strike * jnp.exp(-c.rate * c.maturity))
    if is_call:
        return np.maximum(disc_s - disc_k, 0.0), disc_s
    return np.maximum(disc_k - disc_s, 0.0), disc_k


def check_hedge(hedger, grid: Contract, is_call: bool, tol: float, name="hedge_ratio",
                values=None) -> GateResult:
    """Hedge ratios (of ``hedger`` at t = 0, or the given ``values``) within the bounds."""
    h = np.asarray(jax.jit(lambda g: hedger(g.observation()))(grid) if values is None
                   else values, np.float64)
    cap = np.asarray(jnp.exp(-grid.div_yield * grid.maturity), np.float64)
    lo, hi = (np.zeros_like(cap), cap) if is_call else (-cap, np.zeros_like(cap))
    if not np.isfinite(h).all():
        return GateResult(name, False, float("inf"), "non-finite hedge ratio on the grid")
    worst = float(np.max(np.maximum(lo - h, h - hi)))
    side = "[0, e^-q tau]" if is_call else "[-e^-q tau, 0]"
    return _fail(name, max(worst, 0.0), tol, f"hedge of a short {'call' if is_call else 'put'} "
                 f"outside {side}")


def _run_surface(price_fn, grid, zero_grid, is_call, spec: GateSpec, surface: bool):
    price = jax.jit(price_fn)
    p = np.asarray(price(grid), np.float64)
    s0 = float(np.asarray(grid.s0).ravel()[0])
    out = {}
    finite = np.isfinite(p)
    lo, hi = _bounds(grid, is_call)
    inside = finite & (p > lo + spec.price_tol * s0) & (p < hi - spec.price_tol * s0)
    iv = pricing.implied_vol_bs(p, grid.s0, grid.strike, grid.maturity, grid.rate,
                                grid.div_yield, is_call)
    iv_ok = np.asarray(iv.valid) & np.isfinite(np.asarray(iv.vol))
    n_bad = int((~finite).sum() + (inside & ~iv_ok).sum())
    out["price_finite"] = GateResult("price_finite", n_bad == 0, float(n_bad),
                                     f"{n_bad} non-finite prices or implied vols")
    viol = np.where(finite, np.maximum(lo - p, p - hi), np.inf) / s0
    out["price_bounds"] = _fail("price_bounds", max(float(np.max(viol)), 0.0), spec.price_tol,
                                "price outside the no-arbitrage bounds (units of spot)")
    if not surface:
        for g in SURFACE_ONLY:
            out[g] = GateResult(g, None, 0.0, "n/a: the agent prices one contract, not a surface")
        return out
    k = np.asarray(grid.strike, np.float64)
    dk = np.diff(k, axis=-1)
    slope = np.diff(p, axis=-1) / dk
    mono = (slope if is_call else -slope) * dk / s0  # positive = wrong direction
    out["strike_monotone"] = _fail("strike_monotone", max(float(np.max(mono)), 0.0),
                                   spec.price_tol, f"price {'rises' if is_call else 'falls'} "
                                   "with the strike (units of spot)")
    # convexity on a non-uniform grid: divided-difference slopes must not decrease
    conv = -(np.diff(slope, axis=-1)) * dk[..., 1:] / s0
    out["strike_convex"] = _fail("strike_convex", max(float(np.max(conv)), 0.0),
                                 spec.price_tol, "butterfly price below zero (units of spot)")
    pz = np.asarray(price(zero_grid), np.float64)
    tau_drop = -np.diff(pz, axis=1) / s0
    out["maturity_monotone"] = _fail("maturity_monotone", max(float(np.max(tau_drop)), 0.0),
                                     spec.price_tol,
                                     "price falls as maturity grows at r = q = 0 (units of spot)")
    bs = np.asarray(pricing.bs_price(zero_grid.s0, zero_grid.strike, zero_grid.maturity, 0.0,
                                     zero_grid.sigma, 0.0, is_call), np.float64)
    keep = bs >= spec.bs_min_price * s0
    rel = np.abs(pz / np.where(keep, bs, 1.0) - 1.0)
    worst = float(np.max(np.where(keep, rel, 0.0))) if keep.any() else 0.0
    if not np.isfinite(pz[keep]).all():
        worst = float("inf")
    out["bs_price"] = _fail("bs_price", worst, spec.bs_rel_tol,
                            "relative distance to Black-Scholes at cost = drift = rate = 0")
    delta = np.asarray(jax.jit(jax.grad(lambda s, g: jnp.sum(price_fn(g.replace(s0=s)))))(
        grid.s0, grid), np.float64)
    out["surface_delta"] = check_hedge(None, grid, is_call, spec.hedge_tol, "surface_delta",
                                       values=delta)
    return out


def run_gates(price_fn: Callable[[Contract], jax.Array], hedger, contract: Contract,
              spec: GateSpec = GateSpec(), *, surface: bool = True) -> list[GateResult]:
    """Every gate of :data:`GATES` for one agent, in that order.

    Args:
      price_fn: ``contract -> price`` (jittable; the contract's leaves carry the grid shape).
      hedger: pytree-callable ``obs -> shares`` (the agent's policy).
      contract: the evaluation contract the grid is built around.
      spec: grid and tolerances.
      surface: whether the price is a surface over contracts (module docstring).
    """
    is_call = contract.option == "call"
    grid = contract_grid(contract, spec)
    zero_grid = contract_grid(contract, spec, frictionless=True)
    results = {"hedge_ratio": check_hedge(hedger, grid, is_call, spec.hedge_tol)}
    results.update(_run_surface(price_fn, grid, zero_grid, is_call, spec, surface))
    return [results[g] for g in GATES]


def agent_gates(agent, hparams, state, spec: GateSpec = GateSpec()) -> list[GateResult]:
    """:func:`run_gates` for an agent of the protocol in :mod:`jaxhedge.agents.base`.

    Agents whose price is computed for one contract declare ``price_surface = False``.
    """
    contract = agent.evaluation_contract(hparams)
    return run_gates(lambda c: agent.price(state, hparams, c), agent.hedger(state, hparams),
                     contract, spec, surface=bool(getattr(agent, "price_surface", True)))


def failed(results: list[GateResult]) -> list[str]:
    """Names of the gates that failed (``n/a`` is not a failure)."""
    return [r.name for r in results if r.passed is False]


def gate_label(results: list[GateResult]) -> str:
    """``""`` when every gate passed, else ``"GATE FAILED: <first failed check>"``, the mark
    every table and legend carries for the agent."""
    bad = failed(results)
    return "" if not bad else f"GATE FAILED: {', '.join(bad)}"


def as_dict(r: GateResult) -> dict:
    """JSON-able form of one result (``status`` is pass / FAIL / n/a)."""
    return {"name": r.name, "status": r.status, "passed": r.passed, "worst": r.worst,
            "detail": r.detail}


def print_gates(results: list[GateResult], title: str | None = None) -> None:
    """A rich table of every check: gate, status, worst violation, what was checked."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("gate", "status", "worst", "check"):
        table.add_column(col, justify="right" if col == "worst" else "left")
    for r in results:
        style = {"pass": "green", "FAIL": "bold red"}.get(r.status, "dim")
        table.add_row(r.name, f"[{style}]{r.status}[/]", f"{r.worst:.3g}", r.detail)
    Console(width=160).print(table)
