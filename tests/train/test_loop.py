"""jaxhedge.train.loop: chunking invariance, vmapped members, finite checks."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge.train import make_members, make_train, member_keys, stack_hparams
from jaxhedge.train.toy import ToyAgent

AGENT = ToyAgent(batch=16)


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_chunking_does_not_change_results():
    hp = AGENT.default_hparams()
    six, three = make_train(AGENT, 6), make_train(AGENT, 3)
    ts0 = jax.jit(six.init)(jax.random.key(0), hp)
    straight, m6 = jax.jit(six.train_chunk)(ts0, hp)
    half, m3a = jax.jit(three.train_chunk)(ts0, hp)
    halves, m3b = jax.jit(three.train_chunk)(half, hp)
    assert m6["loss"].shape == (6,) and int(straight.step) == 6
    _assert_trees_equal(straight, halves)
    np.testing.assert_array_equal(m6["loss"], np.concatenate([m3a["loss"], m3b["loss"]]))
    assert m6["loss"][-1] < m6["loss"][0]  # it learns


def test_vmapped_members_equal_members_one_by_one():
    sets = [AGENT.default_hparams(), AGENT.default_hparams().replace(learning_rate=0.01)]
    hp = stack_hparams(sets)
    keys = member_keys(3, 2)
    members, single = make_members(AGENT, 4), make_train(AGENT, 4)
    ts = members.init(keys, hp)
    ts, summary = members.train_chunk(ts, hp)
    assert ts.step.shape == (2, 2) and summary.metrics["loss"].shape == (2, 2)
    assert summary.finite.all() and (summary.first_bad == 4).all()
    init, chunk = jax.jit(single.init), jax.jit(single.train_chunk)
    for h, hp_h in enumerate(sets):
        for s in range(2):
            one, metrics = chunk(init(keys[s], hp_h), hp_h)
            mine = jax.tree.map(lambda x: x[h, s], ts)
            for x, y in zip(jax.tree.leaves(mine.agent_state), jax.tree.leaves(one.agent_state)):
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(summary.metrics["loss"][h, s], metrics["loss"].mean(),
                                       rtol=1e-6)


def test_member_keys_prefix_stable():
    a, b = member_keys(7, 2), member_keys(7, 5)
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b[:2]))


def test_summary_flags_first_nan():
    hp = stack_hparams([AGENT.default_hparams(),
                        AGENT.default_hparams().replace(nan_at_step=jnp.int32(2))])
    members = make_members(AGENT, 4)
    ts, summary = members.train_chunk(members.init(member_keys(0, 1), hp), hp)
    np.testing.assert_array_equal(summary.finite, [[True], [False]])
    np.testing.assert_array_equal(summary.first_bad, [[4], [2]])
    assert not np.isfinite(np.asarray(ts.agent_state.params["w"][1, 0])).all()
