"""Discovery range of the graph's processes (issue 18.9): localhost by default, a switch for several machines."""
import io

import pytest

from regconsist_ros.ros.qos import discovery_env


def test_localhost_by_default_unless_the_user_chose():
    assert discovery_env(None, {})["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_LOCALHOST_ONLY" not in discovery_env(None, {"ROS_DISTRO": "kilted"})
    user = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert discovery_env(None, user) == user  # already set: left alone
    assert discovery_env(None, {"ROS_LOCALHOST_ONLY": "0"}) == {"ROS_LOCALHOST_ONLY": "0"}
    # an explicit choice replaces the user's setting
    assert discovery_env("localhost", user)["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert discovery_env("subnet", {})["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET"


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

    for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DISTRO"):
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


def test_cli_flag():
    from regconsist_ros.cli import build_parser

    a = build_parser().parse_args(["up", "robot", "--network", "subnet"])
    assert a.network == "subnet"
    assert build_parser().parse_args(["up", "robot"]).network is None
