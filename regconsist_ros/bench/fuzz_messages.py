"""`regconsist bench fuzz --sections messages`: bad messages against the real registration and learner nodes.

An outside participant (:mod:`regconsist_ros.ros.fuzz_peer`, a process, since nothing here imports
rclpy) acts as the camera driver and as the registration node's output: it publishes every kind of
:func:`catalog`, one at a time, each followed by good input, and reads the nodes' counters on
/diagnostics. Both nodes run as processes with their own parameters, on a domain of their own with
localhost-only discovery; the learner in a namespace of its own (``/fuzz``), so that it hears only
this bench's keyframes and view pairs, not the registration node's.

Per kind, one bad input (some kinds are a whole set, most a single malformed message among good
ones), then ``good`` good sets; the outcome:

- ``crashed``: the node process exited (it is restarted for the next kind);
- ``counted``: a drop counter went up (registration: ``dropped.*`` with the stamp matcher's
  ``dropped.sync.*``; learner: ``messages.dropped.*``, ``ingest.dropped.*``, the unjoined and the
  dropped-point counts ``received.view_pairs_unjoined``, ``received.view_pair_points_*``), or a
  message was counted lost before the callbacks (``lost.*``); ``reasons`` lists each counter's increase;
- ``accepted``: the node took the bad input as valid (registration: one more set registered than
  good sets; learner: one more keyframe or view pair buffered than good ones);
- ``uncounted``: neither counted nor accepted (the failure this section hunts);
- ``next_good``: every good set after it was used (registration: its colour stamp came back as a
  keyframe, every frame being one here; learner: the good keyframe and view pair were buffered).

Controls (good sets alone) run first for each node and must count nothing; they are reported
apart, not as inputs.
"""
from __future__ import annotations

import base64
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

W, H = 32, 24  # the camera's images
KW, KH = 64, 48  # the keyframes fed to the learner
PERIOD = 0.1  # seconds between good sets
Y2038 = 2**31 - 1

# ---- message descriptions (what fuzz_peer turns into ROS messages) -------------------------------------


def split_stamp(t: float) -> tuple[int, int]:
    ns = int(round(t * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(bytes(data)).decode()}


def image(fields: dict, stamp, frame_id: str = "cam", **over) -> dict:
    """An Image description from Image fields (``online.decode.encode_*``); ``over`` replaces any field."""
    d = {"type": "Image", "stamp": stamp, "frame_id": frame_id, **fields, **over}
    d["data"] = _b64(d["data"])
    return d


def camera_info(fields: dict, stamp, **over) -> dict:
    return {"type": "CameraInfo", "stamp": stamp, "frame_id": "cam", **fields, **over}


def pose(position, orientation, stamp) -> dict:
    return {"type": "PoseStamped", "stamp": stamp, "frame_id": "world", "position": list(position),
            "orientation": list(orientation)}


def cloud(rows: np.ndarray, stamp, fields=None, **over) -> dict:
    """A PointCloud2 description of view-pair rows (``ros.pair_msg.PAIR_DTYPE``); ``over`` replaces any field."""
    from regconsist_ros.ros.pair_msg import FIELDS, PAIR_DTYPE

    d = {"type": "PointCloud2", "stamp": stamp, "frame_id": "cam", "height": 1, "width": len(rows),
         "fields": [[n, o, t, 1] for n, o, t in (fields or FIELDS)], "is_bigendian": False,
         "point_step": PAIR_DTYPE.itemsize, "row_step": PAIR_DTYPE.itemsize * len(rows), "is_dense": True,
         "data": rows.tobytes(), **over}
    d["data"] = _b64(d["data"])
    return d


class Camera:
    """The good camera stream (colour rgb8, aligned depth 16UC1, camera_info, pose) at 0.1 s per set."""

    def __init__(self, t0: float, seed: int = 0):
        from regconsist_ros.online.decode import camera_info_fields, encode_color, encode_depth
        from regconsist_ros.sim.frame import Intrinsics

        rng = np.random.default_rng(seed)
        self.rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)  # [H, W, 3]
        self.depth_m = np.full((H, W), 2.0, np.float32)  # [H, W] metres
        self.color_fields = encode_color(self.rgb)
        self.depth_fields = encode_depth(self.depth_m, "16UC1", 0.001)
        self.info_fields = camera_info_fields(Intrinsics.from_fov(W, H, 90))
        self.encode_color, self.encode_depth = encode_color, encode_depth
        self.t = t0
        self.prev = t0

    def next(self) -> float:
        self.prev, self.t = self.t, self.t + PERIOD
        return self.t

    def color(self, t, **over) -> tuple[str, dict]:
        return "color", image(self.color_fields, t if isinstance(t, tuple) else split_stamp(t), **over)

    def depth(self, t, **over) -> tuple[str, dict]:
        return "depth", image(self.depth_fields, t if isinstance(t, tuple) else split_stamp(t), **over)

    def info(self, t, **over) -> tuple[str, dict]:
        return "info", camera_info(self.info_fields, t if isinstance(t, tuple) else split_stamp(t), **over)

    def pose(self, t, position=(0.0, 0.0, 0.0), orientation=(0.0, 0.0, 0.0, 1.0)) -> tuple[str, dict]:
        return "pose", pose(position, orientation, t if isinstance(t, tuple) else split_stamp(t))

    def set(self, t, **parts) -> list[tuple[str, dict]]:
        """A set at stamp ``t`` (camera_info, depth, pose, colour: colour last); ``parts`` replace a message
        (a (key, description) pair) or drop it (None)."""
        out = []
        for key in ("info", "depth", "pose", "color"):
            m = parts[key] if key in parts else getattr(self, key)(t)
            if m is not None:
                out.append(m)
        return out


