"""The advisor's arithmetic against an independent numpy reference, and every guardrail tripped."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flatbuffers")  # jax.export serialization of bundles

from jaxhedge.config import ConfigError  # noqa: E402
from jaxhedge.serving import advisor as adv  # noqa: E402
from jaxhedge.serving import guardrails as gr  # noqa: E402
from jaxhedge.serving.inputs import parse_book, years_to_expiry  # noqa: E402
from tests.serving.conftest import NOW, bs_delta_np  # noqa: E402

DESK = Path(__file__).resolve().parents[2] / "experiments" / "desk"

BOOK = """id,underlying,type,strike,expiry,quantity,multiplier
a,SPY,call,600,2026-12-18,-50,100
b,SPY,put,580,2026-12-18,-30,100
c,SPY,call,620,2027-01-15,20,100
d,XOP,call,135,2026-12-18,-40,100
e,XOP,put,125,2027-01-15,25,
h,SPY,stock,,,2000,
h2,XOP,stock,,,1500,
"""


def snapshot(**spy):
    q = {"spot": 603.5, "vol": 0.15, "rate": 0.04, "div_yield": 0.012, "cost": 0.0002,
         "reference_price": 603.2}
    q.update(spy)
    return {"timestamp": "2026-11-27T15:30:00Z", "underlyings": {
        "SPY": q, "XOP": {"spot": 131.2, "vol_points": [[115, .38], [130, .34], [145, .31]],
                          "rate": .04, "div_yield": .028, "cost": .0008}}}


def reference(book, snap):
    """Independent numpy targets: BS delta of each position times -quantity * multiplier."""
    t = dt.datetime(2026, 11, 27, 15, 30, tzinfo=dt.timezone.utc)
    out = {}
    deltas = []
    for i in range(len(book)):
        q = snap["underlyings"][book.underlying[i]]
        k = book.strike[i]
        vol = q["vol"] if "vol" in q else np.interp(k, *np.array(q["vol_points"]).T)
        tau = years_to_expiry(book.expiry[i], t)
        d = float(bs_delta_np(q["spot"], k, tau, q["rate"], vol, q["div_yield"],
                              book.option[i] == "call"))
        deltas.append(d)
        u = book.underlying[i]
        out[u] = out.get(u, 0.0) - book.quantity[i] * book.multiplier[i] * d
    return out, np.array(deltas)


def test_targets_and_orders_match_numpy_reference(delta_bundle):
    book = parse_book(BOOK)
    a = adv.advise(delta_bundle, book, snapshot(), now=NOW)
    targets, deltas = reference(book, snapshot())
    np.testing.assert_allclose([p["bs_delta"] for p in a.positions], deltas, atol=3e-6)
    np.testing.assert_allclose([p["used_hedge"] for p in a.positions], deltas, atol=3e-6)
    for o in a.orders:
        u = o["underlying"]
        assert o["target"] == pytest.approx(targets[u], abs=0.05)
        want = np.rint(targets[u] - book.holdings[u])
        assert o["signed_shares"] == want and o["status"] in ("ok", "none")
        assert o["side"] == ("BUY" if want > 0 else "SELL")
    # sign convention: the desk is long 20 calls of c -> selling shares hedges it
    assert a.positions[2]["target_shares"] < 0 < a.positions[0]["target_shares"]
    assert a.positions[1]["target_shares"] < 0  # short puts are hedged by a short stock
    assert all(p["flags"] == [] and p["reason"] == "" for p in a.positions)


def test_position_input_allocates_the_holding(delta_bundle):
    """The previous hedge shown to the policy adds up to each underlying's holding."""
    book = parse_book(BOOK)
    a = adv.advise(delta_bundle, book, snapshot(), now=NOW)
    for u, held in book.holdings.items():
        tot = sum(-p["quantity"] * p["multiplier"] * p["position_input"]
                  for p in a.positions if p["underlying"] == u)
        assert tot == pytest.approx(held, rel=1e-5)


def test_whole_book_is_one_compiled_call(delta_bundle, monkeypatch):
    calls = []
    real = adv.kernel

    def counting(bundle):
        fn = real(bundle)
        return lambda *args: calls.append(1) or fn(*args)

    monkeypatch.setattr(adv, "kernel", counting)
    rows = "\n".join(f"p{i},SPY,call,{550 + i},2026-12-18,-1,100" for i in range(40))
    a = adv.advise(delta_bundle, parse_book("id,underlying,type,strike,expiry,quantity,"
                                            "multiplier\n" + rows), snapshot(), now=NOW)
    assert len(calls) == 1 and len(a.positions) == 40 and a.meta["padded_to"] == 64


