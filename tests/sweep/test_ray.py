"""Ray Tune backend on a local Ray instance started (and shut down) by the test.

Slow: starts Ray and one worker process per trial. Interrupt/resume: block 2's trial
crashes, the rest finish; the resumed run reruns only block 2 and the final table equals
the local backend's. Optuna: seeded TPE, one trial = one hparam set x all seeds.
"""
import json
import tempfile

import pandas as pd
import pytest

from jaxhedge.sweep.local import block_path, run_local
from jaxhedge.sweep.spec import load_sweep

from .helpers import toy_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the Ray backend needs the extra jaxhedge[ray]")
    pytest.importorskip("ray.tune", reason="the Ray backend needs ray[tune]")
    # a short temp dir: Ray's socket paths must stay under 108 characters
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_interrupted_ray_sweep_resumes_to_the_local_table(ray_instance, tmp_path):
    from jaxhedge.sweep.ray_backend import run_ray

    spec = load_sweep(toy_file(tmp_path, block_size=3))
    local = run_local(spec, tmp_path / "local", progress=False).table
    out = tmp_path / "ray"
    first = run_ray(spec, out, crash_blocks=(2,))
    assert len(first.errors) == 1 and "injected crash in block 2" in first.errors[0]
    assert first.table is None
    assert [block_path(out, i).exists() for i in range(4)] == [True, True, False, True]
    before = {i: json.loads(block_path(out, i).read_text())["run_id"] for i in (0, 1, 3)}
    second = run_ray(spec, out, resume=True)
    assert second.errors == []
    after = {i: json.loads(block_path(out, i).read_text())["run_id"] for i in (0, 1, 3)}
    assert after == before  # finished trials were not redone
    pd.testing.assert_frame_equal(second.table, local)  # bitwise, params_sha256 included
    assert (out / "ray" / "tune").is_dir()


def test_optuna_search(ray_instance, tmp_path):
    pytest.importorskip("optuna", reason="search = 'optuna' needs optuna (jaxhedge[ray])")
    from jaxhedge.sweep.ray_backend import run_ray

    extra = 'search = "optuna"\nn_samples = 3'
    text = toy_file(tmp_path, block_size=2, extra=extra, static="batch = [16]").read_text()
    text = text.replace("learning_rate = [0.01, 0.05, 0.1]",
                        'learning_rate = {distribution = "loguniform", low = 0.005, high = 0.2}')
    path = tmp_path / "optuna.toml"
    path.write_text(text)
    spec = load_sweep(path)
    res = run_ray(spec, tmp_path / "out")
    df = res.table
    assert res.errors == [] and len(df) == 3 * 2
    assert sorted(df["config"].unique()) == [0, 1, 2]
    assert df["learning_rate"].between(0.005, 0.2).all()
    assert df.groupby("config")["learning_rate"].nunique().eq(1).all()  # one set per trial
    with pytest.raises(ValueError, match="needs --backend ray"):
        run_local(spec, tmp_path / "local", progress=False)
