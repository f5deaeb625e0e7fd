"""`regconsist pretrain <method>` (one subcommand per registered method) and `regconsist finetune`."""
from __future__ import annotations

import argparse
from pathlib import Path

from regconsist_ros.cli.common import config_flag, encoder_from, output_flags, settings
from regconsist_ros.config import add_schema_arguments
from regconsist_ros.config import ConfigError


def cmd_pretrain(a: argparse.Namespace) -> dict:
    from regconsist_ros.learning.pretrain import pretrain
    from regconsist_ros.learning.runs import MethodRun, other_method, recipe, schema
    from regconsist_ros.learning.trainer import dist_rank, init_distributed_from_env

    if init_distributed_from_env():  # under torchrun: DDP, rank 0 shows progress and writes checkpoints
        a.quiet = a.quiet or dist_rank() != 0
    if a.out.exists() and not a.out.is_dir():
        raise ConfigError(f"--out {a.out} is a file; give a run directory (checkpoints, metrics.jsonl, run.json)")
    base = recipe(a.method)
    prep_schema = list(base.kind.prep)
    groups = settings(a, prep_schema + schema(a.method), base.groups(), where=f"pretrain {a.method}",
                      hint=lambda n: other_method(n, a.method))
    run = MethodRun.from_groups(a.method, groups)
    prep = {name: groups[name] for name, _ in prep_schema}
    return pretrain(run, a.data, a.out, prep, resume=not a.no_resume, progress=not a.quiet)


def cmd_finetune(a: argparse.Namespace) -> dict:
    from regconsist_ros.learning.stores import load_frames
    from regconsist_ros.models.deeplab import DeepLabConfig
    from regconsist_ros.readout.segmentation import FinetuneConfig, run_readout

    cfg = settings(a, [("", FinetuneConfig)], where="finetune")[""]
    frames, seq = load_frames(a.data, progress=not a.quiet, poses=False)
    if seq.classes is None or not seq.has_semantic:
        raise ConfigError(f"--data {a.data}: the sequence has no semantic labels (semantic/ and classes.json)")
    model, info = encoder_from(a, "deeplabv3plus", DeepLabConfig, spec=a.init, flag="--init", seed=cfg.seed)
    result = run_readout(model, frames, seq.classes, cfg, out_dir=a.out, progress=not a.quiet)
    result.pop("confusion")  # an array; readout.json in --out keeps it
    return {**result, **info}


def add_parsers(sub) -> None:
    from regconsist_ros.learning.runs import describe, recipe, schema
    from regconsist_ros.models.deeplab import DeepLabConfig
    from regconsist_ros.models.methods import methods
    from regconsist_ros.readout.segmentation import FinetuneConfig

    pt = sub.add_parser("pretrain", help="self-supervised pretraining of an encoder with one method",
                        description="One subcommand per method; `regconsist pretrain METHOD --help` lists its settings: "
                        "METHOD.* (the objective), METHOD.trainer.*, METHOD.encoder.*, METHOD.batch.*, and the "
                        "data preparation of its batch kind (load.*, view_pairs.*, regions.*, flow.*). A setting of "
                        "another method is an error.")
    msub = pt.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name in sorted(methods()):
        run = recipe(name)
        q = msub.add_parser(name, help=run.spec.summary.replace("%", "%%"), description=describe(name).replace("%", "%%"),
                            usage=f"regconsist pretrain {name} --data SPEC [SPEC ...] --out DIR [--config YAML] "
                                  f"[--{name}.SETTING VALUE ...] [--no-resume] [--quiet] [--json]")
        q.add_argument("--data", required=True, nargs="+", help=f"data: {run.kind.summary}")
        q.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, metrics.jsonl, run.json)")
        q.add_argument("--no-resume", action="store_true", help="start over even if --out holds checkpoints")
        config_flag(q)
        output_flags(q)
        add_schema_arguments(q, list(run.kind.prep))
        add_schema_arguments(q, schema(name), run.groups())
        q.set_defaults(fn=cmd_pretrain)

    ft = sub.add_parser("finetune", help="few-label segmentation readout: fine-tune and report mIoU")
    ft.add_argument("--init", required=True, help="run directory, checkpoint directory, or 'random' (built from --encoder.*)")
    ft.add_argument("--data", required=True, type=Path, help="TUM-layout sequence with semantic labels")
    ft.add_argument("--out", default=None, type=Path, help="write readout.json and a prediction figure here")
    output_flags(ft)
    add_schema_arguments(ft, [("", FinetuneConfig), ("encoder", DeepLabConfig)])
    ft.set_defaults(fn=cmd_finetune)