class Keyframes:
    """The learner's good input: 64x48 keyframes 0.1 s apart, each with a view pair to the one before."""

    def __init__(self, t0: float, seed: int = 1):
        from regconsist_ros.online.decode import encode_color

        rng = np.random.default_rng(seed)
        self.fields = encode_color(rng.integers(0, 255, (KH, KW, 3), dtype=np.uint8))
        gx, gy = np.meshgrid(np.arange(4, KW - 4, 6, dtype=np.float32), np.arange(4, KH - 4, 6, dtype=np.float32))
        self.uv1 = np.stack([gx.ravel(), gy.ravel()], 1)  # [M, 2] pixels (x, y)
        self.uv2 = self.uv1 + 1.0
        self.t = t0
        self.prev = t0

    def next(self) -> float:
        self.prev, self.t = self.t, self.t + PERIOD
        return self.t

    def keyframe(self, t, **over) -> tuple[str, dict]:
        return "keyframe", image(self.fields, t if isinstance(t, tuple) else split_stamp(t), **over)

    def rows(self, src: float, uv1=None, uv2=None, iou: float = 0.5) -> np.ndarray:
        from regconsist_ros.ros.pair_msg import PAIR_DTYPE

        uv1 = self.uv1 if uv1 is None else uv1
        uv2 = self.uv2 if uv2 is None else uv2
        rows = np.zeros(len(uv1), PAIR_DTYPE)
        rows["u1"], rows["v1"], rows["u2"], rows["v2"] = uv1[:, 0], uv1[:, 1], uv2[:, 0], uv2[:, 1]
        rows["src_stamp"], rows["iou"] = src, iou
        return rows

    def pair(self, src: float, dst, rows=None, **over) -> tuple[str, dict]:
        rows = self.rows(src) if rows is None else rows
        return "pair", cloud(rows, dst if isinstance(dst, tuple) else split_stamp(dst), **over)

    def set(self, t) -> list[tuple[str, dict]]:
        """The view pair from the previous keyframe to a new one at ``t``, then that keyframe: the pair comes
        first (topics are not ordered with each other), so the learner must hold it until its keyframe arrives."""
        return [self.pair(self.prev, t), self.keyframe(t)]


# ---- the catalog -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    name: str  # "<group>/<what>"
    node: str  # "registration" or "learner"
    build: Callable  # (Camera | Keyframes, t, prev) -> [(key, description)]: the bad input at stamp t

    @property
    def group(self) -> str:
        return self.name.split("/", 1)[0]


STAMPS = {  # stamp anomaly -> (t, prev) -> (sec, nanosec)
    "backwards_1s": lambda t, prev: split_stamp(prev - 1.0),
    "backwards_10ms": lambda t, prev: split_stamp(prev - 0.01),
    "duplicate": lambda t, prev: split_stamp(prev),
    "1970": lambda t, prev: (0, 0),
    "1970_plus_1s": lambda t, prev: (1, 0),
    "2038": lambda t, prev: (Y2038, 0),
    "nanosec_overflow": lambda t, prev: (split_stamp(t)[0], 2**32 - 1),
    "negative": lambda t, prev: (-1, 0),
    "ahead_0.5s": lambda t, prev: split_stamp(t + 0.5),
    "ahead_1day": lambda t, prev: split_stamp(t + 86400.0),
}
COLOR_ENCODINGS = ("yuv422", "bayer_rggb8", "16UC1", "32FC1", "mono16", "rgb16", "8UC3", "", "RGB8", "jpeg",
                   "nv21", "rgb8 ")
DEPTH_ENCODINGS = ("rgb8", "mono8", "8UC1", "16SC1", "64FC1", "32FC3", "")


