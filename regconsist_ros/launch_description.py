"""ROS 2 launch descriptions built from config/graph.yaml (the definition `regconsist up` uses too).

With the ROS 2 ``launch`` libraries of a system install (they are not installable from the registries
here: tests/ros/test_launch.py runs the real ones when they are importable)::

    ros2 launch regconsist_ros sim.launch.py [graph_file:=/path/graph.yaml] [sigterm_timeout:=120]

Two places the node executables are found:

* **colcon install space** (the ament index knows ``regconsist_ros`` and has its executables in
  ``<prefix>/lib/regconsist_ros/``): one ``launch_ros`` ``Node`` per graph node, as usual;
* **pip path** (an editable or wheel install, no ament index, e.g. ``launch/sim.launch.py`` run from
  the checkout): one ``ExecuteProcess`` per node with the command ``regconsist up`` runs
  (``<this python> -m regconsist_ros.ros.nodes.<node> --ros-args -p ... -r ...``): only ``launch`` is needed.

Launch arguments: ``graph_file`` (default: the installed or checkout ``config/graph.yaml``) and
``sigterm_timeout`` (seconds between launch's SIGINT and its SIGTERM, default
:data:`SIGTERM_TIMEOUT`: long enough for the learner's final checkpoint; launch's own default of 5 s
is not). A node ignores the SIGTERM that comes while it is still shutting down (``ros.runtime``).
"""
from __future__ import annotations

import os

PACKAGE = "regconsist_ros"
# seconds from SIGINT to SIGTERM: the learner waits up to its shutdown_timeout (60 s) for the training
# slice in progress, then writes the final checkpoints; the evaluator lets a readout in progress finish
SIGTERM_TIMEOUT = 120.0


def _graph_file(share_dir: str | None) -> str:
    if share_dir:
        path = os.path.join(share_dir, "config", "graph.yaml")
        if os.path.isfile(path):
            return path
    from regconsist_ros.up import DEFAULT_GRAPH

    return str(DEFAULT_GRAPH)


def installed_prefix(nodes) -> str | None:
    """The colcon/ament install prefix of this package when the ament index has it together with every
    executable of ``nodes`` in ``<prefix>/lib/regconsist_ros/`` (else None: the pip path)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        prefix = get_package_prefix(PACKAGE)
    except (PackageNotFoundError, LookupError, ValueError, OSError, KeyError):
        return None  # no AMENT_PREFIX_PATH, or the package is not in it
    exe_dir = os.path.join(prefix, "lib", PACKAGE)
    if all(os.access(os.path.join(exe_dir, n), os.X_OK) for n in nodes):
        return prefix
    return None


def _share_dir() -> str | None:
    try:
        from ament_index_python.packages import get_package_share_directory

        return get_package_share_directory(PACKAGE)
    except Exception:  # not installed with colcon: the checkout's config/
        return None


def node_actions(graph: str, graph_file: str | None = None, sigterm_timeout: float | str = SIGTERM_TIMEOUT,
                 use_ament: bool | None = None) -> list:
    """The launch actions of ``graph``: the Fast DDS transport (when the graph sets one), the discovery range
    (localhost unless ``ROS_AUTOMATIC_DISCOVERY_RANGE``/``ROS_LOCALHOST_ONLY`` is set: :func:`discovery_env`) and one action per
    node (``launch_ros`` Node in an install space, ``ExecuteProcess`` on the pip path; ``use_ament`` forces
    one). Every node action gets ``sigterm_timeout``."""
    from launch.actions import SetEnvironmentVariable

    from regconsist_ros.ros.qos import DISCOVERY_VARS, FASTDDS_ENV, PROFILE_VARS, discovery_env, transport_env
    from regconsist_ros.up import load_graph, node_command

    g = load_graph(graph, graph_file or _graph_file(_share_dir()))
    timeout = str(float(sigterm_timeout))
    if use_ament is None:
        use_ament = installed_prefix(g["nodes"]) is not None
    actions = []
    transport = {"large_data": "LARGE_DATA", "udpv4": "UDPv4", "shm": "SHM"}.get(g["transport"])
    if transport:
        actions.append(SetEnvironmentVariable(FASTDDS_ENV, transport))
    # discovery on this host only unless the environment says otherwise, as `regconsist up` does
    env = discovery_env(None, transport_env(g["transport"]))
    for k in (*DISCOVERY_VARS, *PROFILE_VARS):
        if k in env and env[k] != os.environ.get(k):
            actions.append(SetEnvironmentVariable(k, env[k]))
    for name, spec in g["nodes"].items():
        if use_ament:
            from launch_ros.actions import Node

            kw = {"namespace": spec["namespace"]} if spec["namespace"] else {}
            actions.append(Node(package=PACKAGE, executable=name, name=name, output="screen",
                                parameters=[spec["params"]], remappings=list(spec["remap"].items()),
                                sigterm_timeout=timeout, **kw))
        else:
            from launch.actions import ExecuteProcess

            actions.append(ExecuteProcess(cmd=node_command(name, spec), name=name, output="screen",
                                          additional_env={"PYTHONUNBUFFERED": "1"}, sigterm_timeout=timeout))
    return actions


def launch_description(graph: str, graph_file: str | None = None):
    """A LaunchDescription of ``graph`` with the launch arguments ``graph_file`` and ``sigterm_timeout``
    (read when the launch runs: ``ros2 launch ... graph_file:=my.yaml``)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    def build(context):
        path = LaunchConfiguration("graph_file").perform(context) or None
        timeout = LaunchConfiguration("sigterm_timeout").perform(context)
        try:
            seconds = float(timeout)
        except ValueError:
            raise ValueError(f"sigterm_timeout:={timeout!r}: expected seconds (a number)") from None
        return node_actions(graph, path, seconds)

    return LaunchDescription([
        DeclareLaunchArgument("graph_file", default_value=graph_file or "",
                              description="node graph definition (default: config/graph.yaml of the package)"),
        DeclareLaunchArgument("sigterm_timeout", default_value=str(SIGTERM_TIMEOUT),
                              description="seconds between SIGINT and SIGTERM at shutdown (the learner's final "
                                          "checkpoint needs more than launch's default 5 s)"),
        OpaqueFunction(function=build),
    ])
