"""Validated data: a corrupted row is dropped and counted by reason, never kept; a chain with
a few corrupted rows gives the same tables as the clean chain minus those rows; a bad file is
one ValueError naming it."""
import collections
import json

import jax
import numpy as np
import pandas as pd
import pytest

from jaxhedge.backtest import SLICES
from jaxhedge.cli import main
from jaxhedge.data import build_episodes, load_chain, load_period, static_slices
from jaxhedge.data.loader import DataFileError
from jaxhedge.data.synthetic import black76_chain

FILE = "spy_preprocessed_calls_20q1.csv"
BOUNDS = "C_eur outside [max(DF (F - K), 0), DF F]"
TRUNC = "truncated last row (file does not end in a newline)"


def _f(row, col):
    return float(row[col])


# (column, new text from the row, reason the row must be dropped under)
CORRUPTIONS = [
    ("C_eur", lambda r: "1e30", BOUNDS),
    ("C_eur", lambda r: repr(1.5 * _f(r, "S")), BOUNDS),
    ("C_eur", lambda r: "nan", "non-finite C_eur"),
    ("S", lambda r: repr(-_f(r, "S")), "S <= 0"),
    ("S", lambda r: repr(1.001 * _f(r, "S")), "S differs from its date's other rows"),
    ("r", lambda r: "1.55", "r outside [-0.05, 0.25]"),
    ("DF", lambda r: "1.5", "DF != exp(-r tau)"),
    ("PV_div", lambda r: "-1", "PV_div outside [0, 0.25 S]"),
    ("F", lambda r: repr(1.01 * _f(r, "F")), "F != (S - PV_div) / DF"),
    ("upper_bound", lambda r: repr(0.5 * _f(r, "C_eur") - 1.0),
     "C_eur outside the file's [lower_bound, upper_bound]"),
    ("P_A", lambda r: "-1", "P_A < 0"),
    ("bid", lambda r: repr(2 * _f(r, "ask") + 1.0), "ask < bid"),
    ("tau_days", lambda r: str(int(float(r["tau_days"])) + 7), "tau_days != expiration - date"),
    ("date", lambda r: "2202-01-06", "date outside 1990..2100"),
    ("strike", lambda r: "abc", "strike missing or <= 0"),
    ("expiration", lambda r: "03/20/2020", "unknown expiration format"),
    ("ask", lambda r: repr(3 * _f(r, "S")), "ask > 2 S"),
    ("strike", lambda r: repr(1.5 * _f(r, "strike")), "moneyness_F != strike / F"),
]


def _corrupt(text_frame: pd.DataFrame, seed: int = 0):
    """(corrupted text frame, expected reason counts, indices of the corrupted rows)."""
    bad = text_frame.copy()
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.arange(len(bad) - 1), len(CORRUPTIONS), replace=False)
    for i, (col, fn, _) in zip(rows, CORRUPTIONS):
        bad.loc[i, col] = fn(text_frame.loc[i])
    return bad, collections.Counter(reason for _, _, reason in CORRUPTIONS), set(rows)


