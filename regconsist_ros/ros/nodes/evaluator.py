"""`evaluator`: watches the learner's checkpoints and runs readouts on each new one.

Publishes one ``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` per evaluated checkpoint
(status name ``evaluator: <objective>``, values: step, J, F, J&F, mIoU, seconds) plus a periodic
status, and appends every result as one JSON line to ``results`` (default
``<watch_dir>/eval_results.jsonl``). Only complete checkpoints are read (the learner renames a
finished temp directory into place), and a restarted evaluator skips what its results file holds.
A checkpoint that cannot be read, built or read out is quarantined (one result line with
``quarantined``: the reason) and the next one is evaluated.

With ``scalars`` (on by default) every number is also a std_msgs/Float64 on a topic of its own, for
plotting tools (rqt_plot, PlotJuggler, Foxglove; :class:`regconsist_ros.ros.viz_msgs.ScalarPublisher`):

| topic | published |
|---|---|
| ``evaluator/scalars/<objective>/step``, then ``evaluator/scalars/<objective>/<readout>/<name>`` | per result: e.g. ``rsp/propagation/JF_objects`` (the J&F headline), ``rsp/propagation/JF_mean``, ``rsp/segmentation/probe_miou``, ``regconsist/segmentation/miou``, ``rsp/bc/iqm_success``, ``rsp/seconds`` |
| ``evaluator/scalars/floors/<kind>/<floor>/<readout>/<name>`` | per floors result: e.g. ``floors/vit/pixels/propagation/JF_objects`` |
| ``evaluator/scalars/status/{evaluated,skipped,failed}`` | once per second |

Readouts run in a worker thread; the ROS executor stays responsive.
"""
from __future__ import annotations

import threading

from regconsist_ros.online.evaluator import EvaluatorConfig

NAME = "evaluator"


def result_scalars(row: dict) -> list[tuple[str, float]]:
    """``[(name, value)]`` of one result row's numbers under its objective, step first (``rsp/step``,
    ``rsp/propagation/JF_mean``, ...); a floors row's under ``floors/<kind>`` (``floors/vit/pixels/...``)."""
    from regconsist_ros.ros.viz_msgs import scalar_items, topic_token

    if row.get("objective") == "floors":
        return scalar_items({"floors": {topic_token(str(row.get("kind", ""))): row.get("floors", {})}})
    obj = topic_token(str(row.get("objective", "")))
    items = scalar_items({k: v for k, v in row.items() if k not in ("step", "time")})
    return [(f"{obj}/step", float(row["step"]))] + [(f"{obj}/{n}", v) for n, v in items]


def make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node

    from regconsist_ros.online.evaluator import Evaluator
    from regconsist_ros.ros import params
    from regconsist_ros.ros.diagnostics import status_array
    from regconsist_ros.ros.viz_msgs import ScalarPublisher, scalar_items

    class EvaluatorNode(Node):
        def __init__(self, **kwargs):
            super().__init__(NAME, **kwargs)
            params.declare(self, EvaluatorConfig)
            params.reject_undeclared(self, NAME)
            self.cfg = params.read(self, EvaluatorConfig)
            self.stop = threading.Event()
            self.evaluator = Evaluator(self.cfg, should_stop=self.stop.is_set)
            self.pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.scalars = ScalarPublisher(self, "evaluator/scalars") if self.cfg.scalars else None
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
            if self.scalars is not None:
                self.scalars.publish(result_scalars(row))
            self.get_logger().info(f"{row['objective']} step {row['step']}: "
                                   f"{ {k: row[k] for k in ('propagation', 'segmentation', 'error') if k in row} }")

        def _status(self) -> None:
            counts = {"evaluated": self.evaluated, "skipped": self.evaluator.skipped, "failed": self.evaluator.failed}
            self.pub.publish(status_array(self, f"{NAME}: status", {
                **counts, "results": str(self.cfg.results_path), **({"error": self.error} if self.error else {})},
                level="error" if self.error else "ok"))
            if self.scalars is not None:
                self.scalars.publish(scalar_items({"status": counts}))

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
