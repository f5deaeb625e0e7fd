"""Approximate-time matching of several stamped streams (colour, depth, camera info, pose).

Our own small replacement for an approximate-time synchroniser, with drop accounting.

Semantics. One slot is the *reference* (colour). Every other slot is either *queued* (depth,
pose: each item is used at most once) or *latched* (camera info: the latest item is used for
every match, whatever its stamp). A reference item r is matched when every queued slot holds an
item within ``tolerance_s`` of r's stamp; the item chosen in a slot is the one nearest to r. The
choice is made only once it is final, i.e. once the slot has received an item stamped at or after
r (stamps of a slot only grow, so no later arrival can be nearer): for a stream whose stamps equal
the colour stamps (aligned RealSense depth) that is at once, for an unsynchronised stream it costs
at most one of its periods of latency. When a slot's final choice is out of tolerance, r can
never match and is dropped as ``"unmatched"`` immediately. After a match, every queued item up to
the chosen one is removed (older ones dropped as ``"unmatched"``); queued items too old to match
any current or future reference item are dropped as ``"unmatched"`` too.

Per slot, a stamp not newer than the previous one of that slot is dropped as
``"stamp_backwards"`` (call :meth:`StampSync.reset` when time restarts, e.g. a looping bag); a
queue longer than ``queue_size`` drops its oldest item as ``"queue_overflow"``.

Accounting in the :class:`DropCounter`: a queued item is accepted when it is used in a match, a
latched item when it arrives; every other item is dropped with a reason or is still pending, so
``counter.snapshot()["received"] + sum(pending().values() of queued slots)`` equals the number
of ``add`` calls.
"""
from __future__ import annotations

import bisect
import logging
import math
import threading
from collections import deque
from typing import Any

from regconsist_ros.online.counters import DropCounter

log = logging.getLogger(__name__)


class StampSync:
    """Match items of ``slots`` by stamp (seconds); see the module docstring. Thread-safe."""

    def __init__(self, slots: tuple[str, ...] = ("color", "depth", "info", "pose"), tolerance_s: float = 0.02,
                 queue_size: int = 30, counter: DropCounter | None = None, latched: tuple[str, ...] = ("info",),
                 reference: str = "color"):
        slots = tuple(slots)
        if not slots or len(set(slots)) != len(slots):
            raise ValueError(f"StampSync.slots must be distinct names, got {slots}")
        if reference not in slots:
            raise ValueError(f"StampSync.reference {reference!r} is not one of the slots {slots}")
        unknown = set(latched) - set(slots)
        latched = tuple(s for s in slots if s in set(latched))
        if unknown or reference in latched:
            raise ValueError(f"StampSync.latched must be slots other than the reference, got {sorted(unknown) or latched}")
        if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
            raise ValueError(f"StampSync.tolerance_s must be >= 0, got {tolerance_s}")
        if int(queue_size) != queue_size or queue_size < 1:
            raise ValueError(f"StampSync.queue_size must be an integer >= 1, got {queue_size}")
        self.slots = slots
        self.reference = reference
        self.latched = latched
        self.tolerance_s = float(tolerance_s)
        self.queue_size = int(queue_size)
        self.counter = counter if counter is not None else DropCounter(log, "sync")
        self.matches = 0
        self._others = tuple(s for s in slots if s != reference and s not in latched)
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every queued item and stamp (not counted as drops), e.g. after a time jump."""
        with self._lock:
            self._queues: dict[str, deque] = {s: deque() for s in self.slots if s not in self.latched}
            self._latest: dict[str, tuple[float, Any] | None] = {s: None for s in self.latched}
            self._last: dict[str, float] = {s: -math.inf for s in self.slots}

    def pending(self) -> dict[str, int]:
        """Items held per slot (queued slots: waiting items; latched slots: 1 once one arrived)."""
        with self._lock:
            out = {s: len(q) for s, q in self._queues.items()}
            out.update({s: int(v is not None) for s, v in self._latest.items()})
            return {s: out[s] for s in self.slots}

    def add(self, slot: str, stamp: float, item) -> list[dict]:
        """Store one item; return the matches it completes, oldest first.

        Each match is ``{"stamp": reference stamp, "stamps": {slot: stamp}, <slot>: item, ...}``.
        """
        if slot not in self.slots:
            raise KeyError(f"unknown slot {slot!r}; slots are {self.slots}")
        stamp = float(stamp)
        if not math.isfinite(stamp):
            self.counter.drop("stamp_invalid", f"{slot} stamp {stamp}")
            return []
        with self._lock:
            if stamp <= self._last[slot]:
                self.counter.drop("stamp_backwards", f"{slot} stamp {stamp:.6f} <= previous {self._last[slot]:.6f}")
                return []
            self._last[slot] = stamp
            if slot in self._latest:
                self._latest[slot] = (stamp, item)
                self.counter.accept()
            else:
                q = self._queues[slot]
                q.append((stamp, item))
                while len(q) > self.queue_size:
                    old = q.popleft()[0]
                    self.counter.drop("queue_overflow", f"{slot} @ {old:.6f} (queue of {self.queue_size} full)")
            out = self._match()
            self._prune()
            return out

    def _choose(self, slot: str, r: float):
        """Index of the nearest item of ``slot`` to stamp r, "wait" while not final, "fail" when out of tolerance."""
        q = self._queues[slot]
        if not q or q[-1][0] < r:
            return "wait"
        stamps = [s for s, _ in q]
        i = bisect.bisect_left(stamps, r)  # stamps[i] >= r exists
        if i > 0 and r - stamps[i - 1] <= stamps[i] - r:
            i -= 1
        return i if abs(stamps[i] - r) <= self.tolerance_s else "fail"

    def _match(self) -> list[dict]:
        out = []
        ref = self._queues[self.reference]
        while ref:
            r, r_item = ref[0]
            choice = {s: self._choose(s, r) for s in self._others}
            failed = [s for s, c in choice.items() if c == "fail"]
            if failed:
                ref.popleft()
                self.counter.drop("unmatched", f"{self.reference} @ {r:.6f}: no {'/'.join(failed)} within {self.tolerance_s} s")
                continue
            if any(c == "wait" for c in choice.values()) or any(v is None for v in self._latest.values()):
                break
            ref.popleft()
            match = {"stamp": r, "stamps": {self.reference: r}, self.reference: r_item}
            self.counter.accept()
            for s, i in choice.items():
                q = self._queues[s]
                for _ in range(i):
                    old = q.popleft()[0]
                    self.counter.drop("unmatched", f"{s} @ {old:.6f} skipped by the match at {r:.6f}")
                st, it = q.popleft()
                match[s], match["stamps"][s] = it, st
                self.counter.accept()
            for s, v in self._latest.items():
                match[s], match["stamps"][s] = v[1], v[0]
            self.matches += 1
            out.append(match)
        return out

    def _prune(self) -> None:
        """Drop queued items older than tolerance before every current and future reference stamp."""
        ref = self._queues[self.reference]
        horizon = ref[0][0] if ref else self._last[self.reference]
        if not math.isfinite(horizon):
            return
        for s in self._others:
            q = self._queues[s]
            while q and q[0][0] < horizon - self.tolerance_s:
                old = q.popleft()[0]
                self.counter.drop("unmatched", f"{s} @ {old:.6f} older than every {self.reference} frame")
