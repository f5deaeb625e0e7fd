"""`regconsist convert`, `correspond` and `embed` on recordings of other layouts (7-Scenes, Replica, bags)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from regconsist_ros.cli import main
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.poses import pose_from_tq
from regconsist_ros.sim.sequences import read_tum

pytest.importorskip("rosbags")
K = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)
TINY_VIT = ["--encoder.size", "tiny", "--encoder.depth", "1", "--encoder.img_size", "32", "48", "--encoder.patch", "8"]


def _frames(n: int = 4) -> list[Frame]:
    y, x = np.mgrid[0:48, 0:64]
    out = []
    for i in range(n):
        rgb = np.stack([128 + 100 * np.sin(x / (4 + c) + y / (5 + c) + i) for c in range(3)], -1).astype(np.uint8)
        depth = (1.5 + 0.3 * x / 64).astype(np.float32)
        T = pose_from_tq([0.03 * i, 0.0, 0.0], [0, 0, 0, 1])
        out.append(Frame(rgb=rgb, depth=depth, intrinsics=K, T_world_cam=T, stamp=i / 30))
    return out


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    from regconsist_ros.sim.recordings.bag_writer import write_realsense_bag, write_rosbag
    from regconsist_ros.sim.recordings.replica import write_replica
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes

    d = tmp_path_factory.mktemp("layouts")
    fr = _frames()
    return {"7scenes": write_7scenes(d / "seq-01", fr), "replica": write_replica(d / "room0", fr),
            "ros1": write_rosbag(d / "r.bag", fr, storage="ros1"),
            "realsense": write_realsense_bag(d / "rs.bag", fr, [f.depth for f in fr], K)}


@pytest.mark.parametrize("layout", ["7scenes", "replica", "ros1", "realsense"])
def test_convert_writes_a_tum_sequence(layouts, tmp_path, capsys, layout):
    out = tmp_path / "tum"
    assert main(["convert", str(layouts[layout]), "--out", str(out), "--quiet", "--json"]) == 0
    r = _last_json(capsys)
    assert r["layout"] == {"ros1": "rosbag"}.get(layout, layout) and r["frames"] == 4 and r["poses"] == (layout != "realsense")
    seq = read_tum(out, require_poses=False)
    assert len(seq) == 4 and seq.intrinsics == K and seq.has_poses == (layout != "realsense")
    np.testing.assert_allclose(seq[1].depth, _frames()[1].depth, atol=0.001)
    assert main(["convert", str(layouts[layout]), "--out", str(out), "--quiet"]) == 2  # not empty: refused
    assert "not empty" in capsys.readouterr().err


def test_correspond_takes_any_layout_with_poses_and_refuses_one_without(layouts, tmp_path, capsys):
    for layout in ("7scenes", "replica", "ros1"):
        assert main(["correspond", str(layouts[layout]), "--pair", "0", "2", "--json"]) == 0
        r = _last_json(capsys)
        assert r["pairs"] > 1000 and 0.3 < r["overlap_iou"] <= 1.0, (layout, r)
    assert main(["correspond", str(layouts["realsense"]), "--pair", "0", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs camera poses" in err and "pose_source: odometry" in err
    assert main(["correspond", str(tmp_path / "missing"), "--pair", "0", "1"]) == 2
    assert "not found" in capsys.readouterr().err


def test_embed_reads_colour_frames_of_a_7scenes_folder_and_a_realsense_bag(layouts, tmp_path, capsys):
    for layout in ("7scenes", "realsense"):
        out = tmp_path / f"{layout}.npz"
        assert main(["embed", "--ckpt", "random", *TINY_VIT, "--data", str(layouts[layout]), "--out", str(out),
                     "--quiet", "--json"]) == 0
        r = _last_json(capsys)
        assert r["frames"] == 4 and r["dropped_frames"] == {}  # 4 colour frames: depth images are not frames
        assert np.load(out)["cls"].shape[0] == 4


def test_options_in_the_spec_reach_the_reader(layouts, tmp_path, capsys):
    spec = f"{layouts['7scenes']}?intrinsics=30,30,31.5,23.5&fps=10"
    out = tmp_path / "tum"
    assert main(["convert", spec, "--out", str(out), "--quiet", "--json"]) == 0
    r = _last_json(capsys)
    assert r["intrinsics"]["fx"] == 30.0
    np.testing.assert_allclose(read_tum(out).stamps, np.arange(4) / 10)
    assert main(["convert", f"{layouts['7scenes']}?colour=1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "unknown recording option 'colour'" in capsys.readouterr().err


def test_pretrain_on_a_7scenes_folder_trains_on_its_colour_frames_only(tmp_path, capsys):
    """The issue's case: a 7-Scenes folder (colour + 16-bit depth PNGs) once loaded as 2N colour frames."""
    from regconsist_ros.sim.recordings.scenes7 import write_7scenes

    d = write_7scenes(tmp_path / "seq-01", _frames(8))
    tiny = {"encoder.size": "tiny", "encoder.depth": "1", "encoder.patch": "8", "decoder_width": "32",
            "decoder_depth": "1", "decoder_heads": "4", "batch.gap_min": "2", "batch.gap_max": "5", "batch.size": "4",
            "trainer.steps": "1"}
    args = [a for k, v in tiny.items() for a in (f"--rsp.{k}", v)] + ["--rsp.encoder.img_size", "32", "48"]
    assert main(["pretrain", "rsp", "--data", str(d), "--out", str(tmp_path / "run"), "--quiet", "--json", *args]) == 0
    r = _last_json(capsys)
    assert r["frames"] == 8 and r["dropped_frames"] == {}, r  # not 16
