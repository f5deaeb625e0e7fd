"""The evaluator without ROS: complete checkpoints only, newest first, results survive a restart."""
import json

import pytest

from regconsist_ros.models.checkpoint import save_checkpoint
from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.encoder import random_encoder
from regconsist_ros.models.vit import ViTConfig
from regconsist_ros.online.evaluator import Evaluator, EvaluatorConfig, complete_checkpoints

VIT = ViTConfig(size="tiny", img_size=(32, 48), patch=8, depth=1)


def _cfg(tmp_path, **kw):
    return EvaluatorConfig(watch_dir=str(tmp_path / "online"), eval_frames=8, clip_len=4, eval_width=64, eval_height=48,
                           min_object_pixels=20, seg_steps=2, **kw)


def test_only_complete_checkpoints_are_seen_and_the_newest_is_evaluated(tmp_path):
    root = tmp_path / "online" / "rsp" / "checkpoints"
    vit = random_encoder("vit", VIT)
    for step in (5, 10):
        save_checkpoint(root / f"step_{step:08d}", vit, "vit", VIT, step=step)
    (root / ".step_00000015.tmp-123").mkdir()  # a save in progress (hidden temp directory)
    (root / "step_00000020").mkdir()  # a directory without weights: not complete
    (root / "step_00000020" / "config.json").write_text("{}")
    assert [s for s, _ in complete_checkpoints(tmp_path / "online")["rsp"]] == [5, 10]
    ev = Evaluator(_cfg(tmp_path, readouts=("propagation",), floors=False))  # floors: tested below
    rows = ev.poll()
    assert [(r["objective"], r["step"]) for r in rows] == [("rsp", 10)] and ev.skipped == 1
    assert 0 <= rows[0]["propagation"]["JF_mean"] <= 1
    assert ev.poll() == []  # nothing new
    # a restarted evaluator reads its results file and does not redo step 10
    again = Evaluator(_cfg(tmp_path, readouts=("propagation",), floors=False))
    assert again.pending() == [] or all(s != 10 for _, s, _ in again.pending())
    lines = [json.loads(l) for l in (tmp_path / "online" / "eval_results.jsonl").read_text().splitlines()]
    assert [(l["objective"], l["step"]) for l in lines] == [("rsp", 10)]


def test_probe_for_every_encoder_finetuning_for_dense_ones_and_floors_beside(tmp_path):
    dl_cfg = DeepLabConfig.small(width=0.25, aspp_channels=32, decoder_channels=32)
    dl = random_encoder("deeplabv3plus", dl_cfg)
    save_checkpoint(tmp_path / "online" / "regconsist" / "checkpoints" / "step_00000003", dl, "deeplabv3plus", dl_cfg, step=3)
    save_checkpoint(tmp_path / "online" / "rsp" / "checkpoints" / "step_00000003", random_encoder("vit", VIT), "vit", VIT, step=3)
    polled = Evaluator(_cfg(tmp_path)).poll()
    rows = {r["objective"]: r for r in polled if r["objective"] != "floors"}
    floors = {r["kind"]: r["floors"] for r in polled if r["objective"] == "floors"}
    assert 0 <= rows["regconsist"]["segmentation"]["miou"] <= 1
    assert "skipped" in rows["rsp"]["segmentation"]["finetune"] and "propagation" in rows["rsp"]
    for r in rows.values():
        assert 0 <= r["segmentation"]["probe_miou"] <= 1  # the frozen linear probe reads out a ViT too
    assert set(floors) == {"vit", "deeplabv3plus"}  # one set per architecture, after its first checkpoint
    for f in floors.values():
        assert set(f) == {"pixels", "colour", "random"}
        for floor in f.values():
            assert 0 <= floor["propagation"]["JF_objects"] <= 1 and 0 <= floor["segmentation"]["probe_miou"] <= 1
            assert "miou" not in floor["segmentation"]  # floors are probed, not fine-tuned
    # a restarted evaluator reads the floors back instead of computing them again
    again = Evaluator(_cfg(tmp_path))
    assert len(again._floors) == 2


def test_a_corrupt_checkpoint_is_reported_not_fatal(tmp_path):
    root = tmp_path / "online" / "rsp" / "checkpoints" / "step_00000007"
    save_checkpoint(root, random_encoder("vit", VIT), "vit", VIT, step=7)
    (root / "model.safetensors").write_bytes(b"garbage")
    ev = Evaluator(_cfg(tmp_path))
    rows = ev.poll()
    assert "corrupt or truncated" in rows[0]["quarantined"] and "quarantined" in rows[0]["error"] and ev.failed == 1


