"""BC readout in real MetaWorld environments: rendering, expert demonstration cache, success counting, CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from regconsist_ros.readout import bc_run
from regconsist_ros.readout.bc import BCConfig
from regconsist_ros.readout.bc_run import BCReadoutConfig, Encoder, resolve_encoder, rollout, run_task
from regconsist_ros.readout.suites import EnvSpec, get_suite
from regconsist_ros.readout.suites.metaworld import MetaWorldEnv

TASK = "button-press-topdown"
SPEC = EnvSpec(render_size=48, horizon=150)


class ExpertStub:
    """Always succeeds: MetaWorld's scripted policy on the ground-truth state."""

    def __init__(self, *args, **kwargs):
        from metaworld.policies import ENV_POLICY_MAP

        self.p = ENV_POLICY_MAP[f"{TASK}-v3"]()

    def __call__(self, obs):
        return self.p.get_action(obs.state)


class StillStub:
    """Always fails: never moves."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, obs):
        return np.zeros(4, np.float32)


def test_env_renders_upright_frames_and_proprioception():
    env = MetaWorldEnv(TASK, SPEC)
    try:
        obs = env.reset(3)
        assert obs.rgb.shape == (48, 48, 3) and obs.rgb.dtype == np.uint8 and obs.rgb.std() > 10
        assert obs.proprio.shape == (4,) and obs.state.shape == (39,)
        assert np.array_equal(obs.proprio, obs.state[:4])
        # upright: the floor (grey, low saturation) fills the bottom rows, not the top ones
        sat = lambda rows: float((rows.max(-1).astype(int) - rows.min(-1)).mean())  # noqa: E731
        assert sat(obs.rgb[-4:]) < sat(obs.rgb[:24])
        again = env.reset(3)
        assert np.array_equal(again.state, obs.state)  # seeded layouts are reproducible
        assert not np.array_equal(env.reset(4).state, obs.state)
    finally:
        env.close()
    with pytest.raises(ValueError, match="cameras"):
        MetaWorldEnv(TASK, EnvSpec(camera="nope", render_size=32))
    with pytest.raises(ValueError, match="no task"):
        MetaWorldEnv("flip-a-pancake", SPEC)


def test_rollout_counts_successes_of_always_succeed_and_always_fail_policies():
    env = MetaWorldEnv(TASK, SPEC)
    try:
        good = rollout(env, ExpertStub(), [1000, 1001, 1002], record=1)
        bad = rollout(env, StillStub(), [1000, 1001])
    finally:
        env.close()
    assert [r["success"] for r in good] == [True, True, True]
    assert all(r["steps"] < 150 for r in good)  # an episode ends at success
    assert len(good[0]["frames"]) == good[0]["steps"] + 1 and "frames" not in good[1]
    assert [r["success"] for r in bad] == [False, False] and [r["steps"] for r in bad] == [150, 150]


def test_expert_demo_cache_round_trip_and_resume(tmp_path, monkeypatch):
    suite = get_suite("metaworld")
    demos = suite.demonstrations(TASK, SPEC, 2, tmp_path)
    assert len(demos) == 2 and all(d.success for d in demos) and [d.seed for d in demos] == [0, 1]
    d0 = demos[0]
    assert d0.frames.shape[1:] == (48, 48, 3) and d0.actions.shape[1] == 4 and d0.proprio.shape[1] == 4
    cache = suite.cache_dir(TASK, SPEC, tmp_path)
    assert cache.meta["camera"] == "corner2" and cache.meta["render_size"] == 48
    (cache.episode_path(1)).unlink()  # an interrupted collection: only the missing episode is redone

    made = []
    real = MetaWorldEnv

    def counting(*a, **k):
        made.append(a)
        return real(*a, **k)

    monkeypatch.setattr("regconsist_ros.readout.suites.metaworld.MetaWorldEnv", counting)
    again = suite.demonstrations(TASK, SPEC, 2, tmp_path)
    assert len(made) == 1 and again[1].seed == 1
    for a, b in zip(again, demos):  # seeded layouts: the re-collected episode is the same one
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
    suite.demonstrations(TASK, SPEC, 2, tmp_path)  # all cached: no environment is made
    assert len(made) == 1


@pytest.mark.parametrize("stub,expected", [(ExpertStub, 1.0), (StillStub, 0.0)])
def test_run_task_reports_the_success_rate_of_its_rollouts(tmp_path, monkeypatch, stub, expected):
    monkeypatch.setattr(bc_run, "Agent", stub)
    cfg = BCReadoutConfig(demos=2, episodes=3, eval_every=1, render_size=48, crop_size=48, horizon=150,
                          demo_dir=str(tmp_path / "demos"), videos=1, seeds=1)
    r = run_task(TASK, Encoder("state", None, {"init": "state", "kind": "state"}), cfg, BCConfig(epochs=2), tmp_path)
    assert r["status"] == "ok" and r["success"] == expected and r["best_success"] == expected
    assert r["final_outcomes"] == [[int(expected)] * 3] and [e["epoch"] for e in r["evaluations"]] == [1, 2]
    assert len(r["videos"]) == 1 and r["videos"][0].endswith(("success.gif" if expected else "fail.gif"))
    assert r["gifs_missing"] == (["failure"] if expected else ["success"])
    lines = (tmp_path / "metaworld" / "state" / TASK / "seed0" / "progress.jsonl").read_text().splitlines()
    assert [json.loads(x)["success"] for x in lines] == [expected, expected]


def test_image_encoder_path_and_cli_resume(tmp_path):
    args = [sys.executable, "-m", "regconsist_ros.cli", "eval", "bc", "--task", TASK, "--encoder", "random",
            "--encoder.size", "tiny", "--encoder.depth", "1", "--encoder.img_size", "32", "32", "--bc.demos", "2",
            "--bc.episodes", "2", "--policy.epochs", "2", "--bc.eval_every", "1", "--bc.render_size", "48",
            "--bc.crop_size", "32", "--bc.horizon", "10", "--bc.videos", "0", "--bc.seeds", "1", "--bc.demo_dir", str(tmp_path / "demos"),
            "--out", str(tmp_path / "bc"), "--quiet", "--json"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["episodes"] == 2 and r["demos"] == 2 and 0.0 <= r["success"] <= r["best_success"] <= 1.0
    res = json.loads((tmp_path / "bc" / "metaworld" / "random" / TASK / "result.json").read_text())
    assert res["input_dim"] == 3 * 192 + 4  # flare of 3 ViT-tiny [CLS] embeddings + 4 proprio dims
    p2 = subprocess.run(args, capture_output=True, text=True, timeout=300)
    r2 = json.loads(p2.stdout.strip().splitlines()[-1])
    assert p2.returncode == 0 and r2["resumed"] and not r["resumed"] and r2["success"] == r["success"]
    bad = subprocess.run(args[:-4] + ["--bc.crop_size", "40", "--quiet"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "multiple of its patch" in bad.stderr


def test_state_encoder_needs_states_and_labels_resolve(tmp_path):
    enc = resolve_encoder("state")
    assert enc.is_state and enc.label == "state"
    named = resolve_encoder("mine=random")
    assert named.label == "mine" and isinstance(named.model, torch.nn.Module)
    with pytest.raises(FileNotFoundError):
        resolve_encoder(str(tmp_path / "missing"))


def test_bench_bc_reports_render_and_step_times():
    from regconsist_ros.bench.bc import bench_bc

    r = bench_bc(task=TASK, size=32, crop=32, n=2, episodes=3, horizon=4, envs=2, env_workers=0, vit_depth=1)
    assert r["render_ms_fast"] > 0 and r["render_ms_full"] > 0 and r["rollout_step_ms"] > 0 and r["size"] == 32
    assert set(r["profile_ms"]) == {"render", "physics", "encoder_batch1", "encoder_per_frame_batch2", "policy_row"}
    assert r["episodes_per_min_sequential"] > 0 and r["episodes_per_min_lockstep"] > 0 and r["speedup_lockstep"] > 0
    assert r["same_outcomes"] and (r["episodes"], r["horizon"], r["envs"]) == (3, 4, 2)
    assert "episodes_per_min_lockstep_workers" not in r


def test_dense_encoders_read_out_through_pooled_features(tmp_path):
    """DeepLabV3+ checkpoints (RegConsist, pretext baselines, shuffling, FlowE) go through the same readout."""
    from regconsist_ros.models.deeplab import DeepLabConfig
    from regconsist_ros.models.encoder import random_encoder

    dl = random_encoder("deeplabv3plus", DeepLabConfig.small(width=0.25, aspp_channels=32, decoder_channels=32))
    cfg = BCReadoutConfig(demos=2, episodes=1, eval_every=1, render_size=48, crop_size=32, horizon=5, videos=0,
                          demo_dir=str(tmp_path / "demos"), seeds=1)
    r = run_task(TASK, Encoder("dl", dl, {"kind": "deeplabv3plus"}), cfg, BCConfig(epochs=1), tmp_path)
    assert r["status"] == "ok" and r["input_dim"] == 3 * 32 + 4 and r["mean_steps_final"] <= 5
