"""`regconsist pretrain rsp|mae`, `embed`, `eval propagate`, `bench pretrain`, `experiment rsp`
end to end at toy scale."""
import json
import math

import numpy as np
import pytest
import torch

from regconsist_ros.models.checkpoint import read_info
from regconsist_ros.cli import main

TINY_VIT = ["--encoder.size", "tiny", "--encoder.depth", "1", "--encoder.img_size", "32", "48", "--encoder.patch", "8"]


def tiny(m, batch="4"):
    """A toy ViT, decoder and frame pairs for method ``m`` (its own groups)."""
    settings = {"encoder.size": ["tiny"], "encoder.depth": ["1"], "encoder.img_size": ["32", "48"],
                "encoder.patch": ["8"], "decoder_width": ["32"], "decoder_depth": ["1"], "decoder_heads": ["4"],
                "batch.gap_min": ["2"], "batch.gap_max": ["5"], "batch.size": [batch]}
    return [a for k, v in settings.items() for a in (f"--{m}.{k}", *v)]


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("method,extra", [
    ("rsp", []),
    ("rsp", ["--rsp.latent", "none"]),
    ("rsp", ["--rsp.latent", "gaussian", "--rsp.separate_decoder"]),
    ("rsp", ["--rsp.mae", "false"]),
    ("mae", []),
])
def test_pretrain_frame_methods_and_ablation_flags(method, extra, seq, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["pretrain", method, "--data", str(seq), "--out", str(run), "--" + method + ".trainer.steps", "2",
            "--" + method + ".trainer.warmup", "1", "--quiet", "--json", *tiny(method), *extra]
    assert main(args) == 0
    r = last_json(capsys)
    assert r["steps"] == 2 and r["method"] == method and r["frames"] == 16
    info = read_info(run / "checkpoints" / "step_00000002")
    assert info["kind"] == "vit" and info["config"].img_size == (32, 48) and info["meta"]["method"] == method
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["trainer"]["optimizer"] == "adamw" and run_json["trainer"]["weight_decay"] == 0.05
    assert run_json["trainer"]["lr"] == pytest.approx(1.5e-4 * 4 / 256)  # lr = 1.5e-4 x batch / 256
    if method == "rsp":
        want = {"latent": "categorical", "mae": True, "separate_decoder": False}
        if "none" in extra:
            want["latent"] = "none"
        if "gaussian" in extra:
            want.update(latent="gaussian", separate_decoder=True)
        if "--rsp.mae" in extra:
            want["mae"] = False
        assert {k: run_json["settings"]["rsp"][k] for k in want} == want
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert ("kl" in rows[-1]) == (want["latent"] != "none") and ("mae" in rows[-1]) == want["mae"]


def test_pretrain_from_several_sources_and_clear_errors(seq, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "rsp", "--data", str(seq), "sim:seed=4,frames=10,width=64,height=48",
                 "--out", str(run), "--rsp.trainer.steps", "1", "--quiet", "--json", *tiny("rsp")]) == 0
    assert last_json(capsys)["frames"] == 26
    assert json.loads((run / "run.json").read_text())["frames"] == [16, 10]
    # a sequence shorter than the smallest gap
    assert main(["pretrain", "rsp", "--data", "sim:seed=4,frames=2,width=64,height=48", "--out",
                 str(tmp_path / "r2"), "--rsp.trainer.steps", "1", "--quiet", *tiny("rsp")]) == 2
    assert "gap_min" in capsys.readouterr().err
    # an odd batch with repeated sampling 2
    assert main(["pretrain", "mae", "--data", str(seq), "--out", str(tmp_path / "r3"), "--mae.trainer.steps", "1",
                 "--quiet", *tiny("mae", batch="3")]) == 2
    assert "repeats" in capsys.readouterr().err
    assert main(["pretrain", "regconsist", "--data", str(seq), str(seq), "--out", str(tmp_path / "r4"),
                 "--quiet"]) == 2
    assert "one TUM RGB-D sequence" in capsys.readouterr().err
    # a setting of another method, or of none, is one clear line
    assert main(["pretrain", "rsp", "--data", str(seq), "--out", str(tmp_path / "r5"), "--regions.scale", "300"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--regions.scale" in err and "pretrain rsp" in err
    assert main(["pretrain", "rsp", "--data", str(seq), "--out", str(tmp_path / "r5"), "--regconsist.lambd", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "setting of method regconsist, not of rsp" in err


def test_embed_and_propagate_from_a_checkpoint_and_random(seq, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "rsp", "--data", str(seq), "--out", str(run), "--rsp.trainer.steps", "1", "--quiet",
                 *tiny("rsp")]) == 0
    capsys.readouterr()
    out = tmp_path / "emb.npz"
    assert main(["embed", "--ckpt", str(run), "--data", str(seq), "--out", str(out), "--patches", "--quiet", "--json"]) == 0
    r = last_json(capsys)
    assert r["frames"] == 16 and r["dim"] == 192 and r["patch_grid"] == [4, 6] and r["step"] == 1
    z = np.load(out)
    assert z["cls"].shape == (16, 192) and z["patches"].shape == (16, 192, 4, 6) and len(z["names"]) == 16
    assert np.all(np.diff(z["stamps"]) > 0) and np.isfinite(z["cls"]).all()
    # a larger evaluation size: the ViT runs on a finer patch grid
    assert main(["embed", "--ckpt", str(run), "--data", str(seq), "--out", str(out), "--size", "64", "96",
                 "--quiet", "--json"]) == 0
    r = last_json(capsys)
    assert r["patch_grid"] == [8, 12] and not r["patches_saved"] and "patches" not in np.load(out)

    assert main(["eval", "propagate", "--ckpt", str(run), "--data", str(seq), "--clip-len", "8",
                 "--min_object_pixels", "20", "--out", str(tmp_path / "prop"), "--quiet", "--json"]) == 0
    p = last_json(capsys)
    assert len(p["clips"]) == 2 and all(0 <= p[k] <= 1 for k in ("J_mean", "F_mean", "JF_mean"))
    assert p["JF_mean"] == pytest.approx((p["J_mean"] + p["F_mean"]) / 2)
    assert (tmp_path / "prop" / "propagation.json").exists() and (tmp_path / "prop" / "propagation.png").exists()
    assert main(["eval", "propagate", "--ckpt", "random", *TINY_VIT, "--data", str(seq), "--min_object_pixels", "20",
                 "--quiet", "--json"]) == 0
    assert last_json(capsys)["init"] == "random"
    assert main(["eval", "propagate", "--ckpt", str(tmp_path / "missing"), "--data", str(seq), "--quiet"]) == 2
    assert "missing" in capsys.readouterr().err


BENCH_TINY = ["--rsp.encoder.img_size", "32", "32", "--rsp.encoder.size", "tiny", "--rsp.encoder.depth", "1",
              "--rsp.batch.size", "4", "--n", "1", "--rsp.decoder_width", "32", "--rsp.decoder_depth", "1",
              "--rsp.decoder_heads", "4", "--nthreads", "1", "--render", "64", "48"]


def test_bench_pretrain_prints_throughput(capsys):
    assert main(["bench", "pretrain", "rsp", *BENCH_TINY]) == 0
    r = last_json(capsys)
    assert r["bench"] == "pretrain" and r["steps_per_s"] > 0 and r["images_per_s"] == pytest.approx(8 * r["steps_per_s"], rel=0.01)
    assert r["batch"]["x_t"] == [4, 3, 32, 32] and r["method"] == "rsp"
    assert r["device"] == "cpu" and r["trainer"]["optimizer"] == "adamw" and r["threads"] == 1
    assert len(r["losses"]) == 3 and all(math.isfinite(x) for x in r["losses"])  # 2 warm-up steps + 1 timed
    assert r["peak_rss_gib"] > 0 and "gflop_per_step" not in r
    assert main(["bench", "pretrain", "rsp", *BENCH_TINY, "--flops"]) == 0
    r = last_json(capsys)
    assert r["gflop_per_step"] > 0 and r["sgemm_peak_gflops"] > 0
    assert r["floor_s"] == pytest.approx(r["gflop_per_step"] / r["sgemm_peak_gflops"], rel=0.01)


def test_bench_pretrain_against_a_revision_runs_old_and_new_side_by_side(capsys):
    """--against HEAD: the committed code and this tree, alternating in fresh processes, on the same batch."""
    import shutil
    import subprocess

    from regconsist_ros.bench.revisions import checkout_root

    try:
        root = checkout_root()
    except ValueError:
        pytest.skip("not a git checkout")
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                                    capture_output=True).returncode:
        pytest.skip("no commit to compare against")
    assert main(["bench", "pretrain", "rsp", *BENCH_TINY, "--against", "HEAD", "--rounds", "1"]) == 0
    r = last_json(capsys)
    assert r["against"] == "HEAD" and len(r["against_commit"]) == 40 and r["rounds"] == 1
    assert r["old"]["steps_per_s"] > 0 and r["new"]["steps_per_s"] > 0 and r["speedup"] > 0
    assert r["old"]["params_m"] == r["new"]["params_m"]
    assert r["first_loss_rel_diff"] < 1e-5  # same seed, same batch: the speed-ups leave the math unchanged
    assert main(["bench", "pretrain", "rsp", *BENCH_TINY, "--against", "no-such-revision"]) == 2
    assert "no-such-revision" in capsys.readouterr().err


def test_experiment_rsp_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "rsp", "--out", str(out), "--methods", "random", "mae", "rsp", "--train_seeds", "1",
            "--train_frames", "12", "--train_width", "64", "--train_height", "48", "--eval_seeds", "7",
            "--eval_frames", "8", "--clip_len", "4", "--eval_width", "64", "--eval_height", "48", "--vit_depth", "1",
            "--img_width", "48", "--img_height", "32", "--patch", "8", "--decoder_width", "32", "--decoder_depth", "1",
            "--steps", "2", "--batch", "4", "--gap_min", "2", "--gap_max", "4", "--json"]
    assert main(args) == 0
    r = last_json(capsys)
    assert set(r["table"]) == {"random", "mae", "rsp"}
    for row in r["table"].values():
        assert 0 <= row["JF"] <= 1 and row["clips"] == 2
    md = (out / "results.md").read_text()
    assert "| MAE |" in md and "| random init |" in md and "J&F" in md
    for f in ("results.json", "propagation_scores.png", "pretrain_loss.png", "rsp_predictions.png",
              "rsp_latent_use.png"):
        assert (out / f).exists(), f
    latent = json.loads((out / "results.json").read_text())["latent_use"]
    assert set(latent) == {"rsp"}  # MAE has no latent, random init no pretraining
    u = latent["rsp"]
    assert math.isclose(u["latent_gain"], u["pred_prior"] - u["pred_post"], rel_tol=1e-6, abs_tol=1e-9)
    assert "latent used?" in md and "| RSP (" in md.split("latent used?")[1]
    before = {p: p.stat().st_mtime for p in (out / "evals").glob("*.json")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime for p in (out / "evals").glob("*.json")} == before
    assert main(["experiment", "rsp", "--out", str(tmp_path / "x"), "--methods", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_pretrain_resume_is_bit_exact(seq, tmp_path, capsys):
    """2 + 2 steps (a resumed run) give the same weights as 4 steps in one go: batches are a function of
    (seed, step), and the trainer restores the optimiser and RNG states."""
    from safetensors.torch import load_file

    def run(out, steps):
        assert main(["pretrain", "rsp", "--data", str(seq), "--out", str(out), "--rsp.trainer.steps", str(steps),
                     "--rsp.trainer.warmup", "1", "--quiet", *tiny("rsp")]) == 0

    run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    run(tmp_path / "b", 4)
    capsys.readouterr()
    wa = load_file(tmp_path / "a" / "checkpoints" / "step_00000004" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "checkpoints" / "step_00000004" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
