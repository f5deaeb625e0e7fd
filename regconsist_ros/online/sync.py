"""Approximate-time matching of several stamped streams (colour, depth, camera info, pose).

Our own small replacement for an approximate-time synchroniser, with drop accounting.

Semantics. One slot is the *reference* (colour). Every other slot is *queued* (depth: each item
is used at most once), *interpolated* (pose: an item may serve several reference items) or
*latched* (camera info: the latest item is used for every match, whatever its stamp).

* A queued slot matches reference item r with its item nearest to r, when that is within the
  tolerance. The choice is made only once it is final, i.e. once the slot has received an item
  stamped at or after r (a slot's accepted stamps only grow, so no later arrival can be nearer): for
  a stream whose stamps equal the colour stamps (aligned RealSense depth) that is at once, for an
  unsynchronised stream it costs at most one of its periods of latency. When the final choice is
  out of tolerance, r is dropped as ``"unmatched"``. The tolerance is ``tolerance_s``, or with
  ``tolerance_s=None`` half the longest median period of the reference and queued streams (colour
  and depth drivers stamp their frames up to half a period apart; 0.02 s until the periods are known).
* An interpolated slot gives r the ``interpolate``-d value between its two items bracketing r
  (an item stamped exactly r is used as is), once an item at or after r exists. No item before r:
  r is dropped as ``"no_<slot>_bracket"``; bracketing items more than ``max_gap_s`` apart: as
  ``"<slot>_gap"``. Its items are accepted when first used and stay while they may bracket a later r.

After a match, every queued item up to the chosen one is removed (older ones dropped as
``"unmatched"``); items too old to match any current or future reference item are dropped as
``"unmatched"`` too.

Per slot, stamps pass a :class:`~regconsist_ros.online.stamps.StampGuard` first: invalid stamps
(``stamp_invalid``), small steps back (``stamp_backwards``), stamps far ahead of the node's clock
or far from the stream's recent stamps (``stamp_jump``, without moving the stream's notion of now);
a new timeline confirmed by consecutive stamps (a looping recording) is adopted and the slot's older
items are dropped as ``"time_restart"``. ``validate`` functions per slot may turn an item into the
value kept (e.g. a pose message into a checked [4, 4] pose); one raising :class:`BadInput` drops
the item under its reason. A queue longer than ``queue_size`` drops its oldest item as
``"queue_overflow"``; queued items together larger than ``max_bytes`` (the ``nbytes`` given to
:meth:`StampSync.add`) drop the oldest item of any slot as ``"memory_cap"``.

Accounting in the :class:`DropCounter`: a queued or interpolated item is accepted when it is first
used in a match, a latched item when it arrives; every other item is dropped with a reason or is
still pending, so ``counter.snapshot()["received"] + sum(pending().values())`` equals the number of
``add`` calls once latched slots are counted by :meth:`StampSync.held` instead of ``pending``.
"""
from __future__ import annotations

import bisect
import logging
import math
import threading
from collections import deque
from typing import Any, Callable

from regconsist_ros.online.counters import DropCounter
from regconsist_ros.online.errors import BadInput
from regconsist_ros.online.stamps import StampGuard

log = logging.getLogger(__name__)
AUTO_TOLERANCE_S = 0.02  # the automatic tolerance until the streams' periods are known


