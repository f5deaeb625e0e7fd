"""Stamps that cannot wedge a stream (online/stamps.py) and stamp matching for real drivers (online/sync.py):
future and far-off stamps, time restarts, pauses, interpolated poses, colour/depth offsets, byte caps."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from regconsist_ros.online.counters import DropCounter
from regconsist_ros.online.errors import BadInput
from regconsist_ros.online.interpolation import interpolate_pose, pose_interpolator
from regconsist_ros.online.stamps import StampGuard
from regconsist_ros.online.sync import AUTO_TOLERANCE_S, StampSync

LOG = logging.getLogger("test.stamps")
FPS = 30.0
Y2038 = float(2**31 - 1)


def _counter():
    return DropCounter(LOG, "sync", throttle_s=0.0)


def _accounted(sync: StampSync, adds: int) -> bool:
    """received + pending (queued slots) + held (latched slots) == add calls."""
    pend, held = sync.pending(), sync.held()
    waiting = sum(pend[s] for s in sync.slots if s not in sync.latched) + sum(held[s] for s in sync.latched)
    return sync.counter.snapshot()["received"] + waiting == adds


def _robot_sync(**kw) -> StampSync:
    return StampSync(("color", "depth", "info", "pose"), counter=_counter(), latched=("info",), **kw)


def _send_set(sync, t, tag, pose_t=None, slots=("info", "depth", "pose", "color")):
    out = []
    for s in slots:
        out += sync.add(s, pose_t if (s == "pose" and pose_t is not None) else t, (s, tag))
    return out


# ---- StampGuard ---------------------------------------------------------------------------------------
def test_guard_single_far_stamp_is_dropped_and_does_not_move_now():
    g = StampGuard("color", _counter())
    acc = []
    for i in range(10):
        acc += g.add(100 + i / FPS, i)[0]
    assert g.add(Y2038, "bad") == ([], False)  # held: neither accepted nor dropped yet
    assert g.held == 1 and g.last == pytest.approx(100 + 9 / FPS)
    got, restarted = g.add(100 + 10 / FPS, 10)  # continues the stream: the 2038 stamp was an outlier
    assert [it for _, it in got] == [10] and not restarted
    assert g.counter.snapshot()["dropped"] == {"stamp_jump": 1} and g.held == 0


def test_guard_clock_check_drops_at_once_and_skips_an_unset_clock():
    now = {"t": 1000.0}
    g = StampGuard("pose", _counter(), max_ahead_s=5.0, clock=lambda: now["t"])
    assert g.add(1000.0)[0]
    assert g.add(Y2038) == ([], False) and g.held == 0  # dropped, not held
    assert g.counter.snapshot()["dropped"] == {"stamp_jump": 1}
    assert g.add(1004.0)[0]  # 4 s ahead of the clock is within the bound (and a forward step while no period is known)
    now["t"] = 0.0  # sim time before the first /clock message: no clock check
    g2 = StampGuard("pose", _counter(), max_ahead_s=5.0, clock=lambda: now["t"])
    assert g2.add(500.0)[0]


def test_guard_a_future_first_stamp_is_left_behind_after_two_good_ones():
    """Without a clock check, a stream whose very first stamp is 2038 moves to the real timeline once two
    consecutive stamps agree (a time restart), instead of dropping every later stamp as backwards."""
    g = StampGuard("color", _counter(), confirm=2)
    assert g.add(Y2038, "bad")[0]
    assert g.add(100.0, 0) == ([], False)
    got, restarted = g.add(100.0 + 1 / FPS, 1)
    assert [it for _, it in got] == [0, 1] and restarted and g.restarts == 1
    assert g.add(100.0 + 2 / FPS, 2)[0]


def test_guard_a_real_pause_costs_one_item_of_latency_and_no_drop():
    g = StampGuard("color", _counter())
    for i in range(30):
        g.add(i / FPS, i)
    assert g.bound() == pytest.approx(0.25)  # max(jump_s, 5 periods of 33 ms)
    assert g.add(3.0, "after pause") == ([], False)
    got, restarted = g.add(3.0 + 1 / FPS, "next")
    assert [it for _, it in got] == ["after pause", "next"] and not restarted
    assert g.counter.snapshot()["dropped_total"] == 0


def test_guard_bound_follows_a_slow_stream():
    g = StampGuard("pose", _counter())
    for i in range(10):
        assert g.add(float(i), i)[0], i  # 1 Hz: never a jump
    assert g.bound() == pytest.approx(5.0)
    assert g.add(8.5, "back")[0] == [] and g.counter.snapshot()["dropped"] == {"stamp_backwards": 1}


def test_guard_rejects_bad_settings():
    for kw in ({"jump_s": 0}, {"jump_periods": 0.5}, {"confirm": 0}, {"max_ahead_s": -1}, {"history": 1}):
        with pytest.raises(ValueError):
            StampGuard(**kw)


# ---- issue 18.1: one set stamped 2038 wedged the graph -------------------------------------------------
@pytest.mark.parametrize("clock", [False, True])
def test_one_set_stamped_2038_does_not_wedge_the_following_40(clock):
    kw = {"guard": {"max_ahead_s": 5.0, "clock": lambda: 2000.0}} if clock else {}
    sync = _robot_sync(tolerance_s=0.02, **kw)
    adds, got = 0, []
    for i in range(10):
        got += _send_set(sync, 1000 + i / FPS, i)
        adds += 4
    got += _send_set(sync, Y2038, "2038")
    adds += 4
    for i in range(10, 50):
        got += _send_set(sync, 1000 + i / FPS, i)
        adds += 4
    assert [m["color"][1] for m in got] == list(range(50))  # all 50 good sets, none lost
    dropped = sync.counter.snapshot()["dropped"]
    assert dropped == {"stamp_jump": 4}, dropped  # one per stream, counted; nothing dropped as backwards
    assert _accounted(sync, adds)


@pytest.mark.parametrize("interpolated", [True, False])
def test_a_pose_half_a_second_ahead_does_not_drop_the_next_set(interpolated):
    kw = {"interpolated": ("pose",), "interpolate": lambda a, ta, b, tb, t: (a, b)} if interpolated else {}
    sync = _robot_sync(tolerance_s=0.02, **kw)
    got = []
    for i in range(20):
        t = 50 + i / FPS
        got += _send_set(sync, t, i, pose_t=t + 0.5 if i == 10 else None)
    colours = [m["color"][1] for m in got]
    # set 10 lost its pose: interpolated between those of sets 9 and 11, or dropped when poses must be
    # within tolerance; every later set is fine
    assert colours == [i for i in range(20) if interpolated or i != 10], colours
    assert sync.counter.snapshot()["dropped"].get("stamp_jump") == 1
    assert "stamp_backwards" not in sync.counter.snapshot()["dropped"]


def test_a_looping_recording_restarts_every_stream():
    sync = _robot_sync(tolerance_s=0.02)
    got, adds = [], 0
    for lap in range(2):
        for i in range(30):
            got += _send_set(sync, 10 + i / FPS, (lap, i))
            adds += 4
    laps = [m["color"][1][0] for m in got]
    # the first two sets of the second lap are held until they confirm the restart, then used
    assert laps.count(0) >= 29 and laps.count(1) >= 28, laps
    assert sync.counter.snapshot()["dropped"].get("stamp_backwards", 0) == 0
    assert _accounted(sync, adds)


# ---- issue 16.6: poses interpolated between their stamps -----------------------------------------------
def _T(t: float) -> np.ndarray:
    """Analytic trajectory: turning at a constant 0.63 rad/s about a fixed axis, moving linearly."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(t * np.array([0.2, 0.0, 0.6])).as_matrix()
    T[:3, 3] = [0.5 * t, -0.1 * t, 0.02 * t]
    return T


