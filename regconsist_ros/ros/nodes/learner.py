"""`learner`: trains encoders online from the stream, any registered method (``learner.objectives``).

Subscribes:

| topic | type | used by |
|---|---|---|
| ``camera/color/image_raw`` | sensor_msgs/Image | frame buffers of the frame-pair and clip methods (stored at ``learner.store_*``) |
| ``registration/keyframe/image_raw`` | sensor_msgs/Image | keyframes of the view-pair and flow-pair methods (regions computed once) |
| ``registration/view_pairs`` | sensor_msgs/PointCloud2 | view pairs (joined to keyframes by stamp) |

Parameters: this node's ``LearnerNodeConfig`` at the root, ``qos.*``, ``learner.*``, ``regions.*`` and
each trained method's settings tree (``rsp.*``, ``rsp.trainer.*``, ``rsp.encoder.*``, ``rsp.batch.*``:
the names of ``regconsist pretrain rsp``); a parameter of anything else is an error at start-up.

Publishes ``/diagnostics`` (buffers, steps, losses, checkpoints, drops) once per second, and with
``scalars`` (on by default) the same numbers as std_msgs/Float64 topics a plotting tool graphs
(rqt_plot, PlotJuggler, Foxglove; :class:`regconsist_ros.ros.viz_msgs.ScalarPublisher`):

| topic | published |
|---|---|
| ``learner/scalars/<method>/step``, ``learner/scalars/<method>/loss`` | after each training slice of the method: its step, then the loss of that step |
| ``learner/scalars/<method>/steps_per_s`` | once per second: the method's training steps per second since the last second |
| ``learner/scalars/<key>/...`` | once per second: every other number of the /diagnostics status (``buffers/frames``, ``rsp/last_checkpoint_step``, ``ingest/...``), its keys joined with ``/`` |

Callbacks only enqueue into a bounded queue; an ingest worker decodes and fills the replay buffers
(memory caps ``learner.frame_buffer_mb`` / ``learner.pair_buffer_mb``, oldest evicted) and a train
worker runs :meth:`OnlineLearner.train` in slices (CUDA with bf16 autocast when available, CPU
otherwise: ``<method>.trainer.device``). Checkpoints are atomic (``<learner.out_dir>/<method>/checkpoints/
step_*``: safetensors + JSON + optimizer/scheduler/RNG state), every ``<method>.trainer.ckpt_every``
steps and at shutdown (SIGINT/SIGTERM; the training slice in progress is waited for up to ``shutdown_timeout``
seconds, a second signal is ignored). ``<method>.trainer.keep_last`` bounds the disk: the newest checkpoints
stay, plus the one the evaluator is scoring; a checkpoint that cannot be written (full disk) is logged and
counted (``checkpoint_failures``) and training goes on. A restarted learner resumes each objective at its last checkpoint.
Scalars go to ``metrics.jsonl`` in each run directory, and to TensorBoard when it is installed.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from regconsist_ros.online.learner import LearnerConfig
from regconsist_ros.ros.qos import QosConfig

NAME = "learner"


@dataclass
class LearnerNodeConfig:
    """Queues and pacing of the learner node."""

    ingest_queue: int = field(default=64, metadata={"help": "messages waiting for the ingest worker (more are dropped as 'busy')"})
    ingest_queue_mb: float = field(default=512.0, metadata={"help": "MB of message data waiting for the ingest worker (more are dropped as 'busy'; a single larger message is still taken into an empty queue)"})
    train_slice: int = field(default=5, metadata={"help": "steps per train call between status updates"})
    max_steps: int = field(default=0, metadata={"help": "stop training after this many steps in total (0 = never)"})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard scalars when tensorboard is installed"})
    sources: tuple[str, ...] = field(default=("",), metadata={"help": "namespaces of the robots feeding this learner ('' = the node's own namespace), e.g. [/robot1, /robot2]"})
    shutdown_timeout: float = field(default=60.0, metadata={"help": "seconds the shutdown waits for the training slice in progress before the final checkpoint (then exit 1 without one)"})
    scalars: bool = field(default=True, metadata={"help": "publish every number of the status as std_msgs/Float64 on learner/scalars/<name> (loss and step after each slice, the rest once per second) for plotting tools"})

    def __post_init__(self):
        if self.ingest_queue < 1 or self.train_slice < 1 or self.max_steps < 0:
            raise ValueError(f"LearnerNodeConfig: ingest_queue, train_slice >= 1 and max_steps >= 0 needed, got "
                             f"{self.ingest_queue}, {self.train_slice}, {self.max_steps}")
        if not self.ingest_queue_mb > 0:
            raise ValueError(f"LearnerNodeConfig.ingest_queue_mb must be > 0 MB, got {self.ingest_queue_mb}")
        if not self.shutdown_timeout > 0:
            raise ValueError(f"LearnerNodeConfig.shutdown_timeout must be > 0 seconds, got {self.shutdown_timeout}")


def settings_schema(params: dict) -> list[tuple[str, type]]:
    """The groups of the learner's parameters for the parameter values ``params`` (``{name: value}``;
    its ``learner.objectives`` picks the method trees): what :func:`declare_settings` declares, without ROS."""
    from regconsist_ros.learning.runs import schema
    from regconsist_ros.registration.regions import RegionConfig

    objectives = params.get("learner.objectives") or ()
    if isinstance(objectives, str):
        objectives = [objectives]
    out = [("", LearnerNodeConfig), ("qos", QosConfig), ("learner", LearnerConfig), ("regions", RegionConfig)]
    for m in objectives:
        out += schema(m)
    return out


def declare_settings(node, params_mod):
    """Declare and read the learner's settings on ``node``: ``learner.*``, ``regions.*`` and, for each
    method of ``learner.objectives``, its settings tree ``<method>.*`` (defaults: :func:`online_recipe`).
    A parameter given to the node outside these (e.g. a setting of a method not trained) is an error.
    -> (LearnerConfig, {method: MethodRun}, RegionConfig)."""
    from regconsist_ros.learning.runs import MethodRun, schema
    from regconsist_ros.models.methods import methods
    from regconsist_ros.online.learner import online_recipe
    from regconsist_ros.registration.regions import RegionConfig

    params_mod.declare(node, LearnerConfig, "learner")
    params_mod.declare(node, RegionConfig, "regions")
    cfg = params_mod.read(node, LearnerConfig, "learner")
    runs = {}
    for m in cfg.objectives:
        base = online_recipe(m, cfg)
        params_mod.declare_groups(node, schema(m), base.groups())
        runs[m] = MethodRun.from_groups(m, params_mod.read_groups(node, schema(m)))

    def hint(name: str):
        head = name.split(".", 1)[0]
        if head in methods() and head not in cfg.objectives:
            return f"method {head} is not in learner.objectives {list(cfg.objectives)}"
        return None

    params_mod.reject_undeclared(node, "the learner", hint)
    return cfg, runs, params_mod.read(node, RegionConfig, "regions")


def build_learner(node, params_mod):
    """OnlineLearner from the node's parameters (:func:`declare_settings`)."""
    from regconsist_ros.online.learner import OnlineLearner

    cfg, runs, regions = declare_settings(node, params_mod)
    return OnlineLearner(cfg, runs, regions=regions, clock=lambda: node.get_clock().now().nanoseconds * 1e-9)


