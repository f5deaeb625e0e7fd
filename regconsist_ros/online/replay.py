"""Bounded replay buffers for the online learner (thread-safe; oldest evicted first)."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np

from regconsist_ros.online.errors import BadInput

FRAME_ARRAYS = ("rgb", "depth", "semantic", "instance")


def frame_nbytes(frame) -> int:
    """Bytes of the numpy arrays a frame holds (rgb, depth, semantic, instance when present)."""
    return int(sum(a.nbytes for a in (getattr(frame, k, None) for k in FRAME_ARRAYS) if isinstance(a, np.ndarray)))


class ReplayBuffer:
    """Items with a byte size, capped by total bytes and (when ``max_items`` > 0) by count."""

    def __init__(self, max_bytes: int, max_items: int = 0):
        if int(max_bytes) != max_bytes or max_bytes < 1:
            raise ValueError(f"ReplayBuffer.max_bytes must be an integer >= 1, got {max_bytes}")
        if int(max_items) != max_items or max_items < 0:
            raise ValueError(f"ReplayBuffer.max_items must be an integer >= 0 (0 = no cap), got {max_items}")
        self.max_bytes = int(max_bytes)
        self.max_items = int(max_items)
        self._items: deque = deque()  # (item, nbytes)
        self._nbytes = 0
        self.evicted = 0
        self._lock = threading.RLock()

    def add(self, item, nbytes: int) -> None:
        nbytes = int(nbytes)
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if nbytes > self.max_bytes:
            raise ValueError(f"an item of {nbytes} bytes cannot fit a buffer of {self.max_bytes} bytes")
        with self._lock:
            self._items.append((item, nbytes))
            self._nbytes += nbytes
            while self._nbytes > self.max_bytes or (self.max_items and len(self._items) > self.max_items):
                self._nbytes -= self._items.popleft()[1]
                self.evicted += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes

    def items(self) -> list:
        """A snapshot list, oldest first."""
        with self._lock:
            return [it for it, _ in self._items]

    def sample(self, n: int, rng: np.random.Generator) -> list:
        """``n`` items uniformly, without replacement when n <= len, with replacement otherwise."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        items = self.items()
        if n and not items:
            raise ValueError("cannot sample from an empty buffer")
        idx = rng.choice(len(items), size=n, replace=n > len(items)) if n else []
        return [items[i] for i in idx]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0


class FrameBuffer(ReplayBuffer):
    """Frames (anything with ``.stamp`` and ``.rgb``) in strictly increasing stamp order."""

    def add(self, frame, nbytes: int | None = None) -> None:
        """Append ``frame``; ``nbytes`` defaults to :func:`frame_nbytes`. Non-increasing stamp -> BadInput."""
        stamp = float(frame.stamp)
        with self._lock:
            if self._items and stamp <= float(self._items[-1][0].stamp):
                raise BadInput("stamp_backwards", f"frame stamp {stamp:.6f} <= newest buffered {float(self._items[-1][0].stamp):.6f}")
            super().add(frame, frame_nbytes(frame) if nbytes is None else nbytes)

    def __getitem__(self, i: int):
        with self._lock:
            return self._items[i][0]

    def stamps(self) -> np.ndarray:
        with self._lock:
            return np.array([float(f.stamp) for f, _ in self._items])

    def sample_pairs(self, n: int, gap_min: int, gap_max: int, rng: np.random.Generator) -> list[tuple]:
        """``n`` pairs (frame t, frame t + k): k uniform in [gap_min, min(gap_max, len - 1)] (buffer
        positions, not stamps), then t uniform among the positions that leave room for k."""
        if not 1 <= gap_min <= gap_max:
            raise ValueError(f"sample_pairs needs 1 <= gap_min <= gap_max, got {gap_min}, {gap_max}")
        frames = self.items()
        if len(frames) <= gap_min:
            raise ValueError(f"{len(frames)} buffered frames cannot give a pair {gap_min} apart")
        hi = min(gap_max, len(frames) - 1)
        out = []
        for _ in range(n):
            k = int(rng.integers(gap_min, hi + 1))
            t = int(rng.integers(0, len(frames) - k))
            out.append((frames[t], frames[t + k]))
        return out

    def snapshot(self) -> "FrameSnapshot":
        """The buffered frames now, as a stream that later adds and evictions do not change."""
        return FrameSnapshot(self.items())

    def rgb_array(self, indices) -> np.ndarray:
        """[n, H, W, 3] uint8 stack of the colour images at buffer positions ``indices``."""
        with self._lock:
            frames = [self._items[int(i)][0] for i in indices]
        if not frames:
            raise ValueError("rgb_array needs at least one index")
        return np.stack([np.asarray(f.rgb) for f in frames])


class FrameSnapshot:
    """Frames (anything with ``.rgb``) as an ordered stream: ``len()``, ``size``, ``rgb(indices)``."""

    def __init__(self, frames: list):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        if not self.frames:
            raise ValueError("an empty stream has no size")
        return tuple(np.asarray(self.frames[0].rgb).shape[:2])

    def rgb(self, indices) -> np.ndarray:
        """[n, H, W, 3] uint8 frames at ``indices``."""
        return np.stack([np.asarray(self.frames[int(i)].rgb) for i in np.asarray(indices).reshape(-1)])