class StampSync:
    """Match items of ``slots`` by stamp (seconds); see the module docstring. Thread-safe.

    ``guard``: keyword arguments of every slot's :class:`StampGuard` (``jump_s``, ``jump_periods``,
    ``confirm``, ``max_ahead_s``, ``clock``). ``interpolate(item_a, stamp_a, item_b, stamp_b, stamp)``
    makes the value of an interpolated slot at ``stamp``."""

    def __init__(self, slots: tuple[str, ...] = ("color", "depth", "info", "pose"), tolerance_s: float | None = 0.02,
                 queue_size: int = 30, counter: DropCounter | None = None, latched: tuple[str, ...] = ("info",),
                 reference: str = "color", interpolated: tuple[str, ...] = (),
                 interpolate: Callable | None = None, max_gap_s: float = 0.25, max_bytes: int = 0,
                 validate: dict[str, Callable[[Any], Any]] | None = None, guard: dict | None = None):
        slots = tuple(slots)
        if not slots or len(set(slots)) != len(slots):
            raise ValueError(f"StampSync.slots must be distinct names, got {slots}")
        if reference not in slots:
            raise ValueError(f"StampSync.reference {reference!r} is not one of the slots {slots}")
        unknown = set(latched) - set(slots)
        latched = tuple(s for s in slots if s in set(latched))
        if unknown or reference in latched:
            raise ValueError(f"StampSync.latched must be slots other than the reference, got {sorted(unknown) or latched}")
        interpolated = tuple(interpolated)
        bad = [s for s in interpolated if s not in slots or s == reference or s in latched]
        if bad:
            raise ValueError(f"StampSync.interpolated must be queued slots other than the reference, got {bad}")
        if interpolated and interpolate is None:
            raise ValueError("StampSync.interpolated slots need an interpolate function")
        if tolerance_s is not None and not (math.isfinite(tolerance_s) and tolerance_s >= 0):
            raise ValueError(f"StampSync.tolerance_s must be >= 0 (None = automatic), got {tolerance_s}")
        if int(queue_size) != queue_size or queue_size < 1:
            raise ValueError(f"StampSync.queue_size must be an integer >= 1, got {queue_size}")
        if not (math.isfinite(max_gap_s) and max_gap_s > 0):
            raise ValueError(f"StampSync.max_gap_s must be > 0, got {max_gap_s}")
        if int(max_bytes) != max_bytes or max_bytes < 0:
            raise ValueError(f"StampSync.max_bytes must be an integer >= 0 (0 = no cap), got {max_bytes}")
        unknown = set(validate or {}) - set(slots)
        if unknown:
            raise ValueError(f"StampSync.validate names unknown slots {sorted(unknown)}")
        self.slots = slots
        self.reference = reference
        self.latched = latched
        self.interpolated = interpolated
        self.interpolate = interpolate
        self.tolerance_s = None if tolerance_s is None else float(tolerance_s)
        self.queue_size = int(queue_size)
        self.max_gap_s = float(max_gap_s)
        self.max_bytes = int(max_bytes)
        self.validate = dict(validate or {})
        self.counter = counter if counter is not None else DropCounter(log, "sync")
        self.matches = 0
        self._others = tuple(s for s in slots if s != reference and s not in latched)
        self._guards = {s: StampGuard(s, self.counter, **(guard or {})) for s in slots}
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every queued item and stamp (not counted as drops), e.g. after a time jump."""
        with self._lock:
            # queued entries: [stamp, item, nbytes, used]
            self._queues: dict[str, deque] = {s: deque() for s in self.slots if s not in self.latched}
            self._latest: dict[str, tuple[float, Any] | None] = {s: None for s in self.latched}
            self._nbytes = 0
            for g in self._guards.values():
                g.reset()

    def pending(self) -> dict[str, int]:
        """Items held per slot: queued slots: waiting (not yet accepted) items, including those a stamp
        guard holds; latched slots: 1 once one arrived."""
        with self._lock:
            out = {s: sum(1 for e in q if not e[3]) + self._guards[s].held for s, q in self._queues.items()}
            out.update({s: int(v is not None) for s, v in self._latest.items()})
            return {s: out[s] for s in self.slots}

    def held(self) -> dict[str, int]:
        """Items per slot held by its stamp guard (a possible new timeline), neither accepted nor dropped."""
        with self._lock:
            return {s: self._guards[s].held for s in self.slots}

    @property
    def nbytes(self) -> int:
        """Bytes of the queued items (as given to :meth:`add`)."""
        with self._lock:
            return self._nbytes

    def period(self, slot: str) -> float | None:
        """Median period (s) of a slot's accepted stamps, None while unknown."""
        with self._lock:
            return self._guards[slot].period

    def tolerance(self) -> float:
        """The tolerance in force (s): ``tolerance_s``, or the automatic one."""
        if self.tolerance_s is not None:
            return self.tolerance_s
        periods = [p for p in (self._guards[s].period for s in (self.reference,) + self._others
                               if s not in self.interpolated) if p]
        return min(0.5, 0.5 * max(periods)) if periods else AUTO_TOLERANCE_S

    def add(self, slot: str, stamp: float, item, nbytes: int = 0) -> list[dict]:
        """Store one item (``nbytes``: its size, for ``max_bytes``); return the matches it completes, oldest first.

        Each match is ``{"stamp": reference stamp, "stamps": {slot: stamp}, <slot>: item, ...}``; an
        interpolated slot's stamp is the reference stamp, and ``"<slot>_bracket"`` holds the two stamps
        it was interpolated between.
        """
        if slot not in self.slots:
            raise KeyError(f"unknown slot {slot!r}; slots are {self.slots}")
        if slot in self.validate:
            try:
                item = self.validate[slot](item)
            except BadInput as e:
                self.counter.drop(e.reason, f"{slot}: {e.message}")
                return []
        with self._lock:
            accepted, restarted = self._guards[slot].add(stamp, (item, int(nbytes)))
            if restarted and slot in self._queues:
                self._flush(slot)
            for st, (it, nb) in accepted:
                if slot in self._latest:
                    self._latest[slot] = (st, it)
                    self.counter.accept()
                    continue
                q = self._queues[slot]
                q.append([st, it, nb, False])
                self._nbytes += nb
                while len(q) > self.queue_size:
                    self._evict(slot, "queue_overflow", f"queue of {self.queue_size} full")
            out = self._match() if accepted else []
            if accepted:
                self._prune()
            self._cap_bytes()
            return out

    # ---- internals (under the lock) -----------------------------------------------------------------
    def _evict(self, slot: str, reason: str | None, why: str) -> None:
        """Remove the oldest item of ``slot``; count it as ``reason`` unless it was used (accepted) already."""
        st, _, nb, used = self._queues[slot].popleft()
        self._nbytes -= nb
        if not used and reason:
            self.counter.drop(reason, f"{slot} @ {st:.6f} ({why})")

    def _flush(self, slot: str) -> None:
        while self._queues[slot]:
            self._evict(slot, "time_restart", "time restarted on this stream")

    def _cap_bytes(self) -> None:
        if not self.max_bytes:
            return
        while self._nbytes > self.max_bytes:
            heads = [(q[0][0], s) for s, q in self._queues.items() if q]
            if sum(len(q) for q in self._queues.values()) <= 1:
                break  # one item alone may exceed the cap; it is kept
            _, oldest = min(heads)
            self._evict(oldest, "memory_cap", f"queued items exceed {self.max_bytes / 2**20:.1f} MB")

    def _choose(self, slot: str, r: float, tol: float):
        """("wait",) while not final; ("fail", reason, detail); ("take", i); ("interp", a, b)."""
        q = self._queues[slot]
        if not q or q[-1][0] < r:
            return ("wait",)
        stamps = [e[0] for e in q]
        i = bisect.bisect_left(stamps, r)  # stamps[i] >= r exists
        if slot in self.interpolated:
            if stamps[i] == r:
                return ("take", i)
            if i == 0:
                return ("fail", f"no_{slot}_bracket", f"no {slot} at or before it (oldest {stamps[0]:.6f})")
            if stamps[i] - stamps[i - 1] > self.max_gap_s:
                return ("fail", f"{slot}_gap", f"{slot}s around it are {stamps[i] - stamps[i - 1]:.3f} s apart "
                                                f"(max {self.max_gap_s} s)")
            return ("interp", i - 1, i)
        if i > 0 and r - stamps[i - 1] <= stamps[i] - r:
            i -= 1
        if abs(stamps[i] - r) <= tol:
            return ("take", i)
        return ("fail", "unmatched", f"no {slot} within {tol:.4f} s (nearest {stamps[i] - r:+.4f} s)")

    def _use(self, entry) -> None:
        if not entry[3]:
            entry[3] = True
            self.counter.accept()

    def _match(self) -> list[dict]:
        out = []
        ref = self._queues[self.reference]
        tol = self.tolerance()
        while ref:
            r, r_item = ref[0][0], ref[0][1]
            choice = {s: self._choose(s, r, tol) for s in self._others}
            failed = [(s, c) for s, c in choice.items() if c[0] == "fail"]
            if failed:
                self._evict(self.reference, failed[0][1][1], "; ".join(c[2] for _, c in failed))
                continue
            if any(c[0] == "wait" for c in choice.values()) or any(v is None for v in self._latest.values()):
                break
            entry = ref[0]
            self._use(entry)
            self._evict(self.reference, None, "")
            match = {"stamp": r, "stamps": {self.reference: r}, self.reference: r_item}
            for s, c in choice.items():
                q = self._queues[s]
                first = c[1]
                for _ in range(first):
                    self._evict(s, "unmatched", f"skipped by the match at {r:.6f}")
                if c[0] == "take":
                    e = q[0]
                    self._use(e)
                    match[s], match["stamps"][s] = e[1], e[0]
                    if s not in self.interpolated:
                        self._evict(s, None, "")
                else:  # interp: entries now at 0 and c[2] - first
                    a, b = q[0], q[c[2] - first]
                    self._use(a), self._use(b)
                    match[s] = self.interpolate(a[1], a[0], b[1], b[0], r)
                    match["stamps"][s], match[f"{s}_bracket"] = r, (a[0], b[0])
            for s, v in self._latest.items():
                match[s], match["stamps"][s] = v[1], v[0]
            self.matches += 1
            out.append(match)
        return out

    def _prune(self) -> None:
        """Drop queued items older than every current and future reference stamp can use."""
        ref = self._queues[self.reference]
        horizon = ref[0][0] if ref else self._guards[self.reference].last
        if horizon is None or not math.isfinite(horizon):
            return
        tol = self.tolerance()
        for s in self._others:
            q = self._queues[s]
            if s in self.interpolated:  # keep the newest item at or before the horizon: it may bracket
                while len(q) >= 2 and q[1][0] <= horizon:
                    self._evict(s, "unmatched", f"older than every {self.reference} frame")
            else:
                while q and q[0][0] < horizon - tol:
                    self._evict(s, "unmatched", f"older than every {self.reference} frame")

