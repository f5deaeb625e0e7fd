"""ROS 2 launch descriptions built from config/graph.yaml (the definition `regconsist up` uses too).

For machines with a system ROS 2 (``launch`` and ``launch_ros`` are not installable from the
registries here, so this module is exercised with stand-in modules in the tests)::

    ros2 launch regconsist_ros sim.launch.py [graph_file:=/path/graph.yaml]
"""
from __future__ import annotations

import os


def _graph_file(share_dir: str | None) -> str:
    if share_dir:
        path = os.path.join(share_dir, "config", "graph.yaml")
        if os.path.isfile(path):
            return path
    from regconsist_ros.up import DEFAULT_GRAPH

    return str(DEFAULT_GRAPH)


def launch_description(graph: str, graph_file: str | None = None):
    """A LaunchDescription with one ``launch_ros`` Node per node of ``graph`` (params, remaps, namespace)."""
    from launch import LaunchDescription
    from launch.actions import SetEnvironmentVariable
    from launch_ros.actions import Node

    from regconsist_ros.ros.qos import FASTDDS_ENV
    from regconsist_ros.up import load_graph

    if graph_file is None:
        try:
            from ament_index_python.packages import get_package_share_directory

            share = get_package_share_directory("regconsist_ros")
        except Exception:  # running from a source checkout
            share = None
        graph_file = _graph_file(share)
    g = load_graph(graph, graph_file)
    actions = []
    transport = {"large_data": "LARGE_DATA", "udpv4": "UDPv4", "shm": "SHM"}.get(g["transport"])
    if transport:
        actions.append(SetEnvironmentVariable(FASTDDS_ENV, transport))
    for name, spec in g["nodes"].items():
        kw = {"namespace": spec["namespace"]} if spec["namespace"] else {}
        actions.append(Node(package="regconsist_ros", executable=name, name=name, output="screen",
                            parameters=[spec["params"]], remappings=list(spec["remap"].items()), **kw))
    return LaunchDescription(actions)
