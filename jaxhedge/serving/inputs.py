"""A desk's book (CSV) and market snapshot (JSON), validated; bad input -> one-line ValueError.

Book CSV, one row per position, header required (extra columns are ignored)::

    id,underlying,type,strike,expiry,quantity,multiplier
    c1,SPY,call,600,2026-12-18,-100,100
    h1,SPY,stock,,,2500,

* ``type``: ``call``, ``put`` or ``stock``. A ``stock`` row is the desk's current holding of
  the underlying in shares (rows of one underlying add up; none = 0).
* ``quantity``: SIGN CONVENTION: ``quantity > 0`` means the desk is LONG the options,
  ``< 0`` short. The hedge of a position is ``-quantity * multiplier * h`` shares, where ``h``
  is the hedge of one short option (for a short call, ``h`` = its delta > 0: buy shares).
* ``multiplier``: shares per option (optional, default 1). ``id`` optional (default
  ``row<N>``).
* ``expiry``: ISO date; the option expires at the end of that day (UTC).

Snapshot JSON::

    {"timestamp": "2026-11-27T15:30:00Z",
     "underlyings": {"SPY": {"spot": 600.0, "vol": 0.16, "rate": 0.04, "div_yield": 0.012,
                             "cost": 0.0005, "reference_price": 600.2},
                     "XOP": {"spot": 130.0, "vol_points": [[110, 0.36], [130, 0.33],
                                                           [150, 0.31]], ...}}}

``vol`` is one volatility; ``vol_points`` a few ``[strike, implied vol]`` points (a smile,
interpolated linearly in strike, flat beyond the ends, the same for every expiry).
``reference_price`` (optional) is what the price collar compares the spot to. Time to expiry
is ACT/365 from the timestamp.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np

YEAR_S = 365.0 * 86400.0
OPTION_TYPES = ("call", "put")


@dataclasses.dataclass(frozen=True)
class Book:
    """Option positions (each field a tuple, one entry per position) and stock holdings."""

    ids: tuple
    underlying: tuple
    option: tuple
    strike: tuple
    expiry: tuple  # datetime.date
    quantity: tuple
    multiplier: tuple
    holdings: dict  # underlying -> shares

    def __len__(self):
        return len(self.ids)

    def underlyings(self) -> list[str]:
        return sorted(set(self.underlying) | set(self.holdings))


@dataclasses.dataclass(frozen=True)
class Quote:
    spot: float
    rate: float
    div_yield: float
    cost: float
    vol: float | None = None
    vol_points: tuple = ()
    reference_price: float | None = None

    def vol_at(self, strike):
        if self.vol is not None:
            return np.full(np.shape(strike), self.vol)
        k, v = np.asarray(self.vol_points, np.float64).T
        return np.interp(strike, k, v)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    timestamp: dt.datetime
    quotes: dict  # underlying -> Quote
    sha256: str  # of the canonical JSON


def _num(where, text, ok=lambda v: True, allowed="a finite number"):
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: must be {allowed} (got {text!r})") from None
    if isinstance(text, bool) or not (math.isfinite(v) and ok(v)):
        raise ValueError(f"{where}: must be {allowed} (got {text!r})")
    return v


def parse_book(text: str, where: str = "book") -> Book:
    """A book from CSV text (module docstring)."""
    return parse_rows(list(csv.DictReader(io.StringIO(text))), where)


def parse_rows(rows: list[dict], where: str = "book") -> Book:
    """A book from row dicts (CSV rows, or JSON objects whose values may be numbers)."""
    if not rows:
        raise ValueError(f"{where}: no rows (expected a header and one row per position)")
    need = ("underlying", "type", "quantity")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise ValueError(f"{where}: missing column {missing[0]!r} (need underlying, type, "
                         f"strike, expiry, quantity)")
    cols = {k: [] for k in ("ids", "underlying", "option", "strike", "expiry", "quantity",
                            "multiplier")}
    holdings: dict[str, float] = {}
    seen = set()
    for i, row in enumerate(rows, start=1):
        at = f"{where} row {i}"
        und = str(row.get("underlying") or "").strip()
        if not und:
            raise ValueError(f"{at}: underlying is empty")
        kind = str(row.get("type") or "").strip().lower()
        qty = _num(f"{at}: quantity", row.get("quantity"))
        if kind == "stock":
            holdings[und] = holdings.get(und, 0.0) + qty
            continue
        if kind not in OPTION_TYPES:
            raise ValueError(f"{at}: type must be call, put or stock (got {row.get('type')!r})")
        pid = str(row.get("id") or "").strip() or f"row{i}"
        if pid in seen:
            raise ValueError(f"{at}: id {pid!r} appears twice")
        seen.add(pid)
        strike = _num(f"{at}: strike", row.get("strike"), lambda v: v > 0, "a number > 0")
        try:
            expiry = dt.date.fromisoformat(str(row.get("expiry") or "").strip())
        except ValueError:
            raise ValueError(f"{at}: expiry must be an ISO date YYYY-MM-DD "
                             f"(got {row.get('expiry')!r})") from None
        mult = row.get("multiplier")
        mult = 1.0 if mult in (None, "") else _num(f"{at}: multiplier", mult, lambda v: v > 0,
                                                   "a number > 0")
        for k, v in (("ids", pid), ("underlying", und), ("option", kind), ("strike", strike),
                     ("expiry", expiry), ("quantity", qty), ("multiplier", mult)):
            cols[k].append(v)
    return Book(**{k: tuple(v) for k, v in cols.items()}, holdings=holdings)


def read_book(path) -> Book:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"--book: cannot read {path} ({err.strerror})") from None
    return parse_book(text, where=f"book {path}")


def parse_timestamp(text, where="snapshot.timestamp") -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"{where}: must be an ISO 8601 time with a UTC offset "
                         f"(got {text!r})") from None
    if t.tzinfo is None:
        raise ValueError(f"{where}: must carry a UTC offset, e.g. 2026-11-27T15:30:00Z "
                         f"(got {text!r})")
    return t


def parse_snapshot(obj) -> Snapshot:
    if not isinstance(obj, dict):
        raise ValueError("snapshot: must be a JSON object with timestamp and underlyings")
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    ts = parse_timestamp(obj.get("timestamp"))
    unds = obj.get("underlyings")
    if not isinstance(unds, dict) or not unds:
        raise ValueError("snapshot.underlyings: must be a non-empty object "
                         "{name: {spot, vol, rate, div_yield, cost}}")
    quotes = {}
    for name, q in unds.items():
        at = f"snapshot.underlyings.{name}"
        if not isinstance(q, dict):
            raise ValueError(f"{at}: must be an object")
        known = {"spot", "vol", "vol_points", "rate", "div_yield", "cost", "reference_price"}
        extra = sorted(set(q) - known)
        if extra:
            raise ValueError(f"{at}.{extra[0]}: unknown field (known: {', '.join(sorted(known))})")
        spot = _num(f"{at}.spot", q.get("spot"), lambda v: v > 0, "a finite number > 0")
        rate = _num(f"{at}.rate", q.get("rate", 0.0), lambda v: -1 < v < 1, "in (-1, 1)")
        div = _num(f"{at}.div_yield", q.get("div_yield", 0.0), lambda v: -1 < v < 1,
                   "in (-1, 1)")
        cost = _num(f"{at}.cost", q.get("cost", 0.0), lambda v: 0 <= v < 1, "in [0, 1)")
        ref = q.get("reference_price")
        ref = None if ref is None else _num(f"{at}.reference_price", ref, lambda v: v > 0,
                                            "a finite number > 0")
        vol_ok = (lambda v: 0 < v <= 5)
        if ("vol" in q) == ("vol_points" in q):
            raise ValueError(f"{at}: give exactly one of vol or vol_points")
        vol, points = None, ()
        if "vol" in q:
            vol = _num(f"{at}.vol", q["vol"], vol_ok, "in (0, 5]")
        else:
            pts = q["vol_points"]
            if not isinstance(pts, list) or not pts:
                raise ValueError(f"{at}.vol_points: must be a non-empty list of [strike, vol]")
            parsed = []
            for j, p in enumerate(pts):
                if not (isinstance(p, list) and len(p) == 2):
                    raise ValueError(f"{at}.vol_points[{j}]: must be [strike, vol]")
                parsed.append((_num(f"{at}.vol_points[{j}] strike", p[0], lambda v: v > 0,
                                    "a number > 0"),
                               _num(f"{at}.vol_points[{j}] vol", p[1], vol_ok, "in (0, 5]")))
            parsed.sort()
            if len({k for k, _ in parsed}) != len(parsed):
                raise ValueError(f"{at}.vol_points: strikes must be distinct")
            points = tuple(parsed)
        quotes[str(name)] = Quote(spot=spot, rate=rate, div_yield=div, cost=cost, vol=vol,
                                  vol_points=points, reference_price=ref)
    return Snapshot(timestamp=ts, quotes=quotes,
                    sha256=hashlib.sha256(canonical.encode()).hexdigest())


def read_snapshot(path) -> Snapshot:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"--market: cannot read {path} ({err.strerror})") from None
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise ValueError(f"--market: {path} is not valid JSON ({err})") from None
    return parse_snapshot(obj)


def check_age(snapshot: Snapshot, now: dt.datetime, max_age_s: float, max_skew_s: float):
    """Refuse a stale snapshot, or one from the future beyond the allowed clock skew."""
    age = (now - snapshot.timestamp).total_seconds()
    if age > max_age_s:
        raise ValueError(f"snapshot.timestamp: {snapshot.timestamp.isoformat()} is {age:.0f} s "
                         f"old (max_snapshot_age_s = {max_age_s:g}): stale snapshot refused")
    if age < -max_skew_s:
        raise ValueError(f"snapshot.timestamp: {snapshot.timestamp.isoformat()} is {-age:.0f} s "
                         f"in the future (max_clock_skew_s = {max_skew_s:g})")


def years_to_expiry(expiry: dt.date, now: dt.datetime) -> float:
    end = dt.datetime.combine(expiry + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)
    return (end - now).total_seconds() / YEAR_S
