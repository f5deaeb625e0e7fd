"""regconsist_ros: registration, learning, readout, CLI and the ROS glue (in ``regconsist_ros.ros``)."""
__version__ = "0.1.0"
