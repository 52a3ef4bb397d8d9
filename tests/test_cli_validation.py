"""Bad numbers, output paths and resume targets: one line on stderr, exit 2, before any work."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxhedge import hedge
from jaxhedge.cli import main
from jaxhedge.runinfo import atomic_write_text
from jaxhedge.validate import (check_memory, check_output_dir, format_bytes, prng_key)

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SWEEP = ROOT / "experiments" / "sweeps" / "smoke.toml"


def _one_line_exit_2(capsys, argv, needle):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err, err
    return err


@pytest.mark.parametrize("args, needle", [
    (["--seed", "99999999999999999999"], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--steps", "3000000000"], "--steps"),
    (["--paths", "10000000000"], "--paths"),
    (["--sigma", "nan"], "--sigma"),
    (["--mu", "inf"], "--mu"),
    (["--cost", "-inf"], "--cost"),
    (["--maturity", "1e400"], "--maturity"),
    (["--rate", "NaN"], "--rate"),
    (["--s0", "0x10"], "--s0"),
])
def test_hedge_numbers_out_of_range(tmp_path, capsys, args, needle):
    _one_line_exit_2(capsys, ["hedge", "--out", str(tmp_path), *args], needle)
    assert not (tmp_path / "results.json").exists()


def test_paths_times_steps_refused_with_the_estimate_before_compiling(tmp_path, capsys):
    err = _one_line_exit_2(capsys, ["hedge", "--paths", "100", "--steps", "20000000",
                                    "--out", str(tmp_path)], "--paths x --steps")
    assert "32.0 GB" in err and "available" in err  # 4 arrays x 100 x 20,000,001 x 4 bytes
    assert not (tmp_path / "results.json").exists()


def test_memory_estimate_matches_the_compiled_program():
    """The oracle: XLA's own temp-size analysis of the compiled chunk program."""
    from jaxhedge.rollout import rollout

    for market in ("gbm", "regime"):  # the smallest and the largest factor
        env, params = hedge.build(market, 300)
        compiled = rollout.lower(jax.random.PRNGKey(0), env, params, hedge.make_hedger("ww"),
                                 256, keep_paths=False).compile()
        measured = compiled.memory_analysis().temp_size_in_bytes
        est = hedge.rollout_memory_bytes(market, 256, 300)
        assert 0.95 * measured <= est <= 1.5 * measured, (market, est, measured)


def test_check_memory_compares_with_the_available_memory():
    check_memory("x", 49, "d", available=100)
    with pytest.raises(ValueError, match=r"^x: needs about 51 B \(d\), more than 50% of the "
                                         r"100 B of memory available$"):
        check_memory("x", 51, "d", available=100)
    assert format_bytes(32e9) == "32.0 GB"


def test_seeds_use_all_64_bits():
    assert np.array_equal(prng_key(7), jax.random.PRNGKey(7))
    assert not np.array_equal(prng_key(2**32), prng_key(0))  # PRNGKey(2**32) == PRNGKey(0)
    assert np.array_equal(prng_key(2**63 - 1), [2**31 - 1, 2**32 - 1])
    with pytest.raises(ValueError, match="seed"):
        prng_key(2**63)


@pytest.mark.parametrize("override", ["agent.learning_rate=-0.01", "agent.learning_rate=nan",
                                      "agent.learning_rate=inf", "train.seed=-3",
                                      "train.seed=99999999999999999999"])
def test_train_config_numbers(tmp_path, capsys, override):
    field = override.split("=")[0]
    _one_line_exit_2(capsys, ["train", "--agent", "deep-hedging", "--preset", "smoke", "--set",
                              override, "--out", str(tmp_path / "r")], field)
    assert not (tmp_path / "r").exists()


# every command that writes, with --out at the end of its arguments
COMMANDS = {
    "hedge": ["hedge", "--paths", "10"],
    "train": ["train", "--agent", "deep-hedging", "--preset", "smoke"],
    "eval": ["eval", "/nonexistent/run"],
    "stress": ["stress", "--agents", "delta", "--paths", "10"],
    "sweep": ["sweep", str(SMOKE_SWEEP)],
    "reproduce": ["reproduce", "--data", "/nonexistent/options"],
    "demo": ["demo", "--no-train", "--paths", "10"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_path_checked_before_any_work(tmp_path, capsys, command):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, needle in [(a_file, "is an existing file"), (a_file / "sub", "is a file"),
                        ("/proc/jaxhedge", "system directory /proc"),
                        ("/etc/jaxhedge", "system directory /etc"),
                        ("/usr/lib/x", "system directory /usr")]:
        _one_line_exit_2(capsys, COMMANDS[command] + ["--out", str(out)], needle)
    assert a_file.read_text() == "x"


def test_output_file_name_taken_by_a_directory(tmp_path, capsys):
    (tmp_path / "results.json").mkdir()
    _one_line_exit_2(capsys, ["hedge", "--paths", "10", "--out", str(tmp_path)],
                     "a directory is in the way")
    (tmp_path / "r" / "study.json").mkdir(parents=True)
    _one_line_exit_2(capsys, ["reproduce", "--out", str(tmp_path / "r")], "study.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        _one_line_exit_2(capsys, ["hedge", "--paths", "10", "--out", str(ro / "x")],
                         "not writable")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_check_output_dir_accepts_new_and_existing_directories(tmp_path):
    assert check_output_dir("--out", tmp_path / "a" / "b", ("x.json", "figs/y.png")) == \
        tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # creates nothing
    assert check_output_dir("--out", tmp_path) == tmp_path


def test_sweep_resume_needs_an_existing_sweep(tmp_path, capsys):
    _one_line_exit_2(capsys, ["sweep", str(SMOKE_SWEEP), "--resume", "--out",
                              str(tmp_path / "none")], "--resume: no sweep at")
    assert not (tmp_path / "none").exists()
    (tmp_path / "empty").mkdir()
    _one_line_exit_2(capsys, ["sweep", str(SMOKE_SWEEP), "--resume", "--out",
                              str(tmp_path / "empty")], "no plan.json")
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_written_with_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "hello")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode
    assert (tmp_path / "f.txt").read_text() == "hello"


def test_umask_in_a_fresh_process(tmp_path):
    code = ("import os; os.umask(0o027); from jaxhedge.runinfo import atomic_write_json; "
            f"atomic_write_json({str(tmp_path / 'r.json')!r}, {{'a': 1}})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640