def make_node_class():
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from sensor_msgs.msg import Image, PointCloud2

    from regconsist_ros.online.counters import ByteBudget, DropCounter, LossCounter, TrainHealth
    from regconsist_ros.online.errors import BadInput
    from regconsist_ros.ros import convert, params
    from regconsist_ros.ros.diagnostics import status_array
    from regconsist_ros.ros.pair_msg import read_pair_cloud
    from regconsist_ros.ros.qos import make_qos, subscribe_counted
    from regconsist_ros.ros.viz_msgs import ScalarPublisher, scalar_items, topic_token

    class LearnerNode(Node):
        def __init__(self, **kwargs):
            from regconsist_ros.learning.trainer import dist_rank, init_distributed_from_env

            # under torchrun every rank is a learner node on the same topics; DDP averages their gradients
            distributed = init_distributed_from_env()
            self.rank = dist_rank()
            super().__init__(NAME if self.rank == 0 else f"{NAME}_rank{self.rank}", **kwargs)
            if distributed:
                import torch

                self.get_logger().info(f"rank {self.rank} of {torch.distributed.get_world_size()} (DDP)")
            params.declare(self, LearnerNodeConfig)
            params.declare(self, QosConfig, "qos")
            self.cfg = params.read(self, LearnerNodeConfig)
            qos = make_qos(params.read(self, QosConfig, "qos"))
            self.counter = DropCounter(logging.getLogger(f"regconsist.{NAME}"), NAME)
            self.learner = build_learner(self, params)
            for name, resumed in self.learner.resumed.items():
                step = self.learner.runs[name].step
                self.get_logger().info(f"{name}: {'resumed at step ' + str(step) if resumed else 'starting from scratch'}"
                                       f" on {self.learner.runs[name].device}")
            self.writer = self._tensorboard() if self.cfg.tensorboard and self.rank == 0 else None
            self.inbox: queue.Queue = queue.Queue(maxsize=self.cfg.ingest_queue)
            self.inbox_bytes = ByteBudget(self.cfg.ingest_queue_mb)  # message data waiting in the inbox
            self.stop = threading.Event()
            self.health = TrainHealth()  # train_error (cleared on recovery), checkpoints that could not be written
            self.losses = LossCounter()  # messages lost before the callbacks (lost.<stream>.* on /diagnostics)
            for src in self.cfg.sources or ("",):
                pre = f"{src.rstrip('/')}/" if src else ""
                for msg_type, topic, kind in ((Image, "camera/color/image_raw", "frame"),
                                              (Image, "registration/keyframe/image_raw", "keyframe"),
                                              (PointCloud2, "registration/view_pairs", "pair")):
                    subscribe_counted(self, msg_type, pre + topic, lambda m, s=src, k=kind: self._enqueue(k, m, s),
                                      qos, self.losses, f"{pre}{kind}")
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.scalars = ScalarPublisher(self, "learner/scalars") if self.cfg.scalars and self.rank == 0 else None
            self._rate_from = None  # (monotonic time, {method: step}) of the last steps_per_s
            self.ingest = threading.Thread(target=self._ingest_loop, name="ingest", daemon=True)
            self.trainer = threading.Thread(target=self._train_loop, name="train", daemon=True)
            self.ingest.start()
            self.trainer.start()
            self.create_timer(1.0, self._diagnostics)

        def _tensorboard(self):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.get_logger().info("tensorboard is not installed: scalars go to metrics.jsonl only")
                return None
            return SummaryWriter(str(self.learner.out / "tensorboard"))

        def _enqueue(self, kind: str, msg, source: str = "") -> None:
            size = len(msg.data)
            if not self.inbox_bytes.take(size):
                self.counter.drop("busy", f"ingest queue over ingest_queue_mb={self.cfg.ingest_queue_mb:g} ({kind} dropped)")
                return
            try:
                self.inbox.put_nowait((kind, msg, source))
            except queue.Full:
                self.inbox_bytes.give(size)
                self.counter.drop("busy", f"ingest queue full ({kind} dropped)")

        def _ingest_loop(self) -> None:
            while not self.stop.is_set():
                try:
                    kind, msg, source = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                self.inbox_bytes.give(len(msg.data))
                try:
                    stamp = convert.stamp_to_sec(msg.header.stamp)
                    if kind == "pair":
                        p = read_pair_cloud(msg)
                        self.learner.add_view_pair(p["src_stamp"], p["dst_stamp"], p["uv1"], p["uv2"], p["iou"], source)
                    elif kind == "keyframe":
                        self.learner.add_keyframe(convert.decode_color_msg(msg), stamp, source)
                    else:
                        self.learner.add_frame(convert.decode_color_msg(msg), stamp, source)
                    self.counter.accept()
                except BadInput as e:
                    self.counter.drop(e.reason, e.message)
                except Exception as e:  # never let one message kill the learner
                    self.counter.drop("error", f"{type(e).__name__}: {e}")

        def _train_loop(self) -> None:
            while True:
                # all ranks stop together (DDP: a rank leaving mid-slice would block the others)
                if not self.learner.agree([not self.stop.is_set()])[0]:
                    break
                total = sum(t.step for t in self.learner.runs.values())
                if self.cfg.max_steps and total >= self.cfg.max_steps:
                    time.sleep(0.2)
                    continue
                done = self.health.step(lambda: self.learner.train(self.cfg.train_slice),
                                        lambda m: self.get_logger().error(m, throttle_duration_sec=10.0))
                if done is None:  # the slice raised: reported, tried again
                    time.sleep(1.0)
                    continue
                if not any(done.values()):
                    time.sleep(0.2)  # buffers not ready yet
                    continue
                if self.writer is not None:
                    for name, rows in self.learner.losses.items():
                        for step, loss in rows[-done.get(name, 0):] if done.get(name) else []:
                            self.writer.add_scalar(f"{name}/loss", loss, step)
                if self.scalars is not None:
                    for name, rows in self.learner.losses.items():
                        if done.get(name) and rows:
                            step, loss = rows[-1]
                            self.scalars.publish([(f"{topic_token(name)}/step", step), (f"{topic_token(name)}/loss", loss)])

        def _diagnostics(self) -> None:
            st = self.learner.status()
            st["messages"] = self.counter.snapshot()
            st["lost"] = self.losses.snapshot()
            st.update(self.health.status())
            st["inbox_mb"] = round(self.inbox_bytes.held / 1e6, 3)
            self.pub_diag.publish(status_array(self, f"{NAME}: status", st, level="error" if self.health.error else "ok"))
            if self.scalars is not None:
                self.scalars.publish(scalar_items(st, skip=tuple(f"{topic_token(m)}/{k}" for m in self.learner.runs for k in ("step", "loss")))
                                     + self._steps_per_s())

        def _steps_per_s(self) -> list[tuple[str, float]]:
            """``[(<method>/steps_per_s, rate)]`` since the previous call (none at the first)."""
            now, steps = time.monotonic(), {m: t.step for m, t in self.learner.runs.items()}
            last, self._rate_from = self._rate_from, (now, steps)
            if last is None or now <= last[0]:
                return []
            return [(f"{topic_token(m)}/steps_per_s", (steps[m] - last[1].get(m, steps[m])) / (now - last[0])) for m in steps]

        def shutdown(self) -> None:
            """Stop the workers and write a final checkpoint of every objective that trained. The slice in
            progress is waited for (``shutdown_timeout``); a trainer still busy after that gets no final
            checkpoint (its state is mid-step) and the error makes the process exit 1."""
            self.stop.set()
            self.trainer.join(timeout=self.cfg.shutdown_timeout)
            self.ingest.join(timeout=2.0)
            if self.trainer.is_alive():
                last = {n: self.learner._last_ckpt.get(n) for n in self.learner.runs}  # noqa: SLF001
                raise RuntimeError(f"the training slice did not end within shutdown_timeout="
                                   f"{self.cfg.shutdown_timeout:g} s: no final checkpoint (last complete: steps {last})")
            paths = self.learner.checkpoint()
            if self.writer is not None:
                self.writer.close()
            if paths:
                self.get_logger().info(f"final checkpoints: {paths}")
            import torch

            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    return LearnerNode


def main(args=None) -> int:
    from regconsist_ros.ros.runtime import run_node

    return run_node(make_node_class(), args)


if __name__ == "__main__":
    raise SystemExit(main())
