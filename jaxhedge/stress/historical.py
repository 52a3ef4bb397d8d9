"""Historical stress windows resampled by the stationary block bootstrap.

* ``spy_2020q1`` / ``xop_2020q1``: the underlying close ``S`` by ``date`` of the shared chain
  files ``{spy,xop}_preprocessed_calls_20q1.csv`` (``$JAXHEDGE_DATA_DIR`` or
  ``../shared/data/options`` beside the repository; absent -> :class:`ScenarioUnavailable`).
* ``sp500_2008``: S&P 500 adjusted closes 2008-01-01 .. 2009-12-31 bundled with the optional
  ``arch`` package (``pip install jaxhedge[stress]``; absent -> ScenarioUnavailable).

Time scale: the 2020Q1 files hold about every other trading day, so a return there spans
k >= 1 weekdays. Each return is first brought to one trading day by dividing it by sqrt(k)
(a variance-preserving time change; weekdays, holidays ignored), then to the contract's step
by multiplying by sqrt(dt * 252). The bootstrap (mean block ``block_length`` steps) then
draws one rescaled return per step, so a path has the window's volatility per unit time and
its fat tails and clustering inside blocks. The drift of the window is kept (a falling
quarter stays a falling quarter). vol field: trailing realised vol (20 returns), cost x1.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxhedge.markets.historical import (HistoricalParams, load_chain_spot,
                                         simulate_block_bootstrap)
from jaxhedge.markets.scenarios import Scenario, ScenarioUnavailable

TRADING_DAYS = 252
SOURCES = ("spy_2020q1", "xop_2020q1", "sp500_2008")


def data_dir() -> Path:
    """``$JAXHEDGE_DATA_DIR``, else ``../shared/data/options`` beside the repository."""
    env = os.environ.get("JAXHEDGE_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "options"


def load_window(source: str) -> tuple[np.ndarray, np.ndarray]:
    """(prices, dates as datetime64[D]) of a source; ScenarioUnavailable when absent."""
    if source in ("spy_2020q1", "xop_2020q1"):
        path = data_dir() / f"{source[:3]}_preprocessed_calls_20q1.csv"
        if not path.is_file():
            raise ScenarioUnavailable(f"{source}: data file {path} not found "
                                      f"(set JAXHEDGE_DATA_DIR to the shared options data)")
        s = load_chain_spot(path).prices
    elif source == "sp500_2008":
        s = _arch_sp500()["Adj Close"].loc["2008-01-01":"2009-12-31"].dropna()
    else:
        raise ValueError(f"historical.source: must be one of {SOURCES} (got {source!r})")
    dates = np.asarray(s.index.values, dtype="datetime64[D]")
    return np.asarray(s.to_numpy(), dtype=float), dates


def _arch_sp500() -> pd.DataFrame:
    """arch's bundled S&P 500 file, read directly: ``import arch`` pulls in statsmodels,
    slow to import, for a CSV that pandas reads directly (timing in docs/stress.md)."""
    spec = importlib.util.find_spec("arch")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "sp500" / "sp500.csv.gz"
    if path is None or not path.is_file():
        raise ScenarioUnavailable("sp500_2008: needs the optional 'arch' package and its "
                                  "bundled data (pip install 'jaxhedge[stress]')")
    df = pd.read_csv(path)
    df.index = pd.DatetimeIndex(pd.to_datetime(df.pop("Date")))
    return df.apply(pd.to_numeric, errors="coerce")


def daily_log_returns(prices, dates) -> np.ndarray:
    """Log returns rescaled to one trading day: ``r_i / sqrt(weekdays between the dates)``."""
    r = np.diff(np.log(np.asarray(prices, dtype=float)))
    days = np.busday_count(dates[:-1], dates[1:])
    return r / np.sqrt(np.maximum(days, 1))


@dataclasses.dataclass(frozen=True)
class HistoricalWindow(Scenario):
    """Block bootstrap of a real stress window (module docstring), rescaled to the contract."""

    name: ClassVar[str] = "historical"
    simulate: ClassVar = staticmethod(simulate_block_bootstrap)
    source: str = "spy_2020q1"
    block_length: float = 5.0

    def __post_init__(self):
        object.__setattr__(self, "name", self.source)  # instance name = the window's
        super().__post_init__()

    def validate(self):
        self._require("source", self.source in SOURCES, f"one of {SOURCES}")
        self._in("block_length", 1.0, 1000.0)

    def step_returns(self, contract) -> np.ndarray:
        """The window's returns rescaled to the contract step (host side, float64)."""
        prices, dates = load_window(self.source)
        return daily_log_returns(prices, dates) * np.sqrt(float(contract.dt) * TRADING_DAYS)

    def params(self, contract, severity=1.0):
        if not (isinstance(severity, (int, float)) and severity == 1.0):
            raise ValueError(f"{self.source}.severity: historical windows have no severity "
                             f"knob (only 1.0; got {severity!r})")
        return HistoricalParams(log_returns=jnp.asarray(self.step_returns(contract), dtype=float),
                                s0=contract.s0, mean_block_length=self.block_length)

    def describe(self) -> dict:
        return {"name": self.source, "source": self.source, "block_length": self.block_length}
