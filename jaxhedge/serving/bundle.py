"""Policy bundles: a hedger and a pricer serialized with ``jax.export``, verified on load.

A bundle is a directory::

    hedge.jaxexport    hedge(params, X) -> shares   X: (n, 12) float32, n symbolic
    price.jaxexport    price(params, C) -> price    C: (n, 9) float32, n symbolic
    params/NNNN.npy    the parameter leaves (``np.load(allow_pickle=False)``), in order
    params.json        the tree description: per leaf its key path, shape, dtype and file
    model_card.json    agent, training ranges, gate results, metrics, provenance
    manifest.json      sha256 of every other file

``params`` is the flat list of leaves; the tree structure (and any static configuration such
as network definitions) is baked into the exported code, so loading needs neither the
agent's class nor the training code: only :func:`jax.export.deserialize` and ``numpy``.

The batch dimension ``n`` is SYMBOLIC (one export serves books of any size; jit compiles
once per distinct ``n``, which the advisor bounds by padding ``n`` to a power of two).
The exports are lowered for CPU and CUDA.

Columns of ``X`` (:data:`OBS_COLUMNS`): the fields of :class:`jaxhedge.env.Observation` in
order, then ``is_call`` (1.0 call, 0.0 put). Columns of ``C`` (:data:`CONTRACT_COLUMNS`):
s0, strike, maturity, sigma, mu, rate, div_yield, cost, is_call. The hedge is the number of
shares that hedge ONE SHORT option (a call's in ``[0, e^{-q tau}]``).

The manifest is an integrity check (a truncated copy, an edited parameter, a swapped
export), not a signature: whoever can write the bundle can rewrite its manifest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

FORMAT = "jaxhedge-bundle/1"
OBS_COLUMNS = ("spot", "strike", "time_to_maturity", "elapsed", "rate", "div_yield", "drift",
               "vol", "cost", "cost_multiplier", "position", "is_call")
CONTRACT_COLUMNS = ("s0", "strike", "maturity", "sigma", "mu", "rate", "div_yield", "cost",
                    "is_call")
REQUIRED = ("hedge.jaxexport", "price.jaxexport", "params.json", "model_card.json")
PLATFORMS = ("cpu", "cuda")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def params_sha256(leaves) -> str:
    """Digest of the parameter leaves (dtype, shape and bytes of each, in order)."""
    h = hashlib.sha256()
    for leaf in leaves:
        a = np.ascontiguousarray(leaf)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- writing
def _leaves(params):
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [jax.tree_util.keystr(p) for p, _ in flat]
    leaves = []
    for path, (_, leaf) in zip(paths, flat):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            raise ValueError(f"params{path}: PRNG keys cannot be bundled")
        leaves.append(np.asarray(leaf))
    return leaves, paths, treedef


def export_bundle(out_dir, hedger_fn, price_fn, params, model_card: dict, *,
                  platforms=PLATFORMS) -> Path:
    """Write a bundle to ``out_dir`` (which must not exist or be empty) and return its path.

    Args:
      hedger_fn: ``(params, obs: Observation, is_call: bool (n,)) -> shares (n,)``.
      price_fn: ``(params, contract: Contract with (n,) leaves, is_call) -> price (n,)``.
      params: a pytree of arrays (the bundle's parameters).
      model_card: JSON-able dict; ``params_sha256`` and ``format`` are added.

    The directory appears whole or not at all (written beside it, then renamed).
    """
    from jax import export

    from jaxhedge.contracts import Contract
    from jaxhedge.env import Observation

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out: {out} exists and is not an empty directory")
    leaves, paths, treedef = _leaves(params)
    f32 = np.float32

    def hedge(leaf_list, x):
        p = jax.tree.unflatten(treedef, leaf_list)
        obs = Observation(*(x[:, i] for i in range(len(OBS_COLUMNS) - 1)))
        return hedger_fn(p, obs, x[:, -1] > 0.5).astype(f32)

    def price(leaf_list, c):
        p = jax.tree.unflatten(treedef, leaf_list)
        contract = Contract(*(c[:, i] for i in range(len(CONTRACT_COLUMNS) - 1)))
        return price_fn(p, contract, c[:, -1] > 0.5).astype(f32)

    n, = export.symbolic_shape("n")
    leaf_avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
    exported = {
        "hedge.jaxexport": export.export(jax.jit(hedge), platforms=platforms)(
            leaf_avals, jax.ShapeDtypeStruct((n, len(OBS_COLUMNS)), f32)),
        "price.jaxexport": export.export(jax.jit(price), platforms=platforms)(
            leaf_avals, jax.ShapeDtypeStruct((n, len(CONTRACT_COLUMNS)), f32)),
    }
    card = dict(model_card, format=FORMAT, params_sha256=params_sha256(leaves),
                batch="symbolic", platforms=list(platforms))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for name, exp in exported.items():
            (tmp / name).write_bytes(bytes(exp.serialize()))
        (tmp / "params").mkdir()
        described = []
        for i, (path, leaf) in enumerate(zip(paths, leaves)):
            fname = f"params/{i:04d}.npy"
            np.save(tmp / fname, leaf, allow_pickle=False)
            described.append({"path": path, "shape": list(leaf.shape),
                              "dtype": leaf.dtype.str, "file": fname})
        _write_json(tmp / "params.json", {"leaves": described})
        _write_json(tmp / "model_card.json", card)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        _write_json(tmp / "manifest.json", {"format": FORMAT, "files": {
            f: sha256_file(tmp / f) for f in files}})
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- loading
@dataclasses.dataclass(frozen=True)
class Bundle:
    """A verified bundle. ``sha`` is the sha256 of its manifest (it names every file's
    digest, so it identifies the whole bundle)."""

    path: Path
    card: dict
    sha: str
    params: tuple
    hedge_exported: object
    price_exported: object

    def hedge(self, x):
        """``(n, 12)`` observation matrix -> ``(n,)`` shares per short option (traceable)."""
        return self.hedge_exported.call(list(self.params), x)

    def price(self, c):
        """``(n, 9)`` contract matrix -> ``(n,)`` prices (traceable)."""
        return self.price_exported.call(list(self.params), c)


def verify_bundle(path) -> tuple[dict, str]:
    """``(manifest, manifest sha256)`` after checking every file; ValueError (one line,
    naming the file) for a missing, extra, altered or malformed one."""
    path = Path(path)
    where = f"bundle {path}"
    man_path = path / "manifest.json"
    if not path.is_dir():
        raise ValueError(f"{where}: not a directory")
    if not man_path.is_file():
        raise ValueError(f"{where}: manifest.json is missing (not a bundle, or a partial one)")
    raw = man_path.read_bytes()
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        assert isinstance(files, dict) and manifest.get("format") == FORMAT
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ValueError(f"{where}: manifest.json is not a {FORMAT} manifest") from None
    for name in REQUIRED:
        if name not in files:
            raise ValueError(f"{where}: manifest.json does not list {name}")
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    for name, digest in files.items():
        if not isinstance(name, str) or name.startswith("/") or ".." in Path(name).parts:
            raise ValueError(f"{where}: manifest.json names an invalid path {name!r}")
        if name not in present:
            raise ValueError(f"{where}: {name} is missing (partial bundle)")
        if sha256_file(path / name) != digest:
            raise ValueError(f"{where}: {name} does not match its sha256 in manifest.json "
                             f"(altered file)")
    extra = sorted(present - set(files) - {"manifest.json"})
    if extra:
        raise ValueError(f"{where}: {extra[0]} is not listed in manifest.json")
    return manifest, sha256_bytes(raw)


def load_bundle(path) -> Bundle:
    """Verify and load a bundle (module docstring); ValueError with one line if it is
    tampered, partial or malformed."""
    from jax import export

    path = Path(path)
    manifest, sha = verify_bundle(path)
    where = f"bundle {path}"
    try:
        card = json.loads((path / "model_card.json").read_text())
        leaves_desc = json.loads((path / "params.json").read_text())["leaves"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{where}: model_card.json or params.json is not valid JSON") from None
    params = []
    for i, d in enumerate(leaves_desc):
        fname = d.get("file") if isinstance(d, dict) else None
        if fname not in manifest["files"]:
            raise ValueError(f"{where}: params.json leaf {i} names an unlisted file {fname!r}")
        try:
            a = np.load(path / fname, allow_pickle=False)
        except ValueError:
            raise ValueError(f"{where}: {fname} is not a plain .npy array") from None
        if list(a.shape) != d.get("shape") or a.dtype.str != d.get("dtype"):
            raise ValueError(f"{where}: {fname} has shape {a.shape} {a.dtype.str}, "
                             f"params.json says {d.get('shape')} {d.get('dtype')}")
        params.append(a)
    if params_sha256(params) != card.get("params_sha256"):
        raise ValueError(f"{where}: model_card.json params_sha256 does not match params/")
    exps = {}
    for name in ("hedge.jaxexport", "price.jaxexport"):
        try:
            exps[name] = export.deserialize(bytearray((path / name).read_bytes()))
        except Exception as err:  # noqa: BLE001 -- any decoding failure is a bad bundle
            raise ValueError(f"{where}: {name} cannot be deserialized "
                             f"({type(err).__name__})") from None
        if len(exps[name].in_avals) != len(params) + 1:
            raise ValueError(f"{where}: {name} takes {len(exps[name].in_avals) - 1} "
                             f"parameters, params.json has {len(params)}")
    return Bundle(path=path, card=card, sha=sha, params=tuple(params),
                  hedge_exported=exps["hedge.jaxexport"],
                  price_exported=exps["price.jaxexport"])
