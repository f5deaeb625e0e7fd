"""Aggregates of the BC readout: IQM, stratified bootstrap CIs, the summary files."""
import json

import numpy as np
import pytest

from regconsist_ros.readout.bc_stats import bootstrap_iqm, iqm, summarise


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([0.0, 0.2, 0.4, 0.6, 1.0]) == pytest.approx(0.4)  # 5 tasks: the middle 3
    assert iqm([0.0, 1.0, 1.0, 1.0]) == pytest.approx(1.0)  # the middle 2 of 4
    assert iqm([0.3]) == pytest.approx(0.3)


def test_bootstrap_ci_brackets_the_point_and_collapses_without_variance():
    assert bootstrap_iqm([[1] * 10, [1] * 10, [0] * 10]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert bootstrap_iqm([[1] * 10, [1] * 10, [0] * 10, [1] * 4]) == (pytest.approx(1.0), pytest.approx(1.0))
    outs = [[1, 0] * 5, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0], [1] * 8 + [0] * 2]
    lo, hi = bootstrap_iqm(outs, reps=4000)
    point = iqm([np.mean(o) for o in outs])
    assert lo < point < hi and 0 <= lo and hi <= 1 and hi - lo > 0.1
    lo2, hi2 = bootstrap_iqm([o * 10 for o in outs], reps=4000)  # 10x the rollouts: a narrower interval
    assert hi2 - lo2 < 0.6 * (hi - lo)


def _result(enc, task, final, best):
    n = len(final)
    return {"suite": "metaworld", "task": task, "encoder": enc, "status": "ok", "episodes": n,
            "success": float(np.mean(final)), "best_success": float(np.mean(best)), "best_epoch": 10,
            "final_outcomes": final, "best_outcomes": best,
            "evaluations": [{"epoch": 5, "success": 0.0}, {"epoch": 10, "success": float(np.mean(final))}]}


def test_summarise_writes_table_plots_and_reports_missing_tasks(tmp_path):
    tasks = ["a", "b", "c"]
    results = [_result("random", t, [0, 1, 0, 0], [1, 1, 0, 0]) for t in tasks]
    results += [_result("rsp", "a", [1, 1, 1, 1], [1, 1, 1, 1]), _result("rsp", "b", [1, 1, 0, 0], [1, 1, 1, 0]),
                {"suite": "metaworld", "task": "c", "encoder": "rsp", "status": "no demonstrations", "reason": "none here"}]
    s = summarise(results, tmp_path, tasks, reps=500)
    assert s["encoders"]["random"]["iqm_success"] == pytest.approx(0.25)
    assert s["encoders"]["random"]["iqm_best_success"] == pytest.approx(0.5)
    assert s["encoders"]["random"]["complete"] and not s["encoders"]["rsp"]["complete"]
    assert s["encoders"]["rsp"]["mean_success"] == pytest.approx(0.75)
    assert s["missing"] == [{"encoder": "rsp", "task": "c", "status": "no demonstrations", "reason": "none here"}]
    assert json.loads((tmp_path / "summary.json").read_text())["tasks"] == tasks
    md = (tmp_path / "results.md").read_text()
    # results of one training seed without encoder info (the layout before training seeds): still summarised
    assert "| random | 25 (50) | 25 (50) | 25 (50) | 1 | 25.0" in md and "n/a" in md and "no demonstrations" in md
    assert s["encoders"]["random"]["seeds"] == 1 and s["comparisons"] == []
    for name in ("success_vs_epoch.png", "iqm.png"):
        assert (tmp_path / name).stat().st_size > 5000
