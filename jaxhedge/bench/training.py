"""Training throughput: one vmapped block of members vs the same members one after another.

Work: deep hedging (free MLP hedge, entropic risk, GBM, ``n_steps`` dates), each member
training for ``n_updates`` Adam steps on fresh batches of paths. The block runs as one
compiled ``jit(vmap(vmap(train_chunk)))`` sharded over the local devices
(``shard_members``); the same members then run one after another through the compiled
single-member program, as a user would run them. Both produce the same parameters (the
largest difference is reported). Compile time is reported apart.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxhedge.agents.deep_hedging import DeepHedging
from jaxhedge.bench.timing import best_of
from jaxhedge.env import EnvConfig
from jaxhedge.train import make_members, make_train, member_keys, shard_members, stack_hparams


def vmap_vs_sequential(n_lr: int, n_seeds: int, n_updates: int, n_paths: int,
                       n_steps: int) -> dict:
    agent = DeepHedging(env=EnvConfig(market="gbm", n_steps=n_steps), n_paths=n_paths,
                        widths=(16, 16), objective="entropic")
    base = agent.default_hparams()
    lrs = np.geomspace(3e-4, 3e-2, n_lr)
    hp = stack_hparams([base.replace(learning_rate=float(lr)) for lr in lrs])
    keys = member_keys(0, n_seeds)
    n_members = n_lr * n_seeds

    members = make_members(agent, n_updates)
    ts0, hp_block = shard_members(members.init(keys, hp), hp)  # members over the devices
    t0 = time.perf_counter()
    compiled_block = members.train_chunk.lower(ts0, hp_block).compile()
    block_compile_s = time.perf_counter() - t0
    block_out = compiled_block(ts0, hp_block)
    block_s = best_of(lambda: compiled_block(ts0, hp_block), 3)

    single = make_train(agent, n_updates)
    init = jax.jit(single.init)
    chunk = jax.jit(single.train_chunk)
    one_hp = jax.tree.map(lambda a: a[0], hp)
    t0 = time.perf_counter()
    compiled_one = chunk.lower(init(keys[0], one_hp), one_hp).compile()
    one_compile_s = time.perf_counter() - t0
    starts = [[init(keys[s], jax.tree.map(lambda a: a[h], hp)) for s in range(n_seeds)]
              for h in range(n_lr)]
    hps = [jax.tree.map(lambda a: a[h], hp) for h in range(n_lr)]

    def sequential():
        return [[compiled_one(starts[h][s], hps[h])[0] for s in range(n_seeds)]
                for h in range(n_lr)]

    seq_out = sequential()
    seq_s = best_of(sequential, 1)

    # same members, same numbers (float32 reduction order may differ slightly under vmap)
    diff = max(float(jnp.max(jnp.abs(a - b)))
               for h in range(n_lr) for s in range(n_seeds)
               for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[h, s],
                                                            block_out[0].agent_state)),
                               jax.tree.leaves(seq_out[h][s].agent_state)))
    env_steps = n_members * n_updates * n_paths * n_steps
    return {
        "members": n_members, "updates_per_member": n_updates, "paths_per_update": n_paths,
        "dates_per_path": n_steps,
        "vmapped": {"compile_s": block_compile_s, "run_s": block_s,
                    "env_steps_per_s": env_steps / block_s,
                    "updates_per_s": n_members * n_updates / block_s,
                    "agents_per_s": n_members / block_s},
        "sequential": {"compile_s": one_compile_s, "run_s": seq_s,
                       "env_steps_per_s": env_steps / seq_s,
                       "updates_per_s": n_members * n_updates / seq_s,
                       "agents_per_s": n_members / seq_s},
        "vmap_speedup": seq_s / block_s,
        "max_abs_param_diff_vmapped_vs_sequential": diff,
    }
