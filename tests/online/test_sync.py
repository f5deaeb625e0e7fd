"""Approximate-time matching of colour / depth / info / pose streams (regconsist_ros/online/sync.py)."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from regconsist_ros.online.counters import DropCounter
from regconsist_ros.online.sync import StampSync

LOG = logging.getLogger("test.sync")
PERIOD = 1 / 30


def _counter():
    return DropCounter(LOG, "sync", throttle_s=0.0)


def _accounting_holds(sync: StampSync, adds: int) -> bool:
    snap = sync.counter.snapshot()
    queued = sum(n for s, n in sync.pending().items() if s not in sync.latched)
    return snap["received"] + queued == adds


def test_interleaved_jittered_streams():
    rng = np.random.default_rng(0)
    n = 60
    c = 1.0 + PERIOD * np.arange(n)
    d = c + rng.uniform(-0.004, 0.004, n)
    d = np.append(d, c[-1] + PERIOD)  # one more depth so the last colour frame is resolved
    p = 1.0037 + 0.01 * np.arange(int(n * PERIOD / 0.01) + 5)  # 100 Hz, not aligned to the camera
    events = [(0.6, "info", 0.5, "INFO")]
    events += [(s + 0.010, "color", s, ("color", i)) for i, s in enumerate(c)]
    events += [(s + 0.012 + rng.uniform(0, 0.01), "depth", s, ("depth", i)) for i, s in enumerate(d)]
    events += [(s + 0.002, "pose", s, ("pose", j)) for j, s in enumerate(p)]
    events.sort(key=lambda e: e[0])  # arrival order

    sync = StampSync(tolerance_s=0.02, counter=_counter())
    matches = []
    for _, slot, stamp, item in events:
        matches += sync.add(slot, stamp, item)

    assert [m["color"] for m in matches] == [("color", i) for i in range(n)]
    assert [m["depth"] for m in matches] == [("depth", i) for i in range(n)]
    expected_pose = [int(np.argmin(np.abs(p - s))) for s in c]
    assert [m["pose"][1] for m in matches] == expected_pose
    assert all(m["info"] == "INFO" for m in matches)
    stamps = [m["stamp"] for m in matches]
    assert stamps == sorted(stamps) and stamps == list(c)
    for m in matches:
        assert m["stamps"]["color"] == m["stamp"] and abs(m["stamps"]["pose"] - m["stamp"]) <= 0.005
        assert abs(m["stamps"]["depth"] - m["stamp"]) <= 0.004
    snap = sync.counter.snapshot()
    assert set(snap["dropped"]) <= {"unmatched"}  # only the surplus 100 Hz poses
    assert _accounting_holds(sync, len(events))


def test_match_waits_until_nearest_is_final():
    sync = StampSync(slots=("color", "pose"), latched=(), tolerance_s=0.02, counter=_counter())
    assert sync.add("pose", 0.990, "p0") == []
    assert sync.add("color", 1.000, "c0") == []  # p0 is within tolerance, but a nearer pose may follow
    assert sync.add("pose", 0.999, "p1") == []
    out = sync.add("pose", 1.009, "p2")  # now poses past the colour stamp exist: p1 is the nearest
    assert [(m["color"], m["pose"]) for m in out] == [("c0", "p1")]
    assert sync.counter.snapshot()["dropped"] == {"unmatched": 1}  # p0, skipped
    assert sync.pending() == {"color": 0, "pose": 1}  # p2 still usable by the next colour frame
    assert sync.add("color", 1.005, "c1")[0]["pose"] == "p2"


def test_exact_stamps_match_at_once():
    sync = StampSync(slots=("color", "depth"), latched=(), counter=_counter())
    assert sync.add("depth", 2.0, "d") == []
    out = sync.add("color", 2.0, "c")
    assert len(out) == 1 and out[0]["depth"] == "d"


def test_missing_depth_drops_the_colour_frame():
    sync = StampSync(tolerance_s=0.01, counter=_counter())
    sync.add("info", 0.0, "I")
    got = []
    for i in range(4):
        t = 10 + i * PERIOD
        got += sync.add("color", t, i)
        got += sync.add("pose", t + 0.001, i)
        if i != 1:  # the depth frame of colour 1 never arrives
            got += sync.add("depth", t - 0.002, i)
    got += sync.add("depth", 10 + 4 * PERIOD, 4)
    assert [(m["color"], m["depth"], m["pose"]) for m in got] == [(0, 0, 0), (2, 2, 2), (3, 3, 3)]
    snap = sync.counter.snapshot()
    # colour 1 (no depth within 10 ms) and pose 1 (skipped by the match of colour 2)
    assert snap["dropped"] == {"unmatched": 2}
    assert _accounting_holds(sync, 1 + 4 + 4 + 3 + 1)


def test_out_of_tolerance_is_never_matched():
    sync = StampSync(slots=("color", "depth"), latched=(), tolerance_s=0.02, counter=_counter())
    assert sync.add("color", 1.0, "c0") == []
    assert sync.add("depth", 1.03, "d0") == []  # 30 ms away: c0 is dropped now, d0 waits
    assert sync.counter.snapshot()["dropped"] == {"unmatched": 1}
    out = sync.add("color", 1.025, "c1")
    assert [(m["color"], m["depth"]) for m in out] == [("c1", "d0")]
    assert sync.add("color", 1.05, "c2") == []  # waits for a depth frame stamped at or after it


def test_stale_items_pruned():
    sync = StampSync(slots=("color", "depth"), latched=(), tolerance_s=0.02, counter=_counter())
    for i in range(5):
        sync.add("depth", 0.1 * i, i)  # depth stream starts long before colour
    sync.add("color", 0.41, "c")
    assert sync.pending()["depth"] == 1  # only depth 0.4 can still match
    assert sync.counter.snapshot()["dropped"] == {"unmatched": 4}


def test_stamps_backwards_counted():
    sync = StampSync(slots=("color", "depth"), latched=(), counter=_counter())
    sync.add("depth", 1.0, "a")
    assert sync.add("depth", 0.9, "b") == []
    assert sync.add("depth", 1.0, "c") == []  # equal is not newer
    assert sync.add("color", float("nan"), "x") == []
    assert sync.counter.snapshot()["dropped"] == {"stamp_backwards": 2, "stamp_invalid": 1}
    assert sync.add("color", 1.0, "c")[0]["depth"] == "a"
    sync.reset()  # e.g. a looping bag: time restarts
    sync.add("depth", 0.5, "d")
    assert sync.add("color", 0.5, "c2")[0]["depth"] == "d"


def test_queue_overflow_counted():
    sync = StampSync(slots=("color", "depth"), latched=(), queue_size=3, counter=_counter())
    for i in range(5):
        assert sync.add("color", float(i), i) == []
    assert sync.pending()["color"] == 3
    assert sync.counter.snapshot()["dropped"] == {"queue_overflow": 2}
    out = sync.add("depth", 2.0, "d2")  # colours 0 and 1 were evicted
    assert [m["color"] for m in out] == [2]


def test_latched_info():
    sync = StampSync(tolerance_s=0.01, counter=_counter())
    sync.add("depth", 1.0, "d0")
    sync.add("pose", 1.0, "p0")
    assert sync.add("color", 1.0, "c0") == []  # no camera info yet
    out = sync.add("info", 0.2, "info A")  # latched: its stamp does not matter
    assert [(m["color"], m["info"]) for m in out] == [("c0", "info A")]
    out = []
    for i, t in enumerate([2.0, 3.0, 4.0]):
        if i == 2:
            sync.add("info", 3.5, "info B")
        sync.add("depth", t, i)
        sync.add("pose", t, i)
        out += sync.add("color", t, i)
    assert [m["info"] for m in out] == ["info A", "info A", "info B"]
    assert out[2]["stamps"]["info"] == 3.5


def test_bad_configuration():
    with pytest.raises(ValueError):
        StampSync(latched=("color",))
    with pytest.raises(ValueError):
        StampSync(latched=("camera_info",))
    with pytest.raises(ValueError):
        StampSync(queue_size=0)
    with pytest.raises(KeyError):
        StampSync().add("imu", 1.0, None)


def test_threads_each_item_emitted_once():
    sync = StampSync(slots=("color", "depth"), latched=(), queue_size=1000, counter=_counter())
    n = 400
    out, lock = [], threading.Lock()

    def feed(slot):
        for i in range(n):
            m = sync.add(slot, 1.0 + i * PERIOD, (slot, i))
            with lock:
                out.extend(m)

    ts = [threading.Thread(target=feed, args=(s,)) for s in ("color", "depth")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(m["color"][1] for m in out) == list(range(n))
    assert all(m["color"][1] == m["depth"][1] for m in out)
    assert sync.counter.snapshot()["dropped_total"] == 0
