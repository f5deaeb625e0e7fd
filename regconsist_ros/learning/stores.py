"""The frame store: what every batch builder reads, offline and online alike.

A store offers up to three things (the batch kinds of :mod:`regconsist_ros.learning.batches` say
which one they need):

- ``streams()``: ordered colour streams, each with ``len()``, ``size`` (H, W) and
  ``rgb(indices) -> uint8 [n, H, W, 3]`` (offline: the frames of each ``--data`` source; online: one
  replay buffer per robot);
- ``view_pairs()``: registered view pairs, ``len()``, ``[k] -> RegisteredPair or None`` and
  ``match_iou`` (offline: :class:`~regconsist_ros.learning.datasets.ViewPairData` of a TUM RGB-D
  sequence; online: buffered keyframes joined with the registration node's view pairs);
- ``flow_pairs()``: frame pairs with the flow between them, ``sample(n, rng) -> batch`` (offline:
  :class:`~regconsist_ros.learning.flow_pairs.FlowPairSampler`; online: registration's
  correspondences scattered into a sparse flow field).

:class:`OfflineStore` holds them for a pretraining run; the online learner's store reads its replay
buffers (:mod:`regconsist_ros.online.learner`). Loaders for the offline data live here too.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class FrameStore:
    """Base of the offline and online stores: nothing available unless a subclass says so."""

    def streams(self) -> list:
        return []

    def view_pairs(self):
        return None

    def flow_pairs(self):
        return None

    def summary(self) -> dict:
        """What the store holds, for run.json and the result of a run."""
        return {}


class OfflineStore(FrameStore):
    """Fixed streams / view pairs / flow pairs loaded from disk for one pretraining run."""

    def __init__(self, streams=(), view_pairs=None, flow_pairs=None, summary: dict | None = None):
        self._streams = list(streams)
        self._view_pairs = view_pairs
        self._flow_pairs = flow_pairs
        self._summary = dict(summary or {})

    def streams(self) -> list:
        return self._streams

    def view_pairs(self):
        return self._view_pairs

    def flow_pairs(self):
        return self._flow_pairs

    def summary(self) -> dict:
        return dict(self._summary)


def cache_dir_for(data_dir: str | Path, run_dir: Path) -> Path:
    """Per-sequence cache next to the data when it is a plain, writable directory, else inside the run
    directory (a spec with options, a bag file, a read-only dataset)."""
    text = str(data_dir)
    d = Path(text) / ".regconsist_cache"
    if "?" not in text and Path(text).is_dir():
        try:
            d.mkdir(exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            pass
    return Path(run_dir) / "cache"


def load_frames(data_dir: str | Path, progress: bool = True, poses: bool = True) -> tuple[list, object]:
    """All frames of an RGB-D recording, in memory (CPU-scale sequences) -> (frames, recording).

    ``data_dir``: any data spec the frame-source layer opens (:func:`regconsist_ros.sim.recordings.open_recording`:
    TUM, 7-Scenes / ScanNet, Replica, bags, ``sim:...``; ``PATH?key=value&...`` for options). The
    recording must have depth, and poses unless ``poses`` is False (a clear error names what is
    missing). A frame that cannot be read is skipped and counted (one warning); none left is an error.
    """
    from tqdm import tqdm

    from regconsist_ros.sim.recordings import FrameDrop, open_recording, require_depth, require_poses

    rec = open_recording(data_dir)
    require_depth(rec, "this command")
    if poses:
        require_poses(rec, "this command")
    frames, bad = [], {}
    for i in tqdm(range(len(rec)), desc="load", unit="frame", disable=not progress):
        f = rec.frame_or_drop(i)
        if isinstance(f, FrameDrop):
            bad.setdefault(f.reason, []).append(f"{rec.names[i]} ({f})")
        else:
            frames.append(f)
    if bad:
        n = sum(len(v) for v in bad.values())
        first = next(iter(bad.values()))[0]
        if not frames:
            raise ValueError(f"{rec.source}: none of its {len(rec)} frames could be read (first: {first})")
        log.warning("%s: skipped %d of %d frames (%s; first: %s)", rec.source, n, len(rec),
                    ", ".join(f"{k}: {len(v)}" for k, v in bad.items()), first)
    return frames, rec


def specs_list(data) -> list[str]:
    """``--data`` as a list of strings (one spec, a list of specs, or None)."""
    if data is None:
        return []
    return [str(s) for s in ([data] if isinstance(data, (str, Path)) else data)]


def one_spec(data, what: str) -> str:
    specs = specs_list(data)
    if len(specs) != 1:
        raise ValueError(f"{what} takes one sequence as data, got {len(specs)}")
    return specs[0]


def load_streams(data, load, progress: bool = True) -> OfflineStore:
    """One ordered colour stream per source spec (any recording layout, ``sim:...``), read with
    ``load`` (:class:`~regconsist_ros.learning.frame_sources.FrameLoadConfig`)."""
    from regconsist_ros.learning.frame_pairs import ArrayStream

    sources = [load.load(s, progress=progress) for s in specs_list(data)]
    if not sources:
        raise ValueError("no frame source given (--data)")
    dropped: dict[str, int] = {}
    for s in sources:
        for k, v in s.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    return OfflineStore(streams=[ArrayStream(s.rgb) for s in sources],
                        summary={"frames": [len(s) for s in sources], "dropped_frames": dropped,
                                 "sources": [s.source for s in sources]})
