"""`regconsist pretrain rotation|simclr|byol|tcn|shuffle|flowe` end to end at toy scale, and their
checkpoints through the label-propagation and segmentation readouts."""
import json

import pytest

from regconsist_ros.models.checkpoint import read_info, latest_checkpoint
from regconsist_ros.cli import main

def tiny(m):
    """Toy-scale settings of method ``m`` (its own groups: m.encoder.*, m.batch.*, m.trainer.*)."""
    return [f"--{m}.encoder.width", "0.25", f"--{m}.encoder.aspp_channels", "32", f"--{m}.encoder.decoder_channels", "32",
            f"--{m}.batch.height", "48", f"--{m}.batch.width", "64", f"--{m}.batch.size", "4",
            f"--{m}.trainer.steps", "3", f"--{m}.trainer.warmup", "1", "--quiet", "--json"]


GAPS = {m: ["--{m}.batch.gap_min", "1", "--{m}.batch.gap_max", "4"] for m in ("rotation", "simclr", "byol", "tcn")}
EXTRA = {
    "rotation": [],
    "simclr": [],
    "byol": [],
    "tcn": ["--tcn.loss", "triplet"],
    "shuffle": ["--shuffle.frames", "3", "--shuffle.temporal_perms", "6", "--shuffle.spatial_perms", "12",
                "--shuffle.groups", "3", "--shuffle.policy_every", "1", "--shuffle.batch.frame_gap", "2"],
    "flowe": ["--flow.gap_min", "1", "--flow.gap_max", "4"],
}


def extra(m):
    return [a.format(m=m) for a in GAPS.get(m, [])] + EXTRA[m]


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("method", list(EXTRA))
def test_pretrain_writes_deeplab_checkpoints_and_resumes(method, seq, tmp_path, capsys):
    run = tmp_path / method
    args = ["pretrain", method, "--data", str(seq), "--out", str(run), *tiny(method), *extra(method)]
    assert main(args) == 0, capsys.readouterr().err
    r = last_json(capsys)
    assert r["method"] == method and r["steps"] == 3 and r["final_loss"] == r["final_loss"]  # finite (not NaN)
    info = read_info(latest_checkpoint(run))
    assert info["kind"] == "deeplabv3plus" and info["step"] == 3
    assert json.loads((run / "run.json").read_text())["method"] == method
    steps = args.index(f"--{method}.trainer.steps")
    assert main(args[:steps + 1] + ["5"] + args[steps + 2:]) == 0
    assert last_json(capsys)["steps"] == 5  # resumed at 3, trained to 5


def test_new_checkpoints_work_with_the_readouts(seq, tmp_path, capsys):
    run = tmp_path / "byol"
    assert main(["pretrain", "byol", "--data", str(seq), "--out", str(run), *tiny("byol")]) == 0
    capsys.readouterr()
    assert main(["eval", "propagate", "--ckpt", str(run), "--data", str(seq), "--clip-len", "8",
                 "--min_object_pixels", "20", "--quiet", "--json"]) == 0
    p = last_json(capsys)
    assert 0 <= p["JF_mean"] <= 1 and p["kind"] == "deeplabv3plus"
    assert main(["finetune", "--init", str(run), "--data", str(seq), "--labels", "0.3", "--steps", "2", "--warmup", "1",
                 "--quiet", "--json"]) == 0
    f = last_json(capsys)
    assert 0 <= f["miou"] <= 1


def test_flowe_needs_one_rgbd_sequence(seq, tmp_path, capsys):
    assert main(["pretrain", "flowe", "--data", str(seq), str(seq), "--out", str(tmp_path / "f"), *tiny("flowe")]) == 2
    assert "one sequence" in capsys.readouterr().err
    # RGB-only frames (an image folder) with OpenCV optical flow instead of depth + poses
    folder = tmp_path / "imgs"
    folder.mkdir()
    import shutil
    for p in sorted((seq / "rgb").iterdir()):
        shutil.copy(p, folder / p.name)
    run = tmp_path / "f2"
    assert main(["pretrain", "flowe", "--flow.source", "farneback", "--data", str(folder), "--out", str(run),
                 *tiny("flowe")]) == 0, capsys.readouterr().err
    r = last_json(capsys)
    assert r["steps"] == 3 and json.loads((run / "run.json").read_text())["flow_source"] == "farneback"


def test_retrieval_readout_over_sources(seq, tmp_path, capsys):
    run = tmp_path / "tcn"
    assert main(["pretrain", "tcn", "--data", str(seq), "--out", str(run), *tiny("tcn")]) == 0
    capsys.readouterr()
    other = "sim:seed=9,frames=16,width=64,height=48"
    assert main(["eval", "retrieve", "--ckpt", str(run), "--data", str(seq), other, "--k", "1", "3",
                 "--size", "0", "0", "--quiet", "--json"]) == 0
    r = last_json(capsys)
    assert r["samples"] == 32 and r["classes"] == 2 and 0 <= r["top1"] <= r["top3"] <= 1 and r["kind"] == "deeplabv3plus"
    assert main(["eval", "retrieve", "--ckpt", str(run), "--data", str(seq), "--label", "semantic", "--k", "1",
                 "--size", "0", "0", "--quiet", "--json"]) == 0
    assert last_json(capsys)["label"] == "semantic"


def test_rank_readout_of_a_checkpoint_and_of_the_floors(seq, tmp_path, capsys):
    run = tmp_path / "tcn"
    assert main(["pretrain", "tcn", "--data", str(seq), "--out", str(run), *tiny("tcn")]) == 0
    capsys.readouterr()
    assert main(["eval", "rank", "--ckpt", str(run), "--data", str(seq), "--max-frames", "4", "--size", "0", "0",
                 "--quiet", "--json"]) == 0
    r = last_json(capsys)
    assert r["frames"] == 4 and r["kind"] == "deeplabv3plus" and 0 < r["effective_rank"] <= r["dims"]
    # the colour floor's features are a few colour statistics per cell: far fewer directions than a random ViT's
    ranks = {}
    for spec in ("colour", "random"):
        assert main(["eval", "rank", "--ckpt", spec, "--data", str(seq), "--max-frames", "4", "--encoder.size", "tiny",
                     "--encoder.depth", "1", "--encoder.img_size", "48", "64", "--quiet", "--json"]) == 0
        ranks[spec] = last_json(capsys)["effective_rank"]
    assert 0 < ranks["colour"] < ranks["random"]