def _registration_kinds() -> list[Kind]:
    kinds: list[Kind] = []

    def add(name, build):
        kinds.append(Kind(name, "registration", build))

    for what, stamp in STAMPS.items():  # a whole set, then one stream of the set at a time
        add(f"stamp/set_{what}", lambda c, t, prev, s=stamp: c.set(s(t, prev)))
        for key in ("color", "depth", "pose"):
            add(f"stamp/{key}_{what}", lambda c, t, prev, s=stamp, k=key: c.set(t, **{k: getattr(c, k)(s(t, prev))}))
    for what in ("2038", "1970"):  # camera_info is latched: its stamp does not matter
        add(f"stamp/info_{what}", lambda c, t, prev, s=STAMPS[what]: c.set(t, info=c.info(s(t, prev))))
    add("stamp/depth_70ms_off", lambda c, t, prev: c.set(t, depth=c.depth(t + 0.07)))
    add("stamp/color_without_depth", lambda c, t, prev: c.set(t, depth=None))
    add("stamp/depth_without_color", lambda c, t, prev: c.set(t, color=None))

    for enc in COLOR_ENCODINGS:
        add(f"color_encoding/{enc!r}", lambda c, t, prev, e=enc: c.set(t, color=c.color(t, encoding=e)))
    nbytes = W * H * 3
    add("color_buffer/truncated_half", lambda c, t, prev: c.set(t, color=c.color(t, data=c.color_fields["data"][:nbytes // 2])))
    add("color_buffer/truncated_100_bytes", lambda c, t, prev: c.set(t, color=c.color(t, data=c.color_fields["data"][:100])))
    add("color_buffer/empty_data", lambda c, t, prev: c.set(t, color=c.color(t, data=b"")))
    add("color_buffer/extra_bytes", lambda c, t, prev: c.set(t, color=c.color(t, data=c.color_fields["data"] + bytes(1000))))
    add("color_buffer/step_short", lambda c, t, prev: c.set(t, color=c.color(t, step=W * 3 - 1)))
    add("color_buffer/step_zero", lambda c, t, prev: c.set(t, color=c.color(t, step=0)))
    add("color_buffer/0x0", lambda c, t, prev: c.set(t, color=c.color(t, width=0, height=0, step=0, data=b"")))
    add("color_buffer/claims_8000x8000", lambda c, t, prev: c.set(t, color=c.color(t, width=8000, height=8000, step=24000)))
    add("color_buffer/claims_uint32_max_width", lambda c, t, prev: c.set(t, color=c.color(t, width=2**32 - 1, step=2**32 - 1)))
    add("color_buffer/is_bigendian", lambda c, t, prev: c.set(t, color=c.color(t, is_bigendian=1)))
    add("color_buffer/half_size_of_depth", lambda c, t, prev: c.set(
        t, color=("color", image(c.encode_color(c.rgb[::2, ::2].copy()), split_stamp(t)))))

    for enc in DEPTH_ENCODINGS:
        add(f"depth_encoding/{enc!r}", lambda c, t, prev, e=enc: c.set(t, depth=c.depth(t, encoding=e)))
    add("depth_buffer/truncated_half", lambda c, t, prev: c.set(t, depth=c.depth(t, data=c.depth_fields["data"][:W * H])))
    add("depth_buffer/0x0", lambda c, t, prev: c.set(t, depth=c.depth(t, width=0, height=0, step=0, data=b"")))
    add("depth_buffer/claims_8000x8000", lambda c, t, prev: c.set(t, depth=c.depth(t, width=8000, height=8000, step=16000)))
    add("depth_buffer/step_short", lambda c, t, prev: c.set(t, depth=c.depth(t, step=W * 2 - 1)))
    add("depth_buffer/half_size_of_color", lambda c, t, prev: c.set(
        t, depth=("depth", image(c.encode_depth(c.depth_m[::2, ::2].copy()), split_stamp(t)))))

    def f32(value):
        a = np.full((H, W), value, np.float32)
        return {"width": W, "height": H, "encoding": "32FC1", "is_bigendian": 0, "step": W * 4, "data": a.tobytes()}

    for what, value in (("nan", math.nan), ("inf", math.inf), ("minus_inf", -math.inf), ("negative", -1.0),
                        ("zero", 0.0), ("1e30_m", 1e30)):
        add(f"depth_values/32FC1_all_{what}", lambda c, t, prev, v=value: c.set(t, depth=("depth", image(f32(v), split_stamp(t)))))
    half = np.full((H, W), 2.0, np.float32)
    half[: H // 2] = np.nan
    add("depth_values/32FC1_top_half_nan", lambda c, t, prev: c.set(t, depth=("depth", image(
        {**f32(0.0), "data": half.tobytes()}, split_stamp(t)))))
    add("depth_values/16UC1_all_zero", lambda c, t, prev: c.set(t, depth=c.depth(t, data=bytes(W * H * 2))))
    add("depth_values/16UC1_big_endian", lambda c, t, prev: c.set(t, depth=c.depth(
        t, is_bigendian=1, data=np.full((H, W), 2000, ">u2").tobytes())))

    def k_with(**at):
        def build(c, t, prev):
            k = list(c.info_fields["k"])
            for i, v in at.items():
                k[int(i[1:])] = v
            return c.set(t, info=c.info(t, k=k))
        return build

    for what, at in (("fx_zero", {"k0": 0.0}), ("fx_negative", {"k0": -20.0}), ("fx_nan", {"k0": math.nan}),
                     ("fy_inf", {"k4": math.inf}), ("cx_nan", {"k2": math.nan}), ("fx_1e-12", {"k0": 1e-12}),
                     ("fx_1e12", {"k0": 1e12}), ("skew", {"k1": 5.0}), ("k22_zero", {"k8": 0.0})):
        add(f"camera_info/{what}", k_with(**at))
    add("camera_info/k_all_zero", lambda c, t, prev: c.set(t, info=c.info(t, k=[0.0] * 9)))
    add("camera_info/size_64x48_for_32x24_images", lambda c, t, prev: c.set(t, info=c.info(t, width=64, height=48)))
    add("camera_info/size_0x0", lambda c, t, prev: c.set(t, info=c.info(t, width=0, height=0)))
    add("camera_info/fisheye_distortion", lambda c, t, prev: c.set(t, info=c.info(
        t, distortion_model="equidistant", d=[0.1, 0.01, 0.0, 0.0])))
    add("camera_info/d_nan", lambda c, t, prev: c.set(t, info=c.info(t, d=[math.nan] * 5)))
    add("camera_info/unknown_model_zero_d", lambda c, t, prev: c.set(t, info=c.info(t, distortion_model="nosuchmodel")))

    for what, position, q in (("position_nan", (math.nan, 0, 0), (0, 0, 0, 1)),
                              ("position_inf", (0, math.inf, 0), (0, 0, 0, 1)),
                              ("position_1e30", (1e30, 0, 0), (0, 0, 0, 1)),
                              ("quaternion_zero", (0, 0, 0), (0, 0, 0, 0)),
                              ("quaternion_w_2", (0, 0, 0), (0, 0, 0, 2)),
                              ("quaternion_norm_1.01", (0, 0, 0), (0, 0, 0, 1.01)),
                              ("quaternion_nan", (0, 0, 0), (math.nan, 0, 0, 1)),
                              ("quaternion_inf", (0, 0, 0), (0, 0, math.inf, 1)),
                              ("quaternion_norm_1+1e-5", (0, 0, 0), (0, 0, 0, 1 + 1e-5))):
        add(f"pose/{what}", lambda c, t, prev, p=position, q=q: c.set(t, pose=c.pose(t, p, q)))
    return kinds


def _learner_kinds() -> list[Kind]:
    kinds: list[Kind] = []

    def add(name, build):
        kinds.append(Kind(name, "learner", build))

    def uv(which, fn):
        def build(k, t, prev):
            uv1, uv2 = k.uv1.copy(), k.uv2.copy()
            fn(uv1 if which == 1 else uv2)
            return [k.pair(k.prev, k.t, k.rows(k.prev, uv1, uv2))]  # between the last two good keyframes
        return build

    def set_all(v):
        return lambda a: a.__setitem__(slice(None), v)

    def set_col(col, v, rows=slice(None)):
        return lambda a: a.__setitem__((rows, col), v)

    add("view_pair_uv/uv1_all_nan", uv(1, set_all(np.nan)))
    add("view_pair_uv/uv2_all_nan", uv(2, set_all(np.nan)))
    add("view_pair_uv/uv1_half_nan", uv(1, set_col(0, np.nan, slice(0, None, 2))))
    add("view_pair_uv/uv1_all_inf", uv(1, set_all(np.inf)))
    add("view_pair_uv/uv2_all_minus_inf", uv(2, set_all(-np.inf)))
    add("view_pair_uv/uv1_x_1e6", uv(1, set_col(0, 1e6)))
    add("view_pair_uv/uv1_negative", uv(1, set_all(-10.0)))
    add("view_pair_uv/uv2_y_at_height", uv(2, set_col(1, float(KH))))
    add("view_pair_uv/uv2_half_outside", uv(2, set_col(0, 1e4, slice(0, None, 2))))

    def rows_with(**vals):
        def build(k, t, prev):
            rows = k.rows(k.prev)
            for name, v in vals.items():
                rows[name] = v(k) if callable(v) else v
            return [k.pair(k.prev, k.t, rows)]
        return build

    add("view_pair_stamps/src_nan", rows_with(src_stamp=np.nan))
    add("view_pair_stamps/src_after_dst", rows_with(src_stamp=lambda k: k.t + 1.0))
    add("view_pair_stamps/src_equals_dst", rows_with(src_stamp=lambda k: k.t))
    add("view_pair_stamps/src_unknown", rows_with(src_stamp=lambda k: k.prev - 0.05))
    add("view_pair_stamps/dst_unknown_older", lambda k, t, prev: [k.pair(k.prev - 0.3, k.prev - 0.05)])
    add("view_pair_stamps/dst_unknown_future", lambda k, t, prev: [k.pair(k.prev, k.t + 5.0123)])  # off the 0.1 s grid
    add("view_pair_stamps/dst_2038", lambda k, t, prev: [k.pair(k.prev, (Y2038, 0))])
    add("view_pair_stamps/duplicate_of_the_last_pair", lambda k, t, prev: [k.pair(k.prev, k.t)])
    add("view_pair_iou/nan", rows_with(iou=np.nan))
    add("view_pair_iou/2", rows_with(iou=2.0))
    add("view_pair_iou/negative", rows_with(iou=-0.5))

    from regconsist_ros.ros.pair_msg import FIELDS

    def fields(f):
        return lambda k, t, prev: [k.pair(k.prev, k.t, fields=f)]

    def over(**o):
        return lambda k, t, prev: [k.pair(k.prev, k.t, **o)]

    add("view_pair_cloud/fields_renamed", fields([("x",) + tuple(FIELDS[0][1:])] + FIELDS[1:]))
    add("view_pair_cloud/fields_missing_iou", fields(FIELDS[:-1]))
    add("view_pair_cloud/fields_reordered", fields([FIELDS[1], FIELDS[0]] + FIELDS[2:]))
    add("view_pair_cloud/point_step_short", over(point_step=24))
    add("view_pair_cloud/is_bigendian", over(is_bigendian=True))
    add("view_pair_cloud/empty", lambda k, t, prev: [k.pair(k.prev, k.t, k.rows(k.prev)[:0])])
    add("view_pair_cloud/claims_2^31_points", over(width=2**31))
    add("view_pair_cloud/two_rows", lambda k, t, prev: [k.pair(k.prev, k.t, height=2, width=len(k.uv1) // 2,
                                                                 rows=k.rows(k.prev)[: len(k.uv1) // 2 * 2])])

    def truncated(k, t, prev):
        m = k.pair(k.prev, k.t)
        raw = base64.b64decode(m[1]["data"]["b64"])
        m[1]["data"] = _b64(raw[: len(raw) // 2 + 3])
        return [m]

    def extra(k, t, prev):
        m = k.pair(k.prev, k.t)
        m[1]["data"] = _b64(base64.b64decode(m[1]["data"]["b64"]) + bytes(64))
        return [m]

    add("view_pair_cloud/truncated_data", truncated)
    add("view_pair_cloud/extra_bytes", extra)

    n = KW * KH * 3
    mid = 0.5 * PERIOD  # a bad keyframe comes between two good ones (t is the last good keyframe's stamp)
    add("keyframe/encoding_yuv422", lambda k, t, prev: [k.keyframe(t + mid, encoding="yuv422")])
    add("keyframe/truncated_half", lambda k, t, prev: [k.keyframe(t + mid, data=k.fields["data"][: n // 2])])
    add("keyframe/0x0", lambda k, t, prev: [k.keyframe(t + mid, width=0, height=0, step=0, data=b"")])
    add("keyframe/claims_8000x8000", lambda k, t, prev: [k.keyframe(t + mid, width=8000, height=8000, step=24000)])
    add("keyframe/stamp_1970", lambda k, t, prev: [k.keyframe((0, 0))])
    add("keyframe/stamp_duplicate", lambda k, t, prev: [k.keyframe(t)])
    add("keyframe/stamp_2038", lambda k, t, prev: [k.keyframe((Y2038, 0))])  # last: what it does lasts
    return kinds


def catalog(nodes: tuple[str, ...] = ("registration", "learner")) -> list[Kind]:
    """Every bad-input kind of the section, registration's first."""
    out = []
    if "registration" in nodes:
        out += _registration_kinds()
    if "learner" in nodes:
        out += _learner_kinds()
    return out


# ---- reading the nodes' counters ---------------------------------------------------------------------
def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def counted_values(node: str, status: dict) -> dict[str, float]:
    """The counters whose increase means "dropped and counted" (module docstring)."""
    lost = [k for k in status if k.startswith("lost.") and k.endswith(".sequence_gap")]  # message_lost is among them
    if node == "registration":
        keys = [k for k in status if k.startswith("dropped.")] + lost
    else:
        keys = lost + [k for k in status if k.startswith(("messages.dropped.", "ingest.dropped."))
                       or k in ("received.view_pairs_unjoined", "received.view_pair_points_non_finite",
                         "received.view_pair_points_outside")]
    return {k: _num(status[k]) for k in keys}


def _increase(before: dict, after: dict) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in after.items() if v > before.get(k, 0.0)}


def _lost(status: dict, prefix: str = "lost.") -> int:
    return int(sum(_num(v) for k, v in status.items() if k.startswith(prefix) and k.endswith(".sequence_gap")))


# ---- the run -----------------------------------------------------------------------------------------
class _Peer:
    """The fuzz_peer process: JSON commands in, JSON replies out."""

    def __init__(self, env: dict, log: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "regconsist_ros.ros.fuzz_peer"], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"),
                                     start_new_session=True)

    def call(self, op: str, check: bool = True, **kw) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fuzz peer exited ({self.proc.wait()}) during {op!r}")
        out = json.loads(line)
        if check and not out.get("ok"):
            raise RuntimeError(f"fuzz peer {op}: {out.get('error')}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


REG_PARAMS = {"keyframes.min_translation": 0.0, "keyframes.min_rotation_deg": 0.0, "keyframes.candidates": 2,
              "qos.depth": 50, "threads": 1}
LEARNER_NS = "/fuzz"
LEARNER_PARAMS = {"learner.objectives": ["regconsist"], "learner.store_height": 32, "learner.store_width": 48,
                  "learner.min_pairs": 1_000_000, "regconsist.encoder.width": 0.25,
                  "regconsist.encoder.aspp_channels": 32, "regconsist.encoder.decoder_channels": 32,
                  "regconsist.trainer.threads": 1, "tensorboard": False, "scalars": False, "qos.depth": 100}
STATUS = {"registration": "registration: status", "learner": "learner: status"}


class _Nodes:
    def __init__(self, tmp: Path, env: dict):
        from regconsist_ros.up import node_command

        self.tmp, self.env, self.node_command = tmp, env, node_command
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}

    def start(self, node: str) -> None:
        if node == "registration":
            spec = {"params": REG_PARAMS, "remap": {}, "namespace": ""}
        else:
            spec = {"params": {**LEARNER_PARAMS, "learner.out_dir": str(self.tmp / "learner")}, "remap": {},
                    "namespace": LEARNER_NS}
        self.starts[node] = self.starts.get(node, 0) + 1
        log = (self.tmp / f"{node}.log").open("a")
        self.procs[node] = subprocess.Popen(self.node_command(node, spec), env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self, node: str) -> bool:
        return self.procs[node].poll() is None

    def log_tail(self, node: str, n: int = 2000) -> str:
        p = self.tmp / f"{node}.log"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def stop_all(self) -> dict[str, int]:
        import signal

        codes = {}
        for name, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait()
        return codes


def _wait_status(peer: _Peer, name: str, cond, timeout: float, nodes: _Nodes, node: str) -> tuple[dict, bool]:
    """Poll until the latest status of ``name`` satisfies ``cond``; -> (status, satisfied)."""
    end = time.monotonic() + timeout
    st = {}
    while True:
        r = peer.call("poll", seconds=0.1)
        st = r["status"].get(name, {})
        if cond(st, r):
            return st, True
        if time.monotonic() > end or not nodes.alive(node):
            return st, False


def _match(peer: _Peer, nodes: _Nodes, names, timeout: float) -> None:
    """Wait until the nodes subscribe to every publisher of the peer; a node that exits meanwhile is an error."""
    end = time.monotonic() + timeout
    while not peer.call("match", check=False, match_timeout=1.0)["ok"]:
        dead = [n for n in names if not nodes.alive(n)]
        if dead or time.monotonic() > end:
            what = f"the {dead[0]} node exited" if dead else f"no subscriber within {timeout:g} s"
            raise RuntimeError(f"{what}:\n" + "\n".join(nodes.log_tail(n) for n in (dead or names)))


def bench_fuzz_messages(nodes_under_test: tuple[str, ...] = ("registration", "learner"), good: int = 2,
                        limit: int = 0, seed: int = 0, startup_timeout: float = 180.0, progress=None,
                        keep: bool = False) -> dict:
    """Run :func:`catalog` (its first ``limit`` kinds per node when > 0) against the nodes; the section's dict."""
    import shutil
    import tempfile

    from regconsist_ros.ros.qos import discovery_env

    tmp = Path(tempfile.mkdtemp(prefix="regconsist-fuzz-messages-"))
    env = discovery_env("localhost", dict(os.environ))
    env.update({"ROS_DOMAIN_ID": os.environ.get("REGCONSIST_FUZZ_DOMAIN") or str(random.Random(time.time_ns()).randint(1, 200)),
                "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    kinds = [k for k in catalog(nodes_under_test)]
    if limit > 0:
        kinds = [k for n in nodes_under_test for k in [x for x in kinds if x.node == n][:limit]]
    nodes = _Nodes(tmp, env)
    peer = None
    rows, controls = [], []
    t_start = time.monotonic()
    try:
        for n in nodes_under_test:
            nodes.start(n)
        peer = _Peer(env, tmp / "peer.log")
        pubs, watch = {}, {}
        if "registration" in nodes_under_test:
            pubs.update({"color": ["Image", "camera/color/image_raw", 50],
                         "depth": ["Image", "camera/aligned_depth_to_color/image_raw", 50],
                         "info": ["CameraInfo", "camera/color/camera_info", 50],
                         "pose": ["PoseStamped", "camera/pose", 50]})
            watch["kf"] = ["Image", "registration/keyframe/image_raw"]
        if "learner" in nodes_under_test:
            pubs.update({"keyframe": ["Image", f"{LEARNER_NS}/registration/keyframe/image_raw", 100],
                         "pair": ["PointCloud2", f"{LEARNER_NS}/registration/view_pairs", 100]})
        peer.call("init", check=False, publishers=pubs, watch=watch, match_timeout=0.0)
        _match(peer, nodes, nodes_under_test, startup_timeout)
        for n in nodes_under_test:  # each node's first status: it is up
            _, ok = _wait_status(peer, STATUS[n], lambda st, r: bool(st), startup_timeout, nodes, n)
            if not ok:
                raise RuntimeError(f"the {n} node did not report on /diagnostics:\n{nodes.log_tail(n)}")
        setup_s = time.monotonic() - t_start
        t0 = time.time() - 30.0  # stamps start in the recent past and advance 0.1 s per set
        runners = {"registration": _RegistrationRun(peer, nodes, Camera(t0, seed), good),
                   "learner": _LearnerRun(peer, nodes, Keyframes(t0, seed + 1), good)}
        for n in nodes_under_test:
            runners[n].warm_up()
            for _ in range(2):
                controls.append({"kind": f"control/{n}_good_sets", "node": n, **runners[n].run(None)})
        for kind in kinds:
            row = {"kind": kind.name, "node": kind.node, **runners[kind.node].run(kind)}
            rows.append(row)
            if progress is not None:
                progress(row)
        codes = nodes.stop_all()
    finally:
        if peer is not None:
            peer.close()
        for p in nodes.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    out = summarize_messages(rows, controls)
    out.update({"good_sets_after_each": good, "node_starts": nodes.starts, "exit_codes": codes,
                "setup_s": round(setup_s, 1), "seconds": round(time.monotonic() - t_start, 1)})
    if keep:
        out["dir"] = str(tmp)
    return out


def summarize_messages(rows: list[dict], controls: list[dict]) -> dict:
    bad = [r for r in rows if r["crashed"] or r["uncounted"] or not r["next_good"]]
    per_node = {}
    for n in sorted({r["node"] for r in rows}):
        rs = [r for r in rows if r["node"] == n]
        per_node[n] = {"inputs": len(rs), "crashes": sum(r["crashed"] for r in rs),
                       "uncounted_drops": sum(r["uncounted"] for r in rs),
                       "next_good_failures": sum(not r["next_good"] for r in rs),
                       "counted": sum(r["counted"] for r in rs), "accepted": sum(r["accepted"] for r in rs)}
    return {"inputs": len(rows), "crashes": sum(r["crashed"] for r in rows),
            "uncounted_drops": sum(r["uncounted"] for r in rows),
            "next_good_failures": sum(not r["next_good"] for r in rows),
            "accepted": [r["kind"] for r in rows if r["accepted"]],
            "failures": [r["kind"] for r in bad], "per_node": per_node,
            "controls_clean": all(not r["counted"] and not r["accepted"] and r["next_good"] and not r["crashed"]
                                  for r in controls),
            "controls": controls, "kinds": rows}


class _Run:
    node = ""

    def __init__(self, peer: _Peer, nodes: _Nodes, stream, good: int):
        self.peer, self.nodes, self.stream, self.good = peer, nodes, stream, good
        self.sent: dict[str, int] = {}
        self.status: dict = {}

    def publish(self, msgs) -> None:
        for key, _ in msgs:
            self.sent[key] = self.sent.get(key, 0) + 1
        self.peer.call("publish", msgs=msgs, gap=0.005)

    def restart(self) -> None:
        self.nodes.start(self.node)
        self.sent = {}  # the new process counts from zero
        _match(self.peer, self.nodes, [self.node], 120.0)
        heard = self.peer.call("poll", seconds=0.0)["heard"].get(STATUS[self.node], 0)
        self.status, ok = _wait_status(self.peer, STATUS[self.node],
                                       lambda st, r: r["heard"].get(STATUS[self.node], 0) > heard, 120.0,
                                       self.nodes, self.node)
        if not ok:
            raise RuntimeError(f"the {self.node} node did not come back after a crash:\n{self.nodes.log_tail(self.node)}")
        self.warm_up()

    def run(self, kind: Kind | None) -> dict:
        if not self.nodes.alive(self.node):
            self.restart()
        before = counted_values(self.node, self.status)
        row = self._run(kind)
        crashed = not self.nodes.alive(self.node)
        after = counted_values(self.node, self.status)
        reasons = _increase(before, after)
        row["counted"] = bool(reasons)
        row.update({"crashed": crashed, "reasons": reasons})
        row["uncounted"] = kind is not None and not crashed and not row["counted"] and not row["accepted"]
        if crashed:
            row["log_tail"] = self.nodes.log_tail(self.node)
            row["next_good"] = False
        return row


class _RegistrationRun(_Run):
    node = "registration"

    def warm_up(self, n: int = 5) -> None:
        for _ in range(n):
            self.publish(self.stream.set(self.stream.next()))
        self._settle(expect=n, good_stamps=[])

    def _settle(self, expect: int, good_stamps: list[float], timeout: float = 6.0) -> list[float]:
        """Wait for the good sets' keyframes, then for a status that has counted every message sent."""
        seen: list[float] = []
        end = time.monotonic() + timeout
        while good_stamps and time.monotonic() < end and self.nodes.alive(self.node):
            seen += self.peer.call("poll", seconds=0.1)["stamps"].get("kf", [])
            if all(any(abs(s - g) < 1e-6 for s in seen) for g in good_stamps):
                break
        base = _num(self.status.get("frames_registered"))
        got = sum(any(abs(s - g) < 1e-6 for s in seen) for g in good_stamps)

        def done(st, r):
            ok = all(_num(st.get(f"messages.{k}")) + _lost(st, f"lost.{k}.") >= n for k, n in self.sent.items())
            return ok and _num(st.get("frames_registered")) >= base + (got if good_stamps else expect) \
                and st.get("work_queue") == "0"

        self.status, _ = _wait_status(self.peer, STATUS[self.node], done, timeout, self.nodes, self.node)
        self._seen = seen
        return seen

    def _run(self, kind: Kind | None) -> dict:
        c = self.stream
        base = _num(self.status.get("frames_registered"))
        if kind is not None:
            t = c.next()
            self.publish(kind.build(c, t, c.prev))
        goods = [c.next() for _ in range(self.good)]
        for t in goods:
            self.publish(c.set(t))
        seen = self._settle(self.good, goods)
        used = sum(any(abs(s - g) < 1e-6 for s in seen) for g in goods)
        registered = int(_num(self.status.get("frames_registered")) - base)
        return {"accepted": registered > used, "next_good": used == len(goods), "registered": registered}


class _LearnerRun(_Run):
    node = "learner"

    def warm_up(self, n: int = 3) -> None:
        k = self.stream
        self.publish([k.keyframe(k.t)])
        for _ in range(n):
            self.publish(k.set(k.next()))
        self._settle()

    def _settle(self, timeout: float = 10.0) -> None:
        total = sum(self.sent.values())

        def done(st, r):
            return _num(st.get("messages.received")) + _lost(st) >= total

        self.status, _ = _wait_status(self.peer, STATUS[self.node], done, timeout, self.nodes, self.node)

    def _run(self, kind: Kind | None) -> dict:
        k = self.stream
        kf0, vp0 = _num(self.status.get("received.keyframes")), _num(self.status.get("received.view_pairs"))
        if kind is not None:
            self.publish(kind.build(k, k.t, k.prev))
        for _ in range(self.good):
            self.publish(k.set(k.next()))
        self._settle()
        kf = int(_num(self.status.get("received.keyframes")) - kf0)
        vp = int(_num(self.status.get("received.view_pairs")) - vp0)
        return {"accepted": kf + vp > 2 * self.good, "next_good": kf >= self.good and vp >= self.good,
                "keyframes_taken": kf, "view_pairs_taken": vp}
