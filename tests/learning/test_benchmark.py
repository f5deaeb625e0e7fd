"""`regconsist experiment benchmark`: encoders beside floors and a ceiling, intervals, resumable."""
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from regconsist_ros.experiments import experiments
from regconsist_ros.experiments.benchmark import BenchmarkConfig, eval_size, jobs, run
from regconsist_ros.experiments.benchmark_report import summarise


def _exp():
    return experiments()["benchmark"][0]


def test_apartments_of_the_three_splits_must_be_disjoint():
    with pytest.raises(ValueError, match="disjoint"):
        BenchmarkConfig(train_seeds=(1, 2), val_seeds=(2,), test_seeds=(3,))
    with pytest.raises(ValueError, match="world"):
        BenchmarkConfig(world="easy")


def test_floors_random_and_ceiling_are_run_for_every_architecture():
    cfg = BenchmarkConfig(seeds=3)
    todo = jobs(cfg, _exp())
    rows = {}
    for row, arm, kind, seed in todo:
        rows.setdefault(row, []).append(seed)
    assert rows["pixels@vit"] == [0] and rows["colour@deeplabv3plus"] == [0]  # floors learn nothing: one run
    assert rows["random@vit"] == [0, 1, 2] and rows["supervised@deeplabv3plus"] == [0, 1, 2]
    assert rows["rsp"] == [0, 1, 2] and rows["regconsist"] == [0, 1, 2]
    kinds = {row: kind for row, _, kind, _ in todo}
    assert kinds["rsp"] == "vit" and kinds["regconsist"] == "deeplabv3plus"
    assert eval_size(cfg, "vit") == (cfg.eval_height, cfg.eval_width) and eval_size(cfg, "deeplabv3plus") == (cfg.height, cfg.width)


def _record(row, role, kind, seed, jf, miou):
    return {"row": row, "label": row, "role": role, "kind": kind, "seed": seed,
            "propagation": {"JF": float(np.mean(jf)), "per_object_JF": list(jf)},
            "probe": {"miou": float(np.mean(miou)), "per_view_miou": list(miou)}}


def test_rows_carry_intervals_and_differences_to_the_best_floor_and_random():
    rng = np.random.default_rng(0)
    objs, views = 30, 40
    recs = [_record("pixels", "floor", "vit", 0, rng.uniform(0.2, 0.3, objs), rng.uniform(0.3, 0.4, views)),
            _record("colour", "floor", "vit", 0, rng.uniform(0.3, 0.4, objs), rng.uniform(0.2, 0.3, views))]
    for s in range(3):
        recs.append(_record("random", "random", "vit", s, rng.uniform(0.25, 0.35, objs), rng.uniform(0.25, 0.35, views)))
        recs.append(_record("good", "method", "vit", s, rng.uniform(0.5, 0.6, objs), rng.uniform(0.5, 0.6, views)))
    t = summarise(recs)["table"]
    g = t["good"]
    assert g["JF_vs_best_floor"]["other"] == "colour" and g["miou_vs_best_floor"]["other"] == "pixels"
    assert g["JF_vs_best_floor"]["low"] > 0.1 and g["JF_vs_random"]["low"] > 0.1
    assert g["JF_low"] <= g["JF"] <= g["JF_high"] and g["seeds"] == 3
    assert "JF_vs_best_floor" not in t["pixels"]  # floors are not compared with themselves
    r = t["random"]["JF_vs_best_floor"]
    assert r["low"] < r["diff"] < r["high"]


