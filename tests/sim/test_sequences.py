"""TUM RGB-D sequences on disk: round trips, public-style layouts, real data and error cases."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regconsist_ros.sim.frame import TUM_CAMERAS, Frame, Intrinsics
from regconsist_ros.sim.poses import pose_from_tq
from regconsist_ros.sim.sequences import (
    SequenceError,
    TumWriter,
    associate_nearest,
    associate_unique,
    load_uint16,
    read_tum,
    write_tum,
)
from regconsist_ros.sim.world.classes import ClassTable

H, W = 24, 32


def random_pose(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return pose_from_tq(rng.uniform(-3, 3, size=3), q / np.linalg.norm(q))


def make_frames(n=4, seed=0, intr=None, labels=True, t0=1305031102.175304):
    rng = np.random.default_rng(seed)
    intr = intr or Intrinsics(30.0, 31.0, 15.5, 11.5, W, H)
    frames = []
    for k in range(n):
        depth = rng.uniform(0.3, 8.0, size=(H, W)).astype(np.float32)  # [H, W]
        depth[rng.random((H, W)) < 0.1] = 0.0
        depth[rng.random((H, W)) < 0.1] = np.nan
        frames.append(
            Frame(
                rgb=rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8),
                depth=depth,
                intrinsics=intr,
                T_world_cam=random_pose(rng),
                stamp=t0 + k / 30 + rng.uniform(0, 0.005),
                semantic=rng.integers(0, 65536, size=(H, W), dtype=np.uint16) if labels else None,
                instance=rng.integers(0, 65536, size=(H, W), dtype=np.uint16) if labels else None,
            )
        )
    return frames


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_list(path: Path, header: list[str], rows: list[str]) -> None:
    path.write_text("\n".join(header + rows) + "\n")


def minimal_sequence(root: Path, n=3, size=(H, W), depth_dtype=np.uint16) -> Path:
    """A tiny TUM layout with identical rgb/depth/groundtruth stamps and identity-ish poses."""
    rng = np.random.default_rng(1)
    rgb_rows, depth_rows, gt_rows = [], [], []
    for k in range(n):
        t = f"{100 + k * 0.1:.6f}"
        save_png(root / "rgb" / f"{t}.png", rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))
        save_png(root / "depth" / f"{t}.png", rng.integers(1000, 20000, size=size).astype(depth_dtype))
        rgb_rows.append(f"{t} rgb/{t}.png")
        depth_rows.append(f"{t} depth/{t}.png")
        gt_rows.append(f"{t} {k} 0 0 0 0 0 1")
    write_list(root / "rgb.txt", ["# color images"], rgb_rows)
    write_list(root / "depth.txt", ["# depth maps"], depth_rows)
    write_list(root / "groundtruth.txt", ["# timestamp tx ty tz qx qy qz qw"], gt_rows)
    return root


# ---------------------------------------------------------------------------------------------
# round trip
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [5000.0, 1000.0])
def test_round_trip(tmp_path, scale):
    frames = make_frames()
    intr = frames[0].intrinsics
    classes = ClassTable.from_names(["wall", "floor", "chair"])
    out = tmp_path / "seq"
    with TumWriter(out, intr, depth_scale=scale, classes=classes, meta={"source": "test", "n": 4}) as w:
        for f in frames:
            w.write(f)
    assert w.written == 4 and w.depth_clipped_pixels == 0

    seq = read_tum(out)
    assert len(seq) == 4
    assert seq.intrinsics == intr
    assert seq.depth_scale == scale
    assert seq.classes == classes
    assert seq.meta == {"source": "test", "n": 4}
    assert seq.has_semantic and seq.has_instance
    assert seq.dropped == {}
    assert seq.stamps.shape == (4,) and seq.poses.shape == (4, 4, 4)
    np.testing.assert_allclose(seq.stamps, [f.stamp for f in frames], atol=1e-6, rtol=0)
    for k, (src, got) in enumerate(zip(frames, seq)):
        np.testing.assert_array_equal(got.rgb, src.rgb)
        assert got.depth.dtype == np.float32 and got.depth.shape == (H, W)
        valid = np.isfinite(src.depth) & (src.depth > 0)
        assert np.abs(got.depth[valid] - src.depth[valid]).max() <= 0.5 / scale + 1e-6
        assert np.all(got.depth[~valid] == 0)
        assert np.all(got.depth[valid] > 0)
        np.testing.assert_array_equal(got.semantic, src.semantic)
        np.testing.assert_array_equal(got.instance, src.instance)
        assert got.semantic.dtype == np.uint16 and got.instance.dtype == np.uint16
        np.testing.assert_allclose(got.T_world_cam, src.T_world_cam, atol=1e-6, rtol=0)
        np.testing.assert_allclose(seq.poses[k], src.T_world_cam, atol=1e-6, rtol=0)
        assert abs(got.stamp - src.stamp) < 1e-6
        assert got.meta["index"] == k and Path(got.meta["rgb_path"]) == seq.rgb_paths[k]


def test_indexing_and_paths(tmp_path):
    frames = make_frames(n=3, labels=False)
    write_tum(tmp_path / "seq", frames, frames[0].intrinsics, progress=False)
    seq = read_tum(tmp_path / "seq")
    assert not seq.has_semantic and not seq.has_instance
    assert seq[0].semantic is None and seq[0].instance is None
    np.testing.assert_array_equal(seq[-1].rgb, frames[-1].rgb)
    assert seq[-3].meta["index"] == 0
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(IndexError):
        seq[-4]
    assert all(p.is_file() for p in seq.rgb_paths + seq.depth_paths)
    assert seq.root == tmp_path / "seq"


def test_write_tum_returns_counters_and_clips_far_depth(tmp_path, caplog):
    frames = make_frames(n=2, labels=False)
    for f in frames:
        f.depth[0, :5] = 20.0  # > 65535 / 5000 = 13.1 m
    with caplog.at_level(logging.WARNING, logger="regconsist_ros.sim.sequences"):
        w = write_tum(tmp_path / "seq", frames, frames[0].intrinsics, progress=False)
    assert w.written == 2 and w.depth_clipped_pixels == 10
    assert len([r for r in caplog.records if "16 bits" in r.getMessage()]) == 1
    seq = read_tum(tmp_path / "seq")
    assert np.all(seq[0].depth[0, :5] == 0)


def test_overwrite_replaces_previous_sequence(tmp_path):
    out = tmp_path / "seq"
    first = make_frames(n=3, seed=1)
    write_tum(out, first, first[0].intrinsics, progress=False)
    second = make_frames(n=2, seed=2, labels=False, t0=50.0)
    (out / "notes.md").write_text("keep me")
    write_tum(out, second, second[0].intrinsics, overwrite=True, progress=False)
    seq = read_tum(out)
    assert len(seq) == 2 and not seq.has_semantic and not seq.has_instance
    assert len(list((out / "rgb").glob("*.png"))) == 2
    np.testing.assert_array_equal(seq[1].rgb, second[1].rgb)
    assert (out / "notes.md").read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# association
# ---------------------------------------------------------------------------------------------


def test_associate_unique_is_greedy_by_dt_like_tum():
    a = np.array([0.0, 0.01])
    # a[1]-b[0] (3 ms) is the closest pair, so a[0] must settle for b[1] (19.5 ms), not b[0]
    np.testing.assert_array_equal(associate_unique(a, np.array([0.007, 0.0195]), 0.02), [1, 0])
    # one candidate for two: the nearer wins, the other is unmatched
    np.testing.assert_array_equal(associate_unique(a, np.array([0.004]), 0.02), [0, -1])
    # unsorted b: indices refer to the input order
    np.testing.assert_array_equal(associate_unique(a, np.array([0.011, 0.5, 0.001]), 0.02), [2, 0])
    np.testing.assert_array_equal(associate_unique(a, np.array([]), 0.02), [-1, -1])


def test_associate_nearest_reuses_and_respects_max_dt():
    b = np.array([0.3, 0.0, 0.1])
    np.testing.assert_array_equal(associate_nearest(np.array([0.04, 0.06, 0.2, 0.31]), b, 0.05), [1, 2, -1, 0])
    np.testing.assert_array_equal(associate_nearest(np.array([0.01, 0.02]), b, 0.05), [1, 1])


# ---------------------------------------------------------------------------------------------
# public-style TUM sequence
# ---------------------------------------------------------------------------------------------


def test_public_tum_layout(tmp_path, caplog):
    root = tmp_path / "rgbd_dataset_freiburg1_xyz"
    rng = np.random.default_rng(3)
    t0 = 1305031102.175304
    rgb_t = t0 + np.arange(8) / 30.0  # 30 Hz
    depth_t = rgb_t + 0.004  # a few ms later
    depth_t = np.delete(depth_t, 5)  # rgb frame 5 has no depth within max_dt
    depth_t = np.append(depth_t, rgb_t[0] + 0.015)  # decoy: within max_dt of frame 0 but farther
    depth_t.sort()
    gt_t = t0 - 0.0123 + np.arange(40) * 0.01  # 100 Hz, unrelated stamps
    rgb_rows, depth_rows, gt_rows = [], [], []
    for t in rgb_t:
        save_png(root / "rgb" / f"{t:.6f}.png", rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
        rgb_rows.append(f"{t:.6f} rgb/{t:.6f}.png")
    for t in depth_t:
        save_png(root / "depth" / f"{t:.6f}.png", np.full((48, 64), int(round(t * 1000)) % 60000, np.uint16))
        depth_rows.append(f"{t:.6f}\tdepth/{t:.6f}.png")  # tab: whitespace tolerant
    for k, t in enumerate(gt_t):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        gt_rows.append(f"{t:.4f} {k:.4f} 0.6305 1.6380 " + " ".join(f"{v:.4f}" for v in q))
    bag = ["# file: 'rgbd_dataset_freiburg1_xyz.bag'"]
    write_list(root / "rgb.txt", ["# color images"] + bag + ["# timestamp filename"], rgb_rows)
    write_list(root / "depth.txt", ["# depth maps"] + bag + ["# timestamp filename", ""], depth_rows)
    write_list(
        root / "groundtruth.txt", ["# ground truth trajectory"] + bag + ["# timestamp tx ty tz qx qy qz qw"], gt_rows
    )

    with caplog.at_level(logging.WARNING, logger="regconsist_ros.sim.sequences"):
        seq = read_tum(root)
    assert len(seq) == 7
    assert seq.dropped == {"no_depth": 1}
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    fx, fy, cx, cy = TUM_CAMERAS["freiburg1"]
    # published for 640x480; these 64x48 images get the same camera rescaled by 1/10
    assert seq.intrinsics == Intrinsics(fx, fy, cx, cy, 640, 480).scaled(64, 48)
    assert abs(seq.intrinsics.fx - fx / 10) < 1e-9
    assert seq.depth_scale == 5000.0
    assert seq.classes is None and not seq.has_semantic
    kept = np.delete(rgb_t, 5)
    np.testing.assert_allclose(seq.stamps, kept, atol=1e-6, rtol=0)
    gt_rounded = np.array([float(f"{t:.4f}") for t in gt_t])
    for k, t in enumerate(kept):
        # depth: the one 4 ms later (not the decoy 15 ms later)
        assert seq.depth_paths[k].name == f"{t + 0.004:.6f}.png"
        # pose: nearest groundtruth row, whose tx is its index
        nearest = int(np.argmin(np.abs(gt_rounded - t)))
        assert seq.poses[k][0, 3] == pytest.approx(nearest)
    f = seq[0]
    assert f.depth.shape == (48, 64)
    assert f.depth[0, 0] == pytest.approx((int(round((t0 + 0.004) * 1000)) % 60000) / 5000.0, abs=1e-6)


def test_rgb_list_out_of_order_gives_sorted_frames(tmp_path):
    root = minimal_sequence(tmp_path / "seq", n=3)
    lines = (root / "rgb.txt").read_text().splitlines()
    (root / "rgb.txt").write_text("\n".join([lines[0]] + lines[1:][::-1]) + "\n")
    seq = read_tum(root, intrinsics="fr2")
    assert np.all(np.diff(seq.stamps) > 0)
    assert [p.name for p in seq.rgb_paths] == sorted(p.name for p in seq.rgb_paths)
    assert seq.poses[:, 0, 3].tolist() == [0, 1, 2]


def test_intrinsics_sources(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    assert read_tum(root, intrinsics="10,11,12,13").intrinsics == Intrinsics(10, 11, 12, 13, W, H)
    assert read_tum(root, intrinsics="freiburg3").intrinsics == Intrinsics.tum("freiburg3", W, H)
    explicit = Intrinsics(20, 20, 15.5, 11.5, W, H)
    assert read_tum(root, intrinsics=explicit, depth_scale=1000).depth_scale == 1000
    (root / "intrinsics.json").write_text(
        '{"fx": 1, "fy": 2, "cx": 3, "cy": 4, "width": %d, "height": %d, "depth_scale": 1000}' % (W, H)
    )
    seq = read_tum(root)
    assert seq.intrinsics == Intrinsics(1, 2, 3, 4, W, H) and seq.depth_scale == 1000
    assert read_tum(root, intrinsics=explicit).intrinsics == explicit  # explicit wins
    assert read_tum(root, depth_scale=5000).depth_scale == 5000  # explicit wins


# ---------------------------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------------------------


def test_real_tum_sample(shared_data, tmp_path):
    src = shared_data / "redwood_open3d_5frames/examples/test_data/RGBD/other_formats"
    root = tmp_path / "sample"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    shutil.copy(src / "TUM_color.png", root / "rgb" / "1.000000.png")
    shutil.copy(src / "TUM_depth.png", root / "depth" / "1.000000.png")
    (root / "rgb.txt").write_text("# color images\n1.000000 rgb/1.000000.png\n")
    (root / "depth.txt").write_text("# depth maps\n1.000000 depth/1.000000.png\n")
    (root / "groundtruth.txt").write_text("# timestamp tx ty tz qx qy qz qw\n1.0000 0 0 0 0 0 0 1\n")
    seq = read_tum(root, intrinsics="freiburg1")
    assert len(seq) == 1 and seq.depth_scale == 5000.0
    f = seq[0]
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (480, 640) and f.depth.dtype == np.float32
    valid = f.depth > 0
    assert valid.mean() > 0.5
    assert 0.5 < float(np.median(f.depth[valid])) < 6.0
    assert float(f.depth.max()) < 65535 / 5000 + 1e-3
    np.testing.assert_array_equal(f.T_world_cam, np.eye(4))


# ---------------------------------------------------------------------------------------------
# decoding of the 16-bit modes Pillow may produce
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_uint16_modes(tmp_path, monkeypatch, mode):
    a = np.array([[0, 1, 4999], [5000, 40000, 65535]], np.uint16)  # [2, 3]
    save_png(tmp_path / "d.png", a)
    # Pillow writes all of these as the same PNG; decoders may hand any of them back.
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4"}[mode]
    decoded = Image.frombytes(mode, (3, 2), a.astype(dtype).tobytes())
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *args, **kw: decoded if Path(p).name == "d.png" else real_open(p))
    out = load_uint16(tmp_path / "d.png", "depth")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, a)


def test_palette_and_rgba_rgb_convert(tmp_path):
    root = minimal_sequence(tmp_path / "seq", n=2)
    name = sorted((root / "rgb").iterdir())
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    save_png(name[0], rgba)
    Image.fromarray(np.full((H, W), 7, np.uint8)).convert("P").save(name[1])
    seq = read_tum(root, intrinsics="fr1")
    assert seq[0].rgb.shape == (H, W, 3) and np.all(seq[0].rgb[..., 0] == 200)
    assert seq[1].rgb.dtype == np.uint8 and np.all(seq[1].rgb == 7)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    with pytest.raises(SequenceError, match="nope"):
        read_tum(tmp_path / "nope")


@pytest.mark.parametrize("name", ["rgb.txt", "depth.txt", "groundtruth.txt"])
def test_missing_list_file(tmp_path, name):
    root = minimal_sequence(tmp_path / "seq")
    (root / name).unlink()
    with pytest.raises(SequenceError, match=name.replace(".", r"\.")):
        read_tum(root, intrinsics="fr1")


def test_missing_image_file(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    victim = sorted((root / "depth").iterdir())[1]
    victim.unlink()
    seq = read_tum(root, intrinsics="fr1")
    with pytest.raises(SequenceError, match=victim.name):
        seq[1]


def test_corrupt_png(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    rgbs = sorted((root / "rgb").iterdir())
    rgbs[0].write_bytes(b"this is not a png at all")
    with pytest.raises(SequenceError, match=rgbs[0].name):
        read_tum(root, intrinsics="fr1")  # the first image's header is read at open


def test_truncated_png(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    depths = sorted((root / "depth").iterdir())
    data = depths[2].read_bytes()
    depths[2].write_bytes(data[: len(data) // 2])  # valid header, data cut short
    seq = read_tum(root, intrinsics="fr1")
    seq[0]
    with pytest.raises(SequenceError, match=depths[2].name):
        seq[2]


def test_rgb_depth_size_mismatch(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    depth = sorted((root / "depth").iterdir())[0]
    save_png(depth, np.ones((H // 2, W // 2), np.uint16))
    with pytest.raises(SequenceError, match=rf"{depth.name}.*{W // 2}x{H // 2}.*{W}x{H}"):
        read_tum(root, intrinsics="fr1")


def test_size_mismatch_in_later_frame(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    depth = sorted((root / "depth").iterdir())[2]
    save_png(depth, np.ones((H + 2, W), np.uint16))
    seq = read_tum(root, intrinsics="fr1")
    with pytest.raises(SequenceError, match=rf"{depth.name}.*{W}x{H + 2}.*{W}x{H}"):
        seq[2]


def test_8bit_depth(tmp_path):
    root = minimal_sequence(tmp_path / "seq", depth_dtype=np.uint8)
    with pytest.raises(SequenceError, match=r"depth.*16-bit"):
        read_tum(root, intrinsics="fr1")
    try:
        read_tum(root, intrinsics="fr1")
    except SequenceError as e:
        assert sorted((root / "depth").iterdir())[0].name in str(e)


@pytest.mark.parametrize(
    "line", ["100.000000 1 2 3 qx 0 0 1", "100.000000 1 2 3 0 0 1", "stamp 1 2 3 0 0 0 1"]
)
def test_malformed_groundtruth_line(tmp_path, line):
    root = minimal_sequence(tmp_path / "seq")
    with open(root / "groundtruth.txt", "a") as f:
        f.write(line + "\n")
    with pytest.raises(SequenceError, match=r"groundtruth\.txt:5"):
        read_tum(root, intrinsics="fr1")


def test_malformed_rgb_line(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    with open(root / "rgb.txt", "a") as f:
        f.write("\n# comment\n100.5\n")
    with pytest.raises(SequenceError, match=r"rgb\.txt:7"):
        read_tum(root, intrinsics="fr1")


@pytest.mark.parametrize("bad", ["nan 0 0 0 0 0 1", "0 0 0 0 0 0 0", "0 inf 0 0 0 0 1", "0 0 0 nan 0 0 1"])
def test_bad_pose_rows_are_dropped_and_counted(tmp_path, bad):
    root = minimal_sequence(tmp_path / "seq", n=3)
    lines = (root / "groundtruth.txt").read_text().splitlines()
    stamp = lines[2].split()[0]  # second pose
    lines[2] = f"{stamp} {bad}"
    (root / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    seq = read_tum(root, intrinsics="fr1")
    assert len(seq) == 2
    assert seq.dropped == {"bad_pose": 1}
    assert seq.poses[:, 0, 3].tolist() == [0, 2]


def test_no_frames_left(tmp_path):
    root = minimal_sequence(tmp_path / "seq", n=3)
    (root / "groundtruth.txt").write_text("# nothing\n500.0 0 0 0 0 0 0 1\n")
    with pytest.raises(SequenceError, match=r"no frames left.*3 no_pose"):
        read_tum(root, intrinsics="fr1")


def test_no_intrinsics_lists_options(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    with pytest.raises(SequenceError, match=r"intrinsics.*intrinsics\.json.*freiburg1"):
        read_tum(root)


def test_explicit_intrinsics_of_other_size(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    with pytest.raises(SequenceError, match=rf"640x480.*{W}x{H}"):
        read_tum(root, intrinsics=Intrinsics.tum("freiburg1"))


def test_intrinsics_json_of_other_size(tmp_path):
    root = minimal_sequence(tmp_path / "seq")
    (root / "intrinsics.json").write_text('{"fx": 1, "fy": 2, "cx": 3, "cy": 4, "width": 640, "height": 480}')
    with pytest.raises(SequenceError, match=rf"intrinsics\.json.*640x480.*{W}x{H}"):
        read_tum(root)


def test_writer_refuses_non_empty_dir(tmp_path):
    out = tmp_path / "seq"
    out.mkdir()
    (out / "something.txt").write_text("x")
    frames = make_frames(n=1)
    with pytest.raises(SequenceError, match=r"seq.*not empty"):
        TumWriter(out, frames[0].intrinsics)
    assert (out / "something.txt").read_text() == "x"


def test_writer_refuses_non_increasing_stamps(tmp_path):
    frames = make_frames(n=2)
    frames[1].stamp = frames[0].stamp
    with TumWriter(tmp_path / "seq", frames[0].intrinsics) as w:
        w.write(frames[0])
        with pytest.raises(SequenceError, match=r"rgb\.txt.*strictly increasing"):
            w.write(frames[1])
    assert w.written == 1
    assert len(read_tum(tmp_path / "seq")) == 1


def test_writer_refuses_other_intrinsics(tmp_path):
    frames = make_frames(n=1)
    other = Intrinsics(99.0, 99.0, 15.5, 11.5, W, H)
    with TumWriter(tmp_path / "seq", other) as w:
        with pytest.raises(SequenceError, match="intrinsics"):
            w.write(frames[0])


def test_writer_requires_labels_in_all_frames_or_none(tmp_path):
    frames = make_frames(n=2)
    frames[1].semantic = None
    with TumWriter(tmp_path / "seq", frames[0].intrinsics) as w:
        w.write(frames[0])
        with pytest.raises(SequenceError, match="all frames or none"):
            w.write(frames[1])


def test_missing_label_file(tmp_path):
    frames = make_frames(n=2)
    write_tum(tmp_path / "seq", frames, frames[0].intrinsics, progress=False)
    victim = sorted((tmp_path / "seq" / "instance").iterdir())[1]
    victim.unlink()
    with pytest.raises(SequenceError, match=victim.name):
        read_tum(tmp_path / "seq")
