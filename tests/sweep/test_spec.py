"""Sweep files: validation messages, groups, grid order and reproducible random draws."""
import itertools

import numpy as np
import pytest

from jaxhedge.config import ConfigError
from jaxhedge.sweep.spec import load_sweep, member_configs, spec_from_dict


def _data(**sweep):
    base = {"agent": "toy", "n_steps": 4, "search": "grid"}
    base.update(sweep)
    return {"sweep": base, "dynamic": {"learning_rate": [0.01, 0.1]}, "static": {"batch": [8, 16]}}


def test_counts_groups_and_members():
    spec = spec_from_dict({**_data(n_seeds=3), "dynamic": {"learning_rate": [0.01, 0.1, 0.2],
                                                           "nan_at_step": [-1, 7]}})
    assert (spec.n_groups, spec.n_configs, spec.n_members) == (2, 6, 2 * 6 * 3)
    groups = spec.groups()
    assert [g.static for g in groups] == [{"batch": 8}, {"batch": 16}]
    assert [g.job.build()[0].batch for g in groups] == [8, 16]


def test_grid_order_is_the_cartesian_product():
    spec = spec_from_dict({**_data(), "dynamic": {"learning_rate": [0.01, 0.1, 0.2],
                                                  "nan_at_step": [-1, 7]}})
    got = member_configs(spec, range(6))
    want = list(itertools.product([0.01, 0.1, 0.2], [-1, 7]))
    assert list(zip(got["learning_rate"].tolist(), got["nan_at_step"].tolist())) == want


def test_random_draws_are_reproducible_and_prefix_stable():
    dyn = {"learning_rate": {"distribution": "loguniform", "low": 1e-4, "high": 1e-1},
           "nan_at_step": {"distribution": "choice", "values": [-1, 3, 5]}}
    small = spec_from_dict({**_data(search="random", n_samples=5, seed=3), "dynamic": dyn})
    big = spec_from_dict({**_data(search="random", n_samples=50, seed=3), "dynamic": dyn})
    other = spec_from_dict({**_data(search="random", n_samples=5, seed=4), "dynamic": dyn})
    a, b = member_configs(small, range(5)), member_configs(big, range(50))
    np.testing.assert_array_equal(a["learning_rate"], b["learning_rate"][:5])
    assert not np.array_equal(a["learning_rate"], member_configs(other, range(5))["learning_rate"])
    lr = b["learning_rate"]
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    assert set(b["nan_at_step"].tolist()) == {-1, 3, 5}
    # log-uniform: about half the draws below the geometric midpoint 10^-2.5
    assert 10 <= (np.log10(lr) < -2.5).sum() <= 40


@pytest.mark.parametrize("data, message", [
    ({"sweep": {"agent": "toy", "n_stpes": 3}}, "sweep.n_stpes: unknown key (did you mean 'n_steps'?)"),
    ({"sweep": {"agent": "toy"}, "dynamc": {}}, "dynamc: unknown key (did you mean 'dynamic'?)"),
    ({"sweep": {"agent": "qlbs"}}, "sweep.agent: 'qlbs' cannot be swept (qlbs is priced"),
    ({"sweep": {"agent": "nope"}}, "sweep.agent: 'nope' cannot be swept; choose one of"),
    ({"sweep": {"agent": "toy"}, "dynamic": {"batch": [8, 16]}},
     "dynamic.batch: is static (it configures the agent"),
    ({"sweep": {"agent": "rlop", "preset": "smoke"}, "dynamic": {"agent.width": [8, 16]}},
     "dynamic.agent.width: is static"),
    ({"sweep": {"agent": "toy"}, "dynamic": {"learning_rte": [0.1]}},
     "dynamic.learning_rte: not an hparam of toy (did you mean 'learning_rate'?)"),
    ({"sweep": {"agent": "toy"}, "dynamic": {"hparams.learning_rate": [0.1]}},
     "dynamic.hparams.learning_rate: name hparams by their path in the hparams pytree"),
    ({"sweep": {"agent": "toy"}, "dynamic": {"learning_rate": {"distribution": "uniform",
                                                                "low": 0.1, "high": 0.2}}},
     "dynamic.learning_rate: a distribution needs search = 'random' or 'optuna'"),
    ({"sweep": {"agent": "toy", "search": "random", "n_samples": 2},
      "dynamic": {"learning_rate": {"distribution": "gauss"}}},
     "dynamic.learning_rate.distribution: expected one of 'uniform', 'loguniform', 'choice'"),
    ({"sweep": {"agent": "toy", "search": "random", "n_samples": 2},
      "dynamic": {"learning_rate": {"distribution": "loguniform", "low": 0.0, "high": 1.0}}},
     "dynamic.learning_rate.low: loguniform needs low > 0"),
    ({"sweep": {"agent": "toy", "search": "random"}}, "sweep.n_samples: must be >= 1"),
    ({"sweep": {"agent": "toy", "metrics": ["los"]}}, "sweep.metrics: 'los' is not a metric of toy"),
    ({"sweep": {"agent": "toy"}, "static": {"bach": [8]}}, "bach: unknown key (did you mean 'batch'?)"),
    ({"sweep": {"agent": "toy", "mode": "best"}}, "sweep.mode: expected one of 'min', 'max'"),
])
def test_bad_files_fail_with_one_line_naming_the_field(data, message):
    with pytest.raises(ConfigError) as err:
        spec_from_dict(data)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_real_agent_leaf_paths_and_example_files():
    spec = spec_from_dict({"sweep": {"agent": "deep-hedging", "preset": "smoke"},
                           "dynamic": {"env.costs.proportional": [0.0, 0.01]}})
    assert spec.n_members == 2
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "experiments" / "sweeps").glob("*.toml"))
    assert {p.stem for p in files} >= {"smoke"}
    for path in files:
        assert load_sweep(path).n_members >= 1
