"""`regconsist bench fuzz` (issue 18's fuzz table, docs/reliability.md): a tiny run of every section through
the console script, and the message catalog checked without ROS nodes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_message_catalog_covers_the_issue_kinds_and_every_message_builds():
    from regconsist_ros.bench.fuzz_messages import Camera, Keyframes, catalog
    from regconsist_ros.ros.fuzz_peer import build_message

    kinds = catalog()
    names = [k.name for k in kinds]
    assert len(names) == len(set(names)) and len(names) >= 80, len(names)
    groups = {k.group for k in kinds}
    assert {"stamp", "color_encoding", "color_buffer", "depth_encoding", "depth_buffer", "depth_values", "camera_info",
            "pose", "view_pair_uv", "view_pair_stamps", "view_pair_cloud", "keyframe"} <= groups, groups
    for needed in ("stamp/set_2038", "stamp/pose_ahead_0.5s", "stamp/set_1970", "stamp/set_duplicate",
                   "color_buffer/0x0", "color_buffer/claims_8000x8000", "depth_values/32FC1_all_nan",
                   "pose/quaternion_zero", "view_pair_uv/uv1_all_nan", "view_pair_cloud/truncated_data"):
        assert needed in names, needed
    cam, kf = Camera(1000.0), Keyframes(1000.0)
    for k in kinds:
        stream = cam if k.node == "registration" else kf
        msgs = k.build(stream, stream.t + 0.1, stream.t)
        assert msgs, k.name
        for key, desc in msgs:  # what the peer publishes: every description is a valid ROS message
            msg = build_message(desc)
            assert type(msg).__name__ == desc["type"], (k.name, key)


@pytest.mark.slow
@pytest.mark.reliability
def test_a_tiny_fuzz_run_of_every_section_finds_no_crash_uncounted_drop_or_traceback(tmp_path):
    md = tmp_path / "fuzz.md"
    exe = Path(sys.executable).with_name("regconsist")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "regconsist_ros.cli"]
    r = subprocess.run(cmd + ["bench", "fuzz", "--limit", "2", "--kills", "1", "--quiet", "--markdown", str(md)],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    t = res["table"]
    assert set(t) == {"messages", "cli", "checkpoints", "kills"}, t
    assert t["messages"]["inputs"] == 4 and t["cli"]["inputs"] == 2 and t["checkpoints"]["inputs"] == 2, t
    assert t["kills"]["inputs"] == 1 and t["kills"]["checkpoints"] >= 1, t
    tot = res["totals"]
    assert tot["inputs"] == 9, tot
    for key in ("crashes", "uncounted_drops", "next_good_failures", "tracebacks", "cli_failures", "corrupt_checkpoints",
                "checkpoints_not_recovered_from"):
        assert tot[key] == 0, (key, tot, res.get("messages", {}).get("failures"), res.get("cli", {}).get("failures"))
    assert t["messages"]["controls_clean"], res["messages"]["controls"]
    # each bad message was counted under a reason on /diagnostics, and the good sets after it were used
    for row in res["messages"]["kinds"]:
        assert row["counted"] and row["reasons"] and row["next_good"], row
    assert all(row["outcome"] == "quarantined" and row["good_after"] for row in res["checkpoints"]["kinds"])
    assert t["kills"]["resumed_at_latest"] == "1/1" and t["kills"]["final_exit"] == 0, res["kills"]
    assert "| **total** | **9** | **0** | **0** | **0** | **0** |" in md.read_text(), md.read_text()
