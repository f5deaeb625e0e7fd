"""Bounded replay buffers (regconsist_ros/online/replay.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from regconsist_ros.online.errors import BadInput
from regconsist_ros.online.replay import FrameBuffer, ReplayBuffer, frame_nbytes


def test_byte_cap_evicts_oldest_first():
    b = ReplayBuffer(max_bytes=100)
    for i, n in enumerate([40, 30, 20]):
        b.add(f"x{i}", n)
    assert b.items() == ["x0", "x1", "x2"] and b.nbytes == 90 and b.evicted == 0
    b.add("x3", 50)  # 140 bytes: x0 goes, then 30 + 20 + 50 = 100 fits
    assert b.items() == ["x1", "x2", "x3"] and b.nbytes == 100 and b.evicted == 1
    b.add("x4", 100)  # needs everything else out
    assert b.items() == ["x4"] and b.nbytes == 100 and b.evicted == 4
    with pytest.raises(ValueError):
        b.add("huge", 101)
    assert b.items() == ["x4"]
    b.clear()
    assert len(b) == 0 and b.nbytes == 0


def test_item_cap():
    b = ReplayBuffer(max_bytes=10**6, max_items=3)
    for i in range(5):
        b.add(i, 10)
    assert b.items() == [2, 3, 4] and len(b) == 3 and b.nbytes == 30 and b.evicted == 2


def test_sample():
    b = ReplayBuffer(max_bytes=1000)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        b.sample(1, rng)
    for i in range(5):
        b.add(i, 1)
    s = b.sample(5, rng)
    assert sorted(s) == [0, 1, 2, 3, 4]  # without replacement while n <= len
    s = b.sample(50, rng)
    assert len(s) == 50 and set(s) <= set(range(5))
    assert b.sample(0, rng) == []


def _frame(stamp, h=4, w=6, depth=True, semantic=False):
    return SimpleNamespace(stamp=stamp, rgb=np.full((h, w, 3), int(stamp) % 256, np.uint8),
                           depth=np.zeros((h, w), np.float32) if depth else None,
                           semantic=np.zeros((h, w), np.uint16) if semantic else None)


def test_frame_nbytes_and_cap():
    f = _frame(1.0, semantic=True)
    assert frame_nbytes(f) == 4 * 6 * 3 + 4 * 6 * 4 + 4 * 6 * 2
    assert frame_nbytes(_frame(1.0, depth=False)) == 4 * 6 * 3
    per = frame_nbytes(_frame(0.0))
    fb = FrameBuffer(max_bytes=3 * per)
    for t in range(5):
        fb.add(_frame(float(t)))
    assert [f.stamp for f in fb.items()] == [2.0, 3.0, 4.0] and fb.nbytes == 3 * per and fb.evicted == 2
    np.testing.assert_array_equal(fb.stamps(), [2.0, 3.0, 4.0])
    assert fb[0].stamp == 2.0 and fb[-1].stamp == 4.0


def test_frame_stamps_must_increase():
    fb = FrameBuffer(max_bytes=10**6)
    fb.add(_frame(1.0))
    for bad in (1.0, 0.5):
        with pytest.raises(BadInput) as e:
            fb.add(_frame(bad))
        assert e.value.reason == "stamp_backwards"
    assert len(fb) == 1


def test_sample_pairs_gap_bounds():
    fb = FrameBuffer(max_bytes=10**6)
    for t in range(10):
        fb.add(_frame(float(t)))
    rng = np.random.default_rng(0)
    pairs = fb.sample_pairs(500, 2, 4, rng)
    gaps = [int(b.stamp - a.stamp) for a, b in pairs]
    assert set(gaps) == {2, 3, 4}
    assert {a.stamp for a, _ in pairs} == {float(t) for t in range(8)}  # every start that leaves room
    gaps = [int(b.stamp - a.stamp) for a, b in fb.sample_pairs(300, 7, 50, rng)]
    assert set(gaps) == {7, 8, 9}  # gap_max capped at len - 1
    with pytest.raises(ValueError):
        fb.sample_pairs(1, 10, 12, rng)  # len <= gap_min
    with pytest.raises(ValueError):
        fb.sample_pairs(1, 3, 2, rng)


def test_rgb_array():
    fb = FrameBuffer(max_bytes=10**6)
    for t in range(4):
        fb.add(_frame(float(t)))
    a = fb.rgb_array([3, 0, 1])
    assert a.shape == (3, 4, 6, 3) and a.dtype == np.uint8
    assert a[:, 0, 0, 0].tolist() == [3, 0, 1]
