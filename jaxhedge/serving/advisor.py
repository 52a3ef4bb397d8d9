"""The advisor: book + market snapshot + bundle -> per-underlying orders, per-position hedges.

``advise(bundle, book, snapshot, limits)`` (paths or parsed objects) checks the request
(:mod:`jaxhedge.serving.inputs`; stale or invalid -> ValueError), then evaluates EVERY
position of the book in ONE compiled call (:func:`kernel`): the BS delta at the snapshot's
vol, the bundle's hedge and price, the position guards of
:mod:`jaxhedge.serving.guardrails`, and the per-underlying target position. The batch is
padded to a power of two (at least 8) so a desk's changing book compiles a handful of
times, not once per size. Pre-trade limits then turn each underlying's desired order into
the order sent (or blocked).

What the policy is shown for inputs a desk does not have: ``elapsed = max(T - tau, 0)`` and
``drift`` from the card's ``observation_defaults`` (T = its training maturity), cost
multiplier 1, and as ``position`` (the previous hedge per short option) the underlying's
current holding allocated to its positions in proportion to their BS-delta hedges
(``holding * delta_i / sum_j(-q_j m_j delta_j)``; the BS delta where that sum is 0).

:func:`advise_observations` is the same decision step (:func:`guarded_hedge`: the bundle's
hedge behind the position guards) on observation rows the caller builds itself; the shadow
replay (:mod:`jaxhedge.serving.shadow`) feeds it the study's observations.

Sign convention: ``quantity > 0`` = the desk is long the options; target shares of a
position = ``-quantity * multiplier * hedge`` with ``hedge`` that of one short option.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge import pricing
from jaxhedge.serving import guardrails as gr
from jaxhedge.serving import inputs
from jaxhedge.serving.bundle import Bundle, load_bundle

RANGE_KEYS = ("moneyness", "tau", "sigma", "cost")
_KERNELS: dict[str, object] = {}


def _padded(n: int) -> int:
    return max(8, 1 << max(n - 1, 0).bit_length())


def _ranges(card) -> dict:
    return {k: (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))
            for k, (lo, hi) in card["training_ranges"].items()}


def guarded_hedge(hedge_exported, params, obs, option_ok, ranges, max_distance):
    """The decision on each row of an ``(n, 12)`` observation matrix (traced).

    The bundle's hedge, the BS delta at the row's own inputs and the position guards of
    :mod:`jaxhedge.serving.guardrails`: ``(agent_hedge, bs_delta, used_hedge, flags)``.
    The one decision step of both :func:`advise` (rows built from a book and a snapshot)
    and :func:`advise_observations` (rows built by the caller: the shadow replay).
    """
    (spot, strike, tau, _, rate, q, _, vol, cost, _, _, is_call_f) = (
        obs[:, i] for i in range(obs.shape[1]))
    is_call = is_call_f > 0.5
    bs = pricing.bs_delta(spot, strike, tau, rate, vol, q, is_call)
    agent = hedge_exported.call(params, obs)
    feats = {"moneyness": spot / strike, "tau": tau, "sigma": vol, "cost": cost}
    used, flags = gr.position_guards(agent, bs, is_call, tau, q, feats, ranges, option_ok,
                                     max_distance)
    return agent, bs, used, flags


def kernel(bundle: Bundle):
    """The jitted whole-book function of ``bundle`` (cached by bundle sha)."""
    if bundle.sha in _KERNELS:
        return _KERNELS[bundle.sha]
    card = bundle.card
    ranges = _ranges(card)
    defaults = card.get("observation_defaults", {})
    drift = float(defaults.get("drift", 0.0))
    maturity = float(defaults.get("maturity", 0.0))
    hedge_exp, price_exp = bundle.hedge_exported, bundle.price_exported

    def run(params, x, holdings, max_distance):
        (spot, strike, tau, rate, q, vol, cost, is_call_f, qty, und, valid,
         option_ok) = (x[:, i] for i in range(12))
        is_call = is_call_f > 0.5
        und = und.astype(jnp.int32)
        n_und = holdings.shape[0]
        bs = pricing.bs_delta(spot, strike, tau, rate, vol, q, is_call)
        bs_px = pricing.bs_price(spot, strike, tau, rate, vol, q, is_call)
        seg = lambda v: jax.ops.segment_sum(v * valid, und, n_und)  # noqa: E731
        bs_total = seg(-qty * bs)
        share = jnp.where(jnp.abs(bs_total) > 1e-9, bs_total, 1.0)
        prev = jnp.where(jnp.abs(bs_total[und]) > 1e-9, holdings[und] * bs / share[und], bs)
        elapsed = jnp.maximum(maturity - tau, 0.0)
        ones = jnp.ones_like(spot)
        obs = jnp.stack([spot, strike, tau, elapsed, rate, q, drift * ones, vol, cost, ones,
                         prev, is_call_f], axis=1)
        agent, _, used, flags = guarded_hedge(hedge_exp, params, obs, option_ok > 0.5, ranges,
                                              max_distance)
        con = jnp.stack([spot, strike, tau, vol, drift * ones, rate, q, cost, is_call_f], axis=1)
        agent_px = price_exp.call(params, con)
        target = -qty * used
        return {"bs_delta": bs, "bs_price": bs_px, "agent_hedge": agent, "agent_price": agent_px,
                "used_hedge": used, "target": target, "prev_hedge": prev,
                "target_by_underlying": seg(target), "flags": flags}

    fn = jax.jit(run)
    _KERNELS[bundle.sha] = fn
    return fn


_OBS_KERNELS: dict[str, object] = {}
# an inert row (valid inputs, in every range a card can have) for padding observation batches
_OBS_PAD = np.array([1.0, 1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0, 1.0, 0.0, 1.0], np.float32)


def _desk_config(limits) -> gr.DeskConfig:
    if limits is None:
        return gr.DeskConfig()
    return limits if isinstance(limits, gr.DeskConfig) else gr.load_limits(limits)


def advise_observations(bundle, obs, limits=None) -> dict:
    """The decision (:func:`guarded_hedge`) on each row of ``obs``, one compiled call.

    For a caller that builds the policy's observation itself (the shadow replay feeds the
    study's observation: strike units, calibrated (sigma, mu), its own previous position).
    ``obs`` is ``(n, 12)`` in :data:`~jaxhedge.serving.bundle.OBS_COLUMNS` order, cast to
    float32 (the bundle's precision); ``limits`` supplies ``advisor.max_delta_distance``
    (pre-trade limits act on a book's share orders, not here). Padded to a power of two
    like :func:`advise`. Returns numpy ``agent_hedge``, ``bs_delta``, ``used_hedge`` (n,)
    and ``flags`` (name -> bool (n,)).
    """
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    cfg = _desk_config(limits).advisor
    obs = np.asarray(obs, np.float32)
    if obs.ndim != 2 or obs.shape[1] != len(_OBS_PAD):
        raise ValueError(f"obs: must have shape (n, {len(_OBS_PAD)}) (got {obs.shape})")
    n, p = len(obs), _padded(len(obs))
    x = np.tile(_OBS_PAD, (p, 1))
    x[:n] = obs
    types = np.where(x[:, -1] > 0.5, "call", "put")
    option_ok = np.isin(types, bundle.card["options"]) | (np.arange(p) >= n)
    if bundle.sha not in _OBS_KERNELS:
        ranges = _ranges(bundle.card)
        exp = bundle.hedge_exported
        _OBS_KERNELS[bundle.sha] = jax.jit(
            lambda params, x, ok, d: guarded_hedge(exp, params, x, ok, ranges, d))
    agent, bs, used, flags = jax.device_get(_OBS_KERNELS[bundle.sha](
        list(bundle.params), x, option_ok, np.float32(cfg.max_delta_distance)))
    return {"agent_hedge": np.asarray(agent)[:n], "bs_delta": np.asarray(bs)[:n],
            "used_hedge": np.asarray(used)[:n],
            "flags": {k: np.asarray(v)[:n] for k, v in flags.items()}}


@dataclasses.dataclass(frozen=True)
class Advice:
    positions: list[dict]
    orders: list[dict]
    meta: dict

    def to_json(self) -> dict:
        return {"meta": self.meta, "orders": self.orders, "positions": self.positions}


def _reasons(i, flags, feats, ranges, card, hedge, bs, max_distance) -> list[str]:
    out = []
    if flags["ood_option"][i]:
        out.append(f"ood: option type not in the card's options {card['options']}")
    for k in RANGE_KEYS:
        if flags[f"ood_{k}"][i]:
            lo, hi = ranges[k]
            out.append(f"ood: {k} {feats[k][i]:.4g} outside the training range "
                       f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
                       f"; BS delta used")
    if flags["sanity"][i]:
        out.append(f"clipped: agent hedge {hedge[i]:.4g} outside the sanity range")
    if flags["distance"][i]:
        out.append(f"clipped: agent hedge {hedge[i]:.4g} is more than {max_distance:g} "
                   f"from the BS delta {bs[i]:.4g}")
    return out


def advise(bundle, book, snapshot, limits=None, *, now: dt.datetime | None = None,
           notional_today: float = 0.0) -> Advice:
    """Orders and per-position hedges for ``book`` at ``snapshot`` (module docstring).

    Args:
      bundle: a :class:`Bundle` or its directory.
      book: a :class:`~jaxhedge.serving.inputs.Book` or a CSV path.
      snapshot: a :class:`~jaxhedge.serving.inputs.Snapshot`, a dict or a JSON path.
      limits: a :class:`~jaxhedge.serving.guardrails.DeskConfig`, a TOML path or None
        (defaults: no pre-trade limits, 900 s max age, 0.25 max distance to BS delta).
      now: the time the snapshot's age is measured at (default: the clock, UTC).
      notional_today: money already traded today (for ``max_daily_notional``).
    """
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    book = book if isinstance(book, inputs.Book) else inputs.read_book(book)
    if isinstance(snapshot, dict):
        snapshot = inputs.parse_snapshot(snapshot)
    elif not isinstance(snapshot, inputs.Snapshot):
        snapshot = inputs.read_snapshot(snapshot)
    limits = _desk_config(limits)
    if not (np.isfinite(notional_today) and notional_today >= 0):
        raise ValueError(f"notional_today: must be a finite number >= 0 (got {notional_today})")
    now = now or dt.datetime.now(dt.timezone.utc)
    cfg = limits.advisor
    inputs.check_age(snapshot, now, cfg.max_snapshot_age_s, cfg.max_clock_skew_s)
    unds = book.underlyings()
    for u in unds:
        if u not in snapshot.quotes:
            raise ValueError(f"snapshot.underlyings: no quote for {u!r} (the book holds it)")
    n = len(book)
    t = snapshot.timestamp
    tau_of = {e: inputs.years_to_expiry(e, t) for e in set(book.expiry)}
    taus = np.array([tau_of[e] for e in book.expiry], np.float64)
    for i in np.flatnonzero(taus <= 0):
        raise ValueError(f"book position {book.ids[i]}: expiry {book.expiry[i]} is not after "
                         f"the snapshot time {t.isoformat()} (expired option)")
    und_index = {u: j for j, u in enumerate(unds)}
    und = np.array([und_index[u] for u in book.underlying], np.int64)
    strike = np.array(book.strike, np.float64)

    def per_und(f):
        return np.array([f(snapshot.quotes[u]) for u in unds], np.float64)[und]

    vol = np.empty(n)
    for j, u in enumerate(unds):  # the smile is evaluated once per underlying
        sel = und == j
        vol[sel] = snapshot.quotes[u].vol_at(strike[sel])
    cols = {
        "spot": per_und(lambda q: q.spot), "strike": strike, "tau": taus,
        "rate": per_und(lambda q: q.rate), "q": per_und(lambda q: q.div_yield), "vol": vol,
        "cost": per_und(lambda q: q.cost),
        "is_call": [1.0 if o == "call" else 0.0 for o in book.option],
        "qty": np.array(book.quantity) * np.array(book.multiplier) if n else [],
        "und": und, "valid": np.ones(n),
        "option_ok": [1.0 if o in bundle.card["options"] else 0.0 for o in book.option]}
    p = _padded(n)
    x = np.zeros((p, 12), np.float32)
    pad_row = [100.0, 100.0, 1.0, 0.0, 0.0, 0.2, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]  # inert, valid=0
    x[:] = pad_row
    for j, v in enumerate(cols.values()):
        x[:n, j] = np.asarray(v, np.float64) if n else x[:0, j]
    holdings = np.zeros(_padded(len(unds)), np.float32)
    holdings[:len(unds)] = [book.holdings.get(u, 0.0) for u in unds]
    out = jax.device_get(kernel(bundle)(list(bundle.params), x, holdings,
                                        np.float32(cfg.max_delta_distance)))
    flags = {k: np.asarray(v[:n]) for k, v in out["flags"].items()}
    feats = {"moneyness": x[:n, 0] / x[:n, 1], "tau": x[:n, 2], "sigma": x[:n, 5],
             "cost": x[:n, 6]}
    ranges = bundle.card["training_ranges"]
    # host lists once: per-element float() of numpy scalars dominates a 10,000-position book
    col = {k: np.asarray(out[k][:n], np.float64).tolist() for k in (
        "agent_hedge", "bs_delta", "used_hedge", "prev_hedge", "target", "agent_price",
        "bs_price")}
    col.update(tau=x[:n, 2].astype(np.float64).tolist(), vol=x[:n, 5].astype(np.float64).tolist(),
               moneyness=feats["moneyness"].astype(np.float64).tolist())
    any_flag = np.zeros(n, bool)
    for k in flags:
        any_flag |= flags[k]
    expiry_iso = {e: e.isoformat() for e in set(book.expiry)}
    positions = []
    for i in range(n):
        reasons, flagged = [], []
        if any_flag[i]:
            reasons = _reasons(i, flags, feats, ranges, bundle.card, out["agent_hedge"],
                               out["bs_delta"], cfg.max_delta_distance)
            flagged = [k for k in ("ood", "sanity", "distance") if flags[k][i]]
        positions.append({
            "id": book.ids[i], "underlying": book.underlying[i], "type": book.option[i],
            "strike": book.strike[i], "expiry": expiry_iso[book.expiry[i]],
            "quantity": book.quantity[i], "multiplier": book.multiplier[i],
            "tau": col["tau"][i], "vol": col["vol"][i], "moneyness": col["moneyness"][i],
            "agent_hedge": col["agent_hedge"][i], "bs_delta": col["bs_delta"][i],
            "used_hedge": col["used_hedge"][i], "position_input": col["prev_hedge"][i],
            "target_shares": col["target"][i], "agent_price": col["agent_price"][i],
            "bs_price": col["bs_price"][i], "flags": flagged, "reason": "; ".join(reasons)})
    orders, used = [], float(notional_today)
    for j, u in enumerate(unds):
        qt = snapshot.quotes[u]
        holding = float(book.holdings.get(u, 0.0))
        target = float(out["target_by_underlying"][j])
        desired = float(np.rint(target - holding))
        shares, why = gr.apply_limits(limits.limits, u, holding, desired, qt.spot,
                                      qt.reference_price, used)
        used += abs(shares) * qt.spot
        status = ("none" if desired == 0 else "blocked" if shares == 0 else
                  "reduced" if abs(shares) < abs(desired) else "ok")
        orders.append({"underlying": u, "holding": holding, "target": target,
                       "desired_shares": desired, "shares": abs(shares),
                       "side": "" if shares == 0 else ("BUY" if shares > 0 else "SELL"),
                       "signed_shares": shares, "price": qt.spot,
                       "notional": abs(shares) * qt.spot, "status": status,
                       "reason": "; ".join(why)})
    meta = {"bundle": str(bundle.path), "bundle_sha": bundle.sha, "agent": bundle.card["agent"],
            "gate_label": bundle.card.get("gate_label", ""),
            "snapshot_sha256": snapshot.sha256, "snapshot_time": t.isoformat(),
            "advised_at": now.isoformat(), "n_positions": n, "padded_to": p,
            "kill_switch": limits.limits.killed(), "notional_today": float(notional_today),
            "notional_after": used, "limits": dataclasses.asdict(limits)}
    return Advice(positions=positions, orders=orders, meta=meta)


POSITION_COLUMNS = ("id", "underlying", "type", "strike", "expiry", "quantity", "multiplier",
                    "tau", "vol", "moneyness", "agent_hedge", "bs_delta", "used_hedge",
                    "position_input",
                    "target_shares", "agent_price", "bs_price", "flags", "reason")
ORDER_COLUMNS = ("underlying", "holding", "target", "desired_shares", "side", "shares",
                 "price", "notional", "status", "reason")


def _csv(rows, columns) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("|".join(v) if isinstance(v, list) else v) for k, v in r.items()})
    return buf.getvalue()


def write_advice(advice: Advice, out_dir) -> list[Path]:
    """orders.csv, positions.csv and advice.json in ``out_dir``, each written atomically."""
    from jaxhedge.runinfo import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    files = [out / "orders.csv", out / "positions.csv", out / "advice.json"]
    atomic_write_text(files[0], _csv(advice.orders, ORDER_COLUMNS))
    atomic_write_text(files[1], _csv(advice.positions, POSITION_COLUMNS))
    atomic_write_json(files[2], advice.to_json())
    return files
