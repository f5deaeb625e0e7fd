"""ROS parameters come from the same dataclasses as the CLI; QoS and transport settings."""
import pytest

from regconsist_ros.ros.qos import QosConfig, transport_env


def _node(domain_id, overrides=None):
    import rclpy
    from rclpy.parameter import Parameter

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    params = [Parameter(k, value=v) for k, v in (overrides or {}).items()]
    node = rclpy.create_node("params_test", context=ctx, parameter_overrides=params)
    return node, ctx


def test_declare_and_read_round_trip_every_field_type(domain_id):
    import rclpy

    from regconsist_ros.ros import params
    from regconsist_ros.online.camera_source import CameraSourceConfig
    from regconsist_ros.sim.source import SimConfig

    node, ctx = _node(domain_id, {"sim.width": 80, "rate": 15.0, "depth_encoding": "32FC1", "loop": False})
    try:
        params.declare(node, CameraSourceConfig)
        params.declare(node, SimConfig, "sim")
        cfg = params.read(node, CameraSourceConfig)
        sim = params.read(node, SimConfig, "sim")
        assert cfg == CameraSourceConfig(rate=15.0, depth_encoding="32FC1", loop=False)
        assert sim == SimConfig(width=80)
        desc = node.describe_parameter("sim.width")
        assert "width" in desc.description
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_bad_parameter_values_raise_config_errors_naming_them(domain_id):
    import rclpy

    from regconsist_ros.config import ConfigError
    from regconsist_ros.ros import params
    from regconsist_ros.online.camera_source import CameraSourceConfig

    node, ctx = _node(domain_id, {"rate": -1.0, "depth_encoding": "8UC3"})
    try:
        params.declare(node, CameraSourceConfig)
        with pytest.raises(ConfigError, match="depth_encoding|rate"):
            params.read(node, CameraSourceConfig)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_registration_node_reads_view_pairs_parameters(domain_id):
    """PairSelectionConfig is the `view_pairs.*` group of the registration node (`pairs` means frame pairs)."""
    import rclpy
    from rclpy.parameter import Parameter

    from regconsist_ros.ros.nodes.registration import make_node_class

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = make_node_class()(context=ctx, parameter_overrides=[Parameter("view_pairs.iou_low", value=0.4),
                                                               Parameter("keyframes.candidates", value=3)])
    try:
        assert node.registrar.builder.pair_cfg.iou_low == 0.4 and node.registrar.builder.cfg.candidates == 3
        assert node.has_parameter("view_pairs.iou_high") and not node.has_parameter("pairs.iou_low")
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_qos_profiles_and_transport_environment():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from regconsist_ros.ros.qos import make_qos

    q = make_qos(QosConfig(reliability="best_effort", depth=3, durability="transient_local"))
    assert q.reliability == ReliabilityPolicy.BEST_EFFORT and q.depth == 3
    assert q.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert make_qos(QosConfig()).reliability == ReliabilityPolicy.RELIABLE
    with pytest.raises(ValueError, match="reliability"):
        QosConfig(reliability="sometimes")
    with pytest.raises(ValueError, match="depth"):
        QosConfig(depth=0)
    env = transport_env("large_data", {"FASTDDS_BUILTIN_TRANSPORTS": "SHM", "X": "1"})
    assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA" and env["X"] == "1"
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in transport_env("default", {"FASTDDS_BUILTIN_TRANSPORTS": "SHM"})
    with pytest.raises(ValueError, match="transport"):
        transport_env("carrier_pigeon")


def test_a_node_with_a_bad_parameter_exits_2_with_a_clear_message(nodes):
    proc = nodes.start("sim_camera", {"rate": -5.0})
    assert proc.wait(30) == 2
    assert "rate" in nodes.log("sim_camera") and "Traceback" not in nodes.log("sim_camera")


def test_pair_cloud_round_trip_and_rejects_other_clouds():
    import numpy as np
    from sensor_msgs.msg import PointCloud2

    from regconsist_ros.online.errors import BadInput
    from regconsist_ros.ros.pair_msg import pair_cloud, read_pair_cloud

    uv1 = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    uv2 = uv1 + 0.5
    msg = pair_cloud(uv1, uv2, 100.25, 101.5, 0.42, "cam")
    p = read_pair_cloud(msg)
    assert np.array_equal(p["uv1"], uv1) and np.array_equal(p["uv2"], uv2)
    assert p["src_stamp"] == 100.25 and p["dst_stamp"] == pytest.approx(101.5) and p["iou"] == pytest.approx(0.42)
    sub = read_pair_cloud(pair_cloud(uv1, uv2, 1.0, 2.0, 0.5, "cam", max_points=2, rng=np.random.default_rng(0)))
    assert len(sub["uv1"]) == 2
    with pytest.raises(BadInput):
        read_pair_cloud(PointCloud2())


def test_habitat_source_without_habitat_sim_exits_with_the_install_hint(nodes):
    proc = nodes.start("sim_camera", {"source": "habitat", "sim.width": 32, "sim.height": 24})
    assert proc.wait(60) == 2
    assert "habitat-sim is not installed" in nodes.log("sim_camera")
