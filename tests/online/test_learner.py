"""The online learner without ROS: buffers fed from a rendered stream, both objectives, resume."""
import numpy as np
import pytest

from regconsist_ros.models.checkpoint import latest_checkpoint, read_info
from regconsist_ros.online.keyframes import KeyframeConfig, PairBuilder
from regconsist_ros.online.learner import LearnerConfig, OnlineLearner, ReplayFlowPairs, online_recipe, resize_rgb

# tiny models and batches, applied to each method where it has the setting (names relative to the method)
SMALL = {"encoder.size": "tiny", "encoder.depth": 1, "encoder.patch": 8, "encoder.width": 0.25,
         "encoder.aspp_channels": 32, "encoder.decoder_channels": 32, "decoder_width": 32, "decoder_depth": 1,
         "decoder_heads": 4, "trainer.steps": 1000, "trainer.lr": 1e-3, "trainer.warmup": 1, "trainer.ckpt_every": 4,
         "batch.size": 4, "batch.pixel_pairs": 64, "batch.gap_min": 2, "batch.gap_max": 6}


def small_run(method, cfg):
    run = online_recipe(method, cfg)
    values = dict(SMALL)
    if run.kind.source != "streams":
        values["batch.size"] = 2  # view pairs / flow pairs per step
    if run.trainer.optimizer == "sgd":
        values["trainer.lr"] = 0.01
    return run.replace({f"{method}.{k}": v for k, v in values.items()}, only_known=True)


@pytest.fixture(scope="module")
def stream():
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=0, frames=40, width=64, height=48, step=0.1)))


def _learner(tmp_path, objectives=("rsp", "regconsist"), **kw):
    cfg = LearnerConfig(objectives=objectives, out_dir=str(tmp_path / "online"), store_height=32, store_width=48,
                        min_frames=8, min_pairs=2, slice_steps=2, **kw)
    return OnlineLearner(cfg, {m: small_run(m, cfg) for m in objectives})


def _feed(learner, stream):
    builder = PairBuilder(KeyframeConfig(min_translation=0.15))
    for f in stream:
        learner.add_frame(f.rgb, f.stamp)
        kf_before = builder.counts["keyframes"]
        pairs = builder.add(f)
        if builder.counts["keyframes"] > kf_before:
            learner.add_keyframe(f.rgb, f.stamp)
        for p in pairs:
            joined = learner.add_view_pair(p["src"].stamp, p["dst"].stamp, p["uv1"], p["uv2"], p["overlap_iou"])
            assert joined == learner.uses_keyframes


def test_both_objectives_train_from_the_stream_and_resume(stream, tmp_path):
    learner = _learner(tmp_path)
    assert not learner.ready("rsp") and learner.train(4) == {"rsp": 0, "regconsist": 0}  # nothing buffered yet
    _feed(learner, stream)
    st = learner.status()
    assert st["buffers"]["frames"] == 40 and st["buffers"]["view_pairs"] >= 2
    done = learner.train(16)
    assert sum(done.values()) == 16 and done["rsp"] > 0 and done["regconsist"] > 0
    for name in ("rsp", "regconsist"):
        losses = [l for _, l in learner.losses[name]]
        assert losses and np.isfinite(losses).all()
    learner.checkpoint()
    steps = {n: t.step for n, t in learner.runs.items()}
    for name, kind in (("rsp", "vit"), ("regconsist", "deeplabv3plus")):
        ckpt = latest_checkpoint(tmp_path / "online" / name)
        info = read_info(ckpt)
        assert info["kind"] == kind and info["step"] == steps[name] and info["meta"]["online"] is True
    # a new learner (a restarted process) resumes every objective at its checkpoint step
    again = _learner(tmp_path)
    assert {n: t.step for n, t in again.runs.items()} == steps and all(again.resumed.values())


def test_mixing_ratio_and_buffer_caps(stream, tmp_path):
    learner = _learner(tmp_path, mix=(1.0, 0.0), frame_buffer_mb=0.05)  # regconsist gets no share
    _feed(learner, stream)
    assert learner.train(6) == {"rsp": 6, "regconsist": 0}
    # 0.05 MB holds ~11 frames of 32x48x3: the oldest are evicted
    assert len(learner.frames) < 40 and learner.frames.evicted == 40 - len(learner.frames)
    assert learner.frames.nbytes <= 0.05 * 2**20


