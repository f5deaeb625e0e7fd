"""Counting what a node accepts and drops (with throttled warnings), and measuring rates."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable


class DropCounter:
    """Counts accepted and dropped items per reason; logs each reason at most once per ``throttle_s``.

    The first drop of a reason always logs ``"<name>: dropped (<reason>): <detail> [N so far]"`` as
    a warning; later drops of that reason within ``throttle_s`` of the last logged one are only
    counted. ``received`` is the number of ``accept()`` plus ``drop()`` calls. Thread-safe.
    """

    def __init__(self, logger: logging.Logger, name: str, throttle_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        if not throttle_s >= 0:
            raise ValueError(f"DropCounter.throttle_s must be >= 0, got {throttle_s}")
        self.logger = logger
        self.name = name
        self.throttle_s = float(throttle_s)
        self.clock = clock
        self.counts: dict[str, int] = {}
        self.accepted = 0
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()

    def accept(self, n: int = 1) -> None:
        with self._lock:
            self.accepted += int(n)

    def drop(self, reason: str, detail: str = "") -> None:
        with self._lock:
            n = self.counts.get(reason, 0) + 1
            self.counts[reason] = n
            now = self.clock()
            last = self._last_log.get(reason)
            log = last is None or now - last >= self.throttle_s
            if log:
                self._last_log[reason] = now
        if log:  # outside the lock: handlers may be slow
            self.logger.warning("%s: dropped (%s): %s [%d so far]", self.name, reason, detail, n)

    @property
    def dropped_total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def snapshot(self) -> dict:
        """``{"received", "accepted", "dropped": {reason: n}, "dropped_total"}`` (a consistent copy)."""
        with self._lock:
            dropped = dict(self.counts)
            total = sum(dropped.values())
            return {"received": self.accepted + total, "accepted": self.accepted, "dropped": dropped,
                    "dropped_total": total}


class RateMeter:
    """Events per second over a sliding window. Thread-safe.

    ``rate()`` divides the events of the last ``window_s`` seconds by ``window_s``, or by the time
    since the meter was created while that is shorter (so a fresh meter does not under-report);
    0 before any time has passed.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if not window_s > 0:
            raise ValueError(f"RateMeter.window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self.clock = clock
        self._start = clock()
        self._events: deque[tuple[float, int]] = deque()
        self._n = 0
        self.total = 0
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window_s:
            self._n -= self._events.popleft()[1]

    def tick(self, n: int = 1) -> None:
        with self._lock:
            now = self.clock()
            self._events.append((now, int(n)))
            self._n += int(n)
            self.total += int(n)
            self._expire(now)

    def rate(self) -> float:
        with self._lock:
            now = self.clock()
            self._expire(now)
            span = min(self.window_s, now - self._start)
            return self._n / span if span > 0 else 0.0


class LossCounter:
    """Messages lost before a node's callbacks, per stream (topic). Thread-safe.

    Two sources: :meth:`seen` takes each received message's publisher id and publication sequence
    number (rclpy's ``MessageInfo``) and counts the numbers skipped since that publisher's previous
    message (``sequence_gap``): messages lost anywhere before the callback, in the network or
    overwritten in a keep-last history. :meth:`lost` adds the RMW's own message-lost events
    (``message_lost``; samples the DDS layer knows it never delivered, already among the gaps).
    Not counted: messages before a publisher's first received one (late joining, discovery) and
    after its last received one, until it sends another; a publisher whose numbers go back (a
    restarted process reusing its id) starts again without a count.
    """

    def __init__(self):
        self._streams: dict[str, dict] = {}
        self._last: dict[tuple[str, bytes], int] = {}
        self.unsupported: set[str] = set()  # streams whose RMW has no message-lost event
        self._lock = threading.Lock()

    def _stream(self, stream: str) -> dict:
        return self._streams.setdefault(stream, {"received": 0, "sequence_gap": 0, "message_lost": 0})

    def seen(self, stream: str, publisher: bytes, seq: int | None) -> int:
        """Record one received message; returns the gap it revealed (0 when none or unknown)."""
        with self._lock:
            st = self._stream(stream)
            st["received"] += 1
            if seq is None or seq <= 0:
                return 0
            key = (stream, bytes(publisher))
            last = self._last.get(key)
            self._last[key] = int(seq)
            gap = int(seq) - last - 1 if last is not None and seq > last else 0
            st["sequence_gap"] += gap
            return gap

    def lost(self, stream: str, n: int) -> None:
        """The RMW reported ``n`` more messages lost on ``stream``."""
        with self._lock:
            self._stream(stream)["message_lost"] += int(n)

    def snapshot(self) -> dict:
        """``{stream: {"received", "sequence_gap", "message_lost"}}`` (plus ``"message_lost_event": "unsupported"``
        for streams whose RMW has none)."""
        with self._lock:
            out = {s: dict(v) for s, v in self._streams.items()}
            for s in self.unsupported:
                out.setdefault(s, {"received": 0, "sequence_gap": 0, "message_lost": 0})["message_lost_event"] = "unsupported"
            return out

    @property
    def total(self) -> int:
        """All sequence gaps counted."""
        with self._lock:
            return sum(v["sequence_gap"] for v in self._streams.values())


class ByteBudget:
    """Bytes held by a queue, capped: :meth:`take` reserves room for an item (False when it would go over
    the cap; an item into an empty budget is always taken, so one message larger than the cap still
    passes), :meth:`give` returns it when the item leaves. Thread-safe."""

    def __init__(self, cap_mb: float):
        if not cap_mb > 0:
            raise ValueError(f"ByteBudget: cap_mb must be > 0, got {cap_mb}")
        self.cap = int(cap_mb * 1e6)
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held and self.held + n > self.cap:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held = max(0, self.held - n)


class TrainHealth:
    """What a train loop reports on ``/diagnostics``: the last training error, set when a slice raises
    and cleared as soon as a slice trains again (``train_errors`` keeps the count), and the checkpoints
    that could not be written (an ``OSError`` out of the slice: disk full, ...; training goes on)."""

    def __init__(self):
        self.error: str | None = None
        self.train_errors = 0
        self.checkpoint_failures = 0
        self.checkpoint_error: str | None = None

    def step(self, train: Callable[[], dict], log: Callable[[str], None]) -> dict | None:
        """``train()`` -> its ``{method: steps done}``; ``{}`` after a failed checkpoint, None after an error."""
        try:
            done = train()
        except OSError as e:
            self.checkpoint_failures += 1
            self.checkpoint_error = f"{type(e).__name__}: {e}"
            log(f"checkpoint failed ({self.checkpoint_failures} so far; training goes on, the last complete "
                f"checkpoint stays): {self.checkpoint_error}")
            return {}
        except Exception as e:  # keep the caller (and what it learnt) alive; report it
            self.train_errors += 1
            self.error = f"{type(e).__name__}: {e}"
            log(f"training step failed: {self.error}")
            return None
        if any(done.values()):
            self.error = None  # recovered (batches that failed inside a slice stay counted: batches_failed)
        return done

    def status(self) -> dict:
        st: dict = {"train_error": self.error} if self.error else {}
        if self.train_errors:
            st["train_errors"] = self.train_errors
        if self.checkpoint_failures:
            st["checkpoint_failures"] = self.checkpoint_failures
            st["checkpoint_error"] = self.checkpoint_error
        return st
