"""QoS and DDS transport choices for the graph's topics (documented in the README's ROS section).

Large images between processes need a deliberate choice with the pip Fast DDS: best-effort over
the default UDP transport loses almost every 640x480 frame (fragments of a 900 KB sample are
dropped), while reliable delivery or Fast DDS's LARGE_DATA builtin transports (TCP + shared
memory) deliver them. ``regconsist bench transport`` measures each combination (docs/benchmarks.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
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
