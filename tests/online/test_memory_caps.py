"""Byte caps of the registration buffers (keyframes, work queue) and a pair search that stops on request."""
import threading

import numpy as np
import pytest

from regconsist_ros.online.keyframes import KeyframeConfig, PairBuilder, frame_bytes
from regconsist_ros.online.registrar import RegistrationNodeConfig, WorkQueue
from regconsist_ros.registration.pairs import PairSelectionConfig
from regconsist_ros.sim.frame import Frame, Intrinsics


def _frame(i: int, size: int = 64) -> Frame:
    T = np.eye(4)
    T[0, 3] = 0.2 * i  # 0.2 m apart: every frame a keyframe
    return Frame(rgb=np.full((size, size, 3), 100, np.uint8), depth=np.full((size, size), 2.0, np.float32),
                 intrinsics=Intrinsics.from_fov(size, size, 90), T_world_cam=T, stamp=1.0 + i)


def test_keyframes_are_capped_in_bytes_oldest_first():
    one = frame_bytes(_frame(0))
    assert one == 64 * 64 * 3 + 64 * 64 * 4
    b = PairBuilder(KeyframeConfig(max_mb=2.5 * one / 2**20, max_keyframes=100, candidates=1))
    for i in range(5):
        b.admit(_frame(i))
    assert [kf.stamp for kf in b.keyframes] == [4.0, 5.0]  # 2 of 2.5 frames fit; the oldest went first
    assert b.counts["evicted"] == 3 and b.nbytes == 2 * one <= 2.5 * one
    big = PairBuilder(KeyframeConfig(max_mb=one / 2 / 2**20, candidates=1))  # one frame alone exceeds the cap
    big.admit(_frame(0)), big.admit(_frame(1))
    assert len(big.keyframes) == 1 and big.counts["evicted"] == 1  # the newest is always kept


def test_count_cap_still_holds():
    b = PairBuilder(KeyframeConfig(max_keyframes=3, candidates=1))
    for i in range(6):
        b.admit(_frame(i))
    assert len(b.keyframes) == 3 and b.counts["evicted"] == 3


def test_a_stopped_pair_search_returns_before_its_correspondences():
    b = PairBuilder(KeyframeConfig(candidates=3), PairSelectionConfig(iou_low=0.0, iou_high=1.0))
    for i in range(3):
        b.add(_frame(i))
    job = b.admit(_frame(3))
    assert len(job.candidates) == 3
    stop = threading.Event()
    stop.set()
    assert b.pairs(job, stop) == [] and b.counts["stopped"] == 1
    assert len(b.pairs(job, lambda: False)) == 3  # the same job, not stopped: all three pairs


def test_work_queue_caps_count_and_bytes_oldest_first():
    q = WorkQueue(max_items=3, max_bytes=250)
    assert q.put("a", 100) == [] and q.put("b", 100) == []
    assert q.put("c", 100) == ["a"]  # 300 bytes > 250
    assert q.qsize() == 2 and q.nbytes == 200
    assert q.put("huge", 1000) == ["b", "c"]  # the newest is kept even alone over the cap
    assert q.get(0.01) == "huge" and q.get(0.01) is None and q.nbytes == 0
    small = WorkQueue(max_items=2, max_bytes=10**9)
    small.put(1), small.put(2)
    assert small.put(3) == [1]


def test_registration_config_checks_the_new_settings():
    assert RegistrationNodeConfig().tolerance == 0.0  # automatic
    for kw in ({"sync_queue_mb": 0}, {"work_queue_mb": -1}, {"pose_max_gap": 0}, {"stamp_jump": 0},
               {"shutdown_timeout": 0}, {"stamp_max_ahead": -1}, {"tolerance": -0.1}, {"pose_match": "linear"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            RegistrationNodeConfig(**kw)
    with pytest.raises(ValueError, match="max_mb"):
        KeyframeConfig(max_mb=0)
