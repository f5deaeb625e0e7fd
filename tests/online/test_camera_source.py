"""The camera source without ROS (regconsist_ros/online/camera_source.py): config, sources, prefetching."""
from __future__ import annotations

import queue
import time

import pytest

from regconsist_ros.online.camera_source import CameraSourceConfig, Prefetcher, open_source
from regconsist_ros.sim.source import SimConfig


def _drain(pf: Prefetcher, n: int, timeout: float = 10.0) -> list:
    out, t0 = [], time.monotonic()
    while len(out) < n and time.monotonic() - t0 < timeout:
        try:
            out.append(pf.poll())
        except queue.Empty:
            time.sleep(0.005)
    return out


def test_config_checks_name_the_bad_value():
    with pytest.raises(ValueError, match="rate"):
        CameraSourceConfig(rate=0.0)
    with pytest.raises(ValueError, match="path"):
        CameraSourceConfig(source="tum")
    with pytest.raises(ValueError, match="prefetch"):
        CameraSourceConfig(prefetch=0)


def test_open_source_sim_and_a_missing_tum_sequence(tmp_path):
    src, intr = open_source(CameraSourceConfig(), SimConfig(seed=0, frames=4, width=32, height=24))
    assert len(src) == 4 and (intr.width, intr.height) == (32, 24)
    assert src[0].rgb.shape == (24, 32, 3)
    from regconsist_ros.sim.sequences import SequenceError

    with pytest.raises(SequenceError, match="not found"):
        open_source(CameraSourceConfig(source="tum", path=str(tmp_path / "missing")), SimConfig())


def test_prefetcher_ends_or_loops_and_skips_unreadable_frames():
    class Source:
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                raise OSError("unreadable")
            return i

    skipped = []
    pf = Prefetcher(Source(), prefetch=2, loop=False, on_skip=lambda i, e: skipped.append((i, str(e)))).start()
    assert _drain(pf, 4) == [0, 1, 3, None] and skipped == [(2, "unreadable")]
    pf.thread.join(timeout=5)
    assert not pf.thread.is_alive()
    looping = Prefetcher(Source(), prefetch=2, loop=True, on_skip=lambda i, e: None).start()
    try:
        assert _drain(looping, 6) == [0, 1, 3, 0, 1, 3]
    finally:
        looping.stop()
    looping.thread.join(timeout=5)
    assert not looping.thread.is_alive()
    with pytest.raises(ValueError, match="prefetch"):
        Prefetcher(Source(), prefetch=0)
