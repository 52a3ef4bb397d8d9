"""What must hold on an accelerator (``pytest -m gpu``; skipped without one, see conftest).

Each test compares the accelerator with the CPU backend of the same process (jax with a
GPU plugin keeps the CPU platform available) or with itself (bitwise resume).
"""
import jax
import numpy as np
import pytest

from jaxhedge.agents import DeltaHedger
from jaxhedge.env import EnvConfig, HedgingEnv
from jaxhedge.markets import GBMParams, HestonParams
from jaxhedge.rollout import rollout
from jaxhedge.train import resume_training, run_training
from jaxhedge.train.toy import ToyAgent

pytestmark = pytest.mark.gpu

TOY_SWEEP = """
[sweep]
name = "toy"
agent = "toy"
n_seeds = 2
n_steps = 20
chunk = 10
block_size = 0
[dynamic]
learning_rate = [0.01, 0.05, 0.1]
[static]
batch = [16]
"""


def _on(device, fn):
    with jax.default_device(device):
        return jax.tree.map(np.asarray, fn())


@pytest.mark.parametrize("market, params", [("gbm", GBMParams(s0=100.0, sigma=0.2)),
                                            ("heston", HestonParams(s0=100.0))])
def test_rollout_equals_cpu_to_float32_rounding(market, params):
    env = HedgingEnv(EnvConfig(market=market, n_steps=16))
    p = env.default_params(params, strike=100.0)
    run = lambda: rollout(jax.random.key(7), env, p, DeltaHedger(), 20_000)  # noqa: E731
    acc = _on(jax.devices()[0], run)
    cpu = _on(jax.devices("cpu")[0], run)
    # same random bits on both backends; transcendental functions differ by a few ulps
    np.testing.assert_allclose(acc.spot, cpu.spot, rtol=2e-6)
    np.testing.assert_allclose(acc.pnl, cpu.pnl, rtol=1e-4, atol=1e-3)
    assert abs(acc.pnl.mean() - cpu.pnl.mean()) < 1e-4 * np.abs(cpu.pnl).mean() + 1e-5


def test_resume_on_the_accelerator_is_bitwise(tmp_path):
    agent = ToyAgent(batch=64)
    kw = dict(seed=4, config={"train": {"n_steps": 20, "chunk": 5}}, n_seeds=2,
              progress=False, chunk=5)
    straight = run_training(agent, agent.default_hparams(), n_steps=20,
                            run_dir=tmp_path / "straight", **kw)
    run_training(agent, agent.default_hparams(), n_steps=10, run_dir=tmp_path / "half", **kw)
    resumed = resume_training(tmp_path / "half", 20, progress=False)
    assert resumed.info["params_sha256"] == straight.info["params_sha256"]
    assert straight.info["device"]["backend"] == jax.default_backend() != "cpu"


def test_sweep_shards_members_over_the_real_devices(tmp_path):
    """The toy sweep on the accelerator(s): members padded to a multiple of the real device
    count, every member distinct and finite."""
    from jaxhedge.sweep.local import run_local
    from jaxhedge.sweep.spec import load_sweep
    path = tmp_path / "toy.toml"
    path.write_text(TOY_SWEEP)
    acc = run_local(load_sweep(path), tmp_path / "acc", progress=False)
    assert all(b.size % len(jax.devices()) == 0 for b in acc.plan.blocks)
    assert len(acc.table) == 6 and acc.table["params_sha256"].nunique() == 6
    assert np.isfinite(acc.table.filter(like="loss").to_numpy(float)).all()
