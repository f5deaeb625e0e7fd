"""ROS 2 glue: the only package that imports rclpy.

``NODES`` maps each node executable (console script, ``ros2 run regconsist_ros <name>``) to its
module ``regconsist_ros.ros.nodes.<name>`` which defines the Node class and ``main()``.
setup.py reads this mapping as text to generate the console scripts.
"""
NODES = {
}
