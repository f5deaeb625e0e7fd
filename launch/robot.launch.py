"""ros2 launch regconsist_ros robot.launch.py: the 'robot' graph of config/graph.yaml (same as `regconsist up robot`)."""
from regconsist_ros.launch_description import launch_description


def generate_launch_description():
    return launch_description("robot")
