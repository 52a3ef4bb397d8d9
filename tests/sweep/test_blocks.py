"""Block sizing: a 10,000-member sweep is planned into blocks within a memory budget
(compiling probes only), and the chosen size's compiled memory really fits."""
import numpy as np
import pytest

from jaxhedge.sweep.blocks import (MIN_SHARE, MemoryEstimate, _compiled_bytes,
                                   choose_block_size, estimate_memory, plan_sweep)
from jaxhedge.sweep.spec import spec_from_dict


def test_choose_block_size_rules():
    est = MemoryEstimate(fixed=1000.0, per_member=100.0)
    # shared host memory: 4 devices' fixed parts + 100 B per member
    assert choose_block_size(10_000, 4, est, 4000 + 100 * 50, False, None) == 48
    # per device: each device holds b/4 members next to its own fixed part
    assert choose_block_size(10_000, 4, est, 1000 + 100 * 50, True, None) == 200
    assert choose_block_size(10_000, 4, est, 1e12, True, 30) == 28  # --max-block
    assert choose_block_size(10, 4, est, 1e12, True, None) == 12  # the group, padded
    assert choose_block_size(10, 4, est, 1.0, True, None) == MIN_SHARE * 4  # floor


def test_memory_estimate_is_linear_and_matches_compiled():
    from jaxhedge.train.toy import ToyAgent

    agent = ToyAgent(batch=64)
    hp = agent.default_hparams()
    est = estimate_memory(agent, hp, chunk=10)
    assert est.per_member > 0
    actual = _compiled_bytes(agent, hp, 10, 40)
    assert actual == pytest.approx(est.bytes(40), rel=0.05)


def test_ten_thousand_members_planned_within_budget():
    spec = spec_from_dict({
        "sweep": {"agent": "toy", "search": "random", "n_samples": 2500, "n_seeds": 4,
                  "n_steps": 10, "seed": 7},
        "dynamic": {"learning_rate": {"distribution": "loguniform", "low": 1e-3, "high": 0.3}}})
    assert spec.n_members == 10_000
    budget = 600_000.0  # bytes: forces many blocks for the toy agent
    plan = plan_sweep(spec, n_devices=1, budget_bytes=budget)
    sizes = {b.size for b in plan.blocks}
    assert len(sizes) == 1  # one padded size: the group compiles once
    B = sizes.pop()
    est = MemoryEstimate(**plan.estimate[0])
    assert est.bytes(B) <= budget < est.bytes(B + 1)
    assert 1 < len(plan.blocks) == -(-10_000 // B)
    covered = np.zeros(10_000, int)
    for b in plan.blocks:
        assert b.stop - b.start <= B
        covered[b.start:b.stop] += 1
    assert (covered == 1).all()  # every member in exactly one block
    from jaxhedge.train.toy import ToyAgent
    assert _compiled_bytes(ToyAgent(), ToyAgent().default_hparams(), 10, B) <= budget
