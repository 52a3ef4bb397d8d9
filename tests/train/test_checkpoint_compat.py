"""A checkpoint written before an hparams field existed restores with that field's value
from the target (the defaults), e.g. runs from before ``ContractDistribution.dt_hi``."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxhedge.train import run_training
from jaxhedge.train.checkpoint import CheckpointMismatch, Checkpointer, restore_newest
from jaxhedge.train.loop import stack_hparams
from jaxhedge.train.toy import ToyAgent


@struct.dataclass
class _Later:
    """ToyHParams plus a field added 'later' (same names for the old ones)."""

    learning_rate: jax.Array | float = 0.05
    nan_at_step: jax.Array | int = -1
    added: jax.Array | float = 0.0


@struct.dataclass
class _Renamed:
    rate: jax.Array | float = 0.05
    nan_at_step: jax.Array | int = -1
    added: jax.Array | float = 0.0


def test_added_hparam_takes_the_targets_value(tmp_path):
    agent = ToyAgent(batch=8)
    hp = agent.default_hparams().replace(learning_rate=jnp.float32(0.02))
    run_training(agent, hp, n_steps=2, chunk=2, run_dir=tmp_path / "r", progress=False,
                 tensorboard=False)
    ckpt = Checkpointer(tmp_path / "r", read_only=True)
    target = stack_hparams([_Later(jnp.float32(0.05), jnp.int32(-1), jnp.float32(3.0))])
    got = restore_newest(ckpt, agent, target)
    np.testing.assert_allclose(got.hparams.learning_rate, [0.02])  # from the checkpoint
    np.testing.assert_allclose(got.hparams.added, [3.0])  # from the target
    assert got.step == 2
    # not a superset (a renamed field): still a mismatch, named
    with pytest.raises(CheckpointMismatch, match="hparams leaves"):
        restore_newest(ckpt, agent, stack_hparams([_Renamed(jnp.float32(0.05), jnp.int32(-1),
                                                             jnp.float32(3.0))]))
