"""Fuzzed command lines, run in-process through ``jaxhedge.cli.main``: a vector with any value
outside its documented range (or a bad ``--out``) ends with exit 2 and exactly one line on
stderr -- never a traceback, never a bad value accepted. The validity oracle below is written
from docs/validation.md, independently of jaxhedge.validate.

Every generated vector holds at least one bad value, so nothing is compiled or run; one tiny
valid job per command family checks the happy path.
"""
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxhedge.cli import main

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
I64 = 2**63 - 1

# flag -> (kind, lo, hi, lo_open, hi_open)
HEDGE = {"--paths": ("int", 1, 10**9), "--steps": ("int", 1, 10**8), "--seed": ("int", 0, I64),
         "--cost": ("float", 0, 1, False, True), "--sigma": ("float", 0, 10, True, True),
         "--mu": ("float", -10, 10, False, True), "--s0": ("float", 0, 1e9, True, True),
         "--strike": ("float", 0, 1e9, True, True), "--maturity": ("float", 0, 100, True, True),
         "--rate": ("float", -1, 1, False, True),
         "--risk-aversion": ("float", 0, 1e9, True, True)}
EVAL = {"--paths": ("int", 1, 10**9), "--seed": ("int", 0, I64), "--member": ("int", 0, I64),
        "--risk-aversion": ("float", 0, 1e9, True, True)}
STRESS = {"--paths": ("int", 2, 10**9), "--seed": ("int", 0, I64), "--steps": ("int", 1, 10**8),
          "--member": ("int", 0, I64), "--risk-aversion": ("float", 0, 1e9, True, True)}
TRAIN = {"--steps": ("int", 1, I64), "--seeds": ("int", 1, I64),
         "agent.learning_rate": ("float", 0, 10, True, False),
         "train.seed": ("int", 0, I64), "train.n_steps": ("int", 1, 2**31 - 1)}
DEMO = {"--paths": ("int", 1, 10**9)}
SWEEP = {"--max-block": ("int", 1, I64), "--gpus-per-trial": ("float", 0, 1024, False, False)}
REPRODUCE = {"cost": ("float", 0, 1, False, True), "calib_iters": ("int", 1, 1000)}
COMMANDS = {"hedge": HEDGE, "eval": EVAL, "stress": STRESS, "train": TRAIN, "demo": DEMO,
            "sweep": SWEEP, "reproduce": REPRODUCE}


def valid(spec, text: str) -> bool:
    """The oracle: is ``text`` a value the flag accepts?"""
    kind, lo, hi, *opens = spec
    lo_open, hi_open = opens if opens else (False, False)
    try:
        x = int(text) if kind == "int" else float(text)
    except ValueError:
        return False
    if kind == "float" and not math.isfinite(x):
        return False
    return (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)


numbers = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "0", "-0",
                     "0x10", "", " ", "1_000", "3000000000", "99999999999999999999",
                     "9223372036854775808", "-1", "1e-320", "ten", "١٢"]),
    st.text(alphabet="0123456789.eE+-naif ", max_size=8),
)


def _argv(command, flags, out):
    argv = {"hedge": ["hedge"], "eval": ["eval", "/nonexistent/run"],
            "stress": ["stress", "--agents", "delta"], "train": ["train", "--agent",
                                                                   "deep-hedging", "--preset",
                                                                   "smoke"],
            "demo": ["demo", "--no-train"], "sweep": ["sweep", "experiments/sweeps/smoke.toml"],
            "reproduce": ["reproduce", "--data", "/nonexistent"]}[command]
    for flag, value in flags:
        argv += [f"{flag}={value}"] if flag.startswith("--") else ["--set", f"{flag}={value}"]
    return argv + [f"--out={out}"]


@st.composite
def vectors(draw):
    command = draw(st.sampled_from(sorted(COMMANDS)))
    specs = COMMANDS[command]
    flags = draw(st.lists(st.tuples(st.sampled_from(sorted(specs)), numbers), min_size=0,
                          max_size=4, unique_by=lambda t: t[0]))
    out_kind = draw(st.sampled_from(["ok", "ok", "ok", "file", "proc", "etc", "in-the-way"]))
    return command, flags, out_kind


@SETTINGS
@given(vec=vectors())
def test_bad_command_lines_exit_2_with_one_line(vec, tmp_path_factory, capsys,
                                                 monkeypatch):
    command, flags, out_kind = vec
    bad_value = any(not valid(COMMANDS[command][f], v) for f, v in flags)
    if not bad_value and out_kind == "ok" and command not in ("eval", "reproduce"):
        flags = flags + [(sorted(COMMANDS[command])[0], "nan")]  # never run a real job
    base = tmp_path_factory.mktemp("cli")
    (base / "file").write_text("keep")
    for name in ("results.json", "stress.json", "study.json", "plan.json", "run.json"):
        (base / "way" / name).mkdir(parents=True)  # each command's output file name
    out = {"ok": base / "o", "file": base / "file", "proc": "/proc/jaxhedge",
           "etc": "/etc/jaxhedge/x", "in-the-way": base / "way"}[out_kind]
    monkeypatch.chdir(_repo_root())
    rc = main(_argv(command, flags, out))
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 2, (command, flags, out_kind, captured.out[-500:], err)
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    assert (base / "file").read_text() == "keep"
    assert not (base / "o").exists() or not any((base / "o").rglob("*.json"))


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_tiny_valid_hedge_runs(tmp_path, capsys):
    """The happy path through the same checks: a valid vector runs and writes its results."""
    assert main(["hedge", "--paths=8", "--steps=4", "--seed=9223372036854775807",
                 "--sigma=0.3", f"--out={tmp_path}"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["config"]["seed"] == 2**63 - 1 and math.isfinite(res["mean_pnl"])


def test_tiny_valid_train_config_loads(tmp_path):
    """A valid learning rate and 64-bit seed pass the config checks."""
    from jaxhedge.train.jobs import load_job

    job = load_job("deep-hedging", "smoke", None, ["agent.learning_rate=0.01",
                                                    f"train.seed={2**63 - 1}"])
    assert job.agent.learning_rate == 0.01 and job.train.seed == 2**63 - 1
