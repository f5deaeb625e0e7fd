"""The graph's streams logged to Rerun (the live viewer of ``regconsist up --view``), without ROS.

:class:`RerunLog` takes what the viewer node receives, as plain fields (the dicts of
:mod:`regconsist_ros.online.decode`, arrays, stamps in seconds) and logs it on the ``stamp``
timeline (``timestamp``: the messages' sensor stamps); learner and readout numbers are also on the
``step`` timeline (a sequence: the training step). Entities:

| entity | Rerun archetype | from |
|---|---|---|
| ``world`` | ViewCoordinates RIGHT_HAND_Z_UP (static) | the world frame of camera/pose |
| ``world/camera`` | Transform3D (T_world_cam) + Pinhole (K, size; optical axes) | camera/pose, camera/color/camera_info |
| ``world/camera/image`` | Image (rgb) | camera/color/image_raw, at most ``image_rate`` Hz |
| ``world/camera/depth`` | DepthImage (``meter`` = 1: metres) | camera/aligned_depth_to_color/image_raw, at most ``image_rate`` Hz |
| ``keyframes/image`` | Image (rgb) | registration/keyframe/image_raw |
| ``world/keyframes/points`` | Points3D (coloured, world frame) | each keyframe joined to the depth and pose of its stamp: the last ``cloud_keyframes`` keyframes, every ``cloud_stride``-th pixel |
| ``world/keyframes/path`` | LineStrips3D | the keyframes' camera positions, oldest first |
| ``pairs/image``, ``pairs/lines`` | Image (src left, dst right) + LineStrips2D | registration/view_pairs (at most ``pair_rate`` Hz): ``pair_lines`` correspondences as segments src -> dst |
| ``metrics/learner/<method>/loss``, ``.../steps_per_s`` | Scalars | /diagnostics of the learner (each new step once) |
| ``metrics/readouts/<objective>/<readout>/<name>`` | Scalars | /diagnostics of the evaluator (one per result) |
| ``metrics/registration/<name>`` | Scalars | /diagnostics of the registration node; ``pair_iou`` per view pair |

Sinks (:func:`open_recording`): a file (``save``), a gRPC server with the web viewer that the SDK
ships (``serve=web``) or without it (``serve=grpc``), the native viewer (``serve=native``, spawned),
or ``auto`` (native where a display and the ``rerun`` executable exist, else web). Every logging
call goes through :meth:`RerunLog.handle`, which counts an exception (``errors.<kind>``) instead of
raising it: the viewer never stops the graph. Not thread-safe: one worker calls it.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import socket
import sys
import time
import urllib.parse
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from regconsist_ros.online.decode import decode_color, decode_depth, intrinsics_from_camera_info
from regconsist_ros.online.keyframe_viz import keyframe_points
from regconsist_ros.sim.frame import Frame

SERVE = ("none", "web", "grpc", "native", "auto")
WORLD, CAMERA, COLOR, DEPTH = "world", "world/camera", "world/camera/image", "world/camera/depth"
KEYFRAME, KF_POINTS, KF_PATH = "keyframes/image", "world/keyframes/points", "world/keyframes/path"
PAIR_IMAGE, PAIR_LINES = "pairs/image", "pairs/lines"
PENDING = 16  # keyframes that may wait for their pose and depth
REGISTRATION_SCALARS = ("keyframes", "view_pairs", "pairs_per_s", "dropped_total")


@dataclass
class ViewerConfig:
    """The live viewer (viewer node parameters; ``regconsist up --view / --save`` sets serve and save)."""

    serve: Literal["none", "web", "grpc", "native", "auto"] = field(default="auto", metadata={"help": "none (only save), web (gRPC server + the SDK's web viewer on web_port), grpc (server only: `rerun rerun+http://HOST:grpc_port/proxy`), native (spawn the rerun viewer), auto (native with a display and the rerun executable, else web)"})
    save: str = field(default="", metadata={"help": "also record to this .rrd file ('' = no file)"})
    bind: str = field(default="127.0.0.1", metadata={"help": "address of the gRPC server (0.0.0.0: other machines may connect)"})
    grpc_port: int = field(default=9876, metadata={"help": "port of the gRPC server (web, grpc) or of the spawned native viewer"})
    web_port: int = field(default=9090, metadata={"help": "HTTP port of the web viewer (serve=web)"})
    open_browser: bool = field(default=False, metadata={"help": "serve=web: open the default browser on the viewer"})
    memory_limit: str = field(default="256MiB", metadata={"help": "data the gRPC server keeps for late viewers (oldest dropped beyond)"})
    image_rate: float = field(default=5.0, metadata={"help": "colour, depth and pose logged at most this often, Hz (0 = every frame); keyframes and pairs are all logged"})
    depth: bool = field(default=True, metadata={"help": "log the depth images"})
    jpeg_quality: int = field(default=0, metadata={"help": "JPEG-compress colour and keyframe images at this quality (0 = raw pixels)"})
    depth_unit: float = field(default=0.001, metadata={"help": "metres per 16UC1 depth step"})
    cloud_keyframes: int = field(default=20, metadata={"help": "keyframes in world/keyframes/points (0 = no points)"})
    cloud_stride: int = field(default=8, metadata={"help": "every N-th pixel in x and y of each keyframe's depth"})
    path_max: int = field(default=1000, metadata={"help": "keyframe positions in world/keyframes/path"})
    pair_lines: int = field(default=50, metadata={"help": "correspondences drawn per view pair (evenly spaced)"})
    pair_rate: float = field(default=2.0, metadata={"help": "view pairs drawn at most this often, Hz of their stamps (0 = every pair; pair_iou is logged for all)"})
    keep_mb: float = field(default=64.0, metadata={"help": "keyframe images kept to draw the view pairs that refer to them (oldest dropped beyond)"})
    join_tolerance: float = field(default=0.02, metadata={"help": "seconds between a keyframe's stamp and the depth / pose joined to it"})
    queue: int = field(default=64, metadata={"help": "viewer node: messages waiting for its worker (the oldest dropped beyond, counted as busy)"})
    queue_mb: float = field(default=64.0, metadata={"help": "viewer node: bytes of the waiting messages (the oldest dropped beyond)"})
    nice: int = field(default=10, metadata={"help": "viewer node: niceness added to its threads, so that they yield the CPU to the learner (0 = none)"})

    def __post_init__(self):
        if self.serve not in SERVE:
            raise ValueError(f"ViewerConfig.serve must be one of {SERVE}, got {self.serve!r}")
        if self.serve == "none" and not self.save:
            raise ValueError("ViewerConfig: serve=none and no save file: the viewer would do nothing")
        for name in ("grpc_port", "web_port"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
                raise ValueError(f"ViewerConfig.{name} must be a port in [1, 65535], got {v!r}")
        for name in ("cloud_keyframes", "pair_lines"):
            if isinstance(getattr(self, name), bool) or getattr(self, name) < 0:
                raise ValueError(f"ViewerConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("cloud_stride", "path_max", "queue"):
            if isinstance(getattr(self, name), bool) or getattr(self, name) < 1:
                raise ValueError(f"ViewerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"ViewerConfig.jpeg_quality must be in [0, 100], got {self.jpeg_quality}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"ViewerConfig.nice must be in [0, 19], got {self.nice!r}")
        for name in ("image_rate", "pair_rate", "keep_mb", "join_tolerance"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"ViewerConfig.{name} must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.queue_mb) and self.queue_mb > 0):
            raise ValueError(f"ViewerConfig.queue_mb must be > 0, got {self.queue_mb!r}")
        if not (math.isfinite(self.depth_unit) and self.depth_unit > 0):
            raise ValueError(f"ViewerConfig.depth_unit must be > 0, got {self.depth_unit!r}")


def import_rerun():
    """The Rerun SDK, or ImportError saying how to install it."""
    try:
        import rerun
    except ImportError:
        raise ImportError("the live viewer needs the Rerun SDK: pip install 'rerun-sdk>=0.41,<0.42'") from None
    return rerun


def native_viewer() -> str | None:
    """Path of the native ``rerun`` viewer when a display is there to show it, else None."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform.startswith("linux"):
        return None
    beside = os.path.join(os.path.dirname(sys.executable), "rerun")  # the wheel's script, in this venv
    return beside if os.access(beside, os.X_OK) else shutil.which("rerun")


