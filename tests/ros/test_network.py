"""Discovery range of the graph's processes (issue 18.9): localhost by default, a switch for several machines;
in localhost mode no other host can publish to the graph (tested with a second host in a network namespace)."""
import io
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from regconsist_ros.ros.qos import LOCALHOST_PROFILE, discovery_env

PROFILE = "FASTDDS_DEFAULT_PROFILES_FILE"


def test_localhost_by_default_unless_the_user_chose():
    assert discovery_env(None, {})["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_LOCALHOST_ONLY" not in discovery_env(None, {"ROS_DISTRO": "kilted"})
    user = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert discovery_env(None, user) == user  # already set: left alone
    assert discovery_env(None, {"ROS_LOCALHOST_ONLY": "0"}) == {"ROS_LOCALHOST_ONLY": "0"}
    # an explicit choice replaces the user's setting
    assert discovery_env("localhost", user)["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert discovery_env("subnet", {})["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"


def test_localhost_binds_loopback_through_the_fast_dds_profile():
    assert discovery_env(None, {})[PROFILE] == str(LOCALHOST_PROFILE) and LOCALHOST_PROFILE.is_file()
    assert "127.0.0.1" in LOCALHOST_PROFILE.read_text()
    assert discovery_env(None, {"ROS_LOCALHOST_ONLY": "1"})[PROFILE] == str(LOCALHOST_PROFILE)
    assert PROFILE not in discovery_env("subnet", {})
    assert PROFILE not in discovery_env("subnet", discovery_env("localhost", {}))  # decided anew
    # the user's own profile, or LARGE_DATA's builtin transports (TCP + shared memory), are left alone
    assert discovery_env(None, {PROFILE: "/my.xml"})[PROFILE] == "/my.xml"
    assert PROFILE not in discovery_env(None, {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"})
    assert PROFILE not in discovery_env(None, {"FASTRTPS_DEFAULT_PROFILES_FILE": "/old.xml"})


def test_older_distributions_get_ros_localhost_only():
    env = discovery_env(None, {"ROS_DISTRO": "humble"})
    assert env["ROS_LOCALHOST_ONLY"] == "1" and "ROS_AUTOMATIC_DISCOVERY_RANGE" not in env
    assert discovery_env("subnet", {"ROS_DISTRO": "humble"})["ROS_LOCALHOST_ONLY"] == "0"
    with pytest.raises(ValueError, match="network"):
        discovery_env("internet", {})


@pytest.mark.parametrize("network, user, expect", [(None, {}, "LOCALHOST"), ("subnet", {}, "SUBNET"),
                                                   (None, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, "SUBNET")])
def test_up_starts_every_node_with_the_discovery_range(monkeypatch, network, user, expect):
    from regconsist_ros import up as up_mod

    for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DISTRO", PROFILE,
              "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in user.items():
        monkeypatch.setenv(k, v)
    envs = []

    class Proc:  # a node process that exits at once
        def __init__(self, cmd, env, **kw):
            envs.append(env)
            self.stdout, self.returncode = io.StringIO(""), 0

        def poll(self):
            return 0

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(up_mod.subprocess, "Popen", Proc)
    graph = up_mod.load_graph("eval")
    out = io.StringIO()
    up_mod.up(graph, duration=1.0, out=out, network=network)
    assert envs and all(e["ROS_AUTOMATIC_DISCOVERY_RANGE"] == expect for e in envs)
    assert f"discovery: ROS_AUTOMATIC_DISCOVERY_RANGE={expect}" in out.getvalue()
    assert all((e.get(PROFILE) == str(LOCALHOST_PROFILE)) == (expect == "LOCALHOST") for e in envs)
    assert ("sockets on 127.0.0.1 only" in out.getvalue()) == (expect == "LOCALHOST")


def test_cli_flag():
    from regconsist_ros.cli import build_parser

    a = build_parser().parse_args(["up", "robot", "--network", "subnet"])
    assert a.network == "subnet"
    assert build_parser().parse_args(["up", "robot"]).network is None


# ---- a second host: a network namespace joined to this one by a veth pair --------------------------------
PUBLISH = """
import rclpy, sys, time
from std_msgs.msg import String
rclpy.init(); n = rclpy.create_node("injector"); p = n.create_publisher(String, "inject", 10)
t = time.time()
while time.time() - t < float(sys.argv[1]):
    p.publish(String(data="from another host")); rclpy.spin_once(n, timeout_sec=0.05)
"""
LISTEN = """
import rclpy, sys, time
from std_msgs.msg import String
rclpy.init(); n = rclpy.create_node("graph_node"); got = []
n.create_subscription(String, "inject", lambda m: got.append(1), 10)
t = time.time()
while time.time() - t < float(sys.argv[1]):
    rclpy.spin_once(n, timeout_sec=0.05)
print("received", len(got))
"""


@pytest.fixture
def other_host():
    """(netns name, this host's address on the link): a second host that can reach this one over a veth pair."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 for a network namespace")
    tag = uuid.uuid4().hex[:6]
    ns, here, there = f"rcns{tag}", f"rch{tag}", f"rcp{tag}"
    octet = 10 + int(tag, 16) % 200
    cmds = [["ip", "netns", "add", ns], ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
            ["ip", "link", "set", there, "netns", ns], ["ip", "addr", "add", f"10.{octet}.0.1/24", "dev", here],
            ["ip", "link", "set", here, "up"],
            ["ip", "netns", "exec", ns, "ip", "addr", "add", f"10.{octet}.0.2/24", "dev", there],
            ["ip", "netns", "exec", ns, "ip", "link", "set", there, "up"],
            ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]]
    try:
        for c in cmds:
            r = subprocess.run(c, capture_output=True, text=True)
            if r.returncode:
                pytest.skip(f"no network namespace here: {' '.join(c)}: {r.stderr.strip()}")
        yield ns, f"10.{octet}.0.1"
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _received_from_other_host(other_host, domain_id, graph_env: dict) -> int:
    ns, addr = other_host
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", PROFILE, "FASTDDS_BUILTIN_TRANSPORTS")}
    attacker = {**clean, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
                "ROS_STATIC_PEERS": addr}  # it knows this host's address and names it as a peer
    inj = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PUBLISH, "9"], env=attacker,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = {**graph_env, "ROS_DOMAIN_ID": str(domain_id)}
        r = subprocess.run([sys.executable, "-c", LISTEN, "7"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.split()[-1])
    finally:
        inj.kill()
        inj.wait()


@pytest.mark.slow
def test_another_host_cannot_publish_to_a_localhost_graph(other_host, domain_id):
    clean = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", PROFILE)}
    subnet = _received_from_other_host(other_host, domain_id, discovery_env("subnet", clean))
    assert subnet > 0  # the control: the other host reaches a graph that listens on the network
    range_only = dict(discovery_env("localhost", clean))
    range_only.pop(PROFILE)
    leaked = _received_from_other_host(other_host, domain_id + 1, range_only)
    ours = _received_from_other_host(other_host, domain_id + 2, discovery_env(None, clean))
    print(f"messages from the other host: subnet {subnet}, LOCALHOST range alone {leaked}, localhost mode {ours}")
    assert ours == 0
