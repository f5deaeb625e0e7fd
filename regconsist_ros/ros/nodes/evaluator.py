"""`evaluator`: watches the learner's checkpoints and runs readouts on each new one.

Publishes one ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` per evaluated checkpoint
(status name ``evaluator: <objective>``, values: step, J, F, J&F, mIoU, seconds) plus a periodic
status, and appends every result as one JSON line to ``results`` (default
``<watch_dir>/eval_results.jsonl``). Only complete checkpoints are read (the learner renames a
finished temp directory into place), and a restarted evaluator skips what its results file holds.
A checkpoint that cannot be read, built or read out is quarantined (one result line with
``quarantined``: the reason) and the next one is evaluated.
Readouts run in a worker thread; the ROS executor stays responsive.
"""
from __future__ import annotations

import threading

from regconsist_ros.online.evaluator import EvaluatorConfig

NAME = "evaluator"


def make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node

    from regconsist_ros.online.evaluator import Evaluator
    from regconsist_ros.ros import params
    from regconsist_ros.ros.diagnostics import status_array

    class EvaluatorNode(Node):
        def __init__(self, **kwargs):
            super().__init__(NAME, **kwargs)
            params.declare(self, EvaluatorConfig)
            params.reject_undeclared(self, NAME)
            self.cfg = params.read(self, EvaluatorConfig)
            self.stop = threading.Event()
            self.evaluator = Evaluator(self.cfg, should_stop=self.stop.is_set)
            self.pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.evaluated = 0
            self.last = None
            self.error = None
            self.worker = threading.Thread(target=self._loop, name="readouts", daemon=True)
            self.worker.start()
            self.create_timer(1.0, self._status)
            self.get_logger().info(f"watching {self.cfg.watch_dir}; results -> {self.cfg.results_path}")

        def _loop(self) -> None:
            while not self.stop.is_set():
                try:
                    self.evaluator.poll(on_row=self._publish)  # each row is published as soon as it is written
                except Exception as e:  # report and keep watching
                    self.error = f"{type(e).__name__}: {e}"
                    self.get_logger().error(f"readout failed: {self.error}", throttle_duration_sec=10.0)
                self.stop.wait(self.cfg.poll_s)

        def _publish(self, row: dict) -> None:
            self.evaluated += row.get("objective") != "floors"
            self.last = row
            self.pub.publish(status_array(self, f"{NAME}: {row['objective']}", row,
                                          level="warn" if "error" in row else "ok"))
            self.get_logger().info(f"{row['objective']} step {row['step']}: "
                                   f"{ {k: row[k] for k in ('propagation', 'segmentation', 'error') if k in row} }")

        def _status(self) -> None:
            self.pub.publish(status_array(self, f"{NAME}: status", {
                "evaluated": self.evaluated, "skipped": self.evaluator.skipped, "failed": self.evaluator.failed,
                "results": str(self.cfg.results_path), **({"error": self.error} if self.error else {})},
                level="error" if self.error else "ok"))

        def shutdown(self) -> None:
            """Let a readout in progress finish (its result is kept), then stop."""
            self.stop.set()
            self.worker.join(timeout=120.0)

    return EvaluatorNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
