"""jaxhedge.train.runner: bitwise resume (new process), non-finite stop, files, atomicity."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import pytest

from jaxhedge.train import (Checkpointer, NonFiniteError, RunDirError, read_metrics,
                            resume_training, run_training)
from jaxhedge.train.toy import ToyAgent

AGENT = ToyAgent(batch=16)
N, CHUNK, SEEDS = 20, 5, 2
CONFIG = {"train": {"n_steps": N, "chunk": CHUNK}, "note": "test"}
REPO = Path(__file__).resolve().parents[2]


def _train(run_dir, n_steps=N, hparams=None, **kw):
    kw.setdefault("chunk", CHUNK)
    return run_training(AGENT, AGENT.default_hparams() if hparams is None else hparams,
                        seed=4, n_steps=n_steps, run_dir=run_dir, config=CONFIG,
                        n_seeds=SEEDS, progress=False, **kw)


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """N steps in one go: the reference every resumed run must reproduce bitwise."""
    return _train(tmp_path_factory.mktemp("straight") / "run")


def test_run_json_and_metrics_files(straight):
    info = json.loads((straight.run_dir / "run.json").read_text())
    for key in ("config", "git_sha", "versions", "device", "wall_s", "compile_s",
                "final_metrics", "params_sha256", "price", "hparams", "status", "step"):
        assert key in info, key
    assert info["status"] == "completed" and info["step"] == N and info["config"] == CONFIG
    assert info["n_members"] == SEEDS and len(info["final_metrics"]) == SEEDS
    assert 0 < info["compile_s"] < info["wall_s"]
    assert len(info["price"]) == 1 and len(info["price"][0]) == SEEDS
    rows = read_metrics(straight.run_dir)
    assert [(r["step"], r["member"]) for r in rows] == [
        (s, m) for s in range(CHUNK, N + 1, CHUNK) for m in range(SEEDS)]
    csv_lines = (straight.run_dir / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["step", "member", "hparam_set", "seed_index"]
    assert len(csv_lines) == 1 + len(rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert Checkpointer(straight.run_dir, read_only=True).all_steps() == [10, 15, 20]


def test_resume_in_new_process_is_bitwise(straight, tmp_path):
    run = tmp_path / "run"
    half = _train(run, n_steps=N // 2)
    assert half.info["params_sha256"] != straight.info["params_sha256"]
    out = _python(f"""
        from jaxhedge.train import resume_training
        r = resume_training({str(run)!r}, {N}, progress=False)
        print("SHA", r.info["params_sha256"], r.info["resumed_from"])
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    sha, resumed_from = out.stdout.split("SHA ")[1].split()
    assert sha == straight.info["params_sha256"] and resumed_from == str(N // 2)
    # metrics after resume: same rows, same values as the straight run
    assert read_metrics(run) == read_metrics(straight.run_dir)
    assert (run / "metrics.csv").read_text() == (straight.run_dir / "metrics.csv").read_text()


def test_resume_with_other_chunking_and_stale_rows(straight, tmp_path):
    """Crash after writing a chunk's rows but before its checkpoint: rows are dropped and
    recomputed; a different chunk size on resume gives the same parameters."""
    run = tmp_path / "run"
    _train(run, n_steps=15)
    shutil.rmtree(run / "checkpoints" / "15")  # as if the process died before saving 15
    result = resume_training(run, N, chunk=3, progress=False)  # 10 -> 13 -> 16 -> 19 -> 20
    assert result.info["params_sha256"] == straight.info["params_sha256"]
    steps = [r["step"] for r in read_metrics(run)]
    assert steps == sorted(steps) and steps.count(15) == 0
    assert steps == [s for s in (5, 10, 13, 16, 19, 20) for _ in range(SEEDS)]
    with pytest.raises(RunDirError, match="already holds a run"):
        _train(run)
    with pytest.raises(RunDirError, match="hparams differ"):
        _train(run, hparams=AGENT.default_hparams().replace(learning_rate=jnp.float32(0.1)),
               resume=True)


def test_non_finite_stops_before_saving(tmp_path):
    run = tmp_path / "run"
    good = AGENT.default_hparams()
    bad = good.replace(nan_at_step=jnp.int32(12))  # the 13th update poisons hparam set 1
    with pytest.raises(NonFiniteError) as err:
        _train(run, hparams=[good, bad])
    assert str(err.value) == ("non-finite loss or parameters at step 13 (member 2, 1 more "
                              "member(s)); last good checkpoint: step 10")
    assert (err.value.step, err.value.member, err.value.last_good_step) == (13, 2, 10)
    ckpt = Checkpointer(run, read_only=True)
    assert ckpt.latest_step() == 10
    assert max(r["step"] for r in read_metrics(run)) == 10
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "non_finite" and info["step"] == 10 and "step 13" in info["error"]
    # the last good checkpoint restores (and is finite): continue it to step 10 = no-op
    restored = resume_training(run, 10, progress=False)
    assert restored.info["params_sha256"] == info["params_sha256"]
    assert bool(jnp.isfinite(restored.train_state.agent_state.params["w"]).all())


def test_crash_mid_save_keeps_previous_checkpoint(straight, tmp_path):
    """Kill the process inside orbax's finalize (tmp dir written, not yet renamed) of the
    step-10 save: step 5 stays the latest, the tmp dir is ignored, and resuming is exact."""
    run = tmp_path / "run"
    out = _python(f"""
        import os
        from orbax.checkpoint._src.path import atomicity
        from jaxhedge.train import run_training
        from jaxhedge.train.toy import ToyAgent
        original = atomicity.AtomicRenameTemporaryPath.finalize
        async def finalize(self, *a, **k):
            if self._final_path.name == "10":  # die before renaming the step-10 save
                os._exit(17)
            return await original(self, *a, **k)
        atomicity.AtomicRenameTemporaryPath.finalize = finalize
        a = ToyAgent(batch=16)
        run_training(a, a.default_hparams(), seed=4, n_steps={N}, chunk={CHUNK},
                     run_dir={str(run)!r}, config={CONFIG!r}, n_seeds={SEEDS}, progress=False)
    """)
    assert out.returncode == 17, out.stderr[-3000:]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert any(n.startswith("10.") and "tmp" in n for n in names), names
    assert Checkpointer(run, read_only=True).latest_step() == 5
    result = resume_training(run, progress=False)  # continues to the recorded n_steps
    assert result.info["params_sha256"] == straight.info["params_sha256"]
    assert not any("tmp" in p.name for p in (run / "checkpoints").iterdir())
    assert read_metrics(run) == read_metrics(straight.run_dir)


def test_members_sharded_over_two_devices_equal_one_device(straight, tmp_path):
    """With 2 XLA devices the (H, S) block is sharded (here over the 2 seeds); the trained
    parameters are bitwise those of the single-device run."""
    run_dir = tmp_path / "two_devices"
    code = f"""
        import jax
        jax.config.update("jax_num_cpu_devices", 2)
        from jaxhedge.train import run_training
        from jaxhedge.train.toy import ToyAgent
        agent = ToyAgent(batch=16)
        r = run_training(agent, agent.default_hparams(), seed=4, n_steps={N}, chunk={CHUNK},
                         run_dir={str(run_dir)!r}, n_seeds={SEEDS}, progress=False)
        sharding = jax.tree.leaves(r.train_state.agent_state)[0].sharding
        print(len(jax.devices()), len(sharding.device_set))
    """
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["2", "2"]  # two devices, the state spread on both
    info = json.loads((run_dir / "run.json").read_text())
    assert info["params_sha256"] == straight.info["params_sha256"]
