"""Every sanity gate passes Black-Scholes and fails a deliberately broken agent."""
from __future__ import annotations

import jax.numpy as jnp
import pytest

from jaxhedge import gates, pricing
from jaxhedge.agents import DeltaHedger
from jaxhedge.contracts import Contract

CALL = Contract(s0=100.0, strike=100.0, maturity=30 / 252, sigma=0.2, rate=0.02,
                div_yield=0.01, cost=0.001, n_steps=30)
PUT = CALL.replace(option="put")


def bs(c: Contract):
    return pricing.bs_price(c.s0, c.strike, c.maturity, c.rate, c.sigma, c.div_yield,
                            c.option == "call")


def verdicts(price_fn, contract=CALL, hedger=None, surface=True):
    hedger = hedger or DeltaHedger(is_call=contract.option == "call")
    return {r.name: r for r in gates.run_gates(price_fn, hedger, contract, surface=surface)}


@pytest.mark.parametrize("contract", [CALL, PUT], ids=["call", "put"])
def test_black_scholes_passes_every_gate(contract):
    res = verdicts(bs, contract)
    assert list(res) == list(gates.GATES)
    assert all(r.passed for r in res.values()), {k: r.detail for k, r in res.items()}
    assert gates.gate_label(list(res.values())) == ""


class FlippedDelta(DeltaHedger):
    def __call__(self, obs):
        return -super().__call__(obs)


# each broken agent, and the gate it must fail
BROKEN = {
    "hedge_ratio": dict(hedger=FlippedDelta(is_call=True)),
    # a surface tilted in S: d price / dS = delta + 0.8 exceeds 1 in the money
    "surface_delta": dict(price_fn=lambda c: bs(c) + 0.8 * (c.s0 - 100.0)),
    "price_finite": dict(price_fn=lambda c: jnp.where(c.strike > 105.0, jnp.nan, bs(c))),
    # negative prices out of the money
    "price_bounds": dict(price_fn=lambda c: bs(c) - 0.02 * c.s0),
    # a price that rises with K, still inside the bounds at the money
    "strike_monotone": dict(price_fn=lambda c: bs(c) + 0.5 * (c.strike - 100.0)),
    # concave bump in K: butterflies priced below zero
    "strike_convex": dict(price_fn=lambda c: bs(c) - 0.02 * (c.strike - 100.0) ** 2 + 2.0),
    # the price of the REMAINING life of a longer option: falls as maturity grows
    "maturity_monotone": dict(price_fn=lambda c: bs(c.replace(maturity=0.2 - c.maturity))),
    "bs_price": dict(price_fn=lambda c: 1.2 * bs(c)),
}


@pytest.mark.parametrize("gate", list(BROKEN))
def test_each_gate_trips_on_its_broken_agent(gate):
    kw = dict(price_fn=bs)
    kw.update(BROKEN[gate])
    res = verdicts(kw["price_fn"], hedger=kw.get("hedger"))
    assert res[gate].passed is False, res[gate].detail
    assert res[gate].worst > 0
    label = gates.gate_label(list(res.values()))
    assert label.startswith("GATE FAILED:") and gate in label


def test_indifference_pricers_skip_surface_gates():
    res = verdicts(bs, surface=False)
    for g in gates.SURFACE_ONLY:
        assert res[g].passed is None and res[g].status == "n/a"
    assert res["price_bounds"].passed and res["hedge_ratio"].passed


def test_grid_shape_and_frictionless_world():
    spec = gates.GateSpec()
    g = gates.contract_grid(CALL, spec, frictionless=True)
    shape = (len(spec.vol_factors), len(spec.maturity_fractions), len(spec.moneyness))
    assert g.strike.shape == g.sigma.shape == g.maturity.shape == shape
    assert float(jnp.abs(g.rate).max()) == float(jnp.abs(g.cost).max()) == 0.0
    assert float(g.maturity.max()) == pytest.approx(CALL.maturity)


def test_bad_spec_is_a_one_line_error():
    with pytest.raises(ValueError, match="gates.moneyness"):
        gates.GateSpec(moneyness=(1.0, 0.9, 1.1))
    with pytest.raises(ValueError, match="gates.hedge_tol"):
        gates.GateSpec(hedge_tol=float("nan"))
