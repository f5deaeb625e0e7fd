"""Shared fixtures of the learning tests."""
import pytest

from regconsist_ros.cli import main


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    """A 16-frame 64x48 TUM sequence of apartment 3 (with labels), rendered once per test module."""
    out = tmp_path_factory.mktemp("seq") / "s"
    assert main(["sim", "render", "--sim.frames", "16", "--sim.width", "64", "--sim.height", "48", "--sim.seed", "3",
                 "--out", str(out), "--quiet"]) == 0
    return out
