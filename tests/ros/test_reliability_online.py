"""Issue 18's failures of the online graph replayed against the real nodes (run alone: pytest -m reliability).

1. a set stamped 2038 and a pose 0.5 s ahead (they wedged registration), 2. NaN pixel coordinates on
registration/view_pairs (they made RegConsist batches fail), 3. shutdown while the pair worker is busy on
large frames, with the keyframes capped in bytes, 4. a burst beyond the DDS history: every message sent is
processed or counted.
"""
import json
import time

import numpy as np
import pytest

from tests.ros.test_registration import _camera_publishers, _diag

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
Y2038 = 2**31 - 1


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_a_set_stamped_2038_and_a_pose_from_the_future_do_not_wedge_registration(probe, nodes):
    from diagnostic_msgs.msg import DiagnosticArray

    from regconsist_ros.ros import convert
    from regconsist_ros.sim.frame import Intrinsics

    probe.subscribe(DiagnosticArray, "/diagnostics")
    proc = nodes.start("registration", {})
    pubs = _camera_publishers(probe)
    intr = Intrinsics.from_fov(32, 24, 90)
    rgb, depth, T = np.full((24, 32, 3), 90, np.uint8), np.full((24, 32), 2.0, np.float32), np.eye(4)
    t0 = time.time() - 30.0

    def send(t, pose_t=None, sec=None):
        msgs = [convert.camera_info_msg(intr, t, "cam"), convert.depth_msg(depth, t, "cam"),
                convert.pose_msg(T, t if pose_t is None else pose_t, "world"), convert.color_msg(rgb, t, "cam")]
        for key, m in zip(("info", "depth", "pose", "color"), msgs):
            if sec is not None:
                m.header.stamp.sec, m.header.stamp.nanosec = sec, 0
            pubs[key].publish(m)
        probe.spin_until(lambda: False, 0.03)

    def registered():
        return int(_diag(probe, "registration").get("frames_registered", 0))

    n = 0
    while registered() < 1 and n < 150:  # until the node takes sets: the sets sent before it matched are lost
        send(t0 + n / 30)
        n += 1
        probe.spin_until(lambda: registered() >= 1, 0.2)
    probe.spin_until(lambda: False, 1.5)
    warm, n0 = registered(), n  # sets registered while matching, sets sent by then
    assert warm >= 1, nodes.log("registration")
    for i in range(10):
        send(t0 + n / 30)
        n += 1
    send(0.0, sec=Y2038)  # one set stamped 2038-01-19
    for i in range(40):
        send(t0 + n / 30)
        n += 1
    send(t0 + n / 30, pose_t=t0 + n / 30 + 0.5)  # its pose stamped 0.5 s ahead
    n += 1
    for i in range(10):
        send(t0 + n / 30)
        n += 1
    ok = probe.spin_until(lambda: registered() >= warm + n - n0 - 1, timeout=30)
    probe.spin_until(lambda: False, 1.5)
    d = _diag(probe, "registration")
    assert ok, (d, nodes.log("registration"))
    # every good set registered: the one whose pose came early got a pose interpolated between its neighbours
    assert int(d["frames_registered"]) == warm + n - n0, d
    assert int(d.get("dropped.sync.stamp_jump", 0)) == 5, d  # 4 messages of the 2038 set + the early pose
    assert not any(k.startswith("dropped.sync.stamp_backwards") for k in d), d
    assert proc.poll() is None, nodes.log("registration")


def _pair_stream():
    from regconsist_ros.online.keyframes import KeyframeConfig, PairBuilder
    from regconsist_ros.sim.source import SimConfig, SimSource

    builder = PairBuilder(KeyframeConfig(min_translation=0.15))
    keyframes, pairs = [], []
    for f in SimSource(SimConfig(seed=0, frames=60, width=64, height=48, step=0.1)):
        got = builder.add(f)
        if builder.keyframes and builder.keyframes[-1] is f:
            keyframes.append(f)
        pairs += got
    return keyframes, pairs


