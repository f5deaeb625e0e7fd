"""DropCounter (throttled warnings) and RateMeter (regconsist_ros/online/counters.py)."""
from __future__ import annotations

import logging
import threading

import pytest

from regconsist_ros.online.counters import DropCounter, RateMeter


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "test.counters" and r.levelno == logging.WARNING]


def test_drop_counter_throttles_per_reason(caplog):
    clock = FakeClock()
    c = DropCounter(logging.getLogger("test.counters"), "decoder", throttle_s=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.counters"):
        c.drop("encoding", "yuv422")
        assert _warnings(caplog) == ["decoder: dropped (encoding): yuv422 [1 so far]"]
        clock.t += 1.0
        c.drop("encoding", "yuv422")
        clock.t += 3.9
        c.drop("encoding", "yuv422")
        assert len(_warnings(caplog)) == 1  # counted, not logged
        c.drop("step", "short row")  # another reason logs at once
        assert _warnings(caplog)[-1] == "decoder: dropped (step): short row [1 so far]"
        clock.t += 0.1  # 5.0 s after the first logged warning
        c.drop("encoding", "bgr16")
        assert _warnings(caplog)[-1] == "decoder: dropped (encoding): bgr16 [4 so far]"
        clock.t += 4.0
        c.drop("encoding")
        assert len(_warnings(caplog)) == 3
    c.accept()
    c.accept()
    assert c.snapshot() == {"received": 8, "accepted": 2, "dropped": {"encoding": 5, "step": 1}, "dropped_total": 6}


def test_drop_counter_threads():
    c = DropCounter(logging.getLogger("test.counters.quiet"), "x", throttle_s=1e9)

    def work():
        for i in range(2000):
            c.drop("a") if i % 2 else c.accept()

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert c.snapshot() == {"received": 8000, "accepted": 4000, "dropped": {"a": 4000}, "dropped_total": 4000}


def test_rate_meter():
    clock = FakeClock(0.0)
    m = RateMeter(window_s=10.0, clock=clock)
    assert m.rate() == 0.0
    for _ in range(20):  # 2 events per second for 10 s
        clock.t += 0.5
        m.tick()
    assert m.rate() == pytest.approx(2.0)
    clock.t = 2.0  # (not monotonic in real life; check the young-meter case on a fresh one)
    m2 = RateMeter(window_s=10.0, clock=clock)
    clock.t = 3.0
    m2.tick(5)
    assert m2.rate() == pytest.approx(5.0)  # 5 events in the 1 s the meter has existed
    clock.t = 100.0
    m.tick(3)
    assert m.rate() == pytest.approx(0.3)  # old events left the window
    assert m.total == 23
    with pytest.raises(ValueError):
        RateMeter(window_s=0)