def test_interpolate_pose_is_exact_for_constant_rate_rotation_and_linear_motion():
    for w in (0.0, 0.25, 0.5, 0.9, 1.0):
        ta, tb = 1.0, 1.2
        T = interpolate_pose(_T(ta), _T(tb), w)
        assert np.allclose(T, _T(ta + w * (tb - ta)), atol=1e-12)
    with pytest.raises(ValueError):
        interpolate_pose(np.eye(4), np.eye(4), 1.5)
    # the shorter arc: +170 deg to -170 deg about z passes through 180, not through 0
    from scipy.spatial.transform import Rotation

    A, B = np.eye(4), np.eye(4)
    A[:3, :3] = Rotation.from_euler("z", 170, degrees=True).as_matrix()
    B[:3, :3] = Rotation.from_euler("z", -170, degrees=True).as_matrix()
    mid = Rotation.from_matrix(interpolate_pose(A, B, 0.5)[:3, :3]).as_euler("zyx", degrees=True)[0]
    assert abs(abs(mid) - 180) < 1e-6


def test_colour_at_30hz_with_poses_at_10hz_gets_interpolated_poses():
    sync = StampSync(("color", "pose"), latched=(), counter=_counter(), interpolated=("pose",),
                     interpolate=pose_interpolator, max_gap_s=0.15)
    pose_t = 0.004 + 0.1 * np.arange(32)  # 10 Hz, not aligned to the camera
    col_t = 0.05 + np.arange(80) / FPS
    events = sorted([(t + 0.03, "pose", t) for t in pose_t] + [(t + 0.01, "color", t) for t in col_t])
    got = []
    for _, slot, t in events:
        got += sync.add(slot, t, _T(t) if slot == "pose" else t)
    assert [m["color"] for m in got] == list(col_t)  # every colour frame, in order
    for m in got:
        assert np.allclose(m["pose"], _T(m["stamp"]), atol=1e-9)
        a, b = m["pose_bracket"]
        assert a <= m["stamp"] <= b and b - a <= 0.1 + 1e-9
    assert sync.counter.snapshot()["dropped_total"] == 0
    assert _accounted(sync, len(events))