def test_config_errors():
    with pytest.raises(ValueError, match="readouts"):
        EvaluatorConfig(readouts=("bc_everything",))
    with pytest.raises(ValueError, match="clip_len"):
        EvaluatorConfig(clip_len=50, eval_frames=40)


def test_bc_readout_runs_for_each_new_checkpoint(tmp_path):
    """The evaluator calls the BC readout (real MetaWorld) with the settings of its YAML file."""
    (tmp_path / "bc.yaml").write_text(
        "bc: {demos: 2, episodes: 2, eval_every: 1, horizon: 10, render_size: 48, crop_size: 32, videos: 0,"
        f" demo_dir: {tmp_path / 'demos'}}}\npolicy: {{epochs: 2}}\n")
    save_checkpoint(tmp_path / "online" / "rsp" / "checkpoints" / "step_00000004", random_encoder("vit", VIT), "vit", VIT, step=4)
    ev = Evaluator(_cfg(tmp_path, readouts=("bc",), bc_config=str(tmp_path / "bc.yaml")))
    (row,) = ev.poll()
    bc = row["bc"]
    assert "error" not in bc, bc
    assert 0 <= bc["button-press-topdown"]["success"] <= bc["button-press-topdown"]["best_success"] <= 1
    assert 0 <= bc["iqm_success"] <= 1 and "propagation" not in row
    result = tmp_path / "online" / "bc_eval" / "metaworld" / "rsp_step00000004" / "button-press-topdown" / "result.json"
    assert json.loads(result.read_text())["episodes"] == 2
    (tmp_path / "bad.yaml").write_text("bc: {demos: 0}\npolicy: {}\n")
    save_checkpoint(tmp_path / "online" / "rsp" / "checkpoints" / "step_00000008", random_encoder("vit", VIT), "vit", VIT, step=8)
    (row,) = Evaluator(_cfg(tmp_path, readouts=("bc",), bc_config=str(tmp_path / "bad.yaml"))).poll()
    assert "demos" in row["bc"]["error"]  # a bad BC setting is reported in the row, the evaluator goes on


def test_the_demo_report_lists_the_floors_before_the_checkpoints(tmp_path):
    from regconsist_ros.report import write_report

    online = tmp_path / "online"
    online.mkdir()
    floors = {"pixels": {"propagation": {"JF_mean": 0.3, "J_mean": 0.35, "F_mean": 0.25}, "segmentation": {"probe_miou": 0.2}},
              "random": {"propagation": {"JF_mean": 0.28}, "segmentation": {"probe_miou": 0.15}}}
    row = {"objective": "rsp", "step": 10, "kind": "vit", "propagation": {"JF_mean": 0.41}, "floors": floors,
           "segmentation": {"probe_miou": 0.33}}
    (online / "eval_results.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "report").mkdir()
    text = write_report(tmp_path / "report", online, None, {}).read_text()
    table = [l for l in text.splitlines() if l.startswith("| ")]
    assert table[1].startswith("| pixels (vit) | floor | 30.0") and table[2].startswith("| random (vit) | floor | 28.0")
    assert table[3].startswith("| rsp | 10 | 41.0") and "| 33.0 |" in table[3]
    assert (tmp_path / "report" / "readouts.png").exists()


def test_a_stop_request_waits_for_one_readout_not_for_every_floor(tmp_path):
    save_checkpoint(tmp_path / "online" / "rsp" / "checkpoints" / "step_00000003", random_encoder("vit", VIT), "vit", VIT, step=3)
    asked = []

    def stop_after(n):
        def should_stop():
            asked.append(1)
            return len(asked) > n
        return should_stop

    assert Evaluator(_cfg(tmp_path, readouts=("propagation",)), should_stop=stop_after(0)).poll() == []
    asked.clear()
    ev = Evaluator(_cfg(tmp_path, readouts=("propagation",)), should_stop=stop_after(3))
    rows = ev.poll()
    assert [r["objective"] for r in rows] == ["rsp"] and "propagation" in rows[0]  # its own readout finished
    assert ev._floors == {}  # stopped between floors: nothing half-done is kept or written


def test_each_row_is_handed_on_as_soon_as_it_is_written(tmp_path):
    save_checkpoint(tmp_path / "online" / "rsp" / "checkpoints" / "step_00000003", random_encoder("vit", VIT), "vit", VIT, step=3)
    seen = []
    ev = Evaluator(_cfg(tmp_path, readouts=("propagation",)))
    rows = ev.poll(on_row=lambda r: seen.append((r["objective"], len(ev.done))))
    assert [o for o, _ in seen] == ["rsp", "floors"] and [r["objective"] for r in rows] == ["rsp", "floors"]
    assert seen[0][1] == 1  # the checkpoint's row was handed on before the floors were computed
