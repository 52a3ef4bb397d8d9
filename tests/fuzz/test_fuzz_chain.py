"""Fuzzed chain files: every damaged row is dropped and counted, or the file is refused with one
line naming it -- never a traceback, never a kept row whose used values differ from the truth.

Seeded (``derandomize=True``) and small (one short synthetic chain, tens of examples).
"""
import functools

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxhedge.data import clean, load_chain
from jaxhedge.data.synthetic import black76_chain

SETTINGS = settings(derandomize=True, max_examples=40, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
#: the columns the tables are computed from (the static fits and the episodes)
USED = ("date", "expiration", "strike", "bid", "ask", "S", "r", "DF", "PV_div", "F", "C_eur")
POSITIVE = ("strike", "S", "DF", "F", "C_eur", "ask")


def _base() -> pd.DataFrame:
    chain = black76_chain(end="2020-01-17")
    chain.insert(0, "row_id", np.arange(len(chain)))
    return chain.astype(str)


BASE = _base()
COLUMNS = [c for c in BASE.columns if c != "row_id"]

garbage = st.text(alphabet="abcxyzNAIF.+-_ /#$%", min_size=0, max_size=6)
damage = st.one_of(
    st.tuples(st.just("text"), garbage),
    st.tuples(st.sampled_from(["nan", "NaN", "inf", "-inf", "", "1e400", "-0x1p3", "1,5"]),
              st.none()),
    st.tuples(st.just("scale"), st.sampled_from([1e30, -1.0, -1e30, -2.0])),
    st.tuples(st.just("extra field"), st.none()),
    st.tuples(st.just("cut row"), st.integers(1, 20)),
)


def _damage_text(value: str, kind, arg) -> str:
    if kind == "text":
        return arg
    if kind == "scale":
        try:
            return repr(float(value) * arg)
        except ValueError:  # a date or a symbol: damage it as text
            return f"x{value}"
    return kind  # a literal


@functools.lru_cache(maxsize=1)
def _truth() -> pd.DataFrame:
    return clean(load_chain(BASE)[0])[0].set_index("row_id")


def _check_used_values(frame: pd.DataFrame):
    """Every kept row's used values equal the undamaged file's (never a silently kept bad
    value)."""
    ref = _truth()
    got = frame.set_index("row_id")
    for col in USED:
        a, b = got[col].to_numpy(), ref.loc[got.index, col].to_numpy()
        assert (a == b).all(), (col, got.index[a != b][:3].tolist())


@SETTINGS
@given(hits=st.lists(st.tuples(st.integers(0, len(BASE) - 2), st.sampled_from(COLUMNS), damage),
                     min_size=1, max_size=4))
def test_random_row_damage_is_dropped_and_counted(tmp_path_factory, hits):
    lines = BASE.to_csv(index=False).splitlines()
    damaged = set()
    for row, col, (kind, arg) in hits:
        i = row + 1  # line index (header first)
        fields = lines[i].split(",")
        if kind == "extra field":
            fields.append("0")
        elif kind == "cut row":
            fields = fields[:max(1, len(fields) - arg)]
        else:
            j = BASE.columns.get_loc(col)
            fields[j] = _damage_text(fields[j], kind, arg).replace(",", ";")
        lines[i] = ",".join(fields)
        damaged.add(row)
    path = tmp_path_factory.mktemp("fz") / "chain.csv"
    path.write_text("\n".join(lines) + "\n")
    frame, rep = load_chain(path, symbol="spy")
    frame, rep2 = clean(frame)
    total = rep + rep2
    assert total.n_in == len(BASE) and total.n_out == len(frame)
    assert total.total + total.n_out == total.n_in  # every row accounted for
    kept = set(frame["row_id"].astype(int))
    assert set(range(len(BASE))) - damaged <= kept  # undamaged rows all kept
    _check_used_values(frame)


TEXT = BASE.to_csv(index=False)
LAST = len(TEXT) - TEXT.rstrip("\n").rfind("\n") - 1  # bytes of the last line with its newline


def test_truncation_at_every_byte_of_the_last_line(tmp_path):
    path = tmp_path / "chain.csv"
    for cut in range(1, LAST):
        path.write_bytes(TEXT.encode()[:-cut])
        frame, rep = load_chain(path)
        assert rep.counts == {"truncated last row (file does not end in a newline)": 1}, cut
        assert rep.n_in == len(BASE) and len(frame) == len(BASE) - 1
        assert str(len(BASE) - 1) not in set(frame["row_id"])
    _check_used_values(clean(frame)[0])
    path.write_bytes(TEXT.encode()[:-LAST])  # cut right after a newline: a whole file
    assert load_chain(path)[1].total == 0


@SETTINGS
@given(encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
                                 "utf-32", "latin-1", "cp1252", "cp037"]),
       accent=st.booleans())
def test_encodings_load_identically_or_are_refused_in_one_line(tmp_path_factory, encoding,
                                                                 accent):
    text = TEXT.replace("SPY", "SPÝ", 1) if accent else TEXT
    path = tmp_path_factory.mktemp("enc") / "chain.csv"
    path.write_bytes(text.encode(encoding))
    try:
        frame, rep = load_chain(path)
    except ValueError as err:
        msg = str(err)
        assert "chain.csv" in msg and "\n" not in msg
        return
    ref, ref_rep = load_chain(pd.read_csv(path, dtype=str, encoding=encoding))
    # only UTF-8 (with or without BOM) or pure-ASCII-compatible bytes get here
    assert encoding in ("utf-8", "utf-8-sig") or (not accent and encoding in ("latin-1",
                                                                              "cp1252"))
    pd.testing.assert_frame_equal(frame, ref)
    assert rep.to_dict() == ref_rep.to_dict()


@SETTINGS
@given(data=st.binary(min_size=0, max_size=300))
def test_garbage_bytes_are_refused_in_one_line_or_fully_accounted(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bin") / "chain.csv"
    path.write_bytes(data)
    try:
        frame, rep = load_chain(path)
    except ValueError as err:
        assert "chain.csv" in str(err) and "\n" not in str(err)
        return
    assert rep.total + rep.n_out == rep.n_in  # (a header that happens to name the columns)
