"""ROS 2 glue: the only package that imports rclpy.

``NODES`` maps each node executable (console script, ``ros2 run regconsist_ros <name>``) to its
module ``regconsist_ros.ros.nodes.<name>`` which defines the Node class and ``main()``.
setup.py reads this mapping as text to generate the console scripts.
"""
NODES = {
    "sim_camera": "camera source: embedded world or TUM replay, published like a RealSense driver",
    "registration": "synchronises RGB-D + pose, keeps keyframes, publishes view pairs with correspondences",
    "learner": "trains encoders online (RSP/MAE on frame pairs, RegConsist on view pairs), atomic checkpoints",
    "evaluator": "runs readouts on every new learner checkpoint, publishes and logs the results",
    "viewer": "logs the graph's streams to the Rerun viewer (browser or native) and/or an .rrd file",
}
