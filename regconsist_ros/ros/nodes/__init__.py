"""One module per ROS node: a thin Node class over the ROS-free core, and ``main()``."""
