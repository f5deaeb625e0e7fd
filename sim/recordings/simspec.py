"""``sim:key=value,...``: the embedded world (:class:`~regconsist_ros.sim.source.SimSource`) as a recording."""
from __future__ import annotations

import numpy as np

from regconsist_ros.sim.frame import Frame
from regconsist_ros.sim.recordings.base import Recording


def _parse_value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_sim_spec(spec: str):
    """``"sim:seed=3,frames=200,width=128"`` -> SimConfig; ValueError naming the spec when invalid."""
    from regconsist_ros.config import build
    from regconsist_ros.sim.source import SimConfig

    body = spec[len("sim:"):].strip()
    values = {}
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{spec!r}: expected 'key=value' items separated by commas, got {item!r}")
        values[key.strip()] = _parse_value(value.strip())
    try:
        return build(SimConfig, values)
    except ValueError as e:
        raise ValueError(f"{spec!r}: {e}") from None


class SimRecording(Recording):
    """The embedded world's frames (with poses, depth and labels)."""

    layout = "sim"

    def __init__(self, spec: str):
        from regconsist_ros.sim.source import SimSource

        super().__init__()
        self.cfg = parse_sim_spec(spec)
        self.src = SimSource(self.cfg)
        self.intrinsics = self.src.intrinsics
        self.classes = self.src.classes
        self._first = self.src[0]  # rendered once: it says whether this world has labels
        self.has_semantic, self.has_instance = self._first.semantic is not None, self._first.instance is not None
        self.stamps = np.arange(len(self.src), dtype=np.float64) / self.cfg.fps
        self.names = [f"sim:{i}" for i in range(len(self.src))]
        self.source = f"sim {spec[4:] or 'defaults'} ({self.cfg.width}x{self.cfg.height}, {len(self.src)} frames)"

    def frame(self, i: int) -> Frame:
        return self._first if i == 0 else self.src[i]
