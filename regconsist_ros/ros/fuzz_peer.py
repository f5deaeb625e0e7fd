"""A scripted ROS 2 participant for `regconsist bench fuzz`: publishes the messages it is told to, and
reports what it hears (the nodes' /diagnostics and the stamps of watched topics).

The bench (``regconsist_ros.bench.fuzz_messages``, which may not import rclpy) runs this module as a
process and talks to it in JSON lines: one command per line on stdin, one reply per line on stdout.
Messages are plain descriptions, any field value allowed (that is the point: they may be malformed)::

    {"type": "Image", "stamp": [sec, nanosec], "frame_id": "cam", "height": 24, "width": 32,
     "encoding": "rgb8", "is_bigendian": 0, "step": 96, "data": {"b64": "..."}}
    {"type": "CameraInfo", ..., "width", "height", "distortion_model", "k", "d", "p", "r"}
    {"type": "PoseStamped", ..., "position": [x, y, z], "orientation": [qx, qy, qz, qw]}
    {"type": "PointCloud2", ..., "height", "width", "fields": [[name, offset, datatype, count]],
     "is_bigendian", "point_step", "row_step", "is_dense", "data": {"b64": "..."}}

Commands (each answered with ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``):

- ``{"op": "init", "publishers": {key: [type, topic, depth]}, "watch": {key: [type, topic]},
  "match_timeout": s}``: create the publishers (reliable, keep-last ``depth``) and the watching
  subscriptions (reliable, keep-last 100); wait until every publisher has a subscriber;
- ``{"op": "match", "match_timeout": s}``: wait again until every publisher has a subscriber;
- ``{"op": "publish", "msgs": [[key, message], ...], "gap": s}``: publish in order, ``gap`` s apart;
- ``{"op": "poll", "seconds": s}``: spin ``s`` s; reply the latest /diagnostics values per status name
  (``status``), how many of each were heard (``heard``), and the stamps heard on each watched topic
  since the last poll (``stamps``, seconds);
- ``{"op": "close"}``.
"""
from __future__ import annotations

import base64
import json
import sys
import time


def _bytes(v) -> bytes:
    return base64.b64decode(v["b64"]) if isinstance(v, dict) else bytes(v)


def build_message(d: dict):
    """The ROS message a description stands for (module docstring)."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

    kind = d["type"]
    if kind == "Image":
        msg = Image(height=d["height"], width=d["width"], encoding=d["encoding"], is_bigendian=d["is_bigendian"],
                    step=d["step"])
        msg.data = _bytes(d["data"])
    elif kind == "CameraInfo":
        msg = CameraInfo(width=d["width"], height=d["height"], distortion_model=d["distortion_model"])
        msg.k, msg.p, msg.r = [float(x) for x in d["k"]], [float(x) for x in d["p"]], [float(x) for x in d["r"]]
        msg.d = [float(x) for x in d["d"]]
    elif kind == "PoseStamped":
        msg = PoseStamped()
        p, q = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = (float(x) for x in d["position"])
        q.x, q.y, q.z, q.w = (float(x) for x in d["orientation"])
    elif kind == "PointCloud2":
        msg = PointCloud2(height=d["height"], width=d["width"], is_bigendian=d["is_bigendian"],
                          point_step=d["point_step"], row_step=d["row_step"], is_dense=d["is_dense"])
        msg.fields = [PointField(name=n, offset=o, datatype=t, count=c) for n, o, t, c in d["fields"]]
        msg.data = _bytes(d["data"])
    else:
        raise ValueError(f"unknown message type {kind!r}")
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(d["stamp"][0]), int(d["stamp"][1])
    msg.header.frame_id = d.get("frame_id", "")
    return msg


def _type(name: str):
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    return {"Image": Image, "CameraInfo": CameraInfo, "PoseStamped": PoseStamped, "PointCloud2": PointCloud2,
            "DiagnosticArray": DiagnosticArray}[name]


class Peer:
    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node("fuzz_driver")
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self.pubs: dict = {}
        self.status: dict[str, dict] = {}
        self.heard: dict[str, int] = {}
        self.stamps: dict[str, list[float]] = {}
        from diagnostic_msgs.msg import DiagnosticArray

        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 100)

    def _on_diag(self, arr) -> None:
        for st in arr.status:
            self.status[st.name] = {kv.key: kv.value for kv in st.values}
            self.heard[st.name] = self.heard.get(st.name, 0) + 1

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.ex.spin_once(timeout_sec=max(0.0, min(0.05, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def init(self, publishers: dict, watch: dict | None = None, match_timeout: float = 60.0) -> dict:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        for key, (tname, topic, depth) in publishers.items():
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=ReliabilityPolicy.RELIABLE)
            self.pubs[key] = self.node.create_publisher(_type(tname), topic, qos)
        for key, (tname, topic) in (watch or {}).items():
            self.stamps[key] = []
            self.node.create_subscription(_type(tname), topic, lambda m, k=key: self.stamps[k].append(
                m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 100)
        return self.match(match_timeout)

    def match(self, match_timeout: float = 60.0) -> dict:
        """Wait until every publisher has a subscriber (again, after a node restart)."""
        end = time.monotonic() + match_timeout
        while time.monotonic() < end and not all(p.get_subscription_count() for p in self.pubs.values()):
            self.spin(0.1)
        matched = {k: p.get_subscription_count() for k, p in self.pubs.items()}
        if not all(matched.values()):
            return {"ok": False, "error": f"publishers without a subscriber after {match_timeout:g} s: "
                                          f"{sorted(k for k, n in matched.items() if not n)}"}
        return {"ok": True, "matched": matched}

    def publish(self, msgs: list, gap: float = 0.0) -> dict:
        for key, d in msgs:
            self.pubs[key].publish(build_message(d))
            self.spin(gap)
        return {"ok": True, "published": len(msgs)}

    def poll(self, seconds: float = 0.0) -> dict:
        self.spin(seconds)
        stamps = {k: v[:] for k, v in self.stamps.items()}
        for v in self.stamps.values():
            v.clear()
        return {"ok": True, "status": self.status, "heard": self.heard, "stamps": stamps}

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown()


def main() -> int:
    peer = Peer()
    reply = sys.stdout
    sys.stdout = sys.stderr  # anything else printed must not mix with the replies
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            op = cmd.pop("op")
            if op == "close":
                break
            try:
                out = getattr(peer, op)(**cmd) if op in ("init", "match", "publish", "poll") else {
                    "ok": False, "error": f"unknown op {op!r}"}
            except Exception as e:  # noqa: BLE001 - a bad description is the bench's error, reported to it
                out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            reply.write(json.dumps(out) + "\n")
            reply.flush()
    finally:
        peer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
