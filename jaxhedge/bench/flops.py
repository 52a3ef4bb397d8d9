"""FLOP accounting from network shapes and the rows the code really evaluates.

Counted: matrix-multiply FLOPs only, ``2 x in x out`` per dense layer per row (a
multiply and an add per weight). Not counted: bias adds, activations, residual adds and
every other elementwise op (they are a few percent of the matmul work at the widths used
here and are not what the matmul peak measures).

Adaptive-QLBS rows (:func:`adaptive_qlbs_policy_rows`). One update evaluates the policy
network on

* the main path: ``E`` rows at each of the ``N`` dates;
* the continuations: at date ``t`` the hedge at ``t`` is the sampled action and the later
  dates ``s = t+1..N-1`` follow the policy mean on ``E x RS`` rows (the final date ``N``
  needs no hedge, and ``lax.cond(s > t)`` skips the dates up to ``t``), i.e.
  ``sum_t (N - 1 - t) = N (N - 1) / 2`` dates: 6 for N = 4, **3.0 M rows** for the paper
  preset (2,500 x 200 x 6), not the 5.0 M (``N (N + 1) / 2 = 10``) counted before;
* the loss: ``E x N`` rows forward, and their backward pass (about twice the forward).

>>> cfg = {"in_dim": 9, "width": 64, "n_blocks": 3, "layers_per_block": 3, "out_dim": 2}
>>> residual_mlp_macs(**cfg)
37568
>>> adaptive_qlbs_policy_rows(n_envs=2500, n_continuations=200, n_steps=4)["continuation"]
3000000
"""
from __future__ import annotations

import jax


def mlp_macs(in_dim: int, widths, out_dim: int) -> int:
    """Multiply-accumulates per row of :class:`jaxhedge.nets.MLP` (weights only).

    >>> mlp_macs(4, (32, 32, 32, 32), 1)  # pfhedge's MultiLayerPerceptron on 4 inputs
    3232
    """
    dims = (in_dim, *widths, out_dim)
    return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def residual_mlp_macs(in_dim: int, width: int, n_blocks: int, layers_per_block: int,
                      out_dim: int) -> int:
    """Multiply-accumulates per row of :class:`jaxhedge.nets.ResidualMLP`."""
    return in_dim * width + n_blocks * layers_per_block * width * width + width * out_dim


def params_macs(params) -> int:
    """Multiply-accumulates per row of a dense network, read from its parameters: the size
    of every 2-D leaf (the kernels; biases are 1-D)."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(params)
               if getattr(leaf, "ndim", 0) == 2)


def adaptive_qlbs_policy_rows(n_envs: int, n_continuations: int, n_steps: int) -> dict:
    """Policy-network rows one Adaptive-QLBS update evaluates (module docstring)."""
    main = n_envs * n_steps
    cont = n_envs * n_continuations * n_steps * (n_steps - 1) // 2
    return {"main_path": main, "continuation": cont, "loss_forward": main,
            "forward_total": main + cont + main}


def adaptive_qlbs_update_flops(agent, state) -> dict:
    """Matmul FLOPs of one update: forward rows x 2 x MACs, plus the loss's backward pass
    (2 x its forward) for the policy and the baseline network."""
    rows = adaptive_qlbs_policy_rows(agent.n_envs, agent.n_continuations, agent.n_steps)
    pol = params_macs(state.params["policy"])
    base = params_macs(state.params["baseline"])
    forward = 2.0 * pol * rows["forward_total"]
    backward = 2.0 * 2.0 * (pol + base) * rows["loss_forward"]
    baseline_fwd = 2.0 * base * rows["loss_forward"]
    return {"rows": rows, "policy_macs_per_row": pol, "baseline_macs_per_row": base,
            "flops": forward + baseline_fwd + backward,
            "flops_continuations": 2.0 * pol * rows["continuation"]}


def xla_flops(compiled) -> float:
    """XLA's ``cost_analysis()['flops']`` of a compiled program (a dict, or a list of
    dicts in older JAX). XLA counts a loop body ONCE, not once per trip, so this
    undercounts scanned work; use it on loop-free kernels."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def policy_kernel(agent, state, n_rows: int):
    """``(compiled, x)``: the Adaptive-QLBS policy network on ``n_rows`` feature rows."""
    from jaxhedge import nets

    x = jax.random.normal(jax.random.key(0), (n_rows, nets.N_FEATURES))
    fn = jax.jit(lambda p, x: nets.apply(state.policy_graphdef, p, x))
    return fn.lower(state.params["policy"], x).compile(), x


def adaptive_qlbs_episode(agent, hparams, repeats: int = 2) -> dict:
    """Time one Adaptive-QLBS update (compile apart) and its achieved matmul GFLOP/s."""
    from jaxhedge.bench.timing import compile_and_time

    key = jax.random.PRNGKey(0)
    state = agent.init(key, hparams)
    compiled, compile_s, best = compile_and_time(agent.update, key, state, hparams, repeats)
    acc = adaptive_qlbs_update_flops(agent, state)
    return {"n_envs": agent.n_envs, "n_continuations": agent.n_continuations,
            "n_steps": agent.n_steps, "policy_rows": acc["rows"],
            "policy_macs_per_row": acc["policy_macs_per_row"],
            "compile_s": compile_s, "run_s": best,
            "policy_rows_per_s": acc["rows"]["forward_total"] / best,
            "network_flops": acc["flops"], "gflops": acc["flops"] / best / 1e9,
            "xla_cost_analysis_flops_loop_bodies_once": xla_flops(compiled)}
