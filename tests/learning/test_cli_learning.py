"""`regconsist pretrain / finetune / experiment regconsist` end to end at toy scale."""
import json

import pytest

from regconsist_ros.cli import main

TINY_MODEL = ["--regconsist.encoder.width", "0.25", "--regconsist.encoder.aspp_channels", "32",
              "--regconsist.encoder.decoder_channels", "32"]
TINY_RANDOM = ["--encoder.width", "0.25", "--encoder.aspp_channels", "32", "--encoder.decoder_channels", "32"]


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "s"
    assert main(["sim", "render", "--sim.frames", "20", "--sim.width", "64", "--sim.height", "48", "--sim.seed", "2",
                 "--out", str(out), "--quiet"]) == 0
    return out


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_pretrain_then_finetune_from_the_run(seq, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "regconsist", "--data", str(seq), "--out", str(run), "--regconsist.trainer.steps", "3",
                 "--regconsist.batch.size", "2", "--regconsist.batch.pixel_pairs", "64", "--regconsist.trainer.warmup", "1",
                 "--quiet", "--json", *TINY_MODEL]) == 0
    r = last_json(capsys)
    assert r["steps"] == 3 and (run / "checkpoints" / "step_00000003" / "model.safetensors").exists()
    assert (run / "run.json").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 1
    # running again resumes: already complete, nothing to do, same checkpoint
    assert main(["pretrain", "regconsist", "--data", str(seq), "--out", str(run), "--regconsist.trainer.steps", "3",
                 "--regconsist.batch.size", "2", "--regconsist.batch.pixel_pairs", "64", "--quiet", "--json", *TINY_MODEL]) == 0
    assert last_json(capsys)["steps"] == 3
    assert main(["finetune", "--init", str(run), "--data", str(seq), "--labels", "0.2", "--steps", "3",
                 "--quiet", "--json", "--out", str(tmp_path / "ft")]) == 0
    f = last_json(capsys)
    assert 0.0 <= f["miou"] <= 1.0 and f["init"].endswith("step_00000003") and f["n_train"] == 4
    assert isinstance(f["per_class"], dict) and f["per_class"]
    assert (tmp_path / "ft" / "readout.json").exists() and (tmp_path / "ft" / "readout_predictions.png").exists()


def test_finetune_random_init_and_clear_errors(seq, tmp_path, capsys):
    assert main(["finetune", "--init", "random", "--data", str(seq), "--labels", "0.1", "--steps", "2",
                 "--quiet", "--json", *TINY_RANDOM]) == 0
    assert last_json(capsys)["init"] == "random"
    assert main(["finetune", "--init", str(tmp_path / "nope"), "--data", str(seq), "--steps", "2", "--quiet"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["pretrain", "regconsist", "--data", str(seq), "--out", str(tmp_path / "r"),
                 "--regconsist.batch.sampling", "balanced", "--regconsist.trainer.steps", "0", "--quiet"]) == 2
    assert "steps" in capsys.readouterr().err


def test_experiment_runs_end_to_end_at_toy_scale(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "regconsist", "--out", str(out), "--frames", "24", "--width", "64", "--height", "48",
            "--seeds", "1", "--pretrain_steps", "2", "--finetune_steps", "1", "2", "--view_pairs", "2",
            "--pixel_pairs", "64", "--eval_views", "6", "--width_mult", "0.25", "--json"]
    assert main(args) == 0
    r = last_json(capsys)
    assert set(r["table"]) == {"1", "2"}  # one table per fine-tuning budget
    for table in r["table"].values():
        assert {"random", "regconsist", "BaR", "BaX", "RaR", "RaX"} <= set(table)
    assert all(isinstance(m, float) for m in r["margin_regconsist_vs_random"].values())
    md = (out / "results.md").read_text()
    assert "| RegConsist | Felzenszwalb | balanced | region |" in md and "BaR (supervised)" in md
    assert "1 fine-tune steps" in md and "2 fine-tune steps" in md
    assert len(list((out / "readouts").glob("*_ft1.json"))) == 6 and len(list((out / "readouts").glob("*_ft2.json"))) == 6
    assert (out / "miou.png").exists() and (out / "pretrain_loss.png").exists() and (out / "results.json").exists()
    # resumable: a second run reuses every finished readout
    before = {p: p.stat().st_mtime for p in (out / "readouts").glob("*.json")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime for p in (out / "readouts").glob("*.json")} == before
