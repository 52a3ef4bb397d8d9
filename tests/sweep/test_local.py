"""Local backend: block-size invariance, equality with run_training, resume, job arrays,
non-finite members, and the results files checked against independent computations."""
import json

import jax
import numpy as np
import pandas as pd
import pytest

from jaxhedge.sweep.local import SweepDirError, block_path, run_local
from jaxhedge.sweep.spec import load_sweep

from .helpers import member_view, toy_file


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The toy sweep with blocks of 3 (4 blocks): the table every other layout must give."""
    tmp = tmp_path_factory.mktemp("ref")
    spec = load_sweep(toy_file(tmp, block_size=3, keep_params=True))
    res = run_local(spec, tmp / "out", progress=False)
    return spec, tmp / "out", res


def test_block_size_does_not_change_any_member(reference, tmp_path):
    spec, _, ref = reference
    assert len(ref.plan.blocks) == 4 and ref.ran == [0, 1, 2, 3]
    other = run_local(load_sweep(toy_file(tmp_path, block_size=8)), tmp_path / "out", progress=False)
    assert [b.size for b in other.plan.blocks] == [6, 6]  # capped at the group's 6 members
    pd.testing.assert_frame_equal(member_view(ref.table), member_view(other.table))  # bitwise
    assert ref.table["params_sha256"].nunique() == 12


def test_member_equals_run_training(reference, tmp_path):
    """Sweep member (group batch=32, lr=0.05, seed index 1) == `run_training` of that member.

    Same keys, hparams and updates; not bitwise: run_training's block is vmap(vmap) over
    (hparam set, seed) and the sweep's a flat vmap, and XLA may order float32 operations
    differently in the two programs (measured: <= 1 ulp here), hence rtol 1e-5.
    """
    from jaxhedge.runs import load_trained
    from jaxhedge.train import run_training
    from jaxhedge.train.toy import ToyAgent

    _, out, ref = reference
    agent = ToyAgent(batch=32)
    hp = agent.default_hparams().replace(learning_rate=np.float32(0.05))
    run = run_training(agent, hp, seed=0, n_steps=20, chunk=10, n_seeds=2,
                       run_dir=tmp_path / "run", progress=False, tensorboard=False)
    row = ref.table[(ref.table["static.batch"] == 32) & (ref.table["learning_rate"] == 0.05)
                    & (ref.table["seed_index"] == 1)].iloc[0]
    rec = json.loads(block_path(out, int(row["block"])).read_text())
    j = [m["member"] for m in rec["members"]].index(int(row["member"]))
    _, _, state = load_trained(block_path(out, int(row["block"])).with_suffix(""), member=j)
    theirs = jax.tree.map(lambda x: np.asarray(x[0, 1]), run.train_state.agent_state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert row["loss"] == pytest.approx(run.info["final_metrics"][1]["loss"], rel=1e-5)


def test_saved_params_load_with_load_trained(reference):
    from jaxhedge.runs import load_trained, params_sha256

    _, out, ref = reference
    row = ref.table.iloc[4]  # member 4: block 1, offset 1
    rec = json.loads(block_path(out, int(row["block"])).read_text())
    j = [m["member"] for m in rec["members"]].index(int(row["member"]))
    agent, hp, state = load_trained(block_path(out, int(row["block"])).with_suffix(""), member=j)
    assert agent.batch == 16 and float(hp.learning_rate) == np.float32(row["learning_rate"])
    assert params_sha256(state) == row["params_sha256"]


def test_resume_skips_finished_blocks_and_gives_the_same_table(reference, tmp_path):
    spec, _, ref = reference
    out = tmp_path / "out"
    spec = load_sweep(toy_file(tmp_path, block_size=3))
    first = run_local(spec, out, block_index=0, num_blocks=2, progress=False)  # "interrupted"
    assert first.ran == [0, 2] and first.table is None
    kept = {i: block_path(out, i).read_text() for i in (0, 2)}
    with pytest.raises(SweepDirError, match="pass --resume"):
        run_local(spec, out, progress=False)
    again = run_local(spec, out, resume=True, progress=False)
    assert again.ran == [1, 3] and again.skipped == [0, 2]
    assert {i: block_path(out, i).read_text() for i in (0, 2)} == kept  # not redone
    pd.testing.assert_frame_equal(ref.table, again.table)
    assert run_local(spec, out, resume=True, progress=False).ran == []


def test_job_array_then_collect(reference, tmp_path):
    _, _, ref = reference
    spec = load_sweep(toy_file(tmp_path, block_size=3))
    out = tmp_path / "out"
    with pytest.raises(SweepDirError, match="no sweep"):
        run_local(spec, out, collect=True, progress=False)
    run_local(spec, out, block_index=1, num_blocks=2, progress=False)
    with pytest.raises(SweepDirError, match="2 of 4 blocks not finished"):
        run_local(spec, out, collect=True, progress=False)
    last = run_local(spec, out, block_index=0, num_blocks=2, progress=False)  # writes results
    pd.testing.assert_frame_equal(ref.table, last.table)
    collected = run_local(spec, out, collect=True, progress=False)
    assert collected.ran == [] and collected.table.equals(ref.table)
    auto = load_sweep(toy_file(tmp_path, block_size=0, name="auto.toml"))
    with pytest.raises(SweepDirError, match="job arrays need a fixed block size"):
        run_local(auto, tmp_path / "auto", block_index=0, num_blocks=2, progress=False)


def test_other_spec_in_same_dir_is_refused(reference, tmp_path):
    _, out, _ = reference
    spec = load_sweep(toy_file(tmp_path, block_size=3, extra="seed = 1"))
    with pytest.raises(SweepDirError, match="holds a different sweep"):
        run_local(spec, out, resume=True, progress=False)


def test_results_files_against_independent_computation(reference):
    spec, out, ref = reference
    df = ref.table
    # every member exactly once, rows in member order, values from the block files
    assert df["member"].tolist() == list(range(12))
    members = [m for i in range(4) for m in json.loads(block_path(out, i).read_text())["members"]]
    assert sorted(m["member"] for m in members) == list(range(12))
    for m in members:
        row = df.iloc[m["member"]]
        assert row["loss"] == m["metrics"]["loss"] and row["seed_index"] == m["seed_index"]
    assert (df["config"] == (df["member"] % 6) // 2).all()
    assert (df["static.batch"] == np.where(df["member"] < 6, 16, 32)).all()
    np.testing.assert_array_equal(df["learning_rate"], np.tile(np.repeat([0.01, 0.05, 0.1], 2), 2))
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), df, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), df)
    # best: mean loss over the 2 seeds of each (group, config), smallest first
    means = {}
    for m in members:
        means.setdefault((m["group"], m["config"]), []).append(m["metrics"]["loss"])
    order = sorted(means, key=lambda k: np.mean(means[k]))
    best = json.loads((out / "best.json").read_text())["best"]
    assert [(b["group"], b["config"]) for b in best] == order[:5]
    assert best[0]["loss_mean"] == pytest.approx(np.mean(means[order[0]]), rel=1e-12)
    assert best[0]["loss_std"] == pytest.approx(np.std(means[order[0]]), rel=1e-9)
    assert (out / "best.md").read_text().count("\n|") == 2 + 5  # header, rule, top 5
    for metric in ("loss",):
        for col in ("static.batch", "learning_rate"):
            png = out / "plots" / f"{metric}_vs_{col}.png"
            assert png.read_bytes()[:4] == b"\x89PNG"


def test_non_finite_members_are_recorded_and_ranked_last(tmp_path):
    spec = load_sweep(toy_file(tmp_path, block_size=6, dynamic="nan_at_step = [-1, 4]",
                               static="batch = [16]"))
    res = run_local(spec, tmp_path / "out", progress=False)
    df = res.table
    bad = df["nan_at_step"] == 4
    assert (~df.loc[bad, "finite"]).all() and df.loc[~bad, "finite"].all()
    assert (df.loc[bad, "first_bad_step"] == 5).all()  # update index 4 is the 5th update
    assert df.loc[bad, "loss"].isna().all()
    best = json.loads((tmp_path / "out" / "best.json").read_text())["best"]
    # the 3 finite sets first (by mean loss), then the sets whose seeds went non-finite
    assert [b["nan_at_step"] for b in best] == [-1, -1, -1, 4, 4]
    assert [b["n_finite"] for b in best] == [2, 2, 2, 0, 0]
    assert best[0]["loss_mean"] <= best[1]["loss_mean"] <= best[2]["loss_mean"]


def test_cli_sweep_and_bad_input(tmp_path, capsys):
    from jaxhedge.cli import main

    path = toy_file(tmp_path, block_size=6)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "toy: ran 2 block(s), skipped 0 finished, 2/2 done" in out.replace("\n", " ") or \
        "ran 2 block(s)" in out
    assert (tmp_path / "o" / "results.parquet").exists()
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--resume"]) == 0
    assert "ran 0 block(s), skipped 2 finished" in capsys.readouterr().out
    assert main(["sweep", str(path), "--set", "sweep.n_stepz=3"]) == 2
    assert "error: sweep.n_stepz: unknown key (did you mean 'n_steps'?)" in capsys.readouterr().err
    assert main(["sweep", str(path), "--block-index", "2", "--num-blocks", "2"]) == 2
    assert "--block-index: must be in [0, 2)" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert main(["sweep", str(path), "--out", str(tmp_path / "p"), "--plan-only",
                 "--max-block", "4"]) == 0
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())["plan"]
    assert all(b["stop"] - b["start"] <= 4 for b in plan["blocks"])
    assert not (tmp_path / "p" / "blocks").exists()
