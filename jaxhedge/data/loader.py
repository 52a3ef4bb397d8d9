"""Load option chains: the shared preprocessed call files and raw DoltHub ``option_chain`` rows.

Two layouts are accepted (METHODS §5, ``../shared/data/options/README.md``):

* raw DoltHub ``option_chain`` rows: ``date, act_symbol, expiration, strike, call_put, bid,
  ask`` (+ optional ``vol, delta, gamma, theta, vega, rho``), calls and puts;
* the shared preprocessed files: the same columns without ``call_put`` (calls only) plus the
  derived ones (``mid, tau_days, S, r, DF, PV_div, F, alpha_hat, C_eur, P_A, ...``).

:func:`load_chain` validates the schema (missing required columns -> one ValueError naming
them), parses dates and numbers, and drops — and counts in a :class:`DropReport` — rows it
cannot use (unparseable date or expiry, non-positive strike, unknown ``call_put``, another
symbol, expiry before the quote date). Quote-level cleaning (bid/ask, tau window, duplicate
quotes) is :func:`jaxhedge.data.clean.clean`; :func:`load_period` does both for one shared file.

Frame contract (output): ``date``, ``expiration`` as ``datetime64[ns]`` (normalised to
midnight), ``strike`` float64, ``call_put`` in {"Call", "Put"}, numeric columns float64,
rows sorted by (date, expiration, call_put, strike), a fresh RangeIndex.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jaxhedge.data.checks import RATE_RANGE
from jaxhedge.data.report import DropReport

__all__ = ["REQUIRED_COLUMNS", "PERIODS", "ASSETS", "load_chain", "load_period", "PeriodData",
           "parse_dates", "load_eod_rates", "read_text_table", "DataFileError", "MissingDataFile",
           "DATE_RANGE"]

REQUIRED_COLUMNS = ("date", "act_symbol", "expiration", "strike", "bid", "ask")
GREEKS = ("vol", "delta", "gamma", "theta", "vega", "rho")
# Derived columns of the shared files that are numeric (parsed as float, NaN kept for clean()).
DERIVED_NUMERIC = ("mid", "tau_days", "tau_years", "S", "r", "DF", "PV_div", "F", "n_pairs_atm",
                   "alpha_hat", "alpha_used", "C_eur", "moneyness_F", "lower_bound",
                   "upper_bound", "upper_from_put", "C_eur_pre", "P_A")
# Accepted date formats, tried in order. Anything else is an unknown format and the row is
# dropped (never guessed: '01/02/2020' is ambiguous between US and European order).
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y%m%d")
# Quote and expiry dates outside this window are corrupt (a flipped digit: 2202-01-06), not data.
DATE_RANGE = (pd.Timestamp("1990-01-01"), pd.Timestamp("2100-12-31"))


class DataFileError(ValueError):
    """A whole file is unusable (unreadable, empty, header only, not UTF-8 text, no CSV):
    one line naming the file and the problem."""


class MissingDataFile(DataFileError, FileNotFoundError):
    """The data file does not exist (a ValueError for the CLI, a FileNotFoundError too)."""


def read_text_table(path, what: str = "load_chain") -> tuple[pd.DataFrame, int, int]:
    """Read a CSV file as strings, every data row accounted for.

    Returns (frame of str / NaN for empty fields, n_truncated, n_long): a file that does not
    end in a newline was cut inside its last row, so that row is left out and counted
    (``n_truncated`` = 1) -- the cut may fall inside a number (``1.065`` -> ``1.0``), which
    no later check could tell from a real value; rows with more fields than the header are
    left out and counted (``n_long``); shorter rows are padded with NaN (pandas' rule) and
    fail the later checks on the fields they lack. Blank lines are not rows.

    Raises:
      MissingDataFile: no such file.
      DataFileError: unreadable, not UTF-8 text (or NUL bytes: binary, UTF-16), empty,
        header only, or not parseable as CSV -- one line naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataFile(f"{what}: no such file {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataFileError(f"{what}: cannot read {path} ({err.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFileError(f"{what}: {path} is not UTF-8 text (byte 0x{data[err.start]:02x} "
                            f"at offset {err.start})") from None
    if "\x00" in text:
        raise DataFileError(f"{what}: {path} contains NUL bytes (binary data or UTF-16 text, "
                            f"expected UTF-8 CSV)")
    if not text.strip():
        raise DataFileError(f"{what}: {path} is empty")
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as err:
        raise DataFileError(f"{what}: {path} is not a readable CSV file ({err})") from None
    header, body = [h.strip() for h in rows[0]], rows[1:]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataFileError(f"{what}: {path} has duplicate column names {dup[:5]}")
    n_truncated = 0
    if body and not text.endswith(("\n", "\r")):
        body, n_truncated = body[:-1], 1
    if not body and not n_truncated:
        raise DataFileError(f"{what}: {path} has a header but no data rows")
    width = len(header)
    n_long = sum(len(r) > width for r in body)
    # empty fields are missing (NaN), as pandas.read_csv(dtype=str) reads them
    body = [[v if v != "" else None for v in r] + [None] * (width - len(r))
            for r in body if len(r) <= width]
    frame = pd.DataFrame(body if body else None, columns=header, dtype=str)
    return frame, n_truncated, n_long

ASSETS = ("spy", "xop")
# period -> (file suffix, first start day, last start day)
PERIODS = {
    "2020q1": ("20q1", "2020-01-01", "2020-03-31"),
    "2025q2": ("25", "2025-04-01", "2025-06-30"),
}


def parse_dates(values: pd.Series) -> pd.Series:
    """Parse a column of dates with :data:`DATE_FORMATS`; unparseable entries become NaT.

    Already-parsed datetimes pass through. Times of day are dropped (normalised).
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values).dt.normalize()
    text = values.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    for fmt in DATE_FORMATS:
        todo = out.isna() & text.notna()
        if not todo.any():
            break
        out[todo] = pd.to_datetime(text[todo], format=fmt, errors="coerce")
    return out.dt.normalize()


def _normalise_call_put(values: pd.Series) -> pd.Series:
    v = values.astype("string").str.strip().str.lower()
    return v.map({"call": "Call", "c": "Call", "put": "Put", "p": "Put"})


def load_chain(path_or_frame, *, symbol: str | None = None) -> tuple[pd.DataFrame, DropReport]:
    """Read and validate an option chain (a CSV path or a DataFrame).

    Args:
      path_or_frame: path to a CSV in either layout (see module doc), or a DataFrame.
      symbol: keep only rows whose ``act_symbol`` equals it (case-insensitive); other rows
        are counted under "other act_symbol".

    Returns:
      (frame, report): the parsed frame (contract in the module doc; a missing ``call_put``
      column is added as "Call", since the shared files hold calls only) and the rows dropped
      by reason.

    Raises:
      ValueError: required columns missing (one message naming all of them); a file that is
        unreadable, empty, header only or not UTF-8 CSV (:class:`DataFileError`).
      FileNotFoundError: the path does not exist (:class:`MissingDataFile`, also a ValueError).
    """
    n_truncated = n_long = 0
    if isinstance(path_or_frame, pd.DataFrame):
        raw = path_or_frame.copy()
        source = "frame"
    else:
        raw, n_truncated, n_long = read_text_table(path_or_frame)
        source = str(path_or_frame)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataFileError(f"load_chain: {source} is missing required columns {missing} "
                            f"(need {list(REQUIRED_COLUMNS)})")
    report = DropReport(n_in=len(raw) + n_truncated + n_long)
    report.add("truncated last row (file does not end in a newline)", n_truncated)
    report.add("more fields than the header", n_long)
    df = raw.reset_index(drop=True)
    keep = pd.Series(True, index=df.index)

    def drop(bad: pd.Series, reason: str) -> None:
        nonlocal keep
        # a missing value (pandas NA) is a failed check: counted and dropped, never lost
        bad = pd.Series(bad, index=df.index).astype("boolean").fillna(True).astype(bool) & keep
        report.add(reason, int(bad.sum()))
        keep = keep & ~bad

    if symbol is not None:
        sym = df["act_symbol"].astype("string").str.strip().str.upper()
        drop(sym != symbol.upper(), "other act_symbol")
    df["date"] = parse_dates(df["date"])
    drop(df["date"].isna(), "unparseable date")
    df["expiration"] = parse_dates(df["expiration"])
    drop(df["expiration"].isna(), "unknown expiration format")
    lo, hi = DATE_RANGE
    drop((df["date"] < lo) | (df["date"] > hi) | (df["expiration"] > hi),
         f"date outside {lo.year}..{hi.year}")
    if "call_put" in df.columns:
        df["call_put"] = _normalise_call_put(df["call_put"])
        drop(df["call_put"].isna(), "unknown call_put")
    else:
        df["call_put"] = "Call"
    for col in ("strike", "bid", "ask") + GREEKS + DERIVED_NUMERIC:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    drop(~(np.isfinite(df["strike"]) & (df["strike"] > 0)), "strike missing or <= 0")
    drop(df["expiration"] < df["date"], "expiration before date")
    df = df[keep].copy()
    df["act_symbol"] = df["act_symbol"].astype(str).str.strip().str.upper()
    df = df.sort_values(["date", "expiration", "call_put", "strike"], kind="stable")
    df = df.reset_index(drop=True)
    report.n_out = len(df)
    return df, report


class PeriodData(NamedTuple):
    """One asset-period of the shared data.

    ``chain`` is the whole cleaned file (the 2025 file runs to September: the realized paths
    of late-June episodes need the July dates); ``start``/``end`` bound the start days;
    :attr:`quotes` is the chain restricted to the period (the static study's rows).
    """

    asset: str
    period: str
    chain: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    report: DropReport

    @property
    def quotes(self) -> pd.DataFrame:
        d = self.chain["date"]
        return self.chain[(d >= self.start) & (d <= self.end)].reset_index(drop=True)


def shared_file(data_dir, asset: str, period: str) -> Path:
    """Path of the shared preprocessed file of ``asset`` ({spy, xop}) and ``period``."""
    if asset not in ASSETS:
        raise ValueError(f"asset: {asset!r} not one of {list(ASSETS)}")
    if period not in PERIODS:
        raise ValueError(f"period: {period!r} not one of {list(PERIODS)}")
    return Path(data_dir) / f"{asset}_preprocessed_calls_{PERIODS[period][0]}.csv"


def load_period(data_dir, asset: str, period: str) -> PeriodData:
    """Load and clean (METHODS §5.1) the shared file of one asset-period.

    Raises ValueError listing the choices for an unknown ``asset``/``period`` and
    FileNotFoundError naming the missing file.
    """
    from jaxhedge.data.clean import clean

    path = shared_file(data_dir, asset, period)
    if not path.exists():
        raise MissingDataFile(f"load_period: shared data file {path} not found "
                              f"(set the data dir to ../shared/data/options)")
    frame, rep = load_chain(path, symbol=asset.upper())
    frame, rep2 = clean(frame)
    _, lo, hi = PERIODS[period]
    return PeriodData(asset, period, frame, pd.Timestamp(lo), pd.Timestamp(hi), rep + rep2)


def load_eod_rates(path) -> tuple[pd.DataFrame, DropReport]:
    """``spy_eod_and_box_rate.csv`` (Date, SPY close, SOFR_Rate in percent) as a frame indexed
    by date with columns ``spot`` and ``rate`` (decimal, = SOFR/100: the shared 2025 files'
    ``r`` and ``S`` are exactly these). Rows with a bad date or non-finite values are dropped
    and counted. Use as ``to_european(..., spot=eod["spot"], rate=eod["rate"])``.
    """
    path = Path(path)
    raw, n_truncated, n_long = read_text_table(path, "load_eod_rates")
    missing = [c for c in ("Date", "SPY", "SOFR_Rate") if c not in raw.columns]
    if missing:
        raise DataFileError(f"load_eod_rates: {path} is missing columns {missing}")
    report = DropReport(n_in=len(raw) + n_truncated + n_long)
    report.add("truncated last row (file does not end in a newline)", n_truncated)
    report.add("more fields than the header", n_long)
    date = parse_dates(raw["Date"])
    spot = pd.to_numeric(raw["SPY"], errors="coerce")
    rate = pd.to_numeric(raw["SOFR_Rate"], errors="coerce") / 100.0
    bad_d = date.isna()
    bad_v = ~bad_d & ~(np.isfinite(spot) & (spot > 0) & np.isfinite(rate))
    lo, hi = RATE_RANGE
    bad_r = ~bad_d & ~bad_v & ~((rate >= lo) & (rate <= hi))
    report.add("unparseable Date", int(bad_d.sum()))
    report.add("missing or non-positive SPY / SOFR_Rate", int(bad_v.sum()))
    report.add(f"SOFR_Rate/100 outside [{lo:g}, {hi:g}]", int(bad_r.sum()))
    ok = ~(bad_d | bad_v | bad_r)
    out = pd.DataFrame({"spot": spot[ok].to_numpy(float), "rate": rate[ok].to_numpy(float)},
                       index=pd.DatetimeIndex(date[ok], name="date")).sort_index()
    report.n_out = len(out)
    return out, report
