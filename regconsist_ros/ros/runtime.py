"""Running one node: rclpy init, clear configuration errors, clean shutdown on SIGINT/SIGTERM.

A node class may define ``shutdown()`` (e.g. the learner writes its final checkpoint there); it is
called once when the process is asked to stop, before the node is destroyed.
"""
from __future__ import annotations

import signal
import sys


def run_node(node_cls, args=None) -> int:
    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from regconsist_ros.config import ConfigError

    from rclpy.signals import SignalHandlerOptions

    # Our own signal handling: Ctrl-C/SIGTERM raise KeyboardInterrupt in the main thread, the node's
    # shutdown() stops its workers while the ROS context is still valid, then rclpy shuts down.
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = 0
    stop_signal = []

    def on_term(signum, frame):  # SIGTERM: shut down like Ctrl-C
        stop_signal.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        node = node_cls()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, ValueError, ParameterException, ImportError) as e:  # ImportError: an optional back-end
        name = getattr(node_cls, "__name__", "node")
        print(f"{name}: configuration error: {e}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            stop = getattr(node, "shutdown", None)
            if callable(stop):
                try:
                    stop()
                except Exception as e:  # never lose the rest of the shutdown
                    print(f"{node.get_name()}: error during shutdown: {e}", file=sys.stderr)
                    code = code or 1
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
