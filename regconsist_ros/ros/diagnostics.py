"""Node status as diagnostic_msgs/DiagnosticArray on /diagnostics (as ROS drivers report)."""
from __future__ import annotations

import json


def status_array(node, name: str, values: dict, level: str = "ok", message: str = ""):
    """One DiagnosticStatus ``name`` with ``values`` (nested dicts flattened to ``a.b`` keys)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    flat: dict[str, str] = {}

    def put(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                put(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, float):
            flat[prefix] = f"{v:.6g}"
        elif isinstance(v, (list, tuple)):
            flat[prefix] = json.dumps(v)
        else:
            flat[prefix] = str(v)

    put("", values)
    lv = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}[level]
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    arr.status = [DiagnosticStatus(level=lv, name=name, message=message, hardware_id=node.get_fully_qualified_name(),
                                   values=[KeyValue(key=k, value=v) for k, v in flat.items()])]
    return arr


def values_of(status) -> dict[str, str]:
    """A DiagnosticStatus' key/values as a dict (for subscribers and tests)."""
    return {kv.key: kv.value for kv in status.values}
