"""RSP's latent diagnostics in experiment reports: the end-of-run summary, the benchmark table, the figure."""
import math

import pytest

from regconsist_ros.experiments.latent_use import latent_markdown, latent_use, latent_use_figure


def _rows(n, gain, kl=2.0):
    """n logged rows; only every other one carries the diagnostics (as on a run resumed from older logs)."""
    rows = []
    for i in range(n):
        r = {"step": 10 * (i + 1), "loss": 1.0}
        if i % 2:
            post = 1.0 - 0.01 * i
            r.update(diag_pred_post=post, diag_pred_prior=post + gain(i), diag_latent_gain=gain(i), diag_kl=kl)
        rows.append(r)
    return rows


def test_the_summary_averages_the_last_quarter_of_the_diagnosed_rows():
    rows = _rows(16, gain=lambda i: 0.1 if i >= 12 else 0.0)  # 8 diagnosed rows: i = 1, 3, ..., 15
    u = latent_use(rows)
    assert u["rows"] == 2  # a quarter of the 8 diagnosed rows: i = 13 and 15
    assert u["latent_gain"] == pytest.approx(0.1) and u["latent_gain_std"] == pytest.approx(0.0)
    assert u["pred_post"] == pytest.approx(1.0 - 0.01 * 14) and u["kl"] == pytest.approx(2.0)
    assert latent_use([{"step": 1, "loss": 1.0}]) is None and latent_use([]) is None
    # a metrics file a second training from scratch appended to: only the latest training counts
    again = _rows(16, gain=lambda i: 0.1 if i >= 12 else 0.0) + _rows(8, gain=lambda i: 0.5)
    assert latent_use(again)["latent_gain"] == pytest.approx(0.5) and latent_use(again)["rows"] == 1


def test_the_benchmark_table_averages_seeds_and_skips_rows_without_a_latent(tmp_path):
    recs = [{"row": "rsp", "label": "RSP", "seed": s, "latent_use": latent_use(_rows(8, gain=lambda i, s=s: 0.01 * (s + 1)))}
            for s in range(3)]
    recs.append({"row": "mae", "label": "MAE", "seed": 0})
    md = latent_markdown(recs)
    line = next(ln for ln in md.splitlines() if ln.startswith("| RSP |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "3" and cells[4].startswith("+0.0200 (0.0082)")  # mean 0.02, population std of .01/.02/.03
    assert "| MAE |" not in md and latent_markdown([{"row": "mae", "seed": 0}]) == ""
    assert math.isclose(float(cells[3]) - float(cells[2]), 0.02, abs_tol=1e-4)
    path = latent_use_figure({"rsp_s0": _rows(8, gain=lambda i: 0.0), "mae_s0": [{"step": 1, "loss": 1.0}]},
                             tmp_path / "latent.png")
    assert path is not None and path.stat().st_size > 1000
    assert latent_use_figure({"mae_s0": [{"step": 1, "loss": 1.0}]}, tmp_path / "none.png") is None
