"""The one exception the online core raises for a message that must be dropped, not crash a node."""
from __future__ import annotations


class BadInput(ValueError):
    """A malformed or inconsistent input message.

    ``reason`` is a short machine-readable code used as the drop-counter key, e.g. ``"encoding"``,
    ``"size"``, ``"size_mismatch"``, ``"step"``, ``"shape"``, ``"depth_invalid"``, ``"camera_info"``,
    ``"pose_shape"``, ``"pose_non_finite"``, ``"pose_non_rigid"``, ``"stamp_backwards"``; the
    message says what was wrong in words.
    """

    def __init__(self, reason: str, message: str = ""):
        if not reason or not isinstance(reason, str):
            raise TypeError(f"BadInput needs a non-empty reason code, got {reason!r}")
        self.reason = reason
        self.message = message or reason
        super().__init__(f"{reason}: {self.message}" if message else reason)

    def __reduce__(self):  # keep (reason, message) through pickling (multiprocessing, logging handlers)
        return (type(self), (self.reason, self.message))
