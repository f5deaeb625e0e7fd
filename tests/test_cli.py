"""The `regconsist` command line, run for real on tiny images."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regconsist_ros.cli import main
from regconsist_ros.sim.sequences import read_tum

ROOT = Path(__file__).resolve().parents[1]
W, H = 64, 48


def run_cli(argv) -> tuple[int, str, str]:
    """main(argv) with stdout / stderr captured (usable from module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """`regconsist sim render` once for the module: (sequence dir, its JSON result)."""
    out = tmp_path_factory.mktemp("cli") / "seq"
    rc, stdout, stderr = run_cli(["sim", "render", "--sim.frames", 6, "--sim.width", W, "--sim.height", H, "--sim.seed", 1,
                                  "--out", out, "--json", "--quiet"])
    assert rc == 0, stderr
    return out, last_json(stdout)


def correspond_json(seq, *extra) -> tuple[int, dict | None, str]:
    rc, stdout, stderr = run_cli(["correspond", seq, "--pair", 0, 2, "--json", *extra])
    return rc, (last_json(stdout) if rc == 0 else None), stderr


# ---- sim render -----------------------------------------------------------------------------------
def test_sim_render_writes_a_readable_tum_sequence(rendered):
    seq_dir, result = rendered
    assert result["frames"] == 6
    assert (result["width"], result["height"], result["seed"]) == (W, H, 1)
    assert result["out"] == str(seq_dir)
    seq = read_tum(seq_dir)
    assert len(seq) == 6
    assert (seq.intrinsics.width, seq.intrinsics.height) == (W, H)
    assert seq.has_semantic and seq.has_instance
    assert seq.classes is not None and "cup" in seq.classes.names
    assert seq.depth_scale == 5000.0
    f = seq[3]
    assert f.rgb.shape == (H, W, 3) and f.depth.dtype == np.float32
    assert (f.depth > 0).mean() > 0.9
    assert f.semantic.max() < len(seq.classes) and f.instance.max() > 0
    assert np.all(np.diff(seq.stamps) > 0)
    assert not np.allclose(seq.poses[0], seq.poses[-1])  # the camera moves


def test_sim_render_json_is_the_last_line_and_quiet_hides_progress(rendered, tmp_path, capsys):
    rc = main(["sim", "render", "--sim.frames", "2", "--sim.width", "32", "--sim.height", "24", "--sim.seed", "2",
               "--out", str(tmp_path / "s"), "--json", "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0
    assert last_json(cap.out)["frames"] == 2
    assert "render:" not in cap.err  # no tqdm bar with --quiet
    assert len(read_tum(tmp_path / "s")) == 2


def test_sim_render_refuses_a_non_empty_directory_without_overwrite(rendered, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "rgb.txt").write_text("# old\n")
    args = ["sim", "render", "--sim.frames", 2, "--sim.width", 32, "--sim.height", 24, "--out", out, "--quiet"]
    rc, _, err = run_cli(args)
    assert rc == 2 and "not empty" in err
    rc, _, err = run_cli(args + ["--overwrite"])
    assert rc == 0, err
    assert len(read_tum(out)) == 2


def test_sim_render_bad_config_value_exits_2_naming_it(tmp_path):
    rc, _, err = run_cli(["sim", "render", "--sim.width", 4, "--out", tmp_path / "x", "--quiet"])
    assert rc == 2 and "image size" in err and "4x" in err
    rc, _, err = run_cli(["sim", "render", "--sim.trajectory", "zigzag", "--out", tmp_path / "x"])
    assert rc == 2 and "zigzag" in err  # argparse choice error from the Literal field


# ---- correspond ---------------------------------------------------------------------------------
def test_correspond_json_and_npz(rendered, tmp_path):
    seq_dir, _ = rendered
    out = tmp_path / "sub" / "pairs.npz"
    rc, res, err = correspond_json(seq_dir, "--out", out)
    assert rc == 0, err
    assert isinstance(res["pairs"], int) and res["pairs"] > 0
    assert isinstance(res["overlap_iou"], float) and 0.0 < res["overlap_iou"] <= 1.0
    assert isinstance(res["ms"], float) and res["ms"] >= 0
    assert (res["i"], res["j"]) == (0, 2)
    assert res["out"] == str(out)
    z = np.load(out)
    uv1, uv2 = z["uv1"], z["uv2"]
    assert uv1.shape == (res["pairs"], 2) and uv2.shape == (res["pairs"], 2)
    np.testing.assert_array_equal(uv1, np.round(uv1))  # source pixels are integer pixel centres
    for uv in (uv1, uv2):
        assert (uv[:, 0] >= -0.5).all() and (uv[:, 0] <= W - 0.5).all()
        assert (uv[:, 1] >= -0.5).all() and (uv[:, 1] <= H - 0.5).all()
    assert len(np.unique(uv1, axis=0)) == len(uv1)
    np.testing.assert_array_equal(z["pair"], [0, 2])
    assert float(z["overlap_iou"]) == pytest.approx(res["overlap_iou"], abs=1e-6)


def test_correspond_matches_the_library(rendered):
    from regconsist_ros.registration.geometry import correspond

    seq_dir, _ = rendered
    rc, res, err = correspond_json(seq_dir)
    assert rc == 0, err
    seq = read_tum(seq_dir)
    c = correspond(seq[0], seq[2])
    assert res["pairs"] == len(c)
    assert res["overlap_iou"] == pytest.approx(c.overlap_iou, abs=1e-6)


def test_correspond_human_output_without_json(rendered, capsys):
    seq_dir, _ = rendered
    assert main(["correspond", str(seq_dir), "--pair", "1", "3"]) == 0
    out = capsys.readouterr().out
    assert "pairs: " in out and "overlap_iou: " in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.strip().splitlines()[-1])


def test_correspond_intrinsics_override(rendered):
    seq_dir, _ = rendered
    K = json.loads((seq_dir / "intrinsics.json").read_text())
    rc, base, _ = correspond_json(seq_dir)
    same = f"{K['fx']},{K['fy']},{K['cx']},{K['cy']}"
    rc1, res_same, err = correspond_json(seq_dir, "--intrinsics", same)
    assert rc == rc1 == 0, err
    assert (res_same["pairs"], res_same["overlap_iou"]) == (base["pairs"], base["overlap_iou"])
    rc2, res_wrong, err = correspond_json(seq_dir, "--intrinsics", f"{K['fx'] * 1.5},{K['fy'] * 1.5},{K['cx']},{K['cy']}")
    assert rc2 == 0, err
    assert (res_wrong["pairs"], res_wrong["overlap_iou"]) != (base["pairs"], base["overlap_iou"])
    rc3, _, err = correspond_json(seq_dir, "--intrinsics", "1,2,3")
    assert rc3 == 2 and "fx,fy,cx,cy" in err


def test_correspond_depth_scale_override(rendered):
    seq_dir, _ = rendered
    rc, base, _ = correspond_json(seq_dir)
    rc1, res_same, _ = correspond_json(seq_dir, "--depth-scale", "5000")
    assert (res_same["pairs"], res_same["overlap_iou"]) == (base["pairs"], base["overlap_iou"])
    # 10x the true depths (about 4.6 .. 15 m here): far pixels leave max_range (10 m), so fewer pairs
    rc2, res_wrong, err = correspond_json(seq_dir, "--depth-scale", "500")
    assert rc2 == 0, err
    assert res_wrong["valid1"] < base["valid1"] and res_wrong["pairs"] < base["pairs"]
    # so far that no pixel is valid: a clear error, not a crash
    rc4, _, err = correspond_json(seq_dir, "--depth-scale", "100")
    assert rc4 == 2 and "no valid depth" in err
    rc3, _, err = correspond_json(seq_dir, "--depth-scale", "-5")
    assert rc3 == 2


@pytest.mark.parametrize("pair,bad", [(("0", "7"), 7), (("6", "1"), 6), (("-1", "2"), -1)])
def test_correspond_out_of_range_pair_exits_2_naming_the_index(rendered, pair, bad):
    seq_dir, _ = rendered
    rc, out, err = run_cli(["correspond", seq_dir, "--pair", *pair, "--json"])
    assert rc == 2
    assert f"index {bad} out of range" in err and "6 associated frames" in err
    assert out == ""
    assert "Traceback" not in err


def test_correspond_missing_sequence_exits_2(tmp_path):
    missing = tmp_path / "no_such_seq"
    rc, out, err = run_cli(["correspond", missing, "--pair", 0, 1, "--json"])
    assert rc == 2
    assert str(missing) in err and "not found" in err
    assert out == ""


def test_correspond_config_flags_are_validated(rendered):
    seq_dir, _ = rendered
    rc, res_loose, err = correspond_json(seq_dir, "--correspondence.rel_tol", "0.5")
    rc0, base, _ = correspond_json(seq_dir)
    assert rc == 0, err
    assert res_loose["pairs"] >= base["pairs"]  # a looser occlusion test never loses pairs
    rc2, _, err = correspond_json(seq_dir, "--correspondence.rel_tol", "2")
    assert rc2 == 2 and "rel_tol" in err


# ---- bench ----------------------------------------------------------------------------------------
def test_bench_sim_prints_json():
    rc, out, err = run_cli(["bench", "sim", "--width", W, "--height", H, "--n", 2])
    assert rc == 0, err
    res = last_json(out)
    assert res["bench"] == "sim" and res["frames"] == 2 and (res["width"], res["height"]) == (W, H)
    assert res["fps"] > 0 and res["ms_mean"] > 0
    assert res["fps"] == pytest.approx(1000.0 / res["ms_mean"], rel=0.05)
    assert res["triangles"] > 1000


def test_bench_correspond_prints_json():
    rc, out, err = run_cli(["bench", "correspond", "--width", W, "--height", H, "--n", 2])
    assert rc == 0, err
    res = last_json(out)
    assert res["bench"] == "correspond" and res["pairs"] == 2
    assert res["ms_mean"] > 0 and res["ms_median"] > 0
    assert res["correspondences_mean"] > 0 and 0 < res["overlap_iou_mean"] <= 1


# ---- demo -----------------------------------------------------------------------------------------
def test_demo_writes_figure_and_pairs(tmp_path):
    out = tmp_path / "demo"
    rc, stdout, err = run_cli(["demo", "--demo.out", out, "--demo.frames", 12, "--demo.width", 96, "--demo.height", 72,
                               "--demo.show", 2, "--demo.online_seconds", 0, "--json"])  # the online graph: tests/ros/test_graph.py
    assert rc == 0, err
    res = last_json(stdout)
    assert res["frames"] == 12 and res["view_pairs"] > 0
    assert 1 <= len(res["shown"]) <= 2
    fig = out / "correspondences.png"
    assert fig.is_file() and res["figure"] == str(fig)
    from PIL import Image

    with Image.open(fig) as im:
        assert im.size[0] > 96 and im.size[1] > 72
    pairs = json.loads((out / "pairs.json").read_text())
    assert len(pairs["pairs"]) == res["view_pairs"]
    lo, hi = res["iou_band"]
    for p in pairs["pairs"]:
        assert 0 <= p["i"] < p["j"] < 12 and lo <= p["iou"] <= hi
    for s in res["shown"]:
        assert s["pairs"] > 0 and 0 <= s["instance_agreement"] <= 1
    assert len(read_tum(out / "sequence")) == 12
    assert (out / "regions.png").is_file() and "regions.png" in (out / "report.md").read_text()


def test_demo_rejects_bad_config(tmp_path):
    rc, _, err = run_cli(["demo", "--demo.out", tmp_path / "d", "--demo.frames", 1])
    assert rc == 2 and "DemoConfig.frames" in err


# ---- the installed entry points ---------------------------------------------------------------------
def test_console_script_help_lists_subcommands():
    exe = Path(sys.executable).parent / "regconsist"
    cmd = [str(exe), "--help"] if exe.is_file() else [sys.executable, "-m", "regconsist_ros.cli", "--help"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    for sub in ("sim", "correspond", "bench", "demo"):
        assert sub in p.stdout


def test_module_entry_point_propagates_exit_code(tmp_path):
    p = subprocess.run([sys.executable, "-m", "regconsist_ros.cli", "correspond", str(tmp_path / "nope"),
                        "--pair", "0", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 2
    assert "not found" in p.stderr and "Traceback" not in p.stderr


def test_missing_subcommand_is_a_usage_error():
    rc, _, err = run_cli([])
    assert rc == 2 and "required: cmd" in err and "regconsist --help" in err and len(err.strip().splitlines()) == 1


def test_bench_regions_prints_both_timings(capsys):
    from regconsist_ros.cli import main as cli_main

    assert cli_main(["bench", "regions", "--width", "96", "--height", "72", "--n", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["cantor_ms"] > 0 and out["bruteforce_ms"] > 0 and out["n_regions"] > 1


def test_bench_registration_rejects_a_set_without_a_value(capsys):
    from regconsist_ros.cli import main

    assert main(["bench", "registration", "--set", "work_queue", "--seconds", "1"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
