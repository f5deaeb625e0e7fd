"""rosbag2 recordings: written like the camera source publishes, read back through the same checks."""
import numpy as np
import pytest

from regconsist_ros.online.bag import BagSource, BagTopics, read_bag, write_bag


@pytest.fixture(scope="module")
def frames():
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=0, frames=6, width=64, height=48)))


@pytest.mark.parametrize("enc", ["16UC1", "32FC1"])
def test_bag_round_trip(frames, tmp_path, enc):
    bag = write_bag(tmp_path / "bag", frames, depth_encoding=enc)
    src = BagSource(bag)
    assert len(src) == 6 and src.dropped == {}
    for a, b in zip(frames, src.frames):
        assert np.array_equal(a.rgb, b.rgb) and b.stamp == pytest.approx(a.stamp, abs=1e-9)
        assert np.allclose(a.depth, b.depth, atol=0.0006 if enc == "16UC1" else 1e-6)
        assert np.allclose(a.T_world_cam, b.T_world_cam, atol=1e-9)
        assert b.intrinsics.fx == pytest.approx(a.intrinsics.fx)


def test_missing_topics_and_paths_are_clear_errors(frames, tmp_path):
    bag = write_bag(tmp_path / "bag", frames[:2])
    with pytest.raises(ValueError, match="/robot/pose"):
        read_bag(bag, BagTopics(pose="/robot/pose"))
    with pytest.raises(FileNotFoundError):
        read_bag(tmp_path / "nope")
