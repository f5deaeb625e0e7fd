"""The BC readout under the CortexBench protocol: training seeds (cached, resumed), the IQM over seeds x tasks
with intervals, paired differences against random and the floors, success / failure GIFs, floors by name.

Everything runs on stand-in suites (no MetaWorld): a few frames and a few steps per episode."""
import json

import numpy as np
import pytest
import torch

from regconsist_ros.readout import bc_run
from regconsist_ros.readout.bc import BCConfig
from regconsist_ros.readout.bc_run import BCReadoutConfig, Encoder, gif_picks, resolve_encoder, run_readout, run_task
from regconsist_ros.readout.bc_stats import summarise
from regconsist_ros.readout.demos import Episode
from regconsist_ros.readout.stats import iqm, iqm_ci, paired_bootstrap_diff
from regconsist_ros.readout.suites.base import Obs

STATE = Encoder("state", None, {"init": "state", "kind": "state"})


class SeedEnv:
    """Success is decided by the seed: even seeds reach the goal at step 2, odd ones run to the horizon (4)
    (``always`` = every seed succeeds). Frames are noise drawn from the seed and the step."""

    action_dim, horizon = 2, 4

    def __init__(self, always: bool = False, size: int = 32):
        self.always, self.size = always, size

    def _obs(self) -> Obs:
        rng = np.random.default_rng(self.seed * 100 + self.t)
        img = rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
        return Obs(img, np.full(2, self.t, np.float32), np.array([self.seed, self.t], np.float32))

    def reset(self, seed: int) -> Obs:
        self.seed, self.t = int(seed), 0
        return self._obs()

    def step(self, action):
        self.t += 1
        success = self.t >= 2 and (self.always or self.seed % 2 == 0)
        return self._obs(), success, self.t >= self.horizon

    def close(self):
        pass


class StubSuite:
    """Demonstrations of 12 noise frames each; counts what it is asked for."""

    name, tasks = "stub", ("reach", "push")

    def __init__(self, always: bool = False, size: int = 32):
        self.always, self.size, self.demo_calls, self.envs_made = always, size, 0, 0

    def demonstrations(self, task, spec, n, root, progress=False):
        self.demo_calls += 1
        rng = np.random.default_rng(len(task))
        return [Episode(frames=rng.integers(0, 256, (12, self.size, self.size, 3), dtype=np.uint8),
                        actions=rng.normal(size=(12, 2)), proprio=rng.normal(size=(12, 2)),
                        states=rng.normal(size=(12, 2)), success=True, seed=i) for i in range(n)]

    def make_env(self, task, spec):
        self.envs_made += 1
        return SeedEnv(self.always, self.size)


