"""QoS and DDS transport choices for the graph's topics (documented in the README's ROS section).

Large images between processes need a deliberate choice with the pip Fast DDS: best-effort over
the default UDP transport loses almost every 640x480 frame (fragments of a 900 KB sample are
dropped), while reliable delivery or Fast DDS's LARGE_DATA builtin transports (TCP + shared
memory) deliver them. ``regconsist bench transport`` measures each combination (docs/benchmarks.md).

Also here: subscriptions that count what is lost before their callback (:func:`subscribe_counted`)
and the discovery range of the graph's processes (:func:`discovery_env`: localhost by default).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TRANSPORTS = ("default", "large_data", "udpv4", "shm")
FASTDDS_ENV = "FASTDDS_BUILTIN_TRANSPORTS"


@dataclass
class QosConfig:
    """QoS of one stream (a ROS parameter group per node: ``qos.reliability``, ``qos.depth``, ...)."""

    reliability: Literal["reliable", "best_effort"] = field(default="reliable", metadata={"help": "reliable or best_effort"})
    depth: int = field(default=10, metadata={"help": "history depth (keep-last)"})
    durability: Literal["volatile", "transient_local"] = field(default="volatile", metadata={"help": "volatile or transient_local (late joiners get the last sample)"})

    def __post_init__(self):
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"QosConfig.reliability must be reliable or best_effort, got {self.reliability!r}")
        if self.durability not in ("volatile", "transient_local"):
            raise ValueError(f"QosConfig.durability must be volatile or transient_local, got {self.durability!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 1 <= self.depth <= 1000:
            raise ValueError(f"QosConfig.depth must be an integer in [1, 1000], got {self.depth!r}")


def make_qos(cfg: QosConfig):
    """An rclpy QoSProfile for ``cfg`` (imports rclpy: call from node code only)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=cfg.depth,
        reliability=ReliabilityPolicy.RELIABLE if cfg.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if cfg.durability == "transient_local" else DurabilityPolicy.VOLATILE)


def transport_env(transport: str, base: dict | None = None) -> dict:
    """Environment for a node process using Fast DDS builtin ``transport`` (``default`` leaves it unset).

    Must be set before the process creates its first participant (i.e. before ``rclpy.init``)."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    env = dict(os.environ if base is None else base)
    env.pop(FASTDDS_ENV, None)
    if transport != "default":
        env[FASTDDS_ENV] = {"large_data": "LARGE_DATA", "udpv4": "UDPv4", "shm": "SHM"}[transport]
    return env


def subscribe_counted(node, msg_type, topic: str, callback, qos, losses, stream: str | None = None):
    """``node.create_subscription`` whose messages and losses are counted in ``losses`` (a
    :class:`~regconsist_ros.online.counters.LossCounter`) under ``stream`` (default: the topic).

    Publication sequence numbers of each publisher reveal the messages that never reached the callback;
    the RMW's message-lost QoS event is subscribed to where it is supported (rmw_fastrtps_cpp reports
    it), and a logged note says so where it is not."""
    from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError

    stream = stream or topic

    def on_message(msg, info):
        gid = info.get("publisher_gid") or {}
        losses.seen(stream, bytes(gid.get("data", b"")), info.get("publication_sequence_number"))
        callback(msg)

    def on_lost(status):
        losses.lost(stream, status.total_count_change)

    try:
        return node.create_subscription(msg_type, topic, on_message, qos,
                                        event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))
    except UnsupportedEventTypeError:
        node.get_logger().info(f"{topic}: this RMW has no message-lost event; losses are counted from "
                               "sequence numbers only")
        losses.unsupported.add(stream)
        return node.create_subscription(msg_type, topic, on_message, qos)


# ---- discovery range ------------------------------------------------------------------------------------
NETWORKS = ("localhost", "subnet")
DISCOVERY_VARS = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")
OLD_DISTROS = ("foxy", "galactic", "humble")  # before ROS_AUTOMATIC_DISCOVERY_RANGE (Iron)
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
LOCALHOST_PROFILE = Path(__file__).with_name("fastdds_localhost.xml")


def is_localhost(env: dict) -> bool:
    """Whether ``env`` asks ROS 2 for discovery on this host only."""
    return env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST" or env.get("ROS_LOCALHOST_ONLY") == "1"


def socket_scope(env: dict) -> str:
    """Where the Fast DDS sockets of a process started with ``env`` listen, in words (``regconsist up`` prints it)."""
    profile = next((env[k] for k in PROFILE_VARS if env.get(k)), None)
    if profile == str(LOCALHOST_PROFILE):
        return "sockets on 127.0.0.1 only"
    return f"Fast DDS profile {profile}" if profile else "sockets on every interface"


def discovery_env(network: str | None = None, base: dict | None = None) -> dict:
    """Environment whose ROS 2 processes discover each other on this host only (``localhost``) or on
    the local network (``subnet``).

    ``network=None`` (the default of ``regconsist up`` and the launch files): localhost, unless the
    user already set ``ROS_AUTOMATIC_DISCOVERY_RANGE`` or ``ROS_LOCALHOST_ONLY`` (then as set). Sets
    ``ROS_AUTOMATIC_DISCOVERY_RANGE`` (Iron and later: LOCALHOST / SUBNET) or, where ``ROS_DISTRO``
    names an older distribution, ``ROS_LOCALHOST_ONLY`` (1 / 0).

    Localhost also gets the Fast DDS profile :data:`LOCALHOST_PROFILE` (``FASTDDS_DEFAULT_PROFILES_FILE``),
    which binds every listening socket to 127.0.0.1: the discovery range alone keeps the unicast ports on
    0.0.0.0, where another host that names this one as a static peer is discovered and can publish
    (measured, tests/ros/test_network.py). Not set when the user has a profile file of their own or the
    graph chose Fast DDS builtin transports (``FASTDDS_BUILTIN_TRANSPORTS``, e.g. LARGE_DATA, whose TCP and
    shared-memory transports a profile would replace): then only the discovery range applies."""
    env = dict(os.environ if base is None else base)
    if network is None and any(env.get(k) for k in DISCOVERY_VARS):
        network = "localhost" if is_localhost(env) else "subnet"
    else:
        network = network or "localhost"
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
        for k in DISCOVERY_VARS:
            env.pop(k, None)
        if env.get("ROS_DISTRO", "").lower() in OLD_DISTROS:
            env["ROS_LOCALHOST_ONLY"] = "1" if network == "localhost" else "0"
        else:
            env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = network.upper()
    if env.get(PROFILE_VARS[0]) == str(LOCALHOST_PROFILE):  # ours, from an earlier call: decided anew
        env.pop(PROFILE_VARS[0])
    if network == "localhost" and not env.get(FASTDDS_ENV) and not any(env.get(k) for k in PROFILE_VARS):
        env[PROFILE_VARS[0]] = str(LOCALHOST_PROFILE)
    return env
