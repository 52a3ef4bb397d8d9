"""Early stopping on a validation criterion: the right update, exact resume, the criterion."""
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge import pricing
from jaxhedge.contracts import Contract, ContractDistribution
from jaxhedge.train import resume_training, run_training
from jaxhedge.train.loop import make_train, member_keys
from jaxhedge.train.runner import _config_callbacks
from jaxhedge.train.toy import ToyAgent
from jaxhedge.train.validation import (EarlyStopping, ValidationConfig, evaluate_member,
                                       read_validation, validation_grid)

AGENT = ToyAgent(batch=16)
CHUNK, SEED, CAP = 5, 3, 40
GRID = Contract(s0=jnp.linspace(80.0, 120.0, 9), strike=100.0, maturity=0.5, sigma=0.3)


def _hedge_error(state) -> float:
    """The test's criterion: max |toy hedge - BS delta| on GRID (independent of the trainer)."""
    u = AGENT.hedger(state)(GRID.observation())
    delta = pricing.bs_delta(GRID.s0, GRID.strike, GRID.maturity, 0.0, GRID.sigma, 0.0, True)
    return float(jnp.max(jnp.abs(u - delta)))


@pytest.fixture(scope="module")
def errors():
    """The criterion after every chunk, from the plain single-member chunks of
    :func:`make_train` (no runner, no callback, no checkpoints)."""
    train = make_train(AGENT, CHUNK)
    hp = AGENT.default_hparams()
    ts = train.init(member_keys(SEED, 1)[0], hp)
    chunk = jax.jit(train.train_chunk)
    out = {}
    for n in range(CHUNK, CAP + 1, CHUNK):
        ts = chunk(ts, hp)[0]
        out[n] = _hedge_error(ts.agent_state)
    return out