class ZeroAgent:
    """Stands in for ``bc_run.Agent``: no policy, the environment decides the outcome (plain callable)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, obs):
        return np.zeros(2, np.float32)


def _cfg(**kw):
    base = dict(suite="stub", demos=2, episodes=6, eval_every=1, render_size=32, crop_size=32, envs=3, env_workers=0)
    return BCReadoutConfig(**{**base, **kw})


def test_protocol_defaults():
    cfg, bc = BCReadoutConfig(), BCConfig()
    assert (cfg.demos, cfg.episodes, cfg.eval_every, cfg.seeds, bc.epochs) == (25, 25, 5, 3, 100)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="seeds"):
            BCReadoutConfig(seeds=bad)


def test_seeds_are_cached_apart_and_resume(tmp_path, monkeypatch):
    suite = StubSuite()
    monkeypatch.setattr(bc_run, "get_suite", lambda name: suite)
    trained = []
    real = bc_run.train_and_evaluate
    monkeypatch.setattr(bc_run, "train_and_evaluate", lambda *a, **k: trained.append(a[3].seed) or real(*a, **k))
    bc = BCConfig(epochs=2, batch=8, seed=5)
    r2 = run_task("reach", STATE, _cfg(seeds=2), bc, tmp_path, progress=False)
    tdir = tmp_path / "stub" / "state" / "reach"
    assert trained == [5, 6] and r2["seeds"] == [5, 6] and not r2["resumed"]
    a, b = (json.loads((tdir / f"seed{s}" / "result.json").read_text()) for s in (5, 6))
    assert (a["seed"], b["seed"], a["bc"]["seed"], b["bc"]["seed"]) == (5, 6, 5, 6)
    assert a["key"] != b["key"] and a["train_loss"] != b["train_loss"]  # other initialisation and minibatches
    assert r2["seed_success"] == [a["success"], b["success"]] and r2["success"] == pytest.approx(np.mean(r2["seed_success"]))
    assert json.loads((tdir / "result.json").read_text())["seeds"] == [5, 6]
    assert suite.demo_calls == 1  # one embedding of the demonstrations for every seed

    r3 = run_task("reach", STATE, _cfg(seeds=3, envs=1), bc, tmp_path, progress=False)  # envs: not part of the key
    assert trained == [5, 6, 7] and r3["seeds"] == [5, 6, 7] and not r3["resumed"]
    assert r3["seed_success"][:2] == r2["seed_success"] and r3["train_loss"][:2] == r2["train_loss"]
    calls, made = suite.demo_calls, suite.envs_made
    again = run_task("reach", STATE, _cfg(seeds=3), bc, tmp_path, progress=False)
    assert again["resumed"] and trained == [5, 6, 7] and (suite.demo_calls, suite.envs_made) == (calls, made)
    assert again["seed_success"] == r3["seed_success"]
    other = run_task("reach", STATE, _cfg(seeds=1, episodes=4), bc, tmp_path, progress=False)  # a protocol change
    assert trained == [5, 6, 7, 5] and other["episodes"] == 4


def test_gif_picks_first_successes_and_failures():
    seeds = [1000, 1001, 1002, 1003, 1004]
    assert gif_picks(seeds, [0, 1, 1, 0, 1], 1) == [1000, 1001]
    assert gif_picks(seeds, [0, 1, 1, 0, 1], 2) == [1000, 1001, 1002, 1003]
    assert gif_picks(seeds, [1] * 5, 1) == [1000] and gif_picks(seeds, [1, 0, 1, 0, 1], 0) == []


def test_final_evaluation_gifs_one_success_one_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(bc_run, "get_suite", lambda name: StubSuite())
    monkeypatch.setattr(bc_run, "Agent", ZeroAgent)
    r = run_task("reach", STATE, _cfg(seeds=2), BCConfig(epochs=2, batch=8), tmp_path, progress=False)
    assert r["final_outcomes"] == [[1, 0, 1, 0, 1, 0]] * 2  # even evaluation seeds succeed
    gifs = r["gifs"]
    assert gifs["success"].endswith("seed0/videos/rollout1000_success.gif")
    assert gifs["failure"].endswith("seed0/videos/rollout1001_fail.gif") and r["gifs_missing"] == []
    assert len(r["videos"]) == 4  # one of each outcome per seed, only from the final evaluation
    from PIL import Image

    with Image.open(gifs["failure"]) as im:
        assert im.n_frames == 3  # 5 frames (reset + 4 steps), every second one kept

    monkeypatch.setattr(bc_run, "get_suite", lambda name: StubSuite(always=True))
    r = run_task("push", STATE, _cfg(seeds=1), BCConfig(epochs=1, batch=8), tmp_path, progress=False)
    assert r["gifs"]["success"] and r["gifs"]["failure"] is None and r["gifs_missing"] == ["failure"]
    summarise([r], tmp_path / "stub", ["push"], reps=50)
    md = (tmp_path / "stub" / "results.md").read_text()
    assert "state / push: [success](state/push/seed0/videos/rollout1000_success.gif); no failure GIF" in md
    none = run_task("reach", STATE, _cfg(seeds=1, videos=0, eval_seed0=7), BCConfig(epochs=1, batch=8), tmp_path,
                    progress=False)
    assert none["videos"] == [] and none["gifs_missing"] == ["success", "failure"]


def _res(enc, task, seed_final, seed_best=None, kind="vit", init="ckpt"):
    seed_best = seed_best or seed_final
    outs = lambda rates: [[1] * round(4 * x) + [0] * (4 - round(4 * x)) for x in rates]  # noqa: E731
    return {"suite": "stub", "task": task, "encoder": enc, "encoder_info": {"kind": kind, "init": init}, "status": "ok",
            "episodes": 4, "seeds": list(range(len(seed_final))), "seed_success": seed_final,
            "seed_best_success": seed_best, "success": float(np.mean(seed_final)), "best_success": float(np.mean(seed_best)),
            "final_outcomes": outs(seed_final), "best_outcomes": outs(seed_best),
            "evaluations": [{"epoch": 5, "success": 0.0}, {"epoch": 10, "success": float(np.mean(seed_final))}]}


TASKS = ["a", "b", "c", "d"]
RSP = {"a": [0.25, 0.5, 0.75], "b": [1.0, 0.75, 1.0], "c": [0.0, 0.25, 0.0], "d": [0.5, 0.5, 0.75]}
RANDOM = {"a": [0.0, 0.25, 0.25], "b": [0.75, 0.5, 0.75], "c": [0.0, 0.0, 0.0], "d": [0.25, 0.5, 0.25]}
PIXELS = {"a": [0.0, 0.0, 0.25], "b": [0.5, 0.5, 0.25], "c": [0.0, 0.0, 0.0], "d": [0.0, 0.25, 0.0]}
COLOUR = {"a": [0.25, 0.0, 0.25], "b": [0.5, 0.75, 0.5], "c": [0.0, 0.0, 0.0], "d": [0.25, 0.25, 0.25]}


def _matrix(d):
    return np.array([d[t] for t in TASKS]).T  # [seeds, tasks]


def test_iqm_interval_over_seeds_and_tasks(tmp_path):
    best = {t: [min(1.0, x + 0.25) for x in v] for t, v in RSP.items()}
    s = summarise([_res("rsp", t, RSP[t], best[t]) for t in TASKS], tmp_path, TASKS, reps=1000)
    row = s["encoders"]["rsp"]
    ci = iqm_ci(_matrix(RSP), reps=1000)
    assert row["seeds"] == 3 and row["iqm_success"] == pytest.approx(iqm(_matrix(RSP))) == pytest.approx(ci["iqm"])
    assert row["iqm_success_ci95"] == [pytest.approx(ci["low"]), pytest.approx(ci["high"])]
    assert row["iqm_success_ci95"][0] < row["iqm_success"] < row["iqm_success_ci95"][1]  # seeds vary: a real width
    assert row["iqm_best_success"] == pytest.approx(iqm(_matrix(best))) and row["iqm_best_success"] > row["iqm_success"]
    assert row["tasks"]["a"]["seed_success"] == RSP["a"] and row["role"] == "encoder"
    md = (tmp_path / "results.md").read_text()
    assert "| rsp | 50 (75) | 92 (100) | 8 (33) | 58 (83) | 3 | " in md and "over training seeds" in md
    # one seed: the seed interval has no width, the table shows the rollout interval (marked r)
    one = summarise([_res("rsp", t, RSP[t][:1]) for t in TASKS], tmp_path / "one", TASKS, reps=500)["encoders"]["rsp"]
    assert one["seeds"] == 1 and one["iqm_success_ci95"][0] == one["iqm_success_ci95"][1]
    lo, hi = one["iqm_success_rollout_ci95"]
    assert lo < hi and f"[{100 * lo:.1f}, {100 * hi:.1f}]r" in (tmp_path / "one" / "results.md").read_text()


def test_paired_differences_against_random_and_the_best_floor(tmp_path):
    results = [_res("rsp", t, RSP[t]) for t in TASKS]
    results += [_res("random", t, RANDOM[t], init="random") for t in TASKS]
    results += [_res("pixels", t, PIXELS[t], kind="floor:pixels", init="pixels") for t in TASKS]
    results += [_res("colour", t, COLOUR[t], kind="floor:colour", init="colour") for t in TASKS]
    s = summarise(results, tmp_path, TASKS, reps=1000)
    assert [s["encoders"][e]["role"] for e in ("rsp", "random", "pixels", "colour")] == ["encoder", "random", "floor", "floor"]
    pairs = {(c["encoder"], c["reference"]): c for c in s["comparisons"]}
    assert set(pairs) == {("rsp", "random"), ("pixels", "random"), ("colour", "random"),
                          ("rsp", "colour"), ("random", "colour"), ("pixels", "colour")}  # colour: the better floor
    c = pairs[("rsp", "random")]
    ref = paired_bootstrap_diff(_matrix(RSP), _matrix(RANDOM), reps=1000)
    assert c["final"] == pytest.approx(ref) and c["final"]["diff"] == pytest.approx(_matrix(RSP).mean() - _matrix(RANDOM).mean())
    assert c["final"]["low"] > 0 and c["final"]["p_le_0"] < 0.05 and c["tasks"] == TASKS and c["seeds"] == [3, 3]
    assert pairs[("rsp", "colour")]["reference_role"] == "floor" and "best" in c
    md = (tmp_path / "results.md").read_text()
    assert "| pixels (floor) |" in md and "| colour (floor) |" in md and "| random (random init) |" in md
    assert "| rsp | colour (floor) | 4 | " in md and "| rsp | random (random) | 4 | " in md
    # no random encoder and no floor in the run: nothing to compare with
    alone = summarise([_res("rsp", t, RSP[t]) for t in TASKS] + [_res("mae", t, RANDOM[t]) for t in TASKS],
                      tmp_path / "alone", TASKS, reps=100)
    assert alone["comparisons"] == [] and "Paired differences" not in (tmp_path / "alone" / "results.md").read_text()
    # tasks missing for one encoder: compared on the tasks both have
    part = summarise([_res("rsp", t, RSP[t]) for t in TASKS] + [_res("random", t, RANDOM[t], init="random") for t in "ab"],
                     tmp_path / "part", TASKS, reps=100)
    assert part["comparisons"][0]["tasks"] == ["a", "b"]


def test_floors_by_name_through_run_readout(tmp_path, monkeypatch):
    from regconsist_ros.models.vit import ViTConfig

    monkeypatch.setattr(bc_run, "get_suite", lambda name: StubSuite())
    vit = ViTConfig(size="tiny", depth=1, img_size=(32, 32), patch=16)
    encs = [resolve_encoder(name, vit) for name in ("pixels", "colour", "random")]
    assert [e.label for e in encs] == ["pixels", "colour", "random"] and not any(e.is_state for e in encs)
    summary, results = run_readout(["reach", "push"], encs, _cfg(seeds=2, episodes=4), BCConfig(epochs=2, batch=8),
                                   tmp_path, progress=False)
    assert len(results) == 6 and all(r["status"] == "ok" and r["seeds"] == [0, 1] for r in results)
    pix = next(r for r in results if r["encoder"] == "pixels")
    assert pix["input_dim"] == 3 * 3 * 6 * 8 + 2  # flare of the 6x8 average-pooled image + 2 proprio dims
    rows = summary["encoders"]
    assert [rows[e]["role"] for e in ("pixels", "colour", "random")] == ["floor", "floor", "random"]
    assert all(rows[e]["seeds"] == 2 and rows[e]["complete"] for e in rows)
    refs = {(c["encoder"], c["reference"]) for c in summary["comparisons"]}
    best_floor = max(("pixels", "colour"), key=lambda e: (rows[e]["iqm_success"], e == "pixels"))
    assert {("pixels", "random"), ("colour", "random"), ("random", best_floor)} <= refs
    out = tmp_path / "stub"
    assert json.loads((out / "summary.json").read_text())["comparisons"] == summary["comparisons"]
    md = (out / "results.md").read_text()
    assert "| pixels (floor) |" in md and "Rollouts of the final evaluation (GIF):" in md
    for r in results:
        for gif in filter(None, r["gifs"].values()):
            assert (out / r["encoder"] / r["task"]).as_posix() in gif and f"]({gif[len(str(out)) + 1:]})" in md
    assert (out / "pixels" / "push" / "seed1" / "result.json").is_file()


def test_cli_floors_by_name_and_seeds_flag(tmp_path, monkeypatch, capsys):
    import regconsist_ros.readout.suites as suites
    from regconsist_ros.cli import main

    suite = StubSuite()
    monkeypatch.setattr(bc_run, "get_suite", lambda name: suite)
    monkeypatch.setattr(suites, "get_suite", lambda name: suite)
    torch.manual_seed(0)
    args = ["eval", "bc", "--all", "--encoder", "pixels", "colour", "random", "--bc.seeds", "2", "--bc.suite", "stub",
            "--bc.demos", "2", "--bc.episodes", "2", "--bc.eval_every", "1", "--bc.render_size", "32",
            "--bc.crop_size", "32", "--bc.envs", "2", "--bc.env_workers", "0", "--policy.epochs", "1",
            "--policy.batch", "8", "--encoder.size", "tiny", "--encoder.depth", "1", "--encoder.img_size", "32", "32",
            "--out", str(tmp_path), "--quiet", "--json"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(s["encoders"]) == {"pixels", "colour", "random"} and s["tasks"] == ["reach", "push"]
    assert all(row["seeds"] == 2 for row in s["encoders"].values()) and s["comparisons"]
    assert sorted(p.name for p in (tmp_path / "stub" / "colour" / "reach").iterdir() if p.is_dir()) == ["seed0", "seed1"]
