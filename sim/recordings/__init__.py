"""One frame-source layer: every recording layout on disk, detected and opened by :func:`open_recording`.

| layout | what is on disk | detected by |
|---|---|---|
| ``tum`` | TUM RGB-D: rgb.txt, depth.txt, groundtruth.txt (optional), rgb/, depth/ | ``rgb.txt`` |
| ``7scenes`` | 7-Scenes / ScanNet export: frame-NNNNNN.color.png/jpg, .depth.png (mm), .pose.txt | ``frame-*.color.*`` |
| ``replica`` | Replica / NICE-SLAM: results/frameNNNNNN.jpg, results/depthNNNNNN.png, traj.txt | ``results/frame*`` |
| ``rosbag`` | rosbag2 (.db3 / .mcap + metadata.yaml) or ROS 1 .bag with configurable topics | ``metadata.yaml`` / ``.bag`` |
| ``realsense`` | RealSense SDK .bag (ROS 1; /device_0/sensor_N/Color_0/image/data ...) | its topics |
| ``images`` | a folder of colour images (colour only) | image files |
| ``video`` | a video file (colour only; PyAV) | the suffix |
| ``sim`` | ``sim:key=value,...``: the embedded world | the prefix |

A data spec is a path, optionally followed by options: ``PATH?key=value&key=value`` (the fields of
:class:`RecordingOptions`; quote it in a shell). Readers live in one small module each; none of
them imports anything above layer 1.
"""
from __future__ import annotations

from pathlib import Path

from regconsist_ros.sim.recordings.base import (ColorFrame, FrameDrop, PoseUnknownError, Recording, RecordingError,
                                                RecordingNotFound, RecordingOptions, parse_spec, require_depth,
                                                require_poses, warn_drops)

LAYOUTS = ("tum", "7scenes", "replica", "rosbag", "realsense", "images", "video", "sim")
ACCEPTED = ("a TUM RGB-D directory (rgb.txt), a 7-Scenes/ScanNet folder (frame-NNNNNN.color.png), a Replica/NICE-SLAM "
            "scene (results/, traj.txt), a rosbag2 directory or .db3/.mcap, a ROS 1 or RealSense .bag, a folder of "
            "colour images, a video file, or 'sim:key=value,...'; options as 'PATH?key=value&key=value'")

__all__ = ["ACCEPTED", "LAYOUTS", "ColorFrame", "FrameDrop", "PoseUnknownError", "Recording", "RecordingError",
           "RecordingNotFound", "RecordingOptions", "detect_layout", "open_recording", "parse_spec", "require_depth",
           "require_poses"]


def detect_layout(path: Path) -> str | None:
    """The layout of ``path`` (see the table in the module docstring), or None when none fits."""
    from regconsist_ros.sim.recordings import bags, images, replica, scenes7, tum

    path = Path(path)
    if str(path).startswith("sim:"):
        return "sim"
    if tum.is_tum(path):
        return "tum"
    if bags.is_bag(path):
        return "realsense" if bags.is_realsense_bag(path) else "rosbag"
    if path.is_dir():
        if scenes7.is_7scenes(path):
            return "7scenes"
        if replica.is_replica(path):
            return "replica"
        if images.image_files(path):
            return "images"
        return None
    if path.is_file() and path.suffix.lower() in images.VIDEO_SUFFIXES:
        return "video"
    return None


def open_recording(spec, colour_only: bool = False, **options) -> Recording:
    """Open the recording a data spec names (``PATH`` or ``PATH?key=value&...``; ``options`` override the
    spec's). ``colour_only``: the caller needs only colour (pretraining on video), so a TUM sequence
    whose depth cannot be read still gives its colour frames.

    ``poses=odometry`` (or ``auto``) estimates the poses by RGB-D odometry when the recording is
    opened (:mod:`regconsist_ros.sim.recordings.odometry`; not for ``colour_only`` callers, who
    need no poses); ``sim:...?poses=odometry`` too (the embedded world's poses then serve as ground truth).

    Raises RecordingError (a ValueError naming the path or option) for an unknown layout or an
    unreadable recording; RecordingNotFound (also a FileNotFoundError) for a missing path.
    """
    from regconsist_ros.sim.recordings.odometry import with_poses

    text = str(spec)
    if text.startswith("sim:"):
        from regconsist_ros.sim.recordings.simspec import SimRecording

        body, _, query = text.partition("?")
        values = parse_spec("?" + query)[1] if query else {}
        values.update({k: v for k, v in options.items() if v is not None})
        bad = [k for k in values if k != "poses" and not k.startswith("odometry.")]
        if bad:
            raise RecordingError(f"{text!r}: a sim: spec takes only poses= and odometry.* options after '?', got "
                                 f"{', '.join(bad)} (world settings go before it, as key=value,...)")
        opts = RecordingOptions.build(values)
        rec = SimRecording(body)
        return rec if colour_only else with_poses(rec, opts.poses, opts.odometry)
    path, values = parse_spec(text)
    values.update({k: v for k, v in options.items() if v is not None})
    opts = RecordingOptions.build(values)
    if not path.exists():
        raise RecordingNotFound(f"{path}: not found (no such file or directory); accepted: {ACCEPTED}")
    layout = detect_layout(path) if opts.layout == "auto" else opts.layout
    if layout is None:
        what = "a directory without a known layout" if path.is_dir() else "not a known file type"
        raise RecordingError(f"{path}: {what}; accepted: {ACCEPTED}")
    rec = _open(layout, path, opts, colour_only)
    if not colour_only:
        rec = with_poses(rec, opts.poses, opts.odometry)
    warn_drops(rec)
    return rec


def _open(layout: str, path: Path, opts: RecordingOptions, colour_only: bool) -> Recording:
    if layout == "tum":
        from regconsist_ros.sim.recordings.tum import open_tum

        return open_tum(path, opts, colour_only)
    if layout == "7scenes":
        from regconsist_ros.sim.recordings.scenes7 import SevenScenes

        return SevenScenes(path, opts)
    if layout == "replica":
        from regconsist_ros.sim.recordings.replica import Replica

        return Replica(path, opts)
    if layout in ("rosbag", "realsense"):
        from regconsist_ros.sim.recordings.bags import BagRecording, RealSenseBag

        return (RealSenseBag if layout == "realsense" else BagRecording)(path, opts)
    if layout == "images":
        from regconsist_ros.sim.recordings.images import ImageFolder

        return ImageFolder(path, opts.fps)
    if layout == "video":
        from regconsist_ros.sim.recordings.images import VideoFile

        return VideoFile(path, opts.fps)
    raise RecordingError(f"{path}: layout {layout!r} is not read from a path")