@pytest.mark.parametrize("now, message", [
    (NOW + dt.timedelta(hours=1), "stale snapshot refused"),
    (NOW - dt.timedelta(hours=1), "in the future"),
])
def test_stale_or_future_snapshot_is_refused(delta_bundle, now, message):
    with pytest.raises(ValueError, match=message):
        adv.advise(delta_bundle, parse_book(BOOK), snapshot(), now=now)


@pytest.mark.parametrize("field, value, message", [
    ("spot", -1.0, "SPY.spot: must be a finite number > 0"),
    ("vol", float("nan"), "SPY.vol: must be in"),
    ("rate", 3.0, "SPY.rate: must be in"),
    ("cost", "x", "SPY.cost"),
    ("bogus", 1.0, "SPY.bogus: unknown field"),
])
def test_invalid_snapshot_numbers_are_refused(delta_bundle, field, value, message):
    with pytest.raises(ValueError, match=message) as err:
        adv.advise(delta_bundle, parse_book(BOOK), snapshot(**{field: value}), now=NOW)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("row, message", [
    ("x,SPY,call,-5,2026-12-18,1,", "strike: must be a number > 0"),
    ("x,SPY,call,600,2026-11-01,1,", "expired option"),
    ("x,SPY,swap,600,2026-12-18,1,", "type must be call, put or stock"),
    ("x,SPY,call,600,18/12/2026,1,", "expiry must be an ISO date"),
    ("x,QQQ,call,600,2026-12-18,1,", "no quote for 'QQQ'"),
    ("x,SPY,call,600,2026-12-18,inf,", "quantity: must be a finite number"),
])
def test_invalid_book_is_refused(delta_bundle, row, message):
    book = BOOK + row + "\n"
    with pytest.raises(ValueError, match=message):
        adv.advise(delta_bundle, parse_book(book), snapshot(), now=NOW)


def test_out_of_range_position_falls_back_to_bs_delta(shifted_bundle):
    """Card ranges: moneyness [0.8, 1.2], tau [1/52, 8/52], sigma [0.1, 0.4], calls only."""
    book = parse_book("id,underlying,type,strike,expiry,quantity\n"
                      "deep,SPY,call,400,2026-12-18,-1\n"       # moneyness 1.51
                      "long,SPY,call,600,2027-12-17,-1\n"       # tau ~ 1.05
                      "put,SPY,put,600,2026-12-18,-1\n")        # option type
    a = adv.advise(shifted_bundle, book, snapshot(), now=NOW)
    for p, what in zip(a.positions, ("moneyness", "tau", "option type")):
        assert p["flags"] == ["ood"] and what in p["reason"]
        assert p["used_hedge"] == p["bs_delta"]
        assert p["agent_hedge"] != pytest.approx(p["bs_delta"])


def test_insane_or_distant_hedge_is_clipped(shifted_bundle):
    """The shifted agent holds BS delta + 0.4: above e^{-q tau} when deep in the money
    (sanity), and 0.4 > max_delta_distance from the BS delta (distance)."""
    book = parse_book("id,underlying,type,strike,expiry,quantity\n"
                      "itm,SPY,call,520,2026-12-18,-1\n"        # moneyness 1.16, delta ~1
                      "otm,SPY,call,640,2026-12-18,-1\n")       # delta ~0.05
    snap = snapshot()
    a = adv.advise(shifted_bundle, book, snap, now=NOW)
    itm, otm = a.positions
    cap = np.exp(-0.012 * itm["tau"])
    assert "sanity" in itm["flags"] and itm["used_hedge"] <= cap + 1e-6
    assert itm["agent_hedge"] > cap
    assert otm["flags"] == ["distance"] and "more than 0.25" in otm["reason"]
    assert otm["used_hedge"] == pytest.approx(otm["bs_delta"] + 0.25, abs=1e-5)
    cfg = gr.DeskConfig(advisor=gr.AdvisorConfig(max_delta_distance=0.5))
    relaxed = adv.advise(shifted_bundle, book, snap, cfg, now=NOW).positions[1]
    assert relaxed["flags"] == [] and relaxed["used_hedge"] == pytest.approx(
        relaxed["bs_delta"] + 0.4, abs=1e-5)


