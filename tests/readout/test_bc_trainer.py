"""BC policy training goes through the shared Trainer: constant-lr Adam, epoch callbacks, skips, logs."""
import json
import math

import numpy as np
import torch

from regconsist_ros.readout import bc
from regconsist_ros.readout.bc import BCConfig, BCObjective, train_bc


def linear_expert(n=300, d=10, a=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    return x, torch.tanh(x @ torch.randn(d, a, generator=g) / 4)


def test_bc_runs_in_the_trainer_at_a_constant_adam_lr(fits):
    x, y = linear_expert(301)  # 301 = 2 * 128 + 45: three minibatches per epoch
    policy, losses = train_bc(x, y, BCConfig(epochs=4, batch=128, lr=3e-3))
    (t, lrs), = fits
    assert isinstance(t.objective, BCObjective) and t.objective.policy is policy and t.run_dir is None
    assert isinstance(t.opt, torch.optim.Adam) and t.opt.param_groups[0]["weight_decay"] == 0
    assert t.opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert t.step == t.cfg.steps == 12 == 4 * bc.steps_per_epoch(301, 128)
    assert [l[0] for l in lrs] == [3e-3] * 12  # the shared schedule, flat (min_lr_ratio 1, no warm-up)
    assert t.cfg.grad_clip == 0 and t.device.type == "cpu" and len(losses) == 4


def test_bc_steps_per_epoch_drop_one_sample_batches():
    assert bc.steps_per_epoch(301, 128) == 3
    assert bc.steps_per_epoch(257, 128) == 2  # 128 + 128 + a single sample (dropped)
    assert bc.steps_per_epoch(256, 128) == 2
    assert bc.steps_per_epoch(5, 1) == 0


def test_bc_rollout_callback_at_epoch_ends_then_batchnorm_trains_on():
    x, y = linear_expert(300)
    modes = []

    def on_epoch(epoch, policy):
        modes.append((epoch, policy.training, int(policy.net[0].num_batches_tracked)))
        with torch.no_grad():
            policy(x[:7])  # an evaluation forward in eval mode must not disturb training

    policy, _ = train_bc(x, y, BCConfig(epochs=3, batch=100), on_epoch=on_epoch)
    assert modes == [(0, False, 3), (1, False, 6), (2, False, 9)]
    # every training step ran in train mode (BatchNorm counted all 9 batches) and the policy ends in eval mode
    assert int(policy.net[0].num_batches_tracked) == 9 and not policy.training


def test_bc_skips_a_non_finite_loss_and_keeps_finite_weights():
    x, y = linear_expert(300)
    y[5] = float("nan")  # one bad action: the minibatch holding it gives a nan loss, once per epoch
    policy, losses = train_bc(x, y, BCConfig(epochs=4, batch=100))
    assert all(torch.isfinite(p).all() for p in policy.parameters())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_bc_is_deterministic_for_a_seed():
    x, y = linear_expert(300)
    pa, la = train_bc(x, y, BCConfig(epochs=3, batch=64, seed=4))
    pb, lb = train_bc(x, y, BCConfig(epochs=3, batch=64, seed=4))
    _, lc = train_bc(x, y, BCConfig(epochs=3, batch=64, seed=5))
    assert la == lb and all(torch.equal(p, q) for p, q in zip(pa.state_dict().values(), pb.state_dict().values()))
    assert la != lc


def test_bc_run_task_logs_the_trainer_metrics(tmp_path, monkeypatch):
    from regconsist_ros.readout import bc_run
    from regconsist_ros.readout.demos import Episode
    from regconsist_ros.readout.suites.base import Obs

    class Env:
        action_dim, horizon = 2, 4

        def reset(self, seed):
            self.t = 0
            return Obs(np.zeros((8, 8, 3), np.uint8), np.zeros(0, np.float32), np.ones(3, np.float32))

        def step(self, action):
            self.t += 1
            return self.reset(0), False, self.t >= 3

        def close(self):
            pass

    class Suite:
        name, tasks = "stub", ("reach",)

        def demonstrations(self, task, spec, n, root, progress=False):
            rng = np.random.default_rng(0)
            return [Episode(frames=np.zeros((40, 8, 8, 3), np.uint8), actions=rng.normal(size=(40, 2)),
                            states=rng.normal(size=(40, 3)), success=True, seed=i) for i in range(n)]

        def make_env(self, task, spec):
            return Env()

    monkeypatch.setattr(bc_run, "get_suite", lambda name: Suite())
    cfg = bc_run.BCReadoutConfig(suite="stub", demos=3, episodes=2, eval_every=2, render_size=8, crop_size=8, videos=0,
                                 seeds=1)
    state = bc_run.Encoder("state", None, {"init": "state", "kind": "state"})
    r = bc_run.run_task("reach", state, cfg, BCConfig(epochs=4, batch=50), tmp_path, progress=False)
    assert r["status"] == "ok" and [e["epoch"] for e in r["evaluations"]] == [2, 4] and [len(x) for x in r["train_loss"]] == [4]
    tdir = tmp_path / "stub" / "state" / "reach" / "seed0"
    rows = [json.loads(line) for line in (tdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [3, 6, 9, 12]  # 120 samples, batch 50: 3 steps an epoch, a row each
    assert all(row["lr"] == 1e-3 for row in rows)
    assert not (tdir / "checkpoints").exists()
