"""`regconsist bench odometry` (regconsist_ros/bench/odometry.py) at a tiny size: it runs, scores against the
ground truth, and the odometry beats the standing-still floor."""
import json

import pytest

pytest.importorskip("open3d")


def test_bench_odometry_tiny(capsys, tmp_path):
    from regconsist_ros.cli import main

    assert main(["bench", "odometry", "--width", "160", "--height", "120", "--n", "8", "--worlds", "default",
                 "--paths", "spline", "--methods", "point_to_plane", "--gap", "3", "--data", str(tmp_path)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["bench"] == "odometry" and res["real"].startswith("no samples at")
    r = res["sim"]["default/spline"]["point_to_plane"]
    assert r["frames"] == 8 and r["posed"] >= 7 and r["rpe_frame"]["n"] >= 5
    assert r["ate_rmse_m"] < 0.5 * r["floor_static"]["ate_rmse_m"]
    c = r["correspondences"]
    assert c["pairs"] >= 1 and c["within_2px"] > r["floor_static"]["correspondences_within_2px"]
