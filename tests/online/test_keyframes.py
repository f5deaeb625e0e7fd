"""Online keyframes and view pairs on a rendered trajectory (regconsist_ros/online/keyframes.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from regconsist_ros.online.keyframes import KeyframeConfig, PairBuilder, motion
from regconsist_ros.registration.pairs import PairSelectionConfig, select_pairs
from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.poses import pose_from_tq


@pytest.fixture(scope="module")
def frames():
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=0, frames=30, width=64, height=48, step=0.1)))


def _run(frames, cfg, pair_cfg=None):
    pb = PairBuilder(cfg, pair_cfg)
    per_frame = [pb.add(f) for f in frames]
    return pb, per_frame


def test_pairs_on_rendered_trajectory(frames):
    cfg = KeyframeConfig(min_translation=0.25, min_rotation_deg=20.0, candidates=4)
    band = PairSelectionConfig(iou_low=0.3, iou_high=0.7)
    pb, per_frame = _run(frames, cfg, band)
    kfs = pb.keyframes
    assert kfs[0] is frames[0]
    assert 2 <= len(kfs) < len(frames) and pb.counts["keyframes"] == len(kfs)
    for a, b in zip(kfs, kfs[1:]):  # every keyframe moved or turned enough from the previous one
        dt, dr = motion(a.T_world_cam, b.T_world_cam)
        assert dt >= cfg.min_translation or dr >= cfg.min_rotation_deg
    pairs = [p for ps in per_frame for p in ps]
    assert pairs and pb.counts["pairs"] == len(pairs)
    for f, ps in zip(frames, per_frame):
        for p in ps:
            assert p["dst"] is f and any(p["src"] is k for k in kfs) and p["src"].stamp < f.stamp
            assert band.iou_low <= p["overlap_iou"] <= band.iou_high
            assert abs(p["overlap_iou_exact"] - p["overlap_iou"]) < 0.1  # strided estimate vs exact
            uv1, uv2 = p["uv1"], p["uv2"]
            assert len(uv1) == len(uv2) > 0 and uv1.shape[1] == uv2.shape[1] == 2
            assert np.all(uv1 == np.round(uv1)) and np.all(uv1 >= 0) and np.all(uv1[:, 0] <= 63) and np.all(uv1[:, 1] <= 47)
            assert np.all(np.round(uv2) >= 0) and np.all(np.round(uv2[:, 0]) <= 63) and np.all(np.round(uv2[:, 1]) <= 47)
            assert np.all(p["src"].depth[uv1[:, 1].astype(int), uv1[:, 0].astype(int)] > 0)
    # the online pairs are exactly the offline selection over the keyframes, up to `candidates` apart
    offline = select_pairs(kfs, dataclasses.replace(band, max_gap=cfg.candidates, stride=cfg.stride))
    ids = {id(k): n for n, k in enumerate(kfs)}
    assert sorted((ids[id(p["src"])], ids[id(p["dst"])]) for p in pairs) == sorted((v.i, v.j) for v in offline)
    assert pb.counts["candidates"] == sum(min(n, cfg.candidates) for n in range(len(kfs)))


def test_same_pose_is_not_a_keyframe(frames):
    pb = PairBuilder(KeyframeConfig())
    for f in frames[:6]:
        pb.add(f)
    last = pb.keyframes[-1]
    n = pb.counts["keyframes"]
    twin = Frame(rgb=last.rgb.copy(), depth=last.depth.copy(), intrinsics=last.intrinsics,
                 T_world_cam=last.T_world_cam.copy(), stamp=frames[5].stamp + 1.0)
    assert not pb.is_keyframe(twin)
    assert pb.add(twin) == [] and pb.counts["keyframes"] == n and pb.keyframes[-1] is last


def test_keyframe_thresholds_and_cap():
    from regconsist_ros.sim.frame import Intrinsics

    intr = Intrinsics.from_fov(16, 12, 90.0)

    def frame(t, yaw_deg, stamp):
        q = [0.0, np.sin(np.radians(yaw_deg) / 2), 0.0, np.cos(np.radians(yaw_deg) / 2)]  # about camera y
        return Frame(rgb=np.zeros((12, 16, 3), np.uint8), depth=np.full((12, 16), 2.0, np.float32),
                     intrinsics=intr, T_world_cam=pose_from_tq([t, 0, 0], q), stamp=stamp)

    pb = PairBuilder(KeyframeConfig(min_translation=0.1, min_rotation_deg=10.0, max_keyframes=3, candidates=2))
    pb.add(frame(0.0, 0.0, 0.0))
    assert not pb.is_keyframe(frame(0.09, 9.0, 1.0))
    assert pb.is_keyframe(frame(0.11, 0.0, 1.0)) and pb.is_keyframe(frame(0.0, 11.0, 1.0))
    for i in range(1, 6):
        pb.add(frame(0.2 * i, 0.0, float(i)))
    assert [k.stamp for k in pb.keyframes] == [3.0, 4.0, 5.0]  # oldest dropped
    empty = Frame(rgb=np.zeros((12, 16, 3), np.uint8), depth=np.zeros((12, 16), np.float32), intrinsics=intr,
                  T_world_cam=pose_from_tq([5, 0, 0], [0, 0, 0, 1]), stamp=9.0)
    assert pb.add(empty) == [] and pb.counts["no_depth"] == 1 and pb.keyframes[-1].stamp == 5.0


def test_config_checks():
    for bad in (dict(min_translation=-1), dict(min_rotation_deg=200), dict(max_keyframes=1),
                dict(candidates=0), dict(candidates=200), dict(stride=0)):
        with pytest.raises(ValueError, match="KeyframeConfig"):
            KeyframeConfig(**bad)
    for f in dataclasses.fields(KeyframeConfig):
        assert f.metadata.get("help")


def test_admit_then_pairs_on_another_thread_gives_the_same_pairs(frames):
    """The node's split: every frame admitted at once, the jobs run later on another thread (in any
    order) -- the pairs are exactly those of `add`, since a job fixes its candidates when admitted."""
    import threading

    cfg = KeyframeConfig(min_translation=0.25, min_rotation_deg=20.0, candidates=4)
    band = PairSelectionConfig(iou_low=0.3, iou_high=0.7)
    ref, per_frame = _run(frames, cfg, band)
    expected = sorted((p["src"].stamp, p["dst"].stamp, p["overlap_iou"]) for ps in per_frame for p in ps)

    pb = PairBuilder(cfg, band)
    jobs = [j for j in (pb.admit(f) for f in frames) if j is not None]
    assert [j.frame for j in jobs] == pb.keyframes == ref.keyframes  # same keyframes, decided at admission
    assert jobs[0].candidates == [] and all(len(j.candidates) == min(n, cfg.candidates) for n, j in enumerate(jobs))
    got = []
    worker = threading.Thread(target=lambda: got.extend(p for j in reversed(jobs) for p in pb.pairs(j)))
    worker.start()
    worker.join()
    assert sorted((p["src"].stamp, p["dst"].stamp, p["overlap_iou"]) for p in got) == expected
    assert {k: pb.counts[k] for k in ("keyframes", "candidates", "pairs")} == \
           {k: ref.counts[k] for k in ("keyframes", "candidates", "pairs")}
    for p in got:  # uv arrays identical too
        twin = next(q for ps in per_frame for q in ps if q["src"] is p["src"] and q["dst"] is p["dst"])
        assert np.array_equal(p["uv1"], twin["uv1"]) and np.array_equal(p["uv2"], twin["uv2"])


def test_a_skipped_job_is_counted_and_its_keyframe_still_pairs_with_later_ones(frames):
    cfg = KeyframeConfig(min_translation=0.25, min_rotation_deg=20.0, candidates=4)
    pb = PairBuilder(cfg, PairSelectionConfig(iou_low=0.0, iou_high=1.0))
    jobs = [j for j in (pb.admit(f) for f in frames) if j is not None]
    assert len(jobs) >= 3
    pb.skip(jobs[1])
    assert pb.counts["unpaired"] == 1 and pb.counts["candidates"] == 0
    later = pb.pairs(jobs[2])
    assert any(p["src"] is jobs[1].frame for p in later)  # the skipped keyframe is a src of the next one
    assert pb.pairs(None) == [] and pb.pairs(jobs[0]) == []  # no job; the first keyframe has no candidates
