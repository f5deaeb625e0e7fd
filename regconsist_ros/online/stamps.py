"""One stream's notion of "now" that no single stamp can wedge: :class:`StampGuard`.

A stream's stamps should grow by about its period. A stamp that does not is one of:

* *invalid* (NaN, inf): dropped as ``stamp_invalid``;
* *ahead of the clock* by more than ``max_ahead_s`` (a driver stamping in 2038): dropped as
  ``stamp_jump`` at once (only with a clock; skipped while the clock reads 0, as ROS sim time does
  before the first /clock message);
* *slightly backwards or repeated* (within the jump bound of the newest accepted stamp): dropped as
  ``stamp_backwards``;
* a *jump*: further than the bound from the newest accepted stamp, forwards or backwards. It is
  held, not accepted, and does not move the stream's "now". When the next ``confirm - 1`` stamps
  continue from it (each newer than the previous and within the bound), the stream has really moved
  to a new timeline (a pause, a recording that loops, a driver restarted): the held items are
  accepted in order (``restarted`` is true when the new timeline lies before the old one, so the
  caller forgets the older items). When instead a stamp continues the old timeline, the held items
  were outliers: they are dropped as ``stamp_jump``.

The jump bound is ``max(jump_s, jump_periods x the median of the stream's last intervals)``; while
fewer than two intervals are known, forward steps are accepted as they come and backward steps
beyond ``jump_s`` are jumps. So a 30 Hz camera treats a stamp 0.25 s off as a jump, a 1 Hz pose
source one 5 s off, and a real pause costs one item of latency, no drops.
"""
from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from typing import Any, Callable

from regconsist_ros.online.counters import DropCounter

log = logging.getLogger(__name__)


class StampGuard:
    """Checks one stream's stamps (seconds); see the module docstring. Not thread-safe (callers lock).

    ``counter`` counts the drops (``stamp_invalid``, ``stamp_backwards``, ``stamp_jump``); accepted
    items are the caller's to count. ``clock`` returns the node's time in seconds (or None)."""

    def __init__(self, name: str = "stream", counter: DropCounter | None = None, jump_s: float = 0.25,
                 jump_periods: float = 5.0, confirm: int = 2, max_ahead_s: float = 0.0,
                 clock: Callable[[], float | None] | None = None, history: int = 32):
        if not (math.isfinite(jump_s) and jump_s > 0):
            raise ValueError(f"StampGuard.jump_s must be > 0 seconds, got {jump_s}")
        if not (math.isfinite(jump_periods) and jump_periods >= 1):
            raise ValueError(f"StampGuard.jump_periods must be >= 1, got {jump_periods}")
        if int(confirm) != confirm or confirm < 1:
            raise ValueError(f"StampGuard.confirm must be an integer >= 1, got {confirm}")
        if not (math.isfinite(max_ahead_s) and max_ahead_s >= 0):
            raise ValueError(f"StampGuard.max_ahead_s must be >= 0 (0 = no clock check), got {max_ahead_s}")
        if int(history) != history or history < 2:
            raise ValueError(f"StampGuard.history must be an integer >= 2, got {history}")
        self.name = name
        self.counter = counter if counter is not None else DropCounter(log, name)
        self.jump_s, self.jump_periods, self.confirm = float(jump_s), float(jump_periods), int(confirm)
        self.max_ahead_s, self.clock = float(max_ahead_s), clock
        self._intervals: deque[float] = deque(maxlen=int(history))
        self.restarts = 0  # timelines adopted that lie before the previous one
        self.reset()

    def reset(self) -> None:
        """Forget the timeline (held items are forgotten, not counted)."""
        self.last: float | None = None
        self._held: list[tuple[float, Any]] = []
        self._intervals.clear()

    @property
    def held(self) -> int:
        """Items held as the start of a possible new timeline (neither accepted nor dropped yet)."""
        return len(self._held)

    @property
    def period(self) -> float | None:
        """Median of the last intervals between accepted stamps (s), None while fewer than two are known."""
        return statistics.median(self._intervals) if len(self._intervals) >= 2 else None

    def bound(self) -> float | None:
        """The jump bound (s), None while the period is unknown."""
        p = self.period
        return None if p is None else max(self.jump_s, self.jump_periods * p)

    def add(self, stamp: float, item: Any = None) -> tuple[list[tuple[float, Any]], bool]:
        """``(accepted (stamp, item) pairs in order, restarted)`` for one new stamp; drops are counted."""
        s = float(stamp)
        if not math.isfinite(s):
            self.counter.drop("stamp_invalid", f"{self.name} stamp {s}")
            return [], False
        if self.max_ahead_s > 0 and self.clock is not None:
            now = self.clock()
            if now and s > now + self.max_ahead_s:
                self.counter.drop("stamp_jump", f"{self.name} stamp {s:.6f} is {s - now:.3f} s ahead of the clock "
                                                f"(more than {self.max_ahead_s} s)")
                return [], False
        L = self.last
        if L is None:
            self.last = s
            return [(s, item)], False
        B = self.bound()
        fwd, back = (math.inf, self.jump_s) if B is None else (B, B)
        H = self._held
        if H and s > H[-1][0] and s - H[-1][0] <= fwd:  # continues the held timeline
            H.append((s, item))
            return self._adopt() if len(H) >= self.confirm else ([], False)
        if L < s <= L + fwd:  # continues the stream: any held items were outliers
            self._drop_held(f"not followed; {s:.6f} continues from {L:.6f}")
            self._intervals.append(s - L)
            self.last = s
            return [(s, item)], False
        if L - back <= s <= L:
            self.counter.drop("stamp_backwards", f"{self.name} stamp {s:.6f} <= previous {L:.6f}")
            return [], False
        # a jump (forwards beyond fwd, or backwards beyond back) that continues nothing held
        self._drop_held(f"superseded by another jump to {s:.6f}")
        self._held = [(s, item)]
        return self._adopt() if self.confirm <= 1 else ([], False)

    def _adopt(self) -> tuple[list[tuple[float, Any]], bool]:
        items, self._held = self._held, []
        restarted = items[0][0] <= self.last
        if restarted:
            self.restarts += 1
            log.info("%s: time restarted at %.6f (was %.6f)", self.name, items[0][0], self.last)
        self._intervals.extend(b[0] - a[0] for a, b in zip(items, items[1:]))
        self.last = items[-1][0]
        return items, restarted

    def _drop_held(self, why: str) -> None:
        for st, _ in self._held:
            self.counter.drop("stamp_jump", f"{self.name} stamp {st:.6f} far from the stream's {self.last:.6f}: {why}")
        self._held = []
