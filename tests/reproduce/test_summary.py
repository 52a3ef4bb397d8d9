"""Winners and rank correlations of the real-data study, against hand-built tables."""
import doctest

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhedge.reproduce import summary
from jaxhedge.reproduce.summary import rank_correlations, spearman, summary_markdown, winners

MODELS = ["bs", "jd", "sv", "aqlbs", "rlop"]


def test_doctests():
    assert doctest.testmod(summary).failed == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=3, max_size=12, unique=True))
def test_spearman_matches_scipy_and_is_rank_invariant(x):
    from scipy.stats import spearmanr

    x = np.array(x, float)
    y = np.sin(x) + 0.1 * x
    expected = spearmanr(x, y).statistic
    got = spearman(x, y)
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)
        assert spearman(np.exp(x / 1e3), y) == pytest.approx(got, abs=1e-12)  # monotone map


def test_spearman_degenerate_cases_are_nan():
    assert np.isnan(spearman([1, 2], [1, 2]))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert spearman([1, np.nan, 2, 3, 4], [1, 5, 2, 3, 4]) == pytest.approx(1.0)


def _static(scores):
    rows = []
    for bucket in (14, 28, 56):
        for m, s in scores.items():
            rows.append({"period": "2020q1", "asset": "spy", "bucket_days": bucket,
                         "group": "all", "model": m, "ivrmse_x1e3": s + bucket / 100,
                         "n_days": 10})
            rows.append({"period": "2020q1", "asset": "spy", "bucket_days": bucket,
                         "group": "K/F<1", "model": m, "ivrmse_x1e3": -s, "n_days": 10})
    return pd.DataFrame(rows)


def _hedging(scores, mode="surface-delta"):
    rows = []
    for bucket in (14, 28, 56):
        for target in (1.0, 1.03):
            for m, s in scores.items():
                rows.append({"period": "2020q1", "asset": "spy", "bucket_days": bucket,
                             "target_moneyness": target, "model": m, "mode": mode,
                             "rmse": s, "avg_cost": -s, "shortfall_prob": s / 10,
                             "es_5": s * 2, "es_10": np.nan, "n_hedges": 20})
    return pd.DataFrame(rows)


def test_rank_correlation_signs_follow_the_construction():
    static_scores = dict(zip(MODELS, [5.0, 4.0, 3.0, 2.0, 1.0]))
    hedge_scores = dict(zip(MODELS, [10.0, 8.0, 6.0, 4.0, 2.0]))  # same order
    rc = rank_correlations(_static(static_scores), _hedging(hedge_scores))
    head = rc[rc["scope"] == "all buckets"].iloc[0]
    assert head["n_models"] == 5
    assert head["rho_rmse"] == pytest.approx(1.0)
    assert head["rho_avg_cost"] == pytest.approx(-1.0)  # cost built in reverse order
    assert np.isnan(head["rho_es_10"])  # all NaN: no ranking
    assert set(rc["scope"]) == {"all buckets", "14d", "28d", "56d"}


def test_rank_correlation_ignores_other_groups_and_modes():
    static_scores = dict(zip(MODELS, [1.0, 2.0, 3.0, 4.0, 5.0]))
    hedge = pd.concat([_hedging(dict(zip(MODELS, [1.0, 2.0, 3.0, 4.0, 5.0]))),
                       _hedging(dict(zip(MODELS, [5.0, 4.0, 3.0, 2.0, 1.0])), mode="policy")])
    rc = rank_correlations(_static(static_scores), hedge)
    # the K/F<1 rows are built reversed, the policy rows too: both must be ignored
    assert np.allclose(rc["rho_rmse"], 1.0)


def test_winners_pick_the_lowest_and_share_ties():
    frame = pd.DataFrame({"slice": [1, 1, 1, 2, 2], "model": ["a", "b", "c", "a", "b"],
                          "m": [3.0, 1.0, 1.0, np.nan, 2.0], "n": [np.nan] * 5})
    w = winners(frame, ["slice"], ["m", "n"])
    assert list(w["m"]) == ["b+c", "b"]
    assert list(w["n"]) == ["", ""]


def test_summary_names_the_winner_of_every_slice():
    hedge = _hedging(dict(zip(MODELS, [5.0, 4.0, 3.0, 0.5, 1.0])))
    text = summary_markdown(_static(dict(zip(MODELS, [1.0, 2.0, 3.0, 4.0, 5.0]))), hedge)
    table = text.split("## Best hedger per slice (surface-delta mode")[1].split("##")[0]
    rows = [r for r in table.splitlines() if r.startswith("| 2020q1")]
    assert len(rows) == 6  # 3 buckets x 2 targets
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert cells[4] == "aqlbs"  # rmse
        assert cells[5] == "bs"  # avg_cost = -score
    assert "rho(IVRMSE, RMSE) = -0.90" in text
