"""ROS 2 test helpers: a unique domain per test, node processes, a plain rclpy probe node."""
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def domain_id():
    """A ROS_DOMAIN_ID no other test (or pytest worker) uses at the same time."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base = 1 + 50 * (int(worker[2:]) if worker[2:].isdigit() else 0) % 200
    return base + random.Random(os.getpid() * 1000 + time.time_ns()).randrange(50)


def start_node(module: str, domain: int, params: dict, log_path: Path, extra_env: dict | None = None,
               namespace: str = "") -> subprocess.Popen:
    """``python -m regconsist_ros.ros.nodes.<module> --ros-args [-r __ns:=NS] -p k:=v ...`` as its own process."""
    args = [sys.executable, "-m", f"regconsist_ros.ros.nodes.{module}", "--ros-args"]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    for k, v in params.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        args += ["-p", f"{k}:={v}"]
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), **(extra_env or {})}
    return subprocess.Popen(args, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


class Probe:
    """A plain rclpy node in its own context, as any ROS user would write one."""

    def __init__(self, domain: int, name: str = "probe"):
        import rclpy

        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.ctx)
        from rclpy.executors import SingleThreadedExecutor

        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.msgs: dict[str, list] = {}

    def subscribe(self, msg_type, topic: str, qos=10, keep: int = 1000):
        self.msgs[topic] = []

        def cb(m):
            if len(self.msgs[topic]) < keep:
                self.msgs[topic].append(m)

        self.node.create_subscription(msg_type, topic, cb, qos)

    def spin_until(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.05)
            if cond():
                return True
        return False

    def close(self):
        self.ex.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.ctx)


@pytest.fixture
def probe(domain_id):
    p = Probe(domain_id)
    yield p
    p.close()


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT, like Ctrl-C
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    return proc.returncode


class Nodes:
    """Node processes of one test; all stopped (SIGINT, then SIGKILL) at teardown."""

    def __init__(self, domain: int, tmp_path: Path):
        self.domain, self.tmp_path, self.procs = domain, tmp_path, {}

    def start(self, module: str, params: dict, name: str | None = None, extra_env: dict | None = None,
              namespace: str = "") -> subprocess.Popen:
        name = name or module
        proc = start_node(module, self.domain, params, self.tmp_path / f"{name}.log", extra_env, namespace)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text()[-3000:] if path.exists() else ""

    stop = staticmethod(stop)


@pytest.fixture
def nodes(domain_id, tmp_path):
    n = Nodes(domain_id, tmp_path)
    yield n
    for proc in n.procs.values():
        stop(proc)
