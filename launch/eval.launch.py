"""ros2 launch regconsist_ros eval.launch.py: the 'eval' graph of config/graph.yaml (same as `regconsist up eval`)."""
from regconsist_ros.launch_description import launch_description


def generate_launch_description():
    return launch_description("eval")
