"""The study's figures are written atomically and show every model and slice."""
import numpy as np

from jaxhedge.report.paper import cost_risk_map, pnl_cdf_grid


def test_pnl_cdf_grid_and_cost_risk_map_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    pnls = {(b, t): {"bs": rng.normal(size=30), "sv": rng.normal(size=30)}
            for b in (14, 28, 56) for t in (1.0, 1.03)}
    p = pnl_cdf_grid(pnls, tmp_path / "cdf.png", title="spy 2020q1")
    assert p.exists() and p.stat().st_size > 10_000
    pts = [{"model": m, "avg_cost": rng.uniform(), "rmse_before_cost": rng.uniform()}
           for m in ("bs", "jd", "sv")]
    q = cost_risk_map(pts, tmp_path / "map.png")
    assert q.exists() and q.stat().st_size > 5_000
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind
