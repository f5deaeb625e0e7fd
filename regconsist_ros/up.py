"""`regconsist up sim|robot|eval`: start a node graph from config/graph.yaml as separate processes.

The same definition the ROS 2 launch files read (``launch`` is not installable from the registries
here). Each node runs as ``python -m regconsist_ros.ros.nodes.<node> --ros-args ...`` with the
graph's parameters and remappings, in one ROS domain and with the graph's Fast DDS transport. Logs
are forwarded with ``[node]`` prefixes. Ctrl-C / SIGTERM / ``--duration`` stop every node with
SIGINT (the learner writes its final checkpoint), then SIGKILL after ``grace`` seconds. The exit
status is non-zero when a node died on its own.

Discovery is localhost-only by default (``network=None``: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``,
or ``ROS_LOCALHOST_ONLY=1`` on distributions before Iron), unless the user's environment already
sets one of them; ``network="subnet"`` (``regconsist up --network subnet``) lets nodes on other
machines of the local network join (:func:`regconsist_ros.ros.qos.discovery_env`).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from regconsist_ros.config import ConfigError, config_dir, flatten, read_yaml, yaml_value

DEFAULT_GRAPH = config_dir() / "graph.yaml"


def load_graph(name: str, path: str | Path | None = None, overrides: list[str] | tuple = (),
               viewer: dict | None = None) -> dict:
    """``{"transport", "nodes": {node: {"params", "remap", "namespace"}}}`` of graph ``name``. A node's
    params may nest groups (``rsp: {trainer: {lr: 0.001}}``) or use dotted names (``rsp.trainer.lr``).
    ``viewer`` (parameters, e.g. ``{"serve": "web", "save": "run.rrd"}``): add the viewer node
    (:func:`add_viewer`) before the overrides, so that ``--set viewer.PARAM=VALUE`` applies to it."""
    from regconsist_ros.ros import NODES

    path = Path(path or DEFAULT_GRAPH)
    if not path.is_file():
        raise ConfigError(f"graph file {path} does not exist")
    doc = _mapping(read_yaml(path, "graph file"), f"{path}: the file")
    graphs = _mapping(doc.get("graphs"), f"{path}: graphs")
    if name not in graphs:
        raise ConfigError(f"{path}: no graph {name!r}; graphs: {sorted(map(str, graphs))}")
    nodes = {}
    for node, spec in _mapping(_mapping(graphs[name], f"{path}: graphs.{name}").get("nodes"),
                               f"{path}: graphs.{name}.nodes").items():
        if node not in NODES:
            raise ConfigError(f"{path}: graph {name!r} names unknown node {node!r}; nodes: {sorted(NODES)}")
        spec = _mapping(spec, f"{path}: graphs.{name}.nodes.{node}")
        unknown = set(spec) - {"params", "remap", "namespace"}
        if unknown:
            raise ConfigError(f"{path}: node {node!r} has unknown keys {sorted(unknown)} (params, remap, namespace)")
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: node {node!r}: params must be a mapping, got {type(params).__name__}")
        nodes[node] = {"params": flatten(params), "remap": _mapping(spec.get("remap"), f"{path}: node {node!r}: remap"),
                       "namespace": spec.get("namespace", "")}
    if not nodes:
        raise ConfigError(f"{path}: graph {name!r} has no nodes")
    if viewer is not None:
        add_viewer(nodes, _mapping(doc.get("viewer"), f"{path}: viewer"), viewer, f"{path}: viewer")
    elif "viewer" in nodes:  # a graph that lists the viewer itself: optional too
        nodes["viewer"]["optional"] = True
    from_file = {node: set(spec["params"]) for node, spec in nodes.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or node not in nodes:
            raise ConfigError(f"--set {item!r}: expected NODE.PARAM=VALUE with NODE one of {sorted(nodes)}")
        nodes[node]["params"][param] = yaml_value(value, f"--set {item!r}")
        from_file[node].discard(param)
    for node, spec in nodes.items():
        _drop_untrained(spec["params"], from_file[node])
    transport = doc.get("transport", "default")
    return {"name": name, "file": str(path), "transport": transport, "nodes": nodes}


def add_viewer(nodes: dict, defaults: dict, params: dict, where: str = "viewer") -> None:
    """Add the viewer node to ``nodes`` (or set ``params`` on the one the graph lists): the graph file's
    ``viewer: {params: ...}`` first, then ``params``; the registration node's remappings and namespace
    (the same camera topics). It starts first, and it is *optional*: :func:`up` goes on when it exits."""
    unknown = set(defaults) - {"params"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)} (params)")
    spec = nodes.get("viewer")
    if spec is None:
        like = nodes.get("registration") or nodes.get("learner") or {}
        spec = {"params": flatten(_mapping(defaults.get("params"), f"{where}.params")),
                "remap": dict(like.get("remap", {})), "namespace": like.get("namespace", "")}
        rest = dict(nodes)
        nodes.clear()
        nodes.update({"viewer": spec, **rest})  # started first: it sees the first frames and keyframes
    spec["params"].update(params)
    spec["optional"] = True


def _mapping(value, where: str) -> dict:
    """``value`` if it is a mapping (None: empty), else a ConfigError naming ``where`` and what it is."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got a {type(value).__name__}: {str(value)[:60]!r}")
    return value


def _drop_untrained(params: dict, from_file: set) -> None:
    """A graph file's settings of a method apply when the learner trains it: with
    ``learner.objectives`` overridden (``--set learner.learner.objectives=[rsp]``), the file's
    settings of the other methods are left out (a setting given with --set never is: the learner
    rejects it, naming it)."""
    objectives = params.get("learner.objectives")
    if not isinstance(objectives, (list, tuple)):
        return
    from regconsist_ros.models.methods import methods

    for key in [k for k in params if k in from_file]:
        head = key.split(".", 1)[0]
        if head in methods() and head not in objectives:
            del params[key]


def _ros_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_ros_value(x) if not isinstance(x, str) else json.dumps(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v) if (not v or any(c in v for c in " :,[]{}#")) else v
    return repr(v)


def node_command(node: str, spec: dict) -> list[str]:
    """The command line of one node process (its ROS arguments come from the graph)."""
    cmd = [sys.executable, "-m", f"regconsist_ros.ros.nodes.{node}", "--ros-args"]
    if spec.get("namespace"):
        cmd += ["-r", f"__ns:={spec['namespace']}"]
    for k, v in spec["params"].items():
        cmd += ["-p", f"{k}:={_ros_value(v)}"]
    for a, b in spec["remap"].items():
        cmd += ["-r", f"{a}:={b}"]
    return cmd


def _forward(name: str, stream, out, lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            out.write(f"[{name}] {line}" if line.endswith("\n") else f"[{name}] {line}\n")
            out.flush()


def up(graph: dict, duration: float = 0.0, grace: float = 120.0, domain_id: int | None = None, out=None,
       network: str | None = None) -> dict:
    """Run the graph until ``duration`` seconds pass (0 = until Ctrl-C/SIGTERM) or a node dies.
    ``network``: ``localhost`` / ``subnet`` discovery, or None (localhost unless the environment says)."""
    from regconsist_ros.ros.qos import DISCOVERY_VARS, discovery_env, socket_scope, transport_env

    out = out or sys.stdout
    env = discovery_env(network, transport_env(graph["transport"]))
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env["PYTHONUNBUFFERED"] = "1"
    lock = threading.Lock()
    out.write(f"[up] discovery: {', '.join(f'{k}={env[k]}' for k in DISCOVERY_VARS if k in env)}; "
              + socket_scope(env) + "\n")
    procs: dict[str, subprocess.Popen] = {}
    stopping = threading.Event()
    reason = {"why": "duration"}

    def on_signal(signum, frame):
        reason["why"] = signal.Signals(signum).name
        stopping.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    died: dict[str, int] = {}
    gone: dict[str, int] = {}  # optional nodes (the viewer) that exited: the graph goes on
    try:
        for name, spec in graph["nodes"].items():
            cmd = node_command(name, spec)
            with lock:
                out.write(f"[up] starting {name}: {' '.join(cmd[1:])}\n")
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                 start_new_session=True)  # our own SIGINT handling, not the terminal's
            procs[name] = p
            threading.Thread(target=_forward, args=(name, p.stdout, out, lock), daemon=True).start()
        while not stopping.is_set():
            if duration and time.monotonic() - t0 >= duration:
                break
            for name, p in procs.items():
                if p.poll() is not None and name not in died and name not in gone:
                    if graph["nodes"][name].get("optional"):
                        gone[name] = p.returncode
                        with lock:
                            out.write(f"[up] {name} exited (exit {p.returncode}): the graph goes on without it\n")
                    else:
                        died[name] = p.returncode
            if died:
                reason["why"] = f"node died: {', '.join(f'{n} (exit {c})' for n, c in died.items())}"
                break
            time.sleep(0.2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        codes = {}
        for name, p in procs.items():
            try:
                codes[name] = p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait()
                with lock:
                    out.write(f"[up] {name} did not stop within {grace:.0f} s: killed\n")
        for s, h in old.items():
            signal.signal(s, h)
    return {"graph": graph["name"], "stopped_by": reason["why"], "seconds": round(time.monotonic() - t0, 1),
            "exit_codes": codes, "died": died, **({"optional_exited": gone} if gone else {}),
            "ok": not died and all(c in (0, -2) for n, c in codes.items() if n not in gone)}
