"""`regconsist bench transport`: do camera-sized images arrive between processes, and how fast?

A publisher process sends ``sensor_msgs/Image`` messages of the given size at the given rate
(header stamp = wall-clock send time, frame_id = sequence number), by default a colour + depth
pair per frame like a RealSense driver; this process subscribes and records, per colour message,
the latency (receive time - stamp). The result is the delivered fraction and
latency percentiles for one QoS + Fast DDS transport combination, as one JSON object.

Both processes use the same ``ROS_DOMAIN_ID`` (random unless set) and the same transport
environment. The publisher starts sending only after it has matched the subscriber plus a settle
time, so discovery is not counted as loss.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import numpy as np

from regconsist_ros.ros.qos import QosConfig, make_qos, transport_env

TOPIC = "bench/image_raw"
DEPTH_TOPIC = "bench/depth/image_raw"


def _publisher(width: int, height: int, rate: float, seconds: float, qos: QosConfig, settle: float, match_timeout: float,
               rgbd: bool = True) -> dict:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("transport_bench_pub")
    pub = node.create_publisher(Image, TOPIC, make_qos(qos))
    dpub = node.create_publisher(Image, DEPTH_TOPIC, make_qos(qos)) if rgbd else None
    pubs = [p for p in (pub, dpub) if p is not None]
    t0 = time.monotonic()
    while any(p.get_subscription_count() == 0 for p in pubs) and time.monotonic() - t0 < match_timeout:
        rclpy.spin_once(node, timeout_sec=0.05)
    matched = all(p.get_subscription_count() > 0 for p in pubs)
    time.sleep(settle)
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    payload = np.random.default_rng(0).integers(0, 255, height * width * 3, dtype=np.uint8)
    msg.data = payload.tobytes()
    dmsg = Image(height=height, width=width, encoding="16UC1", is_bigendian=0, step=width * 2)
    dmsg.data = payload[: height * width * 2].tobytes()
    n = int(round(rate * seconds))
    period = 1.0 / rate
    start = time.monotonic()
    sent = 0
    for i in range(n):
        target = start + i * period
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = str(i)
        if dpub is not None:
            dmsg.header.stamp = msg.header.stamp
            dmsg.header.frame_id = str(i)
            dpub.publish(dmsg)
        pub.publish(msg)
        sent += 1
    achieved = sent / max(1e-9, time.monotonic() - start)
    time.sleep(0.5)  # let reliable retransmissions finish before the participant goes away
    node.destroy_node()
    rclpy.shutdown()
    return {"sent": sent, "matched": matched, "publish_rate_hz": round(achieved, 2)}


def bench_transport(width: int = 640, height: int = 480, rate: float = 30.0, seconds: float = 5.0,
                    reliability: str = "reliable", depth: int = 10, transport: str = "default",
                    settle: float = 1.0, match_timeout: float = 15.0, rgbd: bool = True) -> dict:
    """Run a publisher subprocess and subscribe here; returns delivery and latency figures.

    With ``rgbd`` every frame is a colour image (rgb8) plus a depth image (16UC1) with the same
    stamp; a frame counts as delivered when both arrived."""
    qos = QosConfig(reliability=reliability, depth=depth)
    env = transport_env(transport)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 200)))
    for k in ("FASTDDS_BUILTIN_TRANSPORTS", "ROS_DOMAIN_ID"):  # this process: same settings, before rclpy.init
        if k in env:
            os.environ[k] = env[k]
        else:
            os.environ.pop(k, None)
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("transport_bench_sub")
    latencies: dict[int, float] = {}
    depth_seen: set[int] = set()
    bad = 0

    def on_image(msg: Image) -> None:
        nonlocal bad
        now = time.time_ns()
        if len(msg.data) != width * height * 3:
            bad += 1
            return
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies[int(msg.header.frame_id)] = (now - stamp) / 1e6

    node.create_subscription(Image, TOPIC, on_image, make_qos(qos))

    def on_depth(msg: Image) -> None:
        if len(msg.data) == width * height * 2:
            depth_seen.add(int(msg.header.frame_id))

    if rgbd:
        node.create_subscription(Image, DEPTH_TOPIC, on_depth, make_qos(qos))
    args = json.dumps({"width": width, "height": height, "rate": rate, "seconds": seconds, "qos": qos.__dict__,
                       "settle": settle, "match_timeout": match_timeout, "rgbd": rgbd})
    proc = subprocess.Popen([sys.executable, "-m", "regconsist_ros.ros.transport_bench", args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.05)
        end = time.monotonic() + 1.0  # drain
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        node.destroy_node()
        rclpy.shutdown()
    out, err = proc.communicate()
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"transport bench publisher failed (exit {proc.returncode}): {err.strip()[-800:]}")
    pub = json.loads(lines[-1])
    frames = [i for i in latencies if not rgbd or i in depth_seen]
    lat = np.array(sorted(latencies[i] for i in frames))
    received = len(frames)

    def pct(q):
        return round(float(np.percentile(lat, q)), 2) if len(lat) else None
    return {"bench": "transport", "width": width, "height": height, "rate_hz": rate, "seconds": seconds,
            "frame_bytes": width * height * (5 if rgbd else 3), "rgbd": rgbd, "reliability": reliability, "depth": depth,
            "transport": transport, "colour_received": len(latencies), "depth_received": len(depth_seen),
            "sent": pub["sent"], "received": received, "delivered": round(received / max(1, pub["sent"]), 4),
            "malformed": bad, "matched": pub["matched"], "publish_rate_hz": pub["publish_rate_hz"],
            "latency_ms_p50": pct(50), "latency_ms_p90": pct(90), "latency_ms_p99": pct(99), "latency_ms_max": pct(100),
            "domain_id": int(env["ROS_DOMAIN_ID"])}


if __name__ == "__main__":  # the publisher side
    a = json.loads(sys.argv[1])
    print(json.dumps(_publisher(a["width"], a["height"], a["rate"], a["seconds"], QosConfig(**a["qos"]), a["settle"],
                                a["match_timeout"], a["rgbd"])), flush=True)