def test_a_small_benchmark_runs_end_to_end_and_resumes(tmp_path):
    cfg = BenchmarkConfig(out=str(tmp_path / "b"), methods=("pixels",), world="default",
                          train_seeds=(1,), val_seeds=(50,), test_seeds=(100,), train_frames=12, eval_frames=20,
                          eval_width=64, eval_height=48, width=64, height=48, clip_len=10, seeds=1,
                          vit_depth=1, search=False, train_width=64, train_height=48, curve_steps=(1, 2), ceiling_steps=2)
    res = run(cfg, _exp())
    table = res["table"]
    # the references (floors, random init, the ceiling) come with any pick; one architecture (no method arm): ViT only
    assert set(table) == {"pixels@vit", "colour@vit", "random@vit", "supervised@vit"}
    for row in table.values():
        assert 0 <= row["JF"] <= 1 and 0 <= row["miou"] <= 1
    out = tmp_path / "b"
    html = (out / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    assert "random init" in (out / "results.md").read_text()
    files = sorted((out / "readouts").glob("*.json"))
    stamps = [f.stat().st_mtime_ns for f in files]
    again = run(cfg, _exp())  # every readout is reused
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert again["table"]["colour@vit"]["JF"] == table["colour@vit"]["JF"]
    assert f"{len(files)} readouts reused" in (out / "results.md").read_text()  # its wall time is this invocation's
    assert all(r["rank"] > 0 for r in table.values()) and "feature eff. rank" in (out / "results.md").read_text()
    sup = out / "readouts" / "supervised@vit_s0.json"
    rank = json.loads(sup.read_text())["features"]["effective_rank"]
    sup.write_text(json.dumps({k: v for k, v in json.loads(sup.read_text()).items() if k != "features"}))  # as before the rank
    # the records a results doc commits (experiment.json, readouts/, curves/<settings>/), without the worlds,
    # checkpoints or ceilings, resume in a fresh directory: nothing is read out or trained again
    import shutil

    kept = tmp_path / "kept"
    kept.mkdir()
    shutil.copy(out / "experiment.json", kept)
    for d in ("readouts", "curves"):
        shutil.copytree(out / d, kept / d)
    moved = run(BenchmarkConfig(**{**asdict(cfg), "out": str(kept)}), _exp())
    assert moved["table"]["supervised@vit"]["JF"] == table["supervised@vit"]["JF"] and not (kept / "ceiling").exists()
    # a resumed record from before the rank keeps none where its encoder would have to be trained again
    assert moved["table"]["supervised@vit"]["rank"] is None and "-" in (kept / "results.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["records"][0]["eval_size"] == [48, 64]
    assert [c["steps"] for c in saved["curves"]["random@vit"]] == [[1, 2]]  # trained rows only: floors have no curve
    assert set(saved["curves"]) == {"random@vit", "supervised@vit"} and (out / "finetune_curves.png").exists()
    # a row read out by an earlier run of this directory stays in the report of a later, narrower run
    (out / "readouts" / "pixels@vit_s0.json").rename(out / "readouts" / "kept.json")
    rec = json.loads((out / "readouts" / "kept.json").read_text())
    (out / "readouts" / "kept.json").write_text(json.dumps({**rec, "row": "earlier", "label": "earlier"}))
    later = run(BenchmarkConfig(**{**asdict(cfg), "methods": ("colour",)}), _exp())
    assert "earlier" in later["table"] and "pixels@vit" in later["table"]  # pixels: a reference, read out again
    # where the saved ceiling is at hand, its old record gets the rank, the same as it had
    assert json.loads(sup.read_text())["features"]["effective_rank"] == pytest.approx(rank)
    assert later["table"]["supervised@vit"]["rank"] == pytest.approx(rank)
    # curves of other curve settings are computed beside the first ones, which are neither reused nor touched
    stamps = {f: f.stat().st_mtime_ns for f in (out / "curves").rglob("*.json")}
    run(BenchmarkConfig(**{**asdict(cfg), "curve_steps": (1, 3)}), _exp())
    assert stamps and all(f.stat().st_mtime_ns == t for f, t in stamps.items())
    assert json.loads((out / "results.json").read_text())["curves"]["random@vit"][0]["steps"] == [1, 3]
    assert sorted(d.name for d in (out / "curves").iterdir()) == ["steps1-2_labels0.1", "steps1-3_labels0.1"]
    # with lrs to choose from, each row picks its lr on the validation apartment, and its curves use it
    chosen = run(BenchmarkConfig(**{**asdict(cfg), "curve_lrs": (0.01, 1e-4)}), _exp())
    folder = out / "curves" / "steps1-2_labels0.1_lrs0.01-0.0001"
    for row in ("random@vit", "supervised@vit"):
        choice = json.loads((folder / "lr_choice" / f"{row}.json").read_text())
        assert choice["apartment"] == "val_50" and set(choice["val_miou"]) == {"0.01", "0.0001"}
        assert choice["val_miou"][f"{choice['lr']:g}"] == max(choice["val_miou"].values())
        assert json.loads((folder / f"{row}_s0.json").read_text())["config"]["lr"] == choice["lr"]
    assert set(chosen["table"]) >= {"random@vit", "supervised@vit"}


def test_the_default_pick_fits_the_hour_and_any_pick_brings_the_references():
    from regconsist_ros.experiments.benchmark import chosen_arms

    exp = _exp()
    names = lambda methods: [a.name for a in chosen_arms(BenchmarkConfig(methods=methods), exp)]
    assert names(()) == list(exp.extra["default"]) and "flowe" not in names(())
    assert names(("flowe",)) == ["pixels", "colour", "random", "supervised", "flowe"]
    assert set(names(("all",))) == set(exp.arms)
    kinds = {kind for _, _, kind, _ in jobs(BenchmarkConfig(methods=("simclr",)), exp)}
    assert kinds == {"deeplabv3plus"}  # the references on the picked method's architecture only
    # ... named as in a run of both architectures, so that the committed records are reused
    rows = {row for row, _, _, _ in jobs(BenchmarkConfig(methods=("simclr",)), exp)}
    both = {row for row, _, _, _ in jobs(BenchmarkConfig(), exp)}
    assert {"random@deeplabv3plus", "supervised@deeplabv3plus", "pixels@deeplabv3plus"} <= rows & both
    committed = Path(__file__).resolve().parents[2] / "docs" / "results" / "benchmark" / "run" / "readouts"
    assert {f"{r}_s0.json" for r in both} <= {f.name for f in committed.glob("*.json")}


def test_a_run_directory_is_resumed_only_with_its_own_settings(tmp_path):
    from regconsist_ros.config import ConfigError
    from regconsist_ros.experiments.benchmark import check_same_settings

    cfg = BenchmarkConfig(out=str(tmp_path))
    (tmp_path / "experiment.json").write_text(json.dumps({**json.loads(json.dumps(asdict(cfg))),
                                                          "ceiling_steps": 50}))
    with pytest.raises(ConfigError, match=f"ceiling_steps: 50 -> {cfg.ceiling_steps}"):
        check_same_settings(cfg)
    check_same_settings(BenchmarkConfig(out=str(tmp_path / "new")))  # a fresh directory is fine
    (tmp_path / "experiment.json").write_text(json.dumps(json.loads(json.dumps(asdict(cfg)))))
    check_same_settings(BenchmarkConfig(out=str(tmp_path), methods=("pixels",), curve_steps=(10,)))  # free settings


def test_the_ceiling_zooms_to_the_scale_it_is_read_out_at():
    from regconsist_ros.experiments.benchmark import ceiling_zoom

    on = BenchmarkConfig(ceiling_zoom=True)  # ViTs read at 256x192 after training at 128x96
    assert ceiling_zoom(on, "vit") == 2.0 and ceiling_zoom(on, "deeplabv3plus") == 1.0
    assert ceiling_zoom(BenchmarkConfig(), "vit") == 1.0  # off by default
    with pytest.raises(ValueError, match="report"):
        BenchmarkConfig(report="train")


def test_report_val_scores_the_validation_apartments_and_says_so(tmp_path):
    cfg = BenchmarkConfig(out=str(tmp_path / "v"), methods=("pixels",), world="default", report="val",
                          train_seeds=(1,), val_seeds=(50, 51), test_seeds=(100,), train_frames=12, eval_frames=20,
                          eval_width=64, eval_height=48, width=64, height=48, clip_len=10, seeds=1,
                          vit_depth=1, search=False, train_width=64, train_height=48, ceiling_steps=2, ceiling_zoom=True)
    run(cfg, _exp())
    rec = json.loads((tmp_path / "v" / "readouts" / "supervised@vit_s0.json").read_text())
    assert len(rec["probe"]["per_apartment"]) == 2  # both validation apartments, not the one test apartment
    assert "validation apartments themselves" in (tmp_path / "v" / "results.md").read_text()


def test_each_deeplab_method_trains_at_its_own_optimizers_lr_and_other_settings_are_not_reused(tmp_path):
    from regconsist_ros.experiments.benchmark import _done, method_run
    from regconsist_ros.models.checkpoint import save_checkpoint
    from regconsist_ros.models.encoder import random_encoder

    exp, cfg = _exp(), BenchmarkConfig(dense_lr=0.02, dense_adamw_lr=1e-3)
    sgd, adamw = (method_run(exp.arms[m], cfg, "deeplabv3plus", 0) for m in ("regconsist", "simclr"))
    assert (sgd.trainer.optimizer, sgd.trainer.lr) == ("sgd", 0.02)  # one lr for both gave AdamW 20x its own
    assert (adamw.trainer.optimizer, adamw.trainer.lr) == ("adamw", 1e-3)
    assert method_run(exp.arms["mae"], cfg, "vit", 0).trainer.lr == cfg.lr
    # a finished pretraining run is reused only when it was made with the same settings
    run_dir = tmp_path / "simclr_s0"
    model = random_encoder("vit", {"size": "tiny", "depth": 1, "img_size": (32, 32)})
    from regconsist_ros.models.vit import ViTConfig

    def saved(tree):
        save_checkpoint(run_dir / "checkpoints" / f"step_{adamw.trainer.steps:08d}", model, "vit",
                        ViTConfig(size="tiny", depth=1, img_size=(32, 32)), step=adamw.trainer.steps,
                        meta={"settings": tree})
        return _done(run_dir, adamw)

    tree = json.loads(json.dumps(adamw.tree(), default=str))
    assert saved(tree) is not None
    tree["simclr"]["trainer"]["lr"] = 0.02
    assert saved(tree) is None


def test_paired_comparisons_of_the_definition_list():
    from regconsist_ros.experiments.benchmark_report import comparisons, comparisons_markdown

    rng = np.random.default_rng(1)
    objs, views = 30, 40
    recs = []
    for s in range(3):
        recs.append(_record("good", "method", "vit", s, rng.uniform(0.5, 0.6, objs), rng.uniform(0.5, 0.6, views)))
        recs.append(_record("bad", "method", "vit", s, rng.uniform(0.2, 0.3, objs), rng.uniform(0.5, 0.6, views)))
    comps = comparisons(recs, [["good", "bad"], ["good", "missing"]])
    assert [(c["a"], c["b"]) for c in comps] == [("good", "bad")]  # a pair with a row missing is left out
    c = comps[0]
    assert c["seeds"] == [3, 3] and c["JF"]["low"] > 0.2 and c["JF"]["low"] < c["JF"]["diff"] < c["JF"]["high"]
    assert c["miou"]["low"] < 0 < c["miou"]["high"]  # the same distribution: no difference
    line = next(ln for ln in comparisons_markdown(comps).splitlines() if ln.startswith("| good |"))
    jf, miou = line.strip("|").split("|")[3:5]
    assert jf.strip().endswith("*") and not miou.strip().endswith("*")
    assert comparisons_markdown([]) == ""