def _tol(errors):
    """A tolerance first met at a chunk strictly inside the cap (midway between two values)."""
    steps = sorted(errors)
    target = steps[len(steps) // 2]
    before = min(errors[s] for s in steps if s < target)
    assert errors[target] < before, "the toy's hedge error must improve for this test"
    return 0.5 * (errors[target] + before), min(s for s in steps if errors[s] < 0.5 * (
        errors[target] + before))


def _stopper(tol, patience=0):
    def evaluate(agent, hparams, state):
        err = _hedge_error(state)
        return {"hedge_err": err, "score": err / tol, "passed": err <= tol}
    return EarlyStopping(ValidationConfig(enabled=True, patience=patience, gates=False),
                         evaluate)


def _train(run_dir, n_steps, stopper, **kw):
    return run_training(AGENT, AGENT.default_hparams(), seed=SEED, n_steps=n_steps, chunk=CHUNK,
                        run_dir=run_dir, progress=False, tensorboard=False,
                        callbacks=[stopper], **kw)


def test_stops_at_the_first_update_meeting_the_criterion(tmp_path, errors):
    tol, expected = _tol(errors)
    res = _train(tmp_path / "run", CAP, _stopper(tol))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["step"] == expected < CAP and info["stop_reason"] == (
        f"criterion met at step {expected:,}")
    assert info["validation"]["met_at_step"] == expected
    rows = read_validation(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(CHUNK, expected + 1, CHUNK))
    np.testing.assert_allclose([r["members"][0]["hedge_err"] for r in rows],
                               [errors[s] for s in range(CHUNK, expected + 1, CHUNK)], rtol=1e-5)
    # the stopping state is the newest checkpoint, and the one returned
    assert int(np.asarray(res.train_state.step).ravel()[0]) == expected


def test_min_steps_defers_the_stop_but_records_every_evaluation(tmp_path, errors):
    tol, expected = _tol(errors)
    min_steps = expected + 2 * CHUNK - 1
    later = min(s for s in errors if s >= min_steps and errors[s] <= tol)
    stopper = _stopper(tol)
    stopper.cfg = ValidationConfig(enabled=True, gates=False, min_steps=min_steps)
    _train(tmp_path / "run", CAP, stopper)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["step"] == later and info["stop_reason"] == f"criterion met at step {later:,}"
    assert info["validation"]["met_at_step"] == later  # where a pass may stop the run
    rows = read_validation(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(CHUNK, later + 1, CHUNK))
    assert [r["passed"] for r in rows].index(True) == expected // CHUNK - 1
    with pytest.raises(ValueError, match="min_steps"):
        ValidationConfig(min_steps=-1)


def test_resume_reaches_the_same_stop_bitwise(tmp_path, errors):
    tol, expected = _tol(errors)
    straight = _train(tmp_path / "a", CAP, _stopper(tol))
    # a run cut one chunk before the stop (as if it had crashed there), then resumed
    _train(tmp_path / "b", expected - CHUNK, _stopper(tol))
    resumed = resume_training(tmp_path / "b", CAP, callbacks=[_stopper(tol)], progress=False,
                              tensorboard=False)
    assert resumed.info["step"] == expected and resumed.info["params_sha256"] == (
        straight.info["params_sha256"])
    assert [r["step"] for r in read_validation(tmp_path / "b")] == [
        r["step"] for r in read_validation(tmp_path / "a")]
    # resuming the early-stopped run re-decides at its step and trains no further
    again = resume_training(tmp_path / "a", CAP, callbacks=[_stopper(tol)], progress=False,
                            tensorboard=False)
    assert again.info["step"] == expected and again.info["stop_reason"].startswith("criterion")
    assert again.info["params_sha256"] == straight.info["params_sha256"]


def test_patience_stops_a_run_that_does_not_improve(tmp_path):
    flat = EarlyStopping(ValidationConfig(enabled=True, patience=2, gates=False),
                         lambda a, h, s: {"score": 3.0, "passed": False})
    info = _train(tmp_path / "run", CAP, flat).info
    # evaluation 1 sets the best, 2 and 3 do not improve on it: stop after the 3rd chunk
    assert info["step"] == 3 * CHUNK and info["stop_reason"].startswith("no improvement")


def test_config_section_adds_early_stopping():
    # run_training and resume_training (whose config comes from the checkpoint) both pass
    # the run's config here: an enabled [validation] section adds the callback
    (cb,) = _config_callbacks({"validation": {"enabled": True, "patience": 4}}, [])
    assert isinstance(cb, EarlyStopping) and cb.cfg.patience == 4
    assert _config_callbacks({"validation": {"enabled": False}}, []) == []
    assert _config_callbacks({"train": {}}, []) == [] and _config_callbacks(None, []) == []
    assert _config_callbacks({"validation": {"enabled": True}}, [cb]) == []  # one given


class _BSAgent:
    """A fake latent-vol agent whose price is BS at ``(1 + e) sigma`` and hedge the BS delta
    at it: the criterion's numbers are then known in closed form."""

    n_steps, option = 4, "call"

    def __init__(self, e):
        self.e = e

    def price(self, state, hparams, c):
        return pricing.bs_price(c.s0, c.strike, c.maturity, c.rate, c.sigma * (1 + self.e),
                                c.div_yield, True)

    def hedger(self, state, hparams):
        e = self.e
        return lambda o: pricing.bs_delta(o.spot, o.strike, o.time_to_maturity, o.rate,
                                          o.vol * (1 + e), o.div_yield, True)


class _Params(NamedTuple):
    contracts: ContractDistribution


_HP = _Params(ContractDistribution(dt=0.01, dt_hi=0.05, sigma_lo=0.1, sigma_hi=0.5,
                                   s0_lo=0.8, s0_hi=1.2))


def test_criterion_numbers_match_black_scholes():
    cfg = ValidationConfig(enabled=True, gates=False, price_tol=0.05, hedge_tol=0.03)
    exact = evaluate_member(_BSAgent(0.0), _HP, None, cfg)
    assert exact["price_err"] < 1e-5 and exact["hedge_err"] < 1e-5 and exact["passed"]
    off = evaluate_member(_BSAgent(0.1), _HP, None, cfg)
    g = validation_grid(_BSAgent(0.1), _HP, cfg.n_points)
    bs = np.asarray(pricing.bs_price(g.s0, 1.0, g.maturity, 0.0, g.sigma, 0.0, True))
    hi = np.asarray(pricing.bs_price(g.s0, 1.0, g.maturity, 0.0, 1.1 * g.sigma, 0.0, True))
    keep = bs >= cfg.min_price * np.asarray(g.s0)
    np.testing.assert_allclose(off["price_err"], np.max(hi[keep] / bs[keep] - 1), rtol=1e-4)
    np.testing.assert_allclose(off["price_rmse"],
                               np.sqrt(np.mean((hi[keep] / bs[keep] - 1) ** 2)), rtol=1e-4)
    np.testing.assert_allclose(off["score"], max(off["price_rmse"] / 0.05,
                                                 off["hedge_mae"] / 0.03), rtol=1e-6)
    assert not off["passed"] and off["score"] > 1
    # the grid spans the distribution: bin centres of sigma, S0/K and T = n_steps dt
    assert np.allclose(np.unique(np.asarray(g.sigma)), 0.1 + 0.4 * (np.arange(5) + 0.5) / 5)
    assert np.allclose(np.unique(np.asarray(g.maturity)),
                       4 * (0.01 + 0.04 * (np.arange(5) + 0.5) / 5))


def test_validation_config_rejects_bad_values():
    with pytest.raises(ValueError, match="price_tol"):
        ValidationConfig(price_tol=0.0)
    with pytest.raises(ValueError, match="patience"):
        ValidationConfig(patience=-1)
