"""Typed run configuration: frozen dataclasses loaded from TOML plus ``--set a.b=value``.

A config is a tree of frozen dataclasses; a nested dataclass field is a TOML table
(``[train]``) and every other field a TOML value. Loading is strict so that a typo never
silently falls back to a default:

* an unknown key is an error that suggests the closest known one::

      ConfigError: train.lerning_rate: unknown key (did you mean 'learning_rate'?)

* a value of the wrong type is an error naming the field and the expected type::

      ConfigError: train.n_steps: expected int (got str 'ten')

* a dataclass may validate itself in ``__post_init__`` by raising ``ValueError("field: ...")``;
  the message comes back prefixed with the section (``train.field: ...``).

* every float must be finite (TOML has ``nan`` and ``inf``)::

      ConfigError: agent.learning_rate: must be a finite number (got nan)

* a field may declare its range, ``dataclasses.field(default=..., metadata={"range": (lo,
  hi)})`` (closed; ``None`` = unbounded; ``"range_open": (True, False)`` opens an end), and
  fields named like a learning rate or a seed have one whatever class declares them
  (:data:`NAMED_RANGES`: ``learning_rate``, ``lr``, ``lr_*`` in (0, 10]; ``seed`` in
  [0, 2**63 - 1])::

      ConfigError: agent.learning_rate: must be a finite number in (0, 10] (got -0.01)

Overrides (``--set train.n_steps=500``) are applied to the parsed TOML before validation;
the value is read as a TOML literal (``500``, ``1e-3``, ``true``, ``"x"``, ``[1, 2]``) and,
if it is not one, kept as the raw string (so ``--set env.market=heston`` needs no quotes).

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted and converted),
``str``, ``pathlib.Path`` (from a string), ``Literal[...]``, ``X | None`` (set with the
string ``none``; TOML has no null), ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``,
``dict[str, X]`` and nested dataclasses.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import pathlib
import tomllib
import types
import typing
from typing import Any, Iterable, Literal, TypeVar

from jaxhedge.validate import SEED_MAX, check_int, check_range

__all__ = ["ConfigError", "TrainConfig", "load_config", "read_toml", "from_dict", "to_dict",
           "parse_override", "apply_overrides", "NAMED_RANGES", "field_range"]

T = TypeVar("T")

#: int32 step counters (optax, checkpoints) bound the number of updates.
MAX_UPDATES = 2**31 - 1
#: (lo, hi, lo_open, hi_open) of fields by name, in every config class (agents included):
#: a learning rate <= 0 diverges or stands still, one above 10 only diverges; seeds are
#: 64-bit.
NAMED_RANGES = {"learning_rate": (0.0, 10.0, True, False), "lr": (0.0, 10.0, True, False),
                "seed": (0, SEED_MAX, False, False)}


def field_range(field: dataclasses.Field) -> tuple | None:
    """(lo, hi, lo_open, hi_open) declared for ``field`` (its metadata, else its name)."""
    if "range" in field.metadata:
        lo, hi = field.metadata["range"]
        lo_open, hi_open = field.metadata.get("range_open", (False, False))
        return lo, hi, lo_open, hi_open
    if field.name in NAMED_RANGES:
        return NAMED_RANGES[field.name]
    if field.name.startswith("lr_"):
        return NAMED_RANGES["lr"]
    return None


def _check_range(where: str, value, rng) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    lo, hi, lo_open, hi_open = rng
    if isinstance(value, int) and not lo_open and not hi_open and \
            all(isinstance(b, int) or b is None for b in (lo, hi)):
        check_int(where, value, -2**63 if lo is None else lo, 2**63 - 1 if hi is None else hi)
    else:
        check_range(where, value, lo, hi, lo_open, hi_open)


class ConfigError(ValueError):
    """A bad configuration: one line naming the field (dotted path) and what is wrong."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``[train]`` section: how long and in how many pieces to train.

    Attributes:
      n_steps: total agent updates per member.
      chunk: updates per compiled chunk (one ``lax.scan``); metrics, the non-finite check
        and a checkpoint happen once per chunk.
      seed: base seed; member ``(h, s)`` uses ``fold_in(key(seed), s)`` for every hparam set h.
      n_seeds: seeds per hyperparameter set (inner vmap axis).
      keep_checkpoints: how many most recent checkpoints to keep on disk.

    The field names are :func:`jaxhedge.train.run_training` keywords:
    ``run_training(agent, hp, run_dir=..., config=to_dict(cfg), **dataclasses.asdict(cfg.train))``.
    """

    n_steps: int = 1000
    chunk: int = 100
    seed: int = 0
    n_seeds: int = 1
    keep_checkpoints: int = 3

    def __post_init__(self):
        for name in ("n_steps", "chunk", "n_seeds", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1 (got {getattr(self, name)})")
            if getattr(self, name) > MAX_UPDATES:
                raise ValueError(f"{name}: must be <= {MAX_UPDATES} (got {getattr(self, name)})")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0 (got {self.seed})")


# --------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"a.b=value"`` -> ``(("a", "b"), value)``; value is a TOML literal or the raw string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE (e.g. train.n_steps=500)")
    parts = tuple(p.strip() for p in key.split("."))
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty key component in {key!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words: --set env.market=heston
    return parts, value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """A copy of the nested dict ``data`` with each ``a.b=value`` override set in it."""
    data = _deep_copy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[:i + 1])
                raise ConfigError(f"{where}: is a value, not a table (override {text!r})")
            node = child
        node[parts[-1]] = value
    return data


def _deep_copy(data):
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


# --------------------------------------------------------------------------- loading
def load_config(cls: type[T], path: str | pathlib.Path | None = None,
                overrides: Iterable[str] = ()) -> T:
    """Build ``cls`` (a frozen dataclass) from the TOML file ``path`` (optional) and overrides.

    Raises:
      ConfigError: unreadable/invalid TOML, unknown key, wrong type or a failed check.
    """
    data = read_toml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, overrides))


def read_toml(path: str | pathlib.Path, what: str = "config") -> dict:
    """The TOML file ``path`` as a dict; unreadable or invalid -> one-line ConfigError."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what} ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML ({err})") from None


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Validate the nested dict ``data`` against the dataclass ``cls`` and build it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or '<root>'}: expected a table (got {_describe(data)})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else \
                f" (known: {', '.join(sorted(fields))})"
            raise ConfigError(f"{_join(prefix, key)}: unknown key{hint}")
    kwargs = {}
    for name, field in fields.items():
        where = _join(prefix, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], where)
            rng = field_range(field)
            if rng is not None:
                try:
                    _check_range(where, kwargs[name], rng)
                except ValueError as err:
                    raise ConfigError(str(err)) from None
        elif (field.default is dataclasses.MISSING
              and field.default_factory is dataclasses.MISSING):
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = from_dict(hints[name], {}, where)
            else:
                raise ConfigError(f"{where}: missing required key")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        # __post_init__ checks say "field: why"; put the section in front
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(_join(prefix, msg) if prefix else msg) from None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value) -> str:
    if isinstance(value, dict):
        return "table"
    return f"{type(value).__name__} {value!r}"


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _convert(tp, value, where: str):
    """``value`` (parsed TOML) as type ``tp``, or ConfigError naming ``where``."""
    def bad():
        return ConfigError(f"{where}: expected {_type_name(tp)} (got {_describe(value)})")

    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if value in args and all(type(value) is type(a) for a in args if a == value):
            return value
        raise bad()
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and isinstance(value, str) and value.lower() in ("none", "null"):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError:
                pass
        raise bad()
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad()
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if args and len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items (got {len(value)})")
            items = [_convert(a, v, f"{where}[{i}]") for i, (a, v) in
                     enumerate(zip(args, value))] if args else list(value)
        else:
            item_tp = args[0] if args else Any
            items = [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        item_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(item_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                x = float(value)
            except OverflowError:  # an int beyond float range
                x = math.inf
            if not math.isfinite(x):
                raise ConfigError(f"{where}: must be a finite number (got {value!r})")
            return x
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if tp is pathlib.Path:
        if isinstance(value, str):
            return pathlib.Path(value)
        raise bad()
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)} in the config class")


# --------------------------------------------------------------------------- dumping
def to_dict(cfg) -> dict:
    """The config as plain JSON/TOML-able data (for ``run.json``): nested dicts, lists, str."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"to_dict: expected a dataclass instance (got {type(cfg).__name__})")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value
