"""`regconsist experiment regions`: Felzenszwalb settings chosen on labelled validation views."""
import json

import pytest

from regconsist_ros.cli import main


def test_a_small_grid_is_scored_and_the_best_covering_chosen(tmp_path, capsys):
    out = tmp_path / "regions"
    args = ["experiment", "regions", "--out", str(out), "--val_seeds", "50", "--frames", "12", "--width", "64",
            "--height", "48", "--labels", "0.25", "--scales", "50", "500", "--min_sizes", "10", "40", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    res = json.loads((out / "results.json").read_text())
    assert res["views"] == r["views"] == 3  # a quarter of 12 labelled views
    assert len(res["grid"]) == 4 and {(g["scale"], g["min_size"]) for g in res["grid"]} == {(50, 10), (50, 40), (500, 10), (500, 40)}
    best = max(res["grid"], key=lambda g: g["covering"])
    assert r["chosen"] == {"regions.scale": best["scale"], "regions.min_size": best["min_size"], "regions.sigma": 0.8}
    for g in res["grid"]:
        assert 0 < g["covering"] <= 1 and 0 < g["purity"] <= 1 and g["regions"] >= 1
    # the definition's named settings are scored too, off the grid where they lie outside it
    assert set(res["marked"]) == {"default", "paper"} and res["marked"]["paper"]["row"]["scale"] == 250
    md = (out / "results.md").read_text()
    assert "chosen" in md and "current default" in md and "the paper's values" in md
    for f in ("regions_covering.png", "regions_examples.png"):
        assert (out / f).stat().st_size > 1000
    assert main(["experiment", "regions", "--out", str(tmp_path / "x"), "--labels", "0"]) == 2
    assert "labels" in capsys.readouterr().err


def test_the_tuned_benchmark_arm_prepares_its_regions_and_retrains_on_other_ones(tmp_path, monkeypatch):
    from regconsist_ros.config import ConfigError
    from regconsist_ros.experiments import experiments
    from regconsist_ros.experiments.arms import Arm
    from regconsist_ros.experiments.benchmark import BenchmarkConfig, _done, _prep_tree, arm_prep, method_run

    exp = experiments()["benchmark"][0]
    cfg = BenchmarkConfig()
    tuned, plain = exp.arms["regconsist_tuned"], exp.arms["regconsist"]
    run = method_run(tuned, cfg, "deeplabv3plus", 0)
    prep = arm_prep(tuned, run)
    assert (prep["regions"].scale, prep["regions"].min_size) == (500, 200)
    assert arm_prep(plain, run)["regions"].scale == 100  # the default
    with pytest.raises(ConfigError, match="regions.nope"):
        arm_prep(Arm("bad", "regconsist", {}, "bad", {"prep": {"regions.nope": 1}}), run)
    # a finished run is reused only if it prepared its data the same way
    ckpt = tmp_path / "checkpoints" / "step_00000200"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"step": run.trainer.steps,
                                                  "meta": {"settings": json.loads(json.dumps(run.tree(), default=str))}}))
    monkeypatch.setattr("regconsist_ros.models.checkpoint.latest_checkpoint", lambda d: ckpt)
    (tmp_path / "run.json").write_text(json.dumps({"data_settings": _prep_tree(arm_prep(plain, run))}))
    assert _done(tmp_path, run, arm_prep(plain, run)) == ckpt
    assert _done(tmp_path, run, prep) is None
