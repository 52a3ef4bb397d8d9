"""Fixtures: a classical BS-delta bundle and bundled protocol agents (built once per session)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from tests.serving.scaled_agent import ScaledVolAgent

NOW = dt.datetime(2026, 11, 27, 15, 35, tzinfo=dt.timezone.utc)


def bs_delta_np(s, k, tau, r, vol, q, is_call):
    """Independent numpy Black-Scholes delta (scipy's normal CDF)."""
    from scipy.stats import norm

    s, k, tau, r, vol, q = (np.asarray(a, np.float64) for a in (s, k, tau, r, vol, q))
    d1 = (np.log(s / k) + (r - q + 0.5 * vol**2) * tau) / (vol * np.sqrt(tau))
    return np.where(is_call, np.exp(-q * tau) * norm.cdf(d1), -np.exp(-q * tau) * norm.cdf(-d1))


@pytest.fixture(scope="session")
def delta_bundle(tmp_path_factory):
    from jaxhedge.serving.export import bundle_classical

    return bundle_classical(tmp_path_factory.mktemp("b") / "delta", "delta")


@pytest.fixture(scope="session")
def agent_bundle(tmp_path_factory):
    from jaxhedge.serving.export import bundle_agent

    agent = ScaledVolAgent()
    hp = agent.default_hparams()
    return bundle_agent(tmp_path_factory.mktemp("b") / "agent", agent, hp,
                        agent.init(None, hp), metrics={"mse": 0.5})


@pytest.fixture(scope="session")
def shifted_bundle(tmp_path_factory):
    """An agent hedging 0.4 shares above the BS delta: trips the sanity and distance guards."""
    from jaxhedge.serving.export import bundle_agent

    agent = ScaledVolAgent(shift=0.4)
    hp = agent.default_hparams()
    return bundle_agent(tmp_path_factory.mktemp("b") / "shifted", agent, hp,
                        agent.init(None, hp))
