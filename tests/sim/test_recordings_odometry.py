"""``PATH?poses=odometry`` (sim/recordings/odometry.py): a pose-less recording gets odometry poses through
``open_recording``, and the commands that need poses (correspond, the view-pair loader) use them."""
import json

import numpy as np
import pytest

from regconsist_ros.sim.odometry import relative_motion
from regconsist_ros.sim.poses import invert
from regconsist_ros.sim.recordings import PoseUnknownError, RecordingError, open_recording, require_poses
from regconsist_ros.sim.sequences import TumWriter

pytest.importorskip("open3d")

SIM = "sim:seed=0,frames=8,width=160,height=120,trajectory=spline,step=0.05"


@pytest.fixture(scope="module")
def poseless(tmp_path_factory):
    """A TUM sequence of 8 rendered frames without groundtruth.txt, and the frames' true poses."""
    from regconsist_ros.sim.source import SimConfig, SimSource

    src = SimSource(SimConfig(seed=0, frames=8, width=160, height=120, trajectory="spline", step=0.05))
    root = tmp_path_factory.mktemp("poseless")
    with TumWriter(root, src.intrinsics) as w:
        for f in src:
            w.write(f)
    (root / "groundtruth.txt").unlink()
    return root, np.array(src.poses)


def test_a_poseless_recording_says_how_to_get_poses(poseless):
    root, _ = poseless
    rec = open_recording(root)
    assert not rec.has_poses and rec[0].T_world_cam is None
    with pytest.raises(PoseUnknownError, match=r"\?poses=odometry") as e:
        require_poses(rec, "correspond")
    assert "\n" not in str(e.value) and "pose_source: odometry" in str(e.value)


def test_poses_odometry_estimates_the_poses_through_open_recording(poseless):
    root, gt = poseless
    rec = open_recording(f"{root}?poses=odometry")
    assert rec.has_poses and len(rec) == len(gt) and rec.layout == "tum"
    require_poses(rec, "correspond")  # no error now
    est = [rec[i].T_world_cam for i in range(len(rec))]
    assert np.allclose(est[0], np.eye(4)) and rec[3].meta["pose_source"] == "odometry"
    for i in range(1, len(rec)):  # relative to the first frame, as the truth
        e = relative_motion(invert(gt[0]) @ gt[i], est[i])
        assert e[0] < 0.02 and e[1] < 0.5, (i, e)
    d = rec.describe()
    assert d["poses"] == "odometry" and d["odometry"]["counts"]["accepted"] == len(gt)
    assert rec.recorded_poses == [None] * len(gt)


def test_odometry_options_reach_the_config_and_bad_ones_are_named(poseless):
    root, _ = poseless
    rec = open_recording(f"{root}?poses=odometry&odometry.max_translation=0.01&odometry.iterations=10,5")
    assert rec.cfg.max_translation == 0.01 and rec.cfg.iterations == (10, 5)
    # every later frame is further from the first than 1 cm per period: only the first keeps a pose
    assert len(rec) == 1 and sum(rec.dropped.values()) == 7 and rec.dropped["odometry.translation"] >= 1
    with pytest.raises(RecordingError, match=r"odometry\.max_translation must be a positive number"):
        open_recording(f"{root}?poses=odometry&odometry.max_translation=-1")
    with pytest.raises(RecordingError, match="unknown recording option odometry.speed"):
        open_recording(f"{root}?poses=odometry&odometry.speed=1")
    with pytest.raises(RecordingError, match="need poses=odometry"):
        open_recording(f"{root}?odometry.method=hybrid")
    with pytest.raises(RecordingError, match="poses='gps'"):
        open_recording(f"{root}?poses=gps")


def test_poses_auto_keeps_recorded_poses_and_estimates_missing_ones(poseless):
    root, _ = poseless
    assert open_recording(f"{root}?poses=auto").meta.get("poses") == "odometry"
    rec = open_recording(SIM + "?poses=auto")
    assert type(rec).__name__ == "SimRecording"  # the embedded world has poses: kept


def test_a_sim_spec_takes_poses_odometry_and_keeps_the_truth_beside(poseless):
    rec = open_recording(SIM + "?poses=odometry")
    assert len(rec) == 8 and all(T is not None for T in rec.recorded_poses)
    T0 = rec.recorded_poses[0]
    e = relative_motion(invert(T0) @ rec.recorded_poses[-1], rec[len(rec) - 1].T_world_cam)
    assert e[0] < 0.02
    with pytest.raises(RecordingError, match="takes only poses= and odometry"):
        open_recording(SIM + "?depth_scale=5")


def test_correspond_and_the_view_pair_loader_use_odometry_poses(poseless, capsys):
    from regconsist_ros.cli import main
    from regconsist_ros.learning.stores import load_frames

    root, _ = poseless
    assert main(["correspond", str(root), "--pair", "0", "4"]) != 0
    err = capsys.readouterr().err
    assert "?poses=odometry" in err and len(err.strip().splitlines()) == 1
    assert main(["correspond", f"{root}?poses=odometry", "--pair", "0", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["pairs"] > 1000 and 0.3 < out["overlap_iou"] <= 1.0
    frames, rec = load_frames(f"{root}?poses=odometry", progress=False)
    assert len(frames) == 8 and all(f.has_pose for f in frames)