def _write_pair(text_frame, tmp_path):
    """Write the corrupted file (bad rows + the last row cut inside its last field) and the
    clean file minus those rows; return (bad PeriodData, clean PeriodData, expected)."""
    bad, expected, rows = _corrupt(text_frame)
    expected[TRUNC] += 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "ref").mkdir()
    csv = bad.to_csv(index=False)
    last = csv.rstrip("\n").rsplit("\n", 1)[1]
    (tmp_path / "bad" / FILE).write_text(csv.rstrip("\n")[:-max(1, len(last.split(",")[-1]) // 2)])
    keep = [i for i in range(len(text_frame) - 1) if i not in rows]
    text_frame.iloc[keep].to_csv(tmp_path / "ref" / FILE, index=False)
    got = load_period(tmp_path / "bad", "spy", "2020q1")
    ref = load_period(tmp_path / "ref", "spy", "2020q1")
    return got, ref, expected, len(text_frame)


def _assert_same_tables(got, ref, fit: bool):
    assert ref.report.total == 0
    pd.testing.assert_frame_equal(got.chain, ref.chain)
    a, b = static_slices(got.quotes), static_slices(ref.quotes)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for bucket, target in SLICES:
        ea, ra = build_episodes(got.chain, start=got.start, end=got.end, bucket_days=bucket,
                                target_km=target)
        eb, rb = build_episodes(ref.chain, start=ref.start, end=ref.end, bucket_days=bucket,
                                target_km=target)
        assert ra.to_dict() == rb.to_dict() and ea.n_episodes == eb.n_episodes
        for x, y in zip(jax.tree.leaves(ea), jax.tree.leaves(eb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if fit:
        from jaxhedge.reproduce.config import StudyConfig
        from jaxhedge.reproduce.study import static_part

        cfg = StudyConfig(x64=False, calib_iters=5)
        pd.testing.assert_frame_equal(static_part(got, ["bs"], {}, cfg),
                                      static_part(ref, ["bs"], {}, cfg))


def test_corrupted_synthetic_chain_gives_the_clean_tables_minus_the_bad_rows(tmp_path):
    text = black76_chain().astype(str)
    got, ref, expected, n = _write_pair(text, tmp_path)
    assert dict(got.report.counts) == dict(expected)
    assert got.report.n_in == n and got.report.n_out == len(ref.chain) == n - sum(expected.values())
    _assert_same_tables(got, ref, fit=True)


def test_corrupted_shared_file_gives_the_clean_tables_minus_the_bad_rows(data_dir, tmp_path):
    text = pd.read_csv(data_dir / FILE, dtype=str, keep_default_na=False)
    got, ref, expected, n = _write_pair(text, tmp_path)
    assert dict(got.report.counts) == dict(expected)
    assert got.report.n_in == n == 1242 and got.report.n_out == n - sum(expected.values())
    _assert_same_tables(got, ref, fit=False)


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_file_cut_inside_its_last_row_drops_that_row(tmp_path, cut):
    """Wherever the cut falls (inside a number: 1.065 -> 1.0), the row is not kept."""
    text = black76_chain(end="2020-01-10").to_csv(index=False)
    path = tmp_path / "c.csv"
    path.write_text(text[:-cut])
    frame, rep = load_chain(path)
    assert rep.counts == {TRUNC: 1} and len(frame) == text.count("\n") - 2
    path.write_text(text)  # whole file: nothing dropped
    assert load_chain(path)[1].total == 0


def test_rows_with_too_many_fields_are_dropped_and_counted(tmp_path):
    lines = black76_chain(end="2020-01-10").to_csv(index=False).splitlines()
    lines[3] += ",extra"
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    frame, rep = load_chain(tmp_path / "c.csv")
    assert rep.counts == {"more fields than the header": 1} and len(frame) == len(lines) - 2


@pytest.mark.parametrize("content, needle", [
    (b"", "is empty"),
    (b"\n\n  \n", "is empty"),
    (b"date,act_symbol,expiration,strike,bid,ask\n", "header but no data rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    ("date,act_symbol,expiration,strike,bid,ask\n".encode("utf-16"), "not UTF-8"),
    ("date,act_symbol,expiration,strike,bid,ask\n".encode("utf-16-le"), "NUL bytes"),
    ("date,act_symbol,expiration,strike,bid,ask\n2020-01-06,SPY,2020-02-03,1,é,1\n"
     .encode("latin-1"), "not UTF-8"),
    (b"hello world\nfoo,bar\n", "missing required columns"),
    (b"date,date,act_symbol\n1,2,3\n", "duplicate column names"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, content, needle, capsys):
    (tmp_path / FILE).write_bytes(content)
    with pytest.raises(ValueError, match=needle) as err:
        load_period(tmp_path, "spy", "2020q1")
    msg = str(err.value)
    assert FILE in msg and "\n" not in msg
    rc = main(["reproduce", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--models",
               "bs", "--assets", "spy", "--periods", "2020q1"])
    err_text = capsys.readouterr().err.strip()
    assert rc == 2 and FILE in err_text and len(err_text.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    (tmp_path / FILE).mkdir()  # a directory where the file should be
    with pytest.raises(ValueError, match=f"cannot read .*{FILE}"):
        load_period(tmp_path, "spy", "2020q1")
    with pytest.raises(FileNotFoundError, match="spy_preprocessed_calls_25.csv") as err:
        load_period(tmp_path, "spy", "2025q2")
    assert isinstance(err.value, ValueError)  # the CLI's one-line exit 2


def test_reproduce_prints_and_writes_the_drop_report(tmp_path, capsys):
    text = black76_chain().astype(str)
    bad, expected, _ = _corrupt(text)
    (tmp_path / "d").mkdir()
    bad.to_csv(tmp_path / "d" / FILE, index=False)
    out = tmp_path / "o"
    assert main(["reproduce", "--data", str(tmp_path / "d"), "--out", str(out), "--models", "bs",
                 "--assets", "spy", "--periods", "2020q1", "--parts", "static",
                 "--set", "calib_iters=3"]) == 0
    stdout = capsys.readouterr().out
    assert f"{FILE}: {len(text)} rows in" in stdout
    drops = pd.read_csv(out / "drops.csv")
    assert list(drops.columns) == ["file", "reason", "count"]
    assert dict(zip(drops["reason"], drops["count"])) == dict(expected)
    assert set(drops["file"]) == {FILE}
    info = json.loads((out / "study.json").read_text())
    assert info["drops"][FILE]["dropped"] == dict(expected)
    assert info["drops"][FILE]["n_out"] == len(text) - sum(expected.values())
