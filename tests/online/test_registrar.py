"""The registration node's ROS-free work (regconsist_ros/online/registrar.py): fields -> frames -> view pairs."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from regconsist_ros.online.counters import DropCounter
from regconsist_ros.online.decode import camera_info_fields, encode_color, encode_depth, pose_fields
from regconsist_ros.online.keyframes import KeyframeConfig
from regconsist_ros.online.registrar import Registrar, RegistrationNodeConfig
from regconsist_ros.registration.pairs import PairSelectionConfig


@pytest.fixture(scope="module")
def frames():
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=0, frames=30, width=64, height=48, step=0.1)))


def _fields(f):
    return (f.stamp, encode_color(f.rgb), encode_depth(f.depth), camera_info_fields(f.intrinsics),
            pose_fields(f.T_world_cam))


def test_registrar_makes_keyframes_and_view_pairs_and_reports_them(frames):
    reg = Registrar(RegistrationNodeConfig(), KeyframeConfig(min_translation=0.25, min_rotation_deg=20.0, candidates=4),
                    PairSelectionConfig(iou_low=0.3, iou_high=0.7))
    n_kf, pairs = 0, []
    for f in frames:
        frame, is_kf, ps = reg.register(*_fields(f))
        assert frame is not None and frame.stamp == f.stamp and np.array_equal(frame.rgb, f.rgb)
        assert np.allclose(frame.depth, f.depth, atol=1e-3) and np.allclose(frame.T_world_cam, f.T_world_cam, atol=1e-6)
        assert is_kf or not ps
        n_kf += is_kf
        pairs += ps
    assert pairs and all(0.3 <= p["overlap_iou"] <= 0.7 and p["src"].stamp < p["dst"].stamp for p in pairs)
    values, level = reg.status()
    assert level == "ok"
    assert values["frames_received"] == values["frames_registered"] == len(frames)
    assert values["keyframes"] == n_kf == values["builder.keyframes"] and values["view_pairs"] == len(pairs)
    assert values["dropped_total"] == 0 and values["pairs_per_s"] > 0


def test_registrar_counts_bad_input_by_reason_and_sync_drops(frames):
    counter, sync = DropCounter(logging.getLogger("test"), "reg"), DropCounter(logging.getLogger("test"), "sync")
    reg = Registrar(RegistrationNodeConfig(), counter=counter)
    stamp, color, depth, info, pose = _fields(frames[0])
    assert reg.frame(stamp, {**color, "encoding": "yuv422"}, depth, info, pose) is None
    assert reg.frame(stamp, color, depth, None, pose) is None
    assert reg.register(stamp, color, depth, info, ((0, 0, 0), (0, 0, 0, 2.0))) == (None, False, [])
    sync.drop("stamp_backwards")
    values, level = reg.status(sync)
    assert level == "warn"  # frames arrive, none is usable
    assert values["dropped"] == {"encoding": 1, "camera_info": 1, "pose_non_rigid": 1, "sync.stamp_backwards": 1}
    assert values["dropped_total"] == 4 and values["frames_received"] == 3 and values["frames_registered"] == 0


def test_registration_node_config_names_bad_values():
    with pytest.raises(ValueError, match="tolerance"):
        RegistrationNodeConfig(tolerance=2.0)
    with pytest.raises(ValueError, match="depth_unit"):
        RegistrationNodeConfig(depth_unit=0.0)


def test_admit_and_pairs_split_counts_every_frame_and_every_pair_search(frames):
    """The node's two workers: admit every set (cheap), run pair searches from a queue of 1; searches pushed
    out of the queue are counted as skipped (backlog), never as dropped frames."""
    from regconsist_ros.online.registrar import PairQueue

    reg = Registrar(RegistrationNodeConfig(), KeyframeConfig(min_translation=0.1, min_rotation_deg=10.0, candidates=4))
    q = PairQueue(1)
    admitted = 0
    for k, f in enumerate(frames):
        frame, job = reg.admit(*_fields(f))
        assert frame is not None
        admitted += 1
        if job is not None and job.candidates:
            evicted = q.put(job)
            if evicted is not None:
                reg.skip(evicted)
        if k % 6 == 5:  # the pair worker gets a turn only now and then: it is behind
            reg.pairs(q.get(timeout=0))
    reg.pairs(q.get(timeout=0))
    values, level = reg.status()
    assert level == "ok" and values["frames_received"] == values["frames_registered"] == admitted == len(frames)
    assert values["dropped_total"] == 0
    searches = values["pair_searches"]
    assert searches["skipped"].get("backlog", 0) > 0 and values["keyframes_unpaired"] == searches["skipped"]["backlog"]
    assert values["builder.unpaired"] == values["keyframes_unpaired"]
    # every keyframe with candidates was searched or counted as skipped (the first one has none)
    assert searches["done"] + values["keyframes_unpaired"] == values["keyframes"] - 1
    assert values["view_pairs"] == values["builder.pairs"] > 0
    assert values["frame_ms"] == {"n": 0, "p50": 0.0, "p90": 0.0, "max": 0.0}  # the node times its workers


def test_pair_queue_keeps_the_newest_and_returns_what_it_pushed_out():
    from regconsist_ros.online.registrar import PairQueue

    q = PairQueue(2)
    assert q.get(timeout=0) is None and q.get(timeout=0.01) is None
    assert q.put("a") is None and q.put("b") is None and len(q) == 2
    assert q.put("c") == "a" and len(q) == 2
    assert q.get() == "b" and q.get() == "c" and len(q) == 0
    with pytest.raises(ValueError, match="PairQueue.size"):
        PairQueue(0)


def test_durations_summary():
    from regconsist_ros.online.registrar import Durations

    d = Durations(window=3)
    assert d.summary() == {"n": 0, "p50": 0.0, "p90": 0.0, "max": 0.0}
    for s in (0.5, 0.001, 0.002, 0.003):  # the first falls out of the window
        d.add(s)
    assert d.summary() == {"n": 4, "p50": 2.0, "p90": 2.8, "max": 3.0}
    with pytest.raises(ValueError, match="window"):
        Durations(window=0)


def test_registration_node_config_checks_queues_and_threads():
    with pytest.raises(ValueError, match="pair_queue"):
        RegistrationNodeConfig(pair_queue=0)
    with pytest.raises(ValueError, match="threads"):
        RegistrationNodeConfig(threads=-1)
