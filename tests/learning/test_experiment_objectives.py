"""`regconsist experiment objectives` end to end at toy scale, and its resume."""
import json

from regconsist_ros.cli import main

TOY = ["--frames", "30", "--eval_frames", "20", "--clip_len", "10", "--steps", "2", "--batch", "4", "--finetune_steps", "2",
       "--labels", "0.2", "--eval_views", "5", "--width", "64", "--height", "48", "--json"]


def test_objectives_experiment_table_and_resume(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "objectives", "--out", str(out), "--methods", "random", "tcn", "shuffle", "flowe", *TOY]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(r["table"]) == {"random", "tcn", "shuffle", "flowe"}
    assert all(0 <= v["miou"] <= 1 and 0 <= v["JF"] <= 1 for v in r["table"].values())
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == 4 and "| flowe |" in md and (out / "objectives.png").stat().st_size > 5000
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert runs["random"]["checkpoint"] is None and runs["flowe"]["checkpoint"].endswith("step_00000002")
    before = (out / "evals" / "tcn.json").stat().st_mtime_ns
    assert main(args) == 0  # resumed: finished readouts are reused, not recomputed
    assert (out / "evals" / "tcn.json").stat().st_mtime_ns == before
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["table"] == r["table"]
    assert main(["experiment", "objectives", "--out", str(out), "--methods", "nope", *TOY]) == 2