def test_view_pairs_need_both_keyframes_and_configs_are_checked(tmp_path):
    learner = _learner(tmp_path, objectives=("regconsist",))
    uv = np.zeros((5, 2), np.float32)
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    # a pair that arrives before its keyframes waits for them (topics are not ordered with each other)
    assert not learner.add_view_pair(1.0, 2.0, uv, uv, 0.5)
    learner.add_keyframe(rgb, 1.0)
    assert len(learner.view_pairs) == 0 and learner.counts["view_pairs_unjoined"] == 0
    learner.add_keyframe(rgb, 2.0)
    assert len(learner.view_pairs) == 1
    # a pair referring to a keyframe older than the newest one received can never be joined
    assert not learner.add_view_pair(1.5, 2.0, uv, uv, 0.5)
    assert learner.counts["view_pairs_unjoined"] == 1 and not learner._pending
    with pytest.raises(ValueError, match="distinct"):
        LearnerConfig(objectives=("rsp", "rsp"))
    with pytest.raises(ValueError, match="objectives"):
        LearnerConfig(objectives=("dino",))
    with pytest.raises(ValueError, match="mix"):
        LearnerConfig(objectives=("rsp",), mix=(1.0, 2.0))
    assert resize_rgb(np.zeros((48, 64, 3), np.uint8), (24, 32)).shape == (24, 32, 3)


def test_several_robots_feed_one_learner(stream, tmp_path):
    """Namespaced sources keep their own ordered buffers: interleaved stamps are not 'backwards'."""
    learner = _learner(tmp_path, objectives=("rsp",))
    for f in stream[:20]:
        learner.add_frame(f.rgb, f.stamp, source="/robot1")
        learner.add_frame(f.rgb[:, ::-1], f.stamp + 0.01, source="/robot2")
    assert learner.status()["buffers"] == {**learner.status()["buffers"], "frames": 40, "sources": 2}
    assert learner.train(4)["rsp"] == 4


@pytest.mark.parametrize("objectives", [("rotation", "simclr"), ("byol", "tcn"), ("shuffle", "flowe")])
def test_more_objectives_train_from_the_stream_with_deeplab_checkpoints(stream, tmp_path, objectives):
    """Pretext baselines and shuffling on the frame stream, FlowE on registered keyframe pairs."""
    learner = _learner(tmp_path, objectives=objectives)
    _feed(learner, stream)
    assert all(learner.ready(o) for o in objectives)
    done = learner.train(8)
    assert all(done[o] > 0 for o in objectives), done
    learner.checkpoint()
    for name in objectives:
        losses = [l for _, l in learner.losses[name]]
        assert losses and np.isfinite(losses).all()
        info = read_info(latest_checkpoint(tmp_path / "online" / name))
        assert info["kind"] == "deeplabv3plus" and info["step"] == done[name]
    if "flowe" in objectives:
        b = learner.store.flow_pairs().sample(2, learner.rng)
        assert b["flow"].shape == (2, 2, 32, 48) and b["valid"].any() and b["valid21"].any()
        vp = learner.view_pairs.items()[0]  # the flow at a pixel of view 1 points at its correspondence in view 2
        x, y = vp["uv1"][-1]
        learner.view_pairs = type(learner.view_pairs)(1 << 30)
        learner.view_pairs.add(vp, 1)
        b = ReplayFlowPairs(learner).sample(2, learner.rng)  # (below min_pairs: the source itself)
        assert b["valid"][0, 0, y, x] and np.allclose(b["flow"][0, :, y, x].numpy() + [x, y], vp["uv2"][-1])


def test_online_target_momentum_follows_the_schedule_over_the_runs_total_steps(stream, tmp_path):
    """Slices of 2 steps must not end the EMA schedule: BYOL's target momentum after 6 online steps is
    the schedule's value at 6 of trainer.steps (a slice's end used to count as the run's end: tau = 1)."""
    learner = _learner(tmp_path, objectives=("byol",))
    _feed(learner, stream)
    assert learner.train(6) == {"byol": 6}
    byol, total = learner.runs["byol"].objective, learner.settings["byol"].trainer.steps
    assert total == 1000 and byol.tau == pytest.approx(byol.momentum(6, total)) and byol.tau < 0.991