def test_nan_view_pairs_are_counted_at_ingest_and_no_batch_fails(probe, nodes, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    from regconsist_ros.ros import convert
    from regconsist_ros.ros.pair_msg import pair_cloud

    keyframes, pairs = _pair_stream()
    assert len(pairs) >= 10, len(pairs)
    probe.subscribe(DiagnosticArray, "/diagnostics")
    params = {"learner.objectives": "[regconsist]", "learner.out_dir": str(tmp_path / "online"),
              "learner.store_height": 32, "learner.store_width": 48, "learner.min_pairs": 2,
              "learner.slice_steps": 2, "regconsist.batch.size": 2, "regconsist.batch.pixel_pairs": 64,
              "regconsist.encoder.width": 0.25, "regconsist.encoder.aspp_channels": 32,
              "regconsist.encoder.decoder_channels": 32, "regconsist.trainer.threads": 1,
              "regconsist.trainer.ckpt_every": 1000, "max_steps": 40, "tensorboard": False, "qos.depth": 200}
    proc = nodes.start("learner", params, extra_env={"OMP_NUM_THREADS": "1"})
    pub_kf = probe.node.create_publisher(Image, "registration/keyframe/image_raw", 100)
    pub_pairs = probe.node.create_publisher(PointCloud2, "registration/view_pairs", 100)
    assert probe.spin_until(lambda: pub_kf.get_subscription_count() and pub_pairs.get_subscription_count(), 120), \
        nodes.log("learner")
    for f in keyframes:
        pub_kf.publish(convert.color_msg(f.rgb, f.stamp, "cam"))
        probe.spin_until(lambda: False, 0.02)
    probe.spin_until(lambda: False, 1.0)
    nan_pairs = 0
    for k, p in enumerate(pairs):
        pub_pairs.publish(pair_cloud(p["uv1"], p["uv2"], p["src"].stamp, p["dst"].stamp, p["overlap_iou"], "cam"))
        if k % 4 == 0 and nan_pairs < 3:  # three NaN pairs among the good ones
            bad = np.full_like(p["uv1"], np.nan)
            pub_pairs.publish(pair_cloud(bad, p["uv2"], p["src"].stamp, p["dst"].stamp, p["overlap_iou"], "cam"))
            nan_pairs += 1
        probe.spin_until(lambda: False, 0.02)

    def trained():  # 40 steps, and every message sent taken in (or lost)
        d = _diag(probe, "learner")
        taken = int(d.get("messages.received", 0)) + sum(int(d.get(f"lost.{k}.sequence_gap", 0)) for k in ("keyframe", "pair"))
        return int(d.get("regconsist.step", 0)) >= 40 and taken >= len(keyframes) + len(pairs) + 3

    ok = probe.spin_until(trained, timeout=240)
    d = _diag(probe, "learner")
    assert ok, (d, nodes.log("learner"))
    assert int(d["ingest.dropped.view_pair_empty"]) == 3, d
    assert int(d["received.view_pair_points_non_finite"]) == sum(len(pairs[k]["uv1"]) for k in (0, 4, 8)), d
    # every pair message is accounted for: buffered, dropped by reason (here only the NaN ones), or lost
    buffered, unjoined = int(d["buffers.view_pairs"]), int(d["received.view_pairs_unjoined"])
    node_dropped = int(d.get("messages.dropped_total", 0))
    lost = int(d.get("lost.pair.sequence_gap", 0))
    assert buffered + 3 + unjoined + node_dropped + lost == len(pairs) + 3, d
    assert buffered >= len(pairs) - 5, d  # deep queues: (nearly) nothing lost
    assert not any(k.startswith("batches_failed.") for k in d), d
    assert "train_error" not in d, d
    assert proc.poll() is None, nodes.log("learner")


def test_shutdown_waits_for_a_busy_pair_worker_and_keyframes_are_capped_in_bytes(probe, nodes):
    """Two 2048x2048 frames (29 MB each as a Frame): the keyframe cap (40 MB) keeps one; SIGINT while the
    pair search runs: the node waits for it and exits 0, without 'terminate called without an active exception'."""
    from sensor_msgs.msg import Image

    from regconsist_ros.ros import convert
    from regconsist_ros.sim.frame import Intrinsics

    S = 2048
    probe.subscribe(Image, "registration/keyframe/image_raw", keep=2)
    proc = nodes.start("registration", {"keyframes.max_mb": 40.0, "view_pairs.iou_low": 0.0, "view_pairs.iou_high": 1.0,
                                        "max_points": 1000})
    pubs = _camera_publishers(probe)
    intr = Intrinsics.from_fov(S, S, 90)
    yy, xx = np.mgrid[0:S, 0:S]
    rgb = np.stack([(xx % 256), (yy % 256), ((xx + yy) % 256)], -1).astype(np.uint8)
    depth = np.full((S, S), 2.0, np.float32)
    t0 = time.time()
    rss0 = _rss_mb(proc.pid)
    for i in range(2):
        T = np.eye(4)
        T[0, 3] = 0.5 * i
        t = t0 + i / 30
        pubs["info"].publish(convert.camera_info_msg(intr, t, "cam"))
        pubs["depth"].publish(convert.depth_msg(depth, t, "cam"))
        pubs["pose"].publish(convert.pose_msg(T, t, "world"))
        pubs["color"].publish(convert.color_msg(rgb, t, "cam"))
        probe.spin_until(lambda: False, 0.2)
    ok = probe.spin_until(lambda: len(probe.msgs["registration/keyframe/image_raw"]) >= 2, timeout=120)
    assert ok, nodes.log("registration")
    rss1 = _rss_mb(proc.pid)
    t_int = time.monotonic()
    rc = nodes.stop(proc, timeout=120)
    waited = time.monotonic() - t_int
    log = nodes.log("registration")
    assert rc == 0, log
    assert "terminate called" not in log, log
    final = json.loads(log.split("final status:", 1)[1].splitlines()[0])
    assert final["builder.evicted"] >= 1 and final["keyframes_mb"] <= 40.0, final
    assert final["builder.keyframes"] == 2 and final["keyframes_kept"] == 1, final
    # the search of the second keyframe finished, or stopped before its correspondence
    assert final["pair_searches"]["done"] + final["builder.stopped"] >= 1, final
    print(f"RSS {rss0:.0f} MB before, {rss1:.0f} MB after two {S}x{S} frames; shutdown took {waited:.1f} s "
          f"(pair searches done {final['pair_searches']['done']}, stopped {final['builder.stopped']})")


def test_a_burst_is_processed_or_counted(probe, nodes):
    """A burst far beyond the keep-last history (depth 1 on both sides): every colour message sent is either
    seen by the callback or counted lost (publication sequence gaps), and every one seen is accounted for by
    the stamp matcher (dropped by reason or pending)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from regconsist_ros.ros import convert

    probe.subscribe(DiagnosticArray, "/diagnostics")
    proc = nodes.start("registration", {"qos.depth": 1})
    pub = probe.node.create_publisher(Image, "camera/color/image_raw", QoSProfile(depth=1))
    assert probe.spin_until(lambda: pub.get_subscription_count() > 0, 60), nodes.log("registration")
    rgb = np.full((6, 8, 3), 7, np.uint8)
    t0 = time.time() - 60
    pub.publish(convert.color_msg(rgb, t0, "cam"))
    assert probe.spin_until(lambda: int(_diag(probe, "registration").get("lost.color.received", 0)) >= 1, 30)
    n_burst = 3000
    start = time.monotonic()
    for i in range(1, n_burst + 1):
        pub.publish(convert.color_msg(rgb, t0 + i * 0.001, "cam"))
    burst_s = time.monotonic() - start
    probe.spin_until(lambda: False, 1.0)
    pub.publish(convert.color_msg(rgb, t0 + (n_burst + 1) * 0.001, "cam"))  # the last one reveals a trailing gap
    sent = n_burst + 2

    def settled():
        d = _diag(probe, "registration")
        return int(d.get("lost.color.received", 0)) + int(d.get("lost.color.sequence_gap", 0)) >= sent

    ok = probe.spin_until(settled, timeout=60)
    probe.spin_until(lambda: False, 1.5)
    d = _diag(probe, "registration")
    assert ok, (d, nodes.log("registration"))
    seen, gap = int(d["lost.color.received"]), int(d["lost.color.sequence_gap"])
    assert seen + gap == sent, d
    assert int(d["messages.color"]) == seen, d
    sync_dropped = sum(int(v) for k, v in d.items() if k.startswith("dropped.sync."))
    assert sync_dropped + int(d["sync_pending.color"]) == seen, d
    print(f"burst of {n_burst} in {burst_s:.2f} s: {seen} reached the callback, {gap} lost before it "
          f"(message_lost events: {d.get('lost.color.message_lost')})")
    assert proc.poll() is None, nodes.log("registration")
