"""Bundles: exported hedge/price match closed forms, load without jaxhedge, refuse tampering."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("flatbuffers")  # jax.export serialization of bundles

from jaxhedge import gates  # noqa: E402
from jaxhedge.serving.bundle import CONTRACT_COLUMNS, OBS_COLUMNS, load_bundle  # noqa: E402
from tests.serving.conftest import bs_delta_np  # noqa: E402

RNG = np.random.default_rng(0)


def _obs(n, is_call):
    x = np.zeros((n, len(OBS_COLUMNS)), np.float32)
    col = {c: i for i, c in enumerate(OBS_COLUMNS)}
    x[:, col["spot"]] = RNG.uniform(80, 120, n)
    x[:, col["strike"]] = 100.0
    x[:, col["time_to_maturity"]] = RNG.uniform(0.05, 1.0, n)
    x[:, col["rate"]] = RNG.uniform(0, 0.05, n)
    x[:, col["div_yield"]] = RNG.uniform(0, 0.03, n)
    x[:, col["vol"]] = RNG.uniform(0.1, 0.5, n)
    x[:, col["cost_multiplier"]] = 1.0
    x[:, col["is_call"]] = is_call
    return x, col


@pytest.mark.parametrize("n", [1, 37])
def test_delta_bundle_matches_numpy_black_scholes(delta_bundle, n):
    b = load_bundle(delta_bundle)
    is_call = RNG.random(n) < 0.5
    x, c = _obs(n, is_call)
    ref = bs_delta_np(x[:, c["spot"]], x[:, c["strike"]], x[:, c["time_to_maturity"]],
                      x[:, c["rate"]], x[:, c["vol"]], x[:, c["div_yield"]], is_call)
    np.testing.assert_allclose(np.asarray(b.hedge(x)), ref, atol=2e-6)
    assert b.card["options"] == ["call", "put"] and b.card["kind"] == "classical"
    assert [g["status"] for g in b.card["gates"]] == ["pass"] * 2 * len(gates.GATES)
    assert len(b.card["params_sha256"]) == 64 and "jax" in b.card["run_metadata"]["versions"]


def test_price_export_matches_put_call_parity(delta_bundle):
    b = load_bundle(delta_bundle)
    n = 16
    c = np.zeros((2 * n, len(CONTRACT_COLUMNS)), np.float32)
    s, k = RNG.uniform(80, 120, n), RNG.uniform(80, 120, n)
    tau, r, q = RNG.uniform(0.1, 1, n), RNG.uniform(0, .05, n), RNG.uniform(0, .03, n)
    for half, flag in ((slice(0, n), 1.0), (slice(n, 2 * n), 0.0)):
        c[half, :8] = np.stack([s, k, tau, np.full(n, .2), np.zeros(n), r, q, np.zeros(n)], 1)
        c[half, 8] = flag
    p = np.asarray(b.price(c), np.float64)
    parity = s * np.exp(-q * tau) - k * np.exp(-r * tau)
    np.testing.assert_allclose(p[:n] - p[n:], parity, atol=2e-4)


def test_agent_bundle_reproduces_the_agent(agent_bundle):
    b = load_bundle(agent_bundle)
    card = b.card
    assert card["agent"] == "scaled-vol" and card["options"] == ["call"]
    assert card["ranges_source"] == "distribution"
    np.testing.assert_allclose(card["training_ranges"]["moneyness"], [0.8, 1.2])
    np.testing.assert_allclose(card["training_ranges"]["tau"], [1 / 52, 8 / 52])
    np.testing.assert_allclose(card["training_ranges"]["sigma"], [0.1, 0.4])
    assert card["gate_label"] == "" and card["metrics"] == {"mse": 0.5}
    x, c = _obs(9, True)
    ref = bs_delta_np(x[:, c["spot"]], x[:, c["strike"]], x[:, c["time_to_maturity"]],
                      x[:, c["rate"]], x[:, c["vol"]], x[:, c["div_yield"]], True)
    np.testing.assert_allclose(np.asarray(b.hedge(x)), ref, atol=2e-6)


def test_bundle_runs_without_jaxhedge(delta_bundle):
    """Only jax.export.deserialize and numpy: importing jaxhedge is made to fail."""
    code = f"""
import sys, json, pathlib  # noqa: E402
sys.modules['jaxhedge'] = None
import numpy as np  # noqa: E402
from jax import export  # noqa: E402
d = pathlib.Path({str(delta_bundle)!r})
leaves = [np.load(d / l['file'], allow_pickle=False)
          for l in json.loads((d / 'params.json').read_text())['leaves']]
h = export.deserialize(bytearray((d / 'hedge.jaxexport').read_bytes()))
x = np.array([[100, 100, 1, 0, 0, 0, 0, 0.2, 0, 1, 0, 1]], np.float32)
print(float(h.call(leaves, x)[0]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert abs(float(out.stdout.strip()) - float(bs_delta_np(100, 100, 1, 0, .2, 0, True))) < 2e-6


@pytest.mark.parametrize("damage, message", [
    ("edit_param", "params/0000.npy does not match its sha256"),
    ("delete_export", "hedge.jaxexport is missing"),
    ("extra_file", "evil.py is not listed in manifest.json"),
    ("no_manifest", "manifest.json is missing"),
    ("edit_card", "model_card.json does not match its sha256"),
])
def test_tampered_or_partial_bundle_is_refused(delta_bundle, tmp_path, damage, message):
    d = tmp_path / "b"
    shutil.copytree(delta_bundle, d)
    if damage == "edit_param":
        p = d / "params/0000.npy"
        raw = bytearray(p.read_bytes())
        raw[-1] ^= 1
        p.write_bytes(bytes(raw))
    elif damage == "delete_export":
        (d / "hedge.jaxexport").unlink()
    elif damage == "extra_file":
        (d / "evil.py").write_text("print(1)")
    elif damage == "no_manifest":
        (d / "manifest.json").unlink()
    elif damage == "edit_card":
        card = json.loads((d / "model_card.json").read_text())
        card["training_ranges"]["sigma"] = [0, 9]
        (d / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=message) as err:
        load_bundle(d)
    assert "\n" not in str(err.value)


def test_export_refuses_a_non_empty_out_dir(delta_bundle):
    from jaxhedge.serving.export import bundle_classical

    with pytest.raises(ValueError, match="--out: .* exists"):
        bundle_classical(delta_bundle, "delta")
