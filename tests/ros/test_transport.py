"""`regconsist bench transport` between two real processes (numbers go to docs/benchmarks.md, not here)."""
import json
import os
import subprocess
import sys


def test_bench_transport_reports_delivery_and_latency(domain_id):
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id)}
    r = subprocess.run([sys.executable, "-m", "regconsist_ros.cli", "bench", "transport", "--width", "160", "--height",
                        "120", "--rate", "20", "--seconds", "2", "--transport", "large_data"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])  # strict JSON: no NaN
    assert res["sent"] == 40 and res["matched"] and res["rgbd"]
    assert res["received"] <= res["colour_received"] <= res["sent"] and res["depth_received"] <= res["sent"]
    assert res["delivered"] > 0.5  # reliable delivery of small frames (measured: all of them)
    assert 0 < res["latency_ms_p50"] <= res["latency_ms_p99"] <= res["latency_ms_max"]
    assert res["domain_id"] == domain_id
