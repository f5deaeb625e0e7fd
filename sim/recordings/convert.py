"""Any recording -> a TUM-layout sequence (what ``regconsist convert`` does).

RGB-D recordings are written with :class:`~regconsist_ros.sim.sequences.TumWriter`: rgb/*.png,
depth/*.png (16-bit, ``depth_scale`` units per metre: TUM's 5000 by default, so up to 13.1 m; farther
depth is written as 0 and counted), rgb.txt, depth.txt, groundtruth.txt when the poses are known,
intrinsics.json (with depth_scale), labels and classes.json when the recording has them, and
sequence.json saying where it came from. Depth is the recording's registered to colour. Colour-only
recordings (image folders, videos) get rgb/ and rgb.txt only. Frames that cannot be read are skipped
and counted by reason.
"""
from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from regconsist_ros.sim.recordings.base import FrameDrop, Recording, RecordingError
from regconsist_ros.sim.sequences import DEFAULT_DEPTH_SCALE, TumWriter

log = logging.getLogger(__name__)


def convert_recording(rec: Recording, out_dir, depth_scale: float = DEFAULT_DEPTH_SCALE, overwrite: bool = False,
                      stride: int = 1, max_frames: int = 0, progress: bool = True) -> dict:
    """Write every stride-th frame of ``rec`` (at most ``max_frames``) to ``out_dir`` in the TUM layout.

    Returns ``{"out", "layout", "source", "frames", "dropped", "poses", "depth", "intrinsics",
    "depth_scale", "depth_clipped_pixels"}``.
    """
    out = Path(out_dir)
    if stride < 1 or max_frames < 0:
        raise RecordingError(f"convert: stride >= 1 and max_frames >= 0 needed, got {stride}, {max_frames}")
    dropped: dict[str, int] = dict(rec.dropped)
    first: list[str] = []

    def drop(name: str, d: FrameDrop) -> None:
        dropped[d.reason] = dropped.get(d.reason, 0) + 1
        if len(first) < 3:
            first.append(f"{name} ({d})")

    meta = {"converted_from": str(rec.root) if rec.root is not None else rec.source, "layout": rec.layout,
            **({"source_meta": rec.meta} if rec.meta else {})}
    clipped = 0
    if rec.has_depth:
        picked = rec.candidates(stride, max_frames)
        with TumWriter(out, rec.intrinsics, depth_scale, classes=rec.classes, meta=meta, overwrite=overwrite) as w:
            for i in tqdm(picked, desc=f"converting {rec.layout}", unit="frame", disable=not progress):
                f = rec.frame_or_drop(i)
                if isinstance(f, FrameDrop):
                    drop(rec.names[i], f)
                    continue
                w.write(f)
        written, clipped = w.written, w.depth_clipped_pixels
    else:
        from regconsist_ros.sim.recordings.tum import write_colour_only

        if out.exists() and any(out.iterdir()) and not overwrite:
            raise RecordingError(f"{out}: output directory is not empty (pass overwrite to replace it)")

        def colours():
            for c in tqdm(rec.iter_color(stride, max_frames), desc=f"converting {rec.layout}", unit="frame",
                          disable=not progress):
                if isinstance(c, FrameDrop):
                    drop(getattr(c, "name", "?"), c)
                else:
                    yield c

        written = write_colour_only(out, colours(), rec.intrinsics)
    if not written:
        raise RecordingError(f"{rec.source}: no frame could be converted (dropped: {dropped})")
    if dropped:
        log.warning("%s: %d frames not converted (%s); first: %s", rec.source, sum(dropped.values()),
                    ", ".join(f"{k}: {v}" for k, v in dropped.items()), "; ".join(first) or "-")
    K = rec.intrinsics
    return {"out": str(out), "layout": rec.layout, "source": rec.source, "frames": written, "dropped": dropped,
            "poses": bool(rec.has_poses), "depth": bool(rec.has_depth), "intrinsics": K.to_dict() if K else None,
            "depth_scale": depth_scale if rec.has_depth else None, "depth_clipped_pixels": clipped}
