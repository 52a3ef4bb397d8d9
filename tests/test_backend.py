"""Backend-aware schedule of the rollout: how many blocks run at once changes the program,
never the paths (the block is the unit of randomness)."""
import jax
import numpy as np
import pytest

from jaxhedge.agents import DeltaHedger
from jaxhedge.env import EnvConfig, HedgingEnv
from jaxhedge.markets import HestonParams
from jaxhedge.rollout import default_parallel_blocks, rollout


@pytest.mark.parametrize("parallel", [2, 4])
def test_vmapped_blocks_give_the_sequential_paths_and_pnl(parallel):
    env = HedgingEnv(EnvConfig(market="heston", n_steps=8))
    params = env.default_params(HestonParams(s0=100.0), strike=100.0)
    kw = dict(n_paths=1000, block_paths=256)  # 4 blocks, the last one partly padding
    seq = rollout(jax.random.key(3), env, params, DeltaHedger(), parallel_blocks=1, **kw)
    par = rollout(jax.random.key(3), env, params, DeltaHedger(), parallel_blocks=parallel,
                  **kw)
    np.testing.assert_array_equal(par.spot, seq.spot)  # the same random numbers
    np.testing.assert_allclose(par.pnl, seq.pnl, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(par.positions, seq.positions, rtol=1e-5, atol=1e-6)


def test_default_schedule_is_sequential_on_cpu_and_whole_on_accelerators():
    assert default_parallel_blocks(16, "cpu") == 1
    assert default_parallel_blocks(16, "gpu") == default_parallel_blocks(16, "tpu") == 16
    assert default_parallel_blocks(0, "gpu") == 1