@pytest.mark.parametrize("limits, holding, desired, ref, used, want, name", [
    (gr.Limits(max_order_shares=1000), 0, 2500, None, 0, 1000, "max_order_shares"),
    (gr.Limits(max_order_shares=1000), 0, -2500, None, 0, -1000, "max_order_shares"),
    (gr.Limits(max_order_notional=150_000), 0, 2500, None, 0, 1500, "max_order_notional"),
    (gr.Limits(position_limit=3000), 2000, 2500, None, 0, 1000, "position_limit"),
    (gr.Limits(position_limit=3000), 4000, 500, None, 0, 0, "position_limit"),
    (gr.Limits(position_limit=3000), 4000, -500, None, 0, -500, None),  # reduces exposure
    (gr.Limits(position_limits={"SPY": 100}, position_limit=1e9), 0, 500, None, 0, 100,
     "position_limit"),
    (gr.Limits(max_daily_notional=1_000_000), 0, 2500, None, 900_000, 1000,
     "max_daily_notional"),
    (gr.Limits(max_daily_notional=1_000_000), 0, 2500, None, 1_000_000, 0,
     "max_daily_notional"),
    (gr.Limits(price_collar=0.01), 0, 2500, 98.0, 0, 0, "price_collar"),
    (gr.Limits(price_collar=0.01), 0, 2500, 99.5, 0, 2500, None),
    (gr.Limits(price_collar=0.01), 0, 2500, None, 0, 0, "price_collar"),
    (gr.Limits(kill_switch=True), 0, 2500, None, 0, 0, "kill_switch"),
])
def test_each_pre_trade_limit_trips(limits, holding, desired, ref, used, want, name):
    shares, why = gr.apply_limits(limits, "SPY", holding, desired, 100.0, ref, used)
    assert shares == want
    if name is None:
        assert why == []
    else:
        assert len(why) == 1 and name in why[0]
        assert why[0].startswith("blocked" if want == 0 else "reduced")


def test_kill_file_blocks_every_order(delta_bundle, tmp_path):
    cfg_path = tmp_path / "limits.toml"
    cfg_path.write_text('[limits]\nkill_file = "KILL"\n')
    book = parse_book(BOOK)
    a = adv.advise(delta_bundle, book, snapshot(), cfg_path, now=NOW)
    assert all(o["status"] == "ok" for o in a.orders)
    (tmp_path / "KILL").write_text("")
    a = adv.advise(delta_bundle, book, snapshot(), cfg_path, now=NOW)
    assert a.meta["kill_switch"] and all(
        o["status"] == "blocked" and o["shares"] == 0 and "kill_switch" in o["reason"]
        for o in a.orders)


def test_daily_notional_accumulates_over_underlyings(delta_bundle):
    book = parse_book(BOOK)
    free = adv.advise(delta_bundle, book, snapshot(), now=NOW).orders
    first = free[0]["notional"]
    cfg = gr.DeskConfig(limits=gr.Limits(max_daily_notional=first + 1000.0))
    spy, xop = adv.advise(delta_bundle, book, snapshot(), cfg, now=NOW).orders
    assert spy["status"] == "ok" and xop["status"] == "reduced"
    assert xop["shares"] == np.floor(1000.0 / 131.2) > 0 and "max_daily_notional" in xop["reason"]


def test_sample_limits_load_and_bad_limits_name_the_field(tmp_path):
    cfg = gr.load_limits(DESK / "limits.toml")
    assert cfg.limits.position_limits == {"XOP": 20000.0}
    assert Path(cfg.limits.kill_file) == DESK / "KILL"
    for text, field in (("[limits]\nmax_order_shares = -5\n", "limits.max_order_shares"),
                        ("[limits]\nprice_collar = 1.5\n", "limits.price_collar"),
                        ("[advisor]\nmax_snapshot_age = 5\n", "advisor.max_snapshot_age"),
                        ("[limits]\nkill_switch = 1\n", "limits.kill_switch")):
        p = tmp_path / "l.toml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=field):
            gr.load_limits(p)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_opt = lambda lo, hi: st.none() | st.floats(lo, hi)  # noqa: E731


@settings(max_examples=300, deadline=None)
@given(max_shares=_opt(1, 1e5), max_notional=_opt(1e3, 1e8), daily=_opt(1e3, 1e8),
       plimit=_opt(0, 1e5), holding=st.floats(-2e5, 2e5).map(round),
       desired=st.floats(-2e5, 2e5).map(round), used=st.floats(0, 1e8),
       price=st.floats(1, 1e3))
def test_limits_never_grow_or_flip_an_order_and_hold_every_cap(
        max_shares, max_notional, daily, plimit, holding, desired, used, price):
    lim = gr.Limits(max_order_shares=max_shares, max_order_notional=max_notional,
                    max_daily_notional=daily, position_limit=plimit)
    shares, why = gr.apply_limits(lim, "SPY", holding, desired, price, None, used)
    assert abs(shares) <= abs(desired) and shares * desired >= 0
    assert shares == int(shares)
    assert (shares == desired) == (why == [])
    if max_shares is not None:
        assert abs(shares) <= max_shares
    if max_notional is not None:
        assert abs(shares) * price <= max_notional * (1 + 1e-12)
    if daily is not None:
        assert shares == 0 or used + abs(shares) * price <= daily * (1 + 1e-12)
    if plimit is not None and shares != 0:
        final = holding + shares
        assert abs(final) <= plimit + 1e-9 or abs(final) < abs(holding)
