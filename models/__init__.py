"""Networks and objectives (never imports rclpy)."""
