"""One Adaptive-QLBS ``paper``-preset training iteration: time and achieved GFLOP/s.

The iteration simulates 2,500 environments, each with RS = 200 continuations over the
remaining dates (4 + 3 + 2 + 1 = 10 for N = 4: 5 M nested sub-path steps, each with a
policy-network evaluation), and takes one Adam step.

FLOPs: the headline counts the policy network's forward passes on the continuations, the
work that dominates, analytically: 2 x (number of weights) per evaluation x the nested
sub-path steps. XLA's own ``cost_analysis()`` figure is reported too, but it counts the body
of a loop once rather than once per trip, so it undercounts scanned work. Used by
``benchmarks/training.py``.
"""
from __future__ import annotations

import time

import jax

from jaxhedge.agents.adaptive_qlbs import AdaptiveQLBS


def paper_episode(repeats: int = 2) -> dict:
    agent, hparams = AdaptiveQLBS.preset("paper")
    key = jax.random.PRNGKey(0)
    state = agent.init(key, hparams)
    update = jax.jit(agent.update)
    t0 = time.perf_counter()
    compiled = update.lower(key, state, hparams).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan")))
    jax.block_until_ready(compiled(key, state, hparams))
    best = float("inf")
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.fold_in(key, i), state, hparams))
        best = min(best, time.perf_counter() - t0)
    n_weights = sum(int(leaf.size) for path, leaf in
                    jax.tree_util.tree_leaves_with_path(state.params["policy"])
                    if getattr(leaf, "ndim", 0) == 2)
    sub_steps = agent.n_envs * agent.n_continuations * agent.n_steps * (agent.n_steps + 1) // 2
    network_flops = 2.0 * n_weights * sub_steps
    return {"n_envs": agent.n_envs, "n_continuations": agent.n_continuations,
            "n_steps": agent.n_steps,
            "nested_sub_path_steps": sub_steps, "policy_weights": n_weights,
            "compile_s": compile_s, "run_s": best,
            "network_flops": network_flops, "gflops": network_flops / best / 1e9,
            "xla_cost_analysis_flops": flops}


if __name__ == "__main__":
    print(paper_episode())