def _check_port(host: str, port: int, what: str) -> None:
    """OSError naming the setting when ``port`` cannot be bound (Rerun would only log it, later)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise OSError(f"{what}: cannot listen on {host}:{port} ({e.strerror}); choose another port") from None


def blueprint(rr):
    """Default layout: the 3D world, the camera images, the view pairs and the metrics."""
    import rerun.blueprint as rrb

    return rrb.Blueprint(rrb.Horizontal(
        rrb.Spatial3DView(origin=WORLD, name="world"),
        rrb.Vertical(rrb.Horizontal(rrb.Spatial2DView(origin=COLOR, name="colour"),
                                    rrb.Spatial2DView(origin=DEPTH, name="depth"),
                                    rrb.Spatial2DView(origin=KEYFRAME, name="keyframe")),
                     rrb.Spatial2DView(origin="pairs", name="view pair"),
                     rrb.TimeSeriesView(origin="metrics", name="metrics"))), collapse_panels=True)


def open_recording(cfg: ViewerConfig, recording_id: str | None = None):
    """``(RecordingStream, {"file", "grpc", "web"}: where it goes)`` for ``cfg``'s sinks."""
    rr = import_rerun()
    mode = cfg.serve
    if mode == "auto":
        mode = "native" if native_viewer() else "web"
    rec = rr.RecordingStream("regconsist", recording_id=recording_id)
    sinks, where = [], {}
    if cfg.save:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.save)), exist_ok=True)
        sinks.append(rr.FileSink(cfg.save))
        where["file"] = cfg.save
    if mode in ("web", "grpc"):
        _check_port(cfg.bind, cfg.grpc_port, "viewer grpc_port")
        if mode == "web":
            _check_port("0.0.0.0", cfg.web_port, "viewer web_port")
        server = rr.GrpcServerSink(cfg.bind, cfg.grpc_port, server_memory_limit=cfg.memory_limit)
        sinks.append(server)
        where["grpc"] = server.uri
    elif mode == "native":
        exe = native_viewer()
        if exe is None:
            raise RuntimeError("serve=native: no display or no `rerun` executable (use serve=web)")
        rr.spawn(port=cfg.grpc_port, connect=False, executable_path=exe, server_memory_limit=cfg.memory_limit)
        uri = f"rerun+http://127.0.0.1:{cfg.grpc_port}/proxy"
        sinks.append(rr.GrpcSink(uri))
        where["native"] = uri
    rec.set_sinks(*sinks, default_blueprint=blueprint(rr))
    if mode == "web":
        rr.serve_web_viewer(web_port=cfg.web_port, open_browser=cfg.open_browser, connect_to=where["grpc"])
        host = "localhost" if cfg.bind in ("127.0.0.1", "0.0.0.0") else cfg.bind
        grpc = where["grpc"].replace("127.0.0.1", host) if cfg.bind == "127.0.0.1" else where["grpc"]
        where["web"] = f"http://{host}:{cfg.web_port}/?url={urllib.parse.quote(grpc, safe='')}"
    rec.log(WORLD, rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    return rec, where


def rrd_rows(path) -> dict[str, dict[str, int]]:
    """``{entity: {archetype: rows}}`` of the recording in an .rrd file (read back with the Rerun SDK;
    a row is one logged instance of that archetype, static rows included; SDK properties left out)."""
    from rerun.chunk import RrdReader

    import_rerun()
    rows: dict[str, Counter] = {}
    for chunk in RrdReader(str(path)).stream():
        entity = chunk.entity_path.lstrip("/")
        if entity.startswith("__"):
            continue
        rb = chunk.to_record_batch()
        firsts = {}
        for name in rb.schema.names:
            arch, sep, _ = name.partition(":")
            if sep and arch not in firsts:
                firsts[arch] = name
        for arch, name in firsts.items():
            col = rb.column(name)
            rows.setdefault(entity, Counter())[arch] += len(col) - col.null_count
    return {e: dict(c) for e, c in rows.items()}


def _token(name: str) -> str:
    """An entity path part from a key (``J&F`` -> ``J_F``)."""
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_") or "_"


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class RerunLog:
    """Logs the graph's streams to a Rerun recording ``rec`` (see the module docstring for the entities)."""

    def __init__(self, cfg: ViewerConfig, rec, rr=None):
        self.cfg, self.rec, self.rr = cfg, rec, rr or import_rerun()
        self.logged: Counter = Counter()  # rows logged per entity path
        self.skipped: Counter = Counter()  # reason -> count (thinned by image_rate, no image for a pair, ...)
        self.errors: Counter = Counter()  # kind -> exceptions caught by handle()
        self.last_error = ""
        self.seconds: Counter = Counter()  # kind -> seconds spent in handle()
        self._last_at: dict[str, float] = {}  # stream -> stamp last logged (image_rate)
        self._intrinsics = None  # (Intrinsics, stamp)
        self._pinhole_logged = None
        self._depths: deque = deque(maxlen=64)  # (stamp, depth fields): joined to keyframes
        self._poses: deque = deque(maxlen=256)  # (stamp, [4, 4])
        self._images: OrderedDict[float, np.ndarray] = OrderedDict()  # keyframe stamp -> [H, W, 3] uint8
        self._images_bytes = 0
        self._clouds: deque = deque(maxlen=max(1, cfg.cloud_keyframes))  # ([N, 3] float32, [N, 3] uint8)
        self._path: deque = deque(maxlen=cfg.path_max)  # [3] positions
        self._steps: dict[str, tuple[int, float]] = {}  # learner method -> (step, stamp) last logged
        self._pending: deque = deque()  # keyframes waiting for their pose / depth: {"stamp", "rgb", "path"}

    # ---- one entry point that never raises -----------------------------------------------------
    def handle(self, kind: str, *args) -> bool:
        """Call ``self.<kind>(*args)``; an exception is counted (``errors[kind]``), never raised."""
        t0 = time.perf_counter()
        try:
            getattr(self, kind)(*args)
            return True
        except Exception as e:  # noqa: BLE001 - a viewer error must not stop the node
            self.errors[kind] += 1
            self.last_error = f"{kind}: {type(e).__name__}: {e}"
            return False
        finally:
            self.seconds[kind] += time.perf_counter() - t0

    def _at(self, stamp: float, step: int | None = None) -> None:
        self.rec.reset_time()
        self.rec.set_time("stamp", timestamp=stamp)
        if step is not None:
            self.rec.set_time("step", sequence=int(step))

    def _log(self, path: str, *archetypes) -> None:
        self.rec.log(path, *archetypes)
        self.logged[path] += 1

    def _due(self, stream: str, stamp: float, rate: float | None = None) -> bool:
        """Whether ``stream`` may log at ``stamp`` under ``rate`` Hz (default ``image_rate``)."""
        last, rate = self._last_at.get(stream), self.cfg.image_rate if rate is None else rate
        # 10% slack: a camera at `rate` Hz with a jittery timer is not thinned to half its frames
        if rate and last is not None and 0 <= stamp - last < 0.9 / rate:
            self.skipped[f"thinned.{stream}"] += 1
            return False
        self._last_at[stream] = stamp
        return True

    def _image(self, rgb: np.ndarray):
        img = self.rr.Image(rgb)
        return img.compress(self.cfg.jpeg_quality) if self.cfg.jpeg_quality else img

    # ---- camera streams --------------------------------------------------------------------------
    def camera_info(self, stamp: float, info: dict) -> None:
        """camera/color/camera_info fields: the Pinhole of world/camera, logged when it changes."""
        intr = intrinsics_from_camera_info(info["width"], info["height"], info["k"], info.get("distortion_model", ""),
                                           info.get("d", ()))
        self._intrinsics = intr
        if intr != self._pinhole_logged:
            self._at(stamp)
            self._log(CAMERA, self.rr.Pinhole(image_from_camera=intr.K, resolution=[intr.width, intr.height]))
            self._pinhole_logged = intr
        if self._pending:
            self._place_pending()

    def color(self, stamp: float, image: dict) -> None:
        if self._due("color", stamp):
            self._at(stamp)
            self._log(COLOR, self._image(decode_color(**image)))

    def depth(self, stamp: float, image: dict) -> None:
        self._depths.append((stamp, image))
        if self._pending:
            self._place_pending()
        if self.cfg.depth and self._due("depth", stamp):
            self._at(stamp)
            d = decode_depth(**image, depth_unit=self.cfg.depth_unit, min_valid_fraction=0.0)  # [H, W] metres
            self._log(DEPTH, self.rr.DepthImage(d, meter=1.0))

    def pose(self, stamp: float, T_world_cam: np.ndarray) -> None:
        T = np.asarray(T_world_cam, np.float64).reshape(4, 4)
        self._poses.append((stamp, T))
        if self._pending:
            self._place_pending()
        if self._due("pose", stamp):
            self._at(stamp)
            self._log(CAMERA, self.rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]))

    # ---- registration ----------------------------------------------------------------------------
    @staticmethod
    def _nearest(items, stamp: float, tol: float):
        best = min(items, key=lambda it: abs(it[0] - stamp), default=None)
        return best[1] if best is not None and abs(best[0] - stamp) <= tol else None

    def keyframe(self, stamp: float, image: dict) -> None:
        """registration/keyframe/image_raw: the image, kept for pairs; placed in 3D once its pose and depth are here."""
        rgb = np.array(decode_color(**image))  # [H, W, 3] uint8, own copy (kept)
        self._at(stamp)
        self._log(KEYFRAME, self._image(rgb))
        self._images[stamp] = rgb
        self._images_bytes += rgb.nbytes
        while self._images_bytes > self.cfg.keep_mb * 2**20 and len(self._images) > 1:
            self._images_bytes -= self._images.popitem(last=False)[1].nbytes
        self._pending.append({"stamp": stamp, "rgb": rgb, "path": False})
        if len(self._pending) > PENDING:
            self._pending.popleft()
            self.skipped["keyframe_unplaced"] += 1
        self._place_pending()

    def _place_pending(self) -> None:
        """Put waiting keyframes in 3D: on the path once a pose of their stamp came (topics arrive in any
        order), among the points once its depth did too. A keyframe whose stream went past its stamp
        without a match is counted (``keyframe_without_pose`` / ``keyframe_without_depth``)."""
        tol, keep = self.cfg.join_tolerance, deque()
        newest_pose = self._poses[-1][0] if self._poses else -math.inf
        newest_depth = self._depths[-1][0] if self._depths else -math.inf
        for kf in self._pending:
            stamp = kf["stamp"]
            T = self._nearest(self._poses, stamp, tol)
            if T is None:
                if newest_pose > stamp + tol:
                    self.skipped["keyframe_without_pose"] += 1
                else:
                    keep.append(kf)
                continue
            if not kf["path"]:
                self._at(stamp)
                self._path.append(T[:3, 3].copy())
                self._log(KF_PATH, self.rr.LineStrips3D([np.array(self._path)]))
                kf["path"] = True
            if not self.cfg.cloud_keyframes:
                continue
            depth = self._nearest(self._depths, stamp, tol)
            if depth is None:
                if newest_depth > stamp + tol:
                    self.skipped["keyframe_without_depth"] += 1
                else:
                    keep.append(kf)
                continue
            if self._intrinsics is None:  # camera_info not here yet: wait (up to PENDING keyframes)
                keep.append(kf)
                continue
            self._points(stamp, kf["rgb"], depth, T)
        self._pending = keep

    def _points(self, stamp: float, rgb: np.ndarray, depth: dict, T: np.ndarray) -> None:
        d = decode_depth(**depth, depth_unit=self.cfg.depth_unit, min_valid_fraction=0.0)  # [H, W] metres
        if d.shape != rgb.shape[:2] or (self._intrinsics.height, self._intrinsics.width) != d.shape:
            self.skipped["keyframe_size_mismatch"] += 1
            return
        self._clouds.append(keyframe_points(Frame(rgb, d, self._intrinsics, T, stamp), self.cfg.cloud_stride))
        xyz = np.concatenate([c[0] for c in self._clouds])  # [N, 3] world
        colours = np.concatenate([c[1] for c in self._clouds])  # [N, 3] uint8
        self._at(stamp)
        self._log(KF_POINTS, self.rr.Points3D(xyz, colors=colours, radii=0.01))

    def _keyframe_image(self, stamp: float) -> np.ndarray | None:
        """The kept keyframe image of ``stamp`` (a pair's float stamp vs a header's sec + nanosec: 1 us apart at most)."""
        if stamp in self._images:
            return self._images[stamp]
        return self._nearest(reversed(self._images.items()), stamp, 1e-6)

    def view_pair(self, stamp: float, pair: dict) -> None:
        """One view pair (``read_pair_cloud``'s dict; ``stamp``: its dst stamp): both keyframes side by side with
        ``pair_lines`` segments."""
        self._at(stamp)
        self._log("metrics/registration/pair_iou", self.rr.Scalars(pair["iou"]))
        src, dst = self._keyframe_image(pair["src_stamp"]), self._keyframe_image(pair["dst_stamp"])
        if src is None or dst is None:
            self.skipped["pair_without_keyframe_image"] += 1
            return
        if not self._due("pair", stamp, self.cfg.pair_rate):
            return
        h = max(src.shape[0], dst.shape[0])
        side = np.zeros((h, src.shape[1] + dst.shape[1], 3), np.uint8)  # [H, W1 + W2, 3]
        side[:src.shape[0], :src.shape[1]], side[:dst.shape[0], src.shape[1]:] = src, dst
        self._log(PAIR_IMAGE, self._image(side))
        n = len(pair["uv1"])
        k = min(n, self.cfg.pair_lines)
        if not k:
            return
        idx = np.linspace(0, n - 1, k).round().astype(int)
        a = np.asarray(pair["uv1"], np.float32)[idx]  # [k, 2] (x, y) in src
        b = np.asarray(pair["uv2"], np.float32)[idx] + np.float32([src.shape[1], 0])  # [k, 2] in dst, shifted
        hue = np.linspace(0, 1, k, endpoint=False)
        colours = (255 * np.stack([np.abs(np.sin(np.pi * (hue + s))) for s in (0, 1 / 3, 2 / 3)], 1)).astype(np.uint8)
        self._log(PAIR_LINES, self.rr.LineStrips2D(np.stack([a, b], 1), colors=colours, radii=0.5))

    # ---- /diagnostics ----------------------------------------------------------------------------
    def diagnostics(self, stamp: float, name: str, values: dict[str, str]) -> None:
        """One DiagnosticStatus (``name``, string values) of the learner, the evaluator or the registration node."""
        node, _, what = name.partition(": ")
        if node == "learner" and what == "status":
            for key in values:
                method = key[:-len(".step")]
                if not key.endswith(".step") or "." in method or f"{method}.loss" not in values:
                    continue
                step, loss = _number(values[key]), _number(values[f"{method}.loss"])
                last = self._steps.get(method)
                if step is None or loss is None or (last is not None and last[0] == step):
                    continue
                self._at(stamp, int(step))
                self._log(f"metrics/learner/{_token(method)}/loss", self.rr.Scalars(loss))
                if last is not None and stamp > last[1]:
                    self._log(f"metrics/learner/{_token(method)}/steps_per_s", self.rr.Scalars((step - last[0]) / (stamp - last[1])))
                self._steps[method] = (int(step), stamp)
        elif node == "evaluator" and what and what != "status":
            step = _number(values.get("step", ""))
            self._at(stamp, None if step is None else int(step))
            prefix = f"metrics/readouts/{_token(what)}"
            if what == "floors" and values.get("kind"):
                prefix += f"/{_token(values['kind'])}"
            for key, text in values.items():
                v = _number(text)
                if v is not None and key not in ("step", "time"):
                    self._log(f"{prefix}/{'/'.join(_token(p) for p in key.split('.') if p != 'floors')}", self.rr.Scalars(v))
        elif node == "registration" and what == "status":
            self._at(stamp)
            for key in REGISTRATION_SCALARS:
                v = _number(values.get(key, ""))
                if v is not None:
                    self._log(f"metrics/registration/{key}", self.rr.Scalars(v))

    # ---- status ----------------------------------------------------------------------------------
    def status(self) -> dict:
        return {"logged": dict(self.logged), "skipped": dict(self.skipped), "errors": dict(self.errors),
                "errors_total": sum(self.errors.values()), "last_error": self.last_error,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "keyframe_images_mb": round(self._images_bytes / 2**20, 1)}

    def close(self) -> None:
        """Flush and close the sinks (the .rrd file gets its footer)."""
        try:
            self.rec.flush()
        finally:
            self.rec.disconnect()
