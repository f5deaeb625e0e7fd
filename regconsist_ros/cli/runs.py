"""`regconsist bench ...`, `up`, `experiment ...` and `demo`: whole runs and their figures."""
from __future__ import annotations

import argparse

from regconsist_ros.cli.common import config_flag, output_flags, settings
from regconsist_ros.config import add_schema_arguments


# ---- bench ---------------------------------------------------------------------------------------------
def cmd_bench(a: argparse.Namespace) -> dict:
    if a.what == "bc":
        from regconsist_ros.bench.bc import bench_bc

        return bench_bc(task=a.task, size=a.size, crop=a.crop, n=a.n, seed=a.seed, episodes=a.episodes,
                        horizon=a.horizon, envs=a.envs, env_workers=a.env_workers, vit_size=a.vit_size,
                        vit_depth=a.vit_depth, sequential=not a.no_sequential)
    if a.what == "regions":
        from regconsist_ros.bench.regions import bench_regions

        return bench_regions(width=a.width, height=a.height, n=a.n, seed=a.seed)
    if a.what == "transport":
        from regconsist_ros.ros.transport_bench import bench_transport

        return bench_transport(width=a.width, height=a.height, rate=a.rate, seconds=a.seconds,
                               reliability=a.reliability, depth=a.qos_depth, transport=a.transport,
                               rgbd=not a.colour_only)
    if a.what == "registration":
        import yaml

        from regconsist_ros.bench.registration import bench_registration

        params = {}
        for item in a.set or ():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE")
            params[key] = yaml.safe_load(value)
        return bench_registration(rate=a.rate, seconds=a.seconds, width=a.width, height=a.height, load=a.load,
                                  frames=a.frames, speed=a.speed, seed=a.seed, drain=a.drain, keep=a.keep,
                                  params=params or None, transport=a.transport)
    if a.what == "odometry":
        from regconsist_ros.bench.odometry import bench_odometry

        return bench_odometry(width=a.width, height=a.height, n=a.n, seed=a.seed, worlds=tuple(a.worlds),
                              cases=tuple(a.paths), methods=tuple(a.methods), gap=a.gap, data=a.data)
    if a.what == "viewer":
        from regconsist_ros.bench.viewer import bench_viewer

        return bench_viewer(graph=a.graph, rounds=a.rounds, seconds=a.seconds, warmup=a.warmup, view=a.view,
                            save=not a.no_save, evaluator=a.evaluator, keep=a.keep)
    if a.what == "fuzz":
        from regconsist_ros.bench.fuzz import bench_fuzz, markdown

        result = bench_fuzz(sections=tuple(a.sections), kills=a.kills, limit=a.limit, jobs=a.jobs, seed=a.seed,
                            quiet=a.quiet)
        if a.markdown:
            from pathlib import Path

            Path(a.markdown).write_text(markdown(result))
            result["markdown"] = a.markdown
        return result
    if a.what == "sim":
        from regconsist_ros.bench.sim import bench_sim

        return bench_sim(width=a.width, height=a.height, n=a.n, seed=a.seed, nthreads=a.nthreads, backend=a.backend)
    from regconsist_ros.bench.correspond import bench_correspond

    return bench_correspond(width=a.width, height=a.height, n=a.n, seed=a.seed, nthreads=a.nthreads)


def cmd_bench_pretrain(a: argparse.Namespace) -> dict:
    from regconsist_ros.bench.pretrain import bench_pretrain
    from regconsist_ros.learning.runs import MethodRun, other_method, recipe, schema

    base = recipe(a.method)
    g = settings(a, schema(a.method), base.groups(), where=f"bench pretrain {a.method}",
                 hint=lambda n: other_method(n, a.method))
    recipe_values = base.values()
    changed = {k: v for k, v in MethodRun.from_groups(a.method, g).values().items() if v != recipe_values.get(k)}
    return bench_pretrain(a.method, changed, steps=a.n, device=a.device, nthreads=a.nthreads, seed=a.seed,
                          render=tuple(a.render), against=a.against, rounds=a.rounds, flops=a.flops)


