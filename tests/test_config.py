"""jaxhedge.config: strict TOML + overrides into frozen dataclasses."""
import dataclasses
import pathlib
from typing import Literal

import pytest

from jaxhedge.config import (ConfigError, TrainConfig, apply_overrides, from_dict,
                             load_config, parse_override, to_dict)


@dataclasses.dataclass(frozen=True)
class Opt:
    learning_rate: float = 1e-3
    widths: tuple[int, ...] = (32, 32)
    kind: Literal["adam", "sgd"] = "adam"
    clip: float | None = None


@dataclasses.dataclass(frozen=True)
class Root:
    name: str
    train: TrainConfig = TrainConfig()
    opt: Opt = Opt()
    out: pathlib.Path = pathlib.Path("runs/x")
    verbose: bool = False


def _toml(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_load_nested_and_overrides(tmp_path):
    p = _toml(tmp_path, 'name = "a"\n[train]\nn_steps = 20\n[opt]\nlearning_rate = 1\n'
                        'widths = [8, 4]\n')
    cfg = load_config(Root, p, ["train.chunk=5", "opt.kind=sgd", "name=hello world",
                                "opt.clip=0.5", "verbose=true", "out=/tmp/r"])
    assert cfg.train == TrainConfig(n_steps=20, chunk=5)
    assert cfg.opt == Opt(learning_rate=1.0, widths=(8, 4), kind="sgd", clip=0.5)
    assert isinstance(cfg.opt.learning_rate, float)
    assert cfg.name == "hello world" and cfg.verbose is True and cfg.out == pathlib.Path("/tmp/r")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "b"
    d = to_dict(cfg)
    assert d["train"]["n_steps"] == 20 and d["opt"]["widths"] == [8, 4] and d["out"] == "/tmp/r"
    assert from_dict(Root, {**d, "out": d["out"]}) == cfg  # round trip


def test_unknown_key_suggests(tmp_path):
    p = _toml(tmp_path, 'name = "a"\n[train]\nlerning_rate = 1\n')
    with pytest.raises(ConfigError, match=r"^train\.lerning_rate: unknown key$|"
                                          r"^train\.lerning_rate: unknown key \(known"):
        load_config(Root, p)
    with pytest.raises(ConfigError) as err:
        load_config(Root, overrides=["name=a", "opt.lerning_rate=1"])
    assert str(err.value) == "opt.lerning_rate: unknown key (did you mean 'learning_rate'?)"
    with pytest.raises(ConfigError, match=r"^tran: unknown key \(did you mean 'train'\?\)"):
        load_config(Root, overrides=["name=a", "tran.n_steps=3"])
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("override, msg", [
    ("train.n_steps=ten", r"^train\.n_steps: expected int \(got str 'ten'\)$"),
    ("train.n_steps=1.5", r"^train\.n_steps: expected int \(got float 1\.5\)$"),
    ("verbose=1", r"^verbose: expected bool \(got int 1\)$"),
    ("opt.widths=[1, 'a']", r"^opt\.widths\[1\]: expected int"),
    ("opt.kind=rmsprop", r"^opt\.kind: expected one of 'adam', 'sgd'"),
    ("train=3", r"^train: expected a table \(got int 3\)$"),
    ("train.n_steps=0", r"^train\.n_steps: must be >= 1 \(got 0\)$"),
])
def test_type_errors_name_field(override, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(Root, overrides=["name=a", override])


def test_missing_required_and_optional_none(tmp_path):
    with pytest.raises(ConfigError, match=r"^name: missing required key$"):
        load_config(Root)
    assert load_config(Root, overrides=["name=a", "opt.clip=none"]).opt.clip is None


def test_bad_files_and_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(Root, tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(Root, _toml(tmp_path, "name = \n"))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.n_steps")
    with pytest.raises(ConfigError, match=r"^name: is a value, not a table"):
        apply_overrides({"name": "a"}, ["name.x=1"])


def test_parse_override_literals():
    assert parse_override("a.b=3") == (("a", "b"), 3)
    assert parse_override("a=1e-3") == (("a",), 1e-3)
    assert parse_override("a=[1, 2]") == (("a",), [1, 2])
    assert parse_override('a="x=y"') == (("a",), "x=y")
    assert parse_override("a=heston") == (("a",), "heston")
    data = {"t": {"x": 1}}
    assert apply_overrides(data, ["t.y=2"]) == {"t": {"x": 1, "y": 2}}
    assert data == {"t": {"x": 1}}  # not mutated


@dataclasses.dataclass(frozen=True)
class Ranged:
    gamma: float = dataclasses.field(default=0.5, metadata={"range": (0.0, 1.0)})
    rate: float = dataclasses.field(default=1.0, metadata={"range": (0.0, None),
                                                           "range_open": (True, False)})
    lr_policy: float = 1e-3
    seed: int = 0
    sizes: tuple[float, ...] = (1.0,)


@pytest.mark.parametrize("override, message", [
    ("opt.learning_rate=-0.01", r"^opt\.learning_rate: must be a finite number in \(0, 10\] "
                                r"\(got -0\.01\)$"),
    ("opt.learning_rate=0", r"^opt\.learning_rate: must be a finite number in \(0, 10\]"),
    ("opt.learning_rate=nan", r"^opt\.learning_rate: must be a finite number \(got nan\)$"),
    ("opt.learning_rate=inf", r"^opt\.learning_rate: must be a finite number \(got inf\)$"),
    ("opt.learning_rate=-inf", r"^opt\.learning_rate: must be a finite number"),
    ("opt.clip=nan", r"^opt\.clip: expected float \| none"),
    ("train.seed=9223372036854775808", r"^train\.seed: must be an integer in "
                                       r"\[0, 9223372036854775807\]"),
    ("train.n_steps=4294967296", r"^train\.n_steps: must be <= 2147483647"),
])
def test_non_finite_and_out_of_range_numbers_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(Root, None, ['name="x"', override])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, field", [
    ("gamma=1.5", "gamma"), ("gamma=-0.1", "gamma"), ("rate=0", "rate"),
    ("lr_policy=-1", "lr_policy"), ("seed=-1", "seed"), ("sizes=[1.0, nan]", r"sizes\[1\]"),
    ("gamma=1e400", "gamma"),
])
def test_declared_and_named_ranges(override, field):
    with pytest.raises(ConfigError, match=f"^{field}: must be a finite number|^{field}: must be "
                                          f"an integer"):
        load_config(Ranged, None, [override])
    # the edges of the declared ranges are accepted
    cfg = load_config(Ranged, None, ["gamma=1.0", "rate=1e-9", "lr_policy=10", "seed=0"])
    assert (cfg.gamma, cfg.rate, cfg.lr_policy) == (1.0, 1e-9, 10.0)
