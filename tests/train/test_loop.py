"""jaxhedge.train.loop: chunking invariance, vmapped members, finite checks."""
import dataclasses

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


@dataclasses.dataclass(frozen=True)
class ParamsBlowUp(ToyAgent):
    """Update ``at`` (0-based) leaves NaN parameters while its own loss is still finite."""

    at: int = 7

    def update(self, key, state, hparams):
        new, metrics = super().update(key, state, hparams)
        poison = jnp.where(state.step == self.at, jnp.nan, 0.0)
        return new.replace(params={**new.params, "w": new.params["w"] + poison}), metrics


def test_first_bad_update_is_found_from_the_parameters_inside_the_chunk():
    """The loss of update 7 is finite (computed before the step); its parameters are not,
    so the first bad update is 7, not 8 (first NaN loss) nor the chunk's end."""
    agent = ParamsBlowUp(batch=16, at=7)
    hp = stack_hparams([agent.default_hparams()])
    single, hp1 = make_train(agent, 10), agent.default_hparams()
    _, metrics = jax.jit(single.train_chunk)(single.init(member_keys(0, 1)[0], hp1), hp1)
    loss_ok = np.isfinite(np.asarray(metrics["loss"]))
    assert loss_ok[:8].all() and not loss_ok[8]  # the loss alone would point at update 8
    members = make_members(agent, 10)
    start = members.init(member_keys(0, 1), hp)
    # the fast chunk sees the bad parameters at its end; its loss-based index is update 8
    ts, summary = members.train_chunk(start, hp)
    np.testing.assert_array_equal(summary.finite, [[False]])
    np.testing.assert_array_equal(summary.first_bad, [[8]])
    # replaying the chunk with every update checked finds update 7, and the same end state
    ts_exact, exact = members.locate(start, hp)
    np.testing.assert_array_equal(exact.finite, [[False]])
    np.testing.assert_array_equal(exact.first_bad, [[7]])
    np.testing.assert_array_equal(jax.random.key_data(ts.key), jax.random.key_data(ts_exact.key))
    for a, b in zip(jax.tree.leaves(ts.agent_state), jax.tree.leaves(ts_exact.agent_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    clean = ParamsBlowUp(batch=16, at=-1)
    cm = make_members(clean, 10)
    for program in (cm.train_chunk, cm.locate):
        _, ok = program(cm.init(member_keys(0, 1), hp), hp)
        np.testing.assert_array_equal(ok.first_bad, [[10]])
        np.testing.assert_array_equal(ok.finite, [[True]])