def test_pose_bracket_and_gap_reasons():
    sync = StampSync(("color", "pose"), latched=(), counter=_counter(), interpolated=("pose",),
                     interpolate=pose_interpolator, max_gap_s=0.2)
    sync.add("color", 1.0, "c0")
    assert sync.add("pose", 1.05, np.eye(4)) == []  # no pose at or before 1.0 will ever come
    assert sync.counter.snapshot()["dropped"] == {"no_pose_bracket": 1}
    sync.add("color", 1.1, "c1")
    assert len(sync.add("pose", 1.12, np.eye(4))) == 1  # bracketed by 1.05 and 1.12
    sync.add("color", 1.3, "c2")
    assert sync.add("pose", 1.6, np.eye(4)) == []  # 1.12 .. 1.6: 0.48 s apart
    assert sync.counter.snapshot()["dropped"] == {"no_pose_bracket": 1, "pose_gap": 1}
    assert [m["color"] for m in sync.add("color", 1.6, "c3")] == ["c3"]  # exactly at a pose


def test_a_bad_pose_is_dropped_at_ingest_and_its_neighbours_bracket_the_frame():
    def check(T):
        T = np.asarray(T, float)
        if not np.all(np.isfinite(T)):
            raise BadInput("pose_non_finite", "NaN pose")
        return T

    sync = StampSync(("color", "pose"), latched=(), counter=_counter(), interpolated=("pose",),
                     interpolate=pose_interpolator, validate={"pose": check})
    sync.add("pose", 0.9, _T(0.9))
    assert sync.add("pose", 1.0, np.full((4, 4), np.nan)) == []
    sync.add("color", 1.0, "c")
    out = sync.add("pose", 1.1, _T(1.1))
    assert len(out) == 1 and np.allclose(out[0]["pose"], _T(1.0), atol=1e-12)
    assert sync.counter.snapshot()["dropped"] == {"pose_non_finite": 1}


def test_automatic_tolerance_is_half_the_period():
    """A 15 Hz colour stream and a depth stream stamped 30 ms later (a driver's colour/depth offset): the
    automatic tolerance (half of 66.7 ms) matches them all; a fixed 20 ms drops them."""
    def run(tol):
        sync = StampSync(("color", "depth"), latched=(), counter=_counter(), tolerance_s=tol)
        got = []
        for i in range(40):
            t = 5 + i / 15.0
            got += sync.add("color", t, i)
            got += sync.add("depth", t + 0.03, i)
        return sync, got

    sync, got = run(None)
    assert sync.tolerance() == pytest.approx(0.5 / 15.0)
    assert [m["color"] for m in got] == [m["depth"] for m in got] and len(got) >= 37  # the first while periods are unknown
    sync, got = run(0.02)
    assert len(got) == 0 and sync.counter.snapshot()["dropped"]["unmatched"] >= 39
    assert StampSync(("color", "depth"), latched=(), tolerance_s=None).tolerance() == AUTO_TOLERANCE_S


# ---- memory cap --------------------------------------------------------------------------------------
def test_queued_bytes_are_capped_oldest_first():
    sync = StampSync(("color", "depth"), latched=(), counter=_counter(), max_bytes=3000)
    for i in range(5):
        sync.add("color", 1 + i / FPS, i, nbytes=1000)  # no depth: colour waits
    assert sync.nbytes <= 3000 and sync.pending()["color"] == 3
    assert sync.counter.snapshot()["dropped"] == {"memory_cap": 2}
    out = sync.add("depth", 1 + 2 / FPS, "d", nbytes=1000)
    assert [m["color"] for m in out] == [2]  # colours 0 and 1 were the ones evicted
    big = StampSync(("color", "depth"), latched=(), counter=_counter(), max_bytes=10)
    big.add("color", 1.0, "huge", nbytes=10**6)  # one item alone may exceed the cap
    assert big.pending()["color"] == 1