def _add_bench(sub) -> None:
    from regconsist_ros.learning.runs import recipe, schema
    from regconsist_ros.models.methods import methods

    b = sub.add_parser("bench", help="benchmarks (print JSON)").add_subparsers(dest="what", required=True)

    def common(q, width, height, n, what):
        q.add_argument("--width", type=int, default=width, help="image width")
        q.add_argument("--height", type=int, default=height, help="image height")
        q.add_argument("--n", type=int, default=n, help=what)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--json", action="store_true", default=True, help=argparse.SUPPRESS)
        q.set_defaults(fn=cmd_bench)

    q = b.add_parser("sim", help="frames/s of the embedded-world renderer")
    common(q, 640, 480, 30, "frames to time")
    q.add_argument("--nthreads", type=int, default=1, help="renderer threads")
    q.add_argument("--backend", choices=["auto", "raycast", "gl"], default="auto", help="renderer backend")
    q = b.add_parser("correspond", help="ms per view pair of exact correspondences")
    common(q, 640, 480, 30, "pairs to time")
    q.add_argument("--nthreads", type=int, default=1, help="torch threads")
    q = b.add_parser("odometry", help="RGB-D odometry vs ground truth: ATE, RPE, drops, correspondence accuracy (docs/odometry.md)")
    common(q, 320, 240, 80, "frames per embedded-world sequence")
    q.add_argument("--worlds", nargs="+", choices=["default", "hard", "hard_static"], default=["default", "hard", "hard_static"],
                   help="embedded worlds: hard is world=hard (moving objects included), hard_static the same without motion")
    q.add_argument("--paths", nargs="+", choices=["spline", "explore"], default=["spline", "explore"],
                   help="camera paths: spline (0.05 m per frame, smooth turns) and explore (0.1 m per frame, turns in place at 12 deg per frame)")
    q.add_argument("--methods", nargs="+", choices=["point_to_plane", "hybrid", "intensity"],
                   default=["point_to_plane", "hybrid", "intensity"], help="odometry.method values to compare")
    q.add_argument("--gap", type=int, default=5, help="frames between the two views of a scored view pair")
    q.add_argument("--data", default=None, help="folder of the real samples (default: ../shared/data beside the checkout)")
    q = b.add_parser("regions", help="Cantor vs all-pairs region overlap")
    common(q, 640, 480, 30, "repeats")
    q = b.add_parser("transport", help="delivered fraction and latency of images between two ROS 2 processes")
    common(q, 640, 480, 0, "unused")
    q.add_argument("--rate", type=float, default=30.0, help="messages per second")
    q.add_argument("--seconds", type=float, default=5.0, help="publishing time")
    q.add_argument("--reliability", choices=["reliable", "best_effort"], default="reliable", help="QoS")
    q.add_argument("--qos-depth", type=int, default=10, help="QoS history depth")
    q.add_argument("--transport", choices=["default", "large_data", "udpv4", "shm"], default="default",
                   help="Fast DDS builtin transports")
    q.add_argument("--colour-only", action="store_true", help="one rgb8 stream instead of colour + 16UC1 depth")
    q = b.add_parser("registration", help="a 640x480 RGB-D stream at 30 Hz through the registration node, beside the learner")
    common(q, 640, 480, 0, "unused")
    q.add_argument("--rate", type=float, default=30.0, help="frames per second replayed")
    q.add_argument("--seconds", type=float, default=30.0, help="replay time")
    q.add_argument("--load", choices=["learner", "torch", "none"], default="learner",
                   help="what runs beside the node: the real learner node, a torch training loop, or nothing")
    q.add_argument("--frames", type=int, default=150, help="rendered frames of the replayed recording")
    q.add_argument("--speed", type=float, default=0.5, help="camera speed in m/s along the path")
    q.add_argument("--drain", type=float, default=5.0, help="seconds the node may finish after the camera stops")
    q.add_argument("--transport", choices=["default", "large_data"], default=None, help="Fast DDS transport (default: the graph's)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="a registration node parameter (repeatable)")
    q.add_argument("--keep", action="store_true", help="keep the recording and the node logs")
    q = b.add_parser("viewer", help="learner steps/s of a graph with and without the live viewer (--view --save), side by side")
    q.add_argument("--graph", default="demo", help="graph of config/graph.yaml (its evaluator left out unless --evaluator)")
    q.add_argument("--rounds", type=int, default=2, help="rounds of one run without and one with the viewer (order flips each round)")
    q.add_argument("--seconds", type=float, default=40.0, help="measured seconds per run")
    q.add_argument("--warmup", type=float, default=10.0, help="seconds after the learner's first step of every method before measuring")
    q.add_argument("--view", choices=("web", "grpc", "native", "auto"), default="web", help="the --view of the runs with the viewer")
    q.add_argument("--no-save", action="store_true", help="no --save run.rrd in the runs with the viewer")
    q.add_argument("--evaluator", action="store_true", help="keep the graph's evaluator")
    q.add_argument("--keep", action="store_true", help="keep the runs' folders (logs, checkpoints, .rrd files)")
    q.add_argument("--json", action="store_true", default=True, help=argparse.SUPPRESS)
    q.set_defaults(fn=cmd_bench)
    q = b.add_parser("fuzz", help="hostile input: bad messages to the nodes, bad command lines, bad checkpoints, "
                     "SIGKILLs of the learner; crashes, uncounted drops, tracebacks, corrupt checkpoints (docs/reliability.md)")
    q.add_argument("--sections", nargs="+", choices=["messages", "cli", "checkpoints", "kills"],
                   default=["messages", "cli", "checkpoints", "kills"], help="sections to run")
    q.add_argument("--kills", type=int, default=10, help="SIGKILLs of the learner in the kills section")
    q.add_argument("--limit", type=int, default=0, help="only the first N inputs of each section (per node for messages; 0 = all)")
    q.add_argument("--jobs", type=int, default=2, help="command lines run at once in the cli section")
    q.add_argument("--seed", type=int, default=0, help="seed of the kill times and of the images")
    q.add_argument("--markdown", default=None, metavar="FILE", help="also write the table as Markdown to FILE")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.add_argument("--json", action="store_true", default=True, help=argparse.SUPPRESS)
    q.set_defaults(fn=cmd_bench)
    q = b.add_parser("bc", help="ms per MetaWorld frame (fast/full render) and per BC rollout step")
    q.add_argument("--task", default="hammer", help="MetaWorld task")
    q.add_argument("--size", type=int, default=128, help="render size")
    q.add_argument("--crop", type=int, default=112, help="centre crop the encoder sees")
    q.add_argument("--n", type=int, default=50, help="frames / steps to time")
    q.add_argument("--episodes", type=int, default=25, help="evaluation episodes per rollout path")
    q.add_argument("--horizon", type=int, default=50, help="steps per episode")
    q.add_argument("--envs", type=int, default=0, help="lockstep environments (0 = one per episode)")
    q.add_argument("--env-workers", type=int, default=2, help="worker processes of the third path (0 = skip it)")
    q.add_argument("--vit-size", choices=["tiny", "small", "base"], default="tiny", help="random-init ViT size")
    q.add_argument("--vit-depth", type=int, default=6, help="ViT blocks (0 = the size's default)")
    q.add_argument("--no-sequential", action="store_true", help="skip the one-episode-at-a-time path")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--json", action="store_true", default=True, help=argparse.SUPPRESS)
    q.set_defaults(fn=cmd_bench)

    pre = b.add_parser("pretrain", help="training steps/s, images/s (and peak memory on CUDA) of one method",
                       description="One real batch of the method's kind, built once from a small rendered sequence, "
                       "then timed optimiser steps. The method's settings are those of `regconsist pretrain METHOD` "
                       "(defaults: its recipe, e.g. RSP's official ViT-S/16 at 224x224 with the 512x8 decoder).")
    psub = pre.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name in sorted(methods()):
        run = recipe(name)
        q = psub.add_parser(name, help=run.spec.summary.replace("%", "%%"))
        q.add_argument("--n", type=int, default=10, help="timed steps (after 2 warm-up steps)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--device", default="auto", help="auto, cpu, cuda (bf16 autocast on CUDA: --%s.trainer.amp)" % name)
        q.add_argument("--nthreads", type=int, default=0, help="torch threads (0 = all)")
        q.add_argument("--render", type=int, nargs=2, default=(160, 120), metavar=("W", "H"),
                       help="size of the rendered frames the batch is built from")
        q.add_argument("--against", default=None, metavar="REV",
                       help="also time this git revision's code, alternating old and new in fresh processes")
        q.add_argument("--rounds", type=int, default=3, help="rounds of old-then-new with --against")
        q.add_argument("--flops", action="store_true",
                       help="also count the step's GFLOP and compare with this machine's float32 matrix-product peak")
        q.add_argument("--json", action="store_true", default=True, help=argparse.SUPPRESS)
        config_flag(q)
        add_schema_arguments(q, schema(name), run.groups())
        q.set_defaults(fn=cmd_bench_pretrain)


# ---- up ------------------------------------------------------------------------------------------------
def cmd_up(a: argparse.Namespace) -> dict:
    import math

    from regconsist_ros.config import ConfigError
    from regconsist_ros.ros.node_settings import check_params
    from regconsist_ros.up import load_graph, up

    if not math.isfinite(a.duration) or a.duration < 0:
        raise ConfigError(f"--duration {a.duration:g}: expected seconds >= 0 (0 = until Ctrl-C)")
    if not math.isfinite(a.grace) or a.grace < 0:
        raise ConfigError(f"--grace {a.grace:g}: expected seconds >= 0")
    if a.domain_id is not None and not 0 <= a.domain_id <= 232:
        raise ConfigError(f"--domain-id {a.domain_id}: ROS 2 domain ids are 0-232 (0-101 stay clear of the "
                          "ephemeral ports on Linux)")
    viewer = None
    if a.view or a.save:  # the viewer node (regconsist_ros/ros/nodes/viewer.py) joins the graph
        from pathlib import Path

        viewer = {"serve": a.view or "none", **({"save": str(Path(a.save).resolve())} if a.save else {})}
    graph = load_graph(a.graph, a.graph_file, a.set or (), viewer=viewer)
    given: dict[str, set[str]] = {}
    for item in a.set or ():
        node, _, param = item.partition("=")[0].partition(".")
        given.setdefault(node, set()).add(param)
    check_params(graph, given)  # an unknown parameter is an error before any node starts
    result = up(graph, duration=a.duration, grace=a.grace, domain_id=a.domain_id, network=a.network)
    result["_exit"] = 0 if result["ok"] else 1
    return result


# ---- experiment / demo -----------------------------------------------------------------------------------
def cmd_experiment(a: argparse.Namespace) -> dict:
    from regconsist_ros.config import build

    exp, module = a.experiment
    base = build(module.CONFIG, exp.settings)
    return module.run(settings(a, [("", module.CONFIG)], {"": base}, where=f"experiment {a.exp}")[""], exp)


def cmd_demo(a: argparse.Namespace) -> dict:
    from regconsist_ros.demo import DemoConfig, run_demo

    return run_demo(settings(a, [("demo", DemoConfig)], where="demo", own_sections=True)["demo"])


def add_parsers(sub) -> None:
    from regconsist_ros.demo import DemoConfig
    from regconsist_ros.experiments import experiments

    _add_bench(sub)

    from regconsist_ros.config import build

    ex = sub.add_parser("experiment", help="committed experiments (definitions: config/experiments/*.yaml)")
    exsub = ex.add_subparsers(dest="exp", required=True)
    for name, (exp, module) in experiments().items():
        q = exsub.add_parser(name, help=exp.help, description=f"{exp.help}. Definition: {exp.path}; arms: "
                             f"{', '.join(exp.arms)}.")
        add_schema_arguments(q, [("", module.CONFIG)], {"": build(module.CONFIG, exp.settings)})
        output_flags(q, quiet=False)
        q.set_defaults(fn=cmd_experiment, experiment=(exp, module))

    u = sub.add_parser("up", help="start a node graph (config/graph.yaml) as processes, like a launch file")
    u.add_argument("graph", help="graph name in the graph file (config/graph.yaml: sim, demo, robot, eval)")
    u.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    u.add_argument("--graph-file", default=None, help="graph definition (default: config/graph.yaml)")
    u.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="override a node parameter (repeatable)")
    u.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for every node (default: inherited)")
    u.add_argument("--grace", type=float, default=120.0, help="seconds nodes get to stop before they are killed (above the learner's shutdown_timeout, 60 s, so that its final checkpoint is written)")
    u.add_argument("--network", choices=("localhost", "subnet"), default=None,
                   help="DDS discovery range: localhost (the default, unless ROS_AUTOMATIC_DISCOVERY_RANGE or "
                        "ROS_LOCALHOST_ONLY is set) or subnet (nodes on other machines of the network may join)")
    u.add_argument("--view", nargs="?", const="auto", default=None, choices=("auto", "web", "grpc", "native"),
                   help="watch the run live in Rerun: web (a browser page served on viewer.web_port, 9090), native "
                        "(spawn the rerun viewer), grpc (only the server on viewer.grpc_port, 9876), auto (the default: "
                        "native where a display is, else web); --set viewer.PARAM=VALUE for the rest (README: Live viewer)")
    u.add_argument("--save", default=None, metavar="RUN.rrd", help="record the viewer's streams to this Rerun file")
    output_flags(u, quiet=False)
    u.set_defaults(fn=cmd_up)

    d = sub.add_parser("demo", help="the main job on the embedded default world")
    add_schema_arguments(d, [("demo", DemoConfig)])
    config_flag(d)
    output_flags(d, quiet=False)
    d.set_defaults(fn=cmd_demo)
