"""ros2 launch regconsist_ros sim.launch.py: the 'sim' graph of config/graph.yaml (same as `regconsist up sim`)."""
from regconsist_ros.launch_description import launch_description


def generate_launch_description():
    return launch_description("sim")
