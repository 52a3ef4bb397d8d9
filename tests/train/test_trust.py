"""Run directories you can trust: a damaged newest checkpoint falls back to the newest
intact one, resume semantics, the NaN stop's step, and agent specs decoded from the
registry only (issue 12, item 4)."""
import glob
import json
import os
import shutil
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxhedge.cli import main
from jaxhedge.runs import load_trained, params_sha256, read_run_info
from jaxhedge.train import (Checkpointer, CheckpointWarning, NonFiniteError, RunDirError,
                            read_metrics, resume_training, run_training)
from jaxhedge.train.toy import ToyAgent

AGENT = ToyAgent(batch=16)
N, CHUNK = 20, 5


def _train(run_dir, n_steps=N, agent=AGENT, **kw):
    return run_training(agent, agent.default_hparams(), seed=2, n_steps=n_steps, chunk=CHUNK,
                        run_dir=run_dir, n_seeds=2, progress=False, **kw)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("straight") / "run")


@pytest.fixture(scope="module")
def at15(tmp_path_factory):
    """A run stopped at step 15 (checkpoints 5, 10, 15), copied by each test."""
    return _train(tmp_path_factory.mktemp("at15") / "run", n_steps=15).run_dir


def _truncate(path: Path, keep: float = 0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


def _array_files(step_dir: Path):  # the data files orbax reads (OCDBT's merged copy)
    return [Path(p) for p in glob.glob(str(step_dir / "train" / "d" / "*"))]


DAMAGE = {
    "truncated arrays": lambda d: [_truncate(p) for p in _array_files(d)],
    "flipped array bytes": lambda d: [_flip(p) for p in _array_files(d)],
    "truncated metadata": lambda d: _truncate(d / "meta" / "metadata", 0.3),
    "garbage metadata": lambda d: (d / "meta" / "metadata").write_bytes(b"\x00\xff\xfe junk"),
    "metadata without keys": lambda d: (d / "meta" / "metadata").write_text('{"step": 15}'),
    "missing train directory": lambda d: shutil.rmtree(d / "train"),
    "missing metadata directory": lambda d: shutil.rmtree(d / "meta"),
}


def _flip(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_and_resumes_bitwise(damage, at15, straight,
                                                                   tmp_path):
    run = tmp_path / "run"
    shutil.copytree(at15, run)
    DAMAGE[damage](run / "checkpoints" / "15")
    with pytest.warns(CheckpointWarning) as record:
        result = resume_training(run, N, progress=False)
    message = str(record[0].message)
    assert "step 15" in message and "using step 10" in message
    assert len(message.splitlines()) == 1
    assert result.info["resumed_from"] == 10 and result.info["step"] == N
    assert result.info["params_sha256"] == straight.info["params_sha256"]
    assert read_metrics(run) == read_metrics(straight.run_dir)  # rows 15 recomputed
    assert (run / "metrics.csv").read_text() == (straight.run_dir / "metrics.csv").read_text()
    assert Checkpointer(run, read_only=True).all_steps() == [10, 15, 20]


def test_load_trained_falls_back_too(at15, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(at15, run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, state15 = load_trained(run, member=1)
    _truncate(run / "checkpoints" / "15" / "meta" / "metadata", 0.5)
    with pytest.warns(CheckpointWarning, match="step 15.*using step 10"):
        agent, hp, state10 = load_trained(run, member=1)
    assert agent == AGENT and float(hp.learning_rate) == pytest.approx(0.05)
    assert not np.array_equal(state10.params["w"], state15.params["w"])
    # exactly the step-10 state: the same as loading a copy whose step 15 is gone
    other = tmp_path / "other"
    shutil.copytree(at15, other)
    shutil.rmtree(other / "checkpoints" / "15")
    assert params_sha256(load_trained(other, member=1)[2]) == params_sha256(state10)


def test_no_intact_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    _train(run, n_steps=5, keep_checkpoints=1)
    meta = run / "checkpoints" / "5" / "meta" / "metadata"
    _truncate(meta, 0.4)
    for call in (lambda: resume_training(run, 10, progress=False), lambda: load_trained(run)):
        with pytest.raises(RunDirError) as err:
            call()
        assert str(err.value).startswith(f"{meta.absolute()}: unreadable checkpoint metadata")
        assert len(str(err.value).splitlines()) == 1
    assert main(["train", "--resume", str(run), "--steps", "10"]) == 2
    assert main(["eval", str(run), "--paths", "10", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(str(meta.absolute()) in line for line in err)


def test_resume_with_fewer_steps_than_done_is_an_error(at15, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(at15, run)
    before = (run / "run.json").read_text()
    with pytest.raises(RunDirError, match=r"n_steps: the run has done 15 updates; resuming "
                                          r"needs n_steps >= 15 \(got 10\)"):
        resume_training(run, 10, progress=False)
    with pytest.raises(RunDirError, match="n_steps >= 15"):
        _train(run, n_steps=12, resume=True)
    assert main(["train", "--resume", str(run), "--steps", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_steps >= 15" in err[0]
    # nothing was touched
    assert (run / "run.json").read_text() == before
    assert Checkpointer(run, read_only=True).all_steps() == [5, 10, 15]
    assert resume_training(run, 15, progress=False).info["resumed_from"] == 15  # equal: no-op


def test_non_finite_stop_names_the_update_inside_the_chunk(tmp_path):
    """Update 7 (0-based) leaves NaN parameters with a finite loss: the stop names step 8
    (1-based), inside the chunk 5..10, and the newest checkpoint stays step 5."""
    from tests.train.test_loop import ParamsBlowUp

    run = tmp_path / "run"
    with pytest.raises(NonFiniteError) as err:
        _train(run, agent=ParamsBlowUp(batch=16, at=7))
    assert (err.value.step, err.value.member, err.value.last_good_step) == (8, 0, 5)
    assert str(err.value).startswith("non-finite loss or parameters at step 8 (member 0, ")
    assert Checkpointer(run, read_only=True).latest_step() == 5
    info = read_run_info(run)
    assert info["status"] == "non_finite" and info["step"] == 5 and "step 8" in info["error"]


def _rewrite_agent(run: Path, spec: dict):
    for meta in (run / "checkpoints").glob("*/meta/metadata"):
        data = json.loads(meta.read_text())
        data["agent"] = spec
        meta.write_text(json.dumps(data))


@pytest.mark.parametrize("name", ["os:system", "subprocess:Popen",
                                  "jaxhedge.agents.deep_hedging:DeepHedgingHParams"])
def test_run_dir_naming_an_unregistered_class_is_refused(name, at15, tmp_path, capsys):
    import sys

    run = tmp_path / "run"
    shutil.copytree(at15, run)
    _rewrite_agent(run, {"__dataclass__": name, "fields": {}})
    meta = (run / "checkpoints" / "15" / "meta" / "metadata").absolute()
    before = set(sys.modules)
    for call in (lambda: resume_training(run, N, progress=False), lambda: load_trained(run)):
        with pytest.raises(RunDirError) as err:
            call()
        assert str(err.value) == (f"{meta}: agent spec names {name!r}, not a registered agent "
                                  f"or config class")
    assert set(sys.modules) == before
    assert main(["eval", str(run), "--paths", "10", "--out", str(tmp_path / "e")]) == 2
    assert name in capsys.readouterr().err


def test_read_run_info(straight, tmp_path):
    info = read_run_info(straight.run_dir)
    assert info == json.loads((straight.run_dir / "run.json").read_text())
    with pytest.raises(RunDirError, match="no run.json"):
        read_run_info(tmp_path)
    (tmp_path / "run.json").write_text('{"step": 3')
    with pytest.raises(RunDirError, match=r"run.json: unreadable"):
        read_run_info(tmp_path)


def test_cli_prints_the_fallback_as_one_line(at15, straight, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(at15, run)
    _truncate(run / "checkpoints" / "15" / "meta" / "metadata", 0.5)
    assert main(["train", "--resume", str(run), "--steps", str(N)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: checkpoint step 15 is unreadable (")
    assert err[0].endswith("; using step 10") and "meta/metadata" in err[0]
    assert read_run_info(run)["params_sha256"] == straight.info["params_sha256"]
