"""Spatiotemporal shuffling: Hamming permutation sets, k-means groups, REINFORCE pieces, the objective, retrieval."""
import io
import itertools
import math

import numpy as np
import pytest
import torch

from regconsist_ros.models.deeplab import DeepLabConfig
from regconsist_ros.models.objectives.permutations import hamming_permutations, kmeans_groups, min_hamming
from regconsist_ros.models.objectives.shuffle import (PermutationPolicy, Shuffle, ShuffleConfig, extrapolated_reward,
                                       reinforce_loss, shuffle_items, softmax_ratio)
from regconsist_ros.learning.trainer import Trainer, TrainerConfig
from regconsist_ros.readout.retrieval import nn_retrieval

TINY_DL = dict(width=0.25, aspp_channels=16, decoder_channels=16, num_classes=0)
TINY = dict(frames=3, spatial_perms=12, temporal_perms=6, groups=3, fc_dim=16, lstm_dim=16)


def _model(**over) -> Shuffle:
    torch.manual_seed(0)
    return Shuffle(ShuffleConfig(**{**TINY, **over}), DeepLabConfig.small(**TINY_DL))


def _batch(B=2, U=3, H=48, W=48, seed=0):
    return {"clip": torch.rand(B, U, 3, H, W, generator=torch.Generator().manual_seed(seed))}


# ---- permutation sets -------------------------------------------------------------------------------
def test_hamming_set_of_all_permutations_and_a_latin_square():
    full = hamming_permutations(4, 24)
    assert full.shape == (24, 4) and full.dtype == np.int64
    assert {tuple(p) for p in full} == set(itertools.permutations(range(4)))
    assert min_hamming(full) == 2  # two distinct permutations always differ in >= 2 places
    # 4 permutations of 4 items can differ everywhere (rows of a Latin square); greedy finds it
    assert min_hamming(hamming_permutations(4, 4, seed=3)) == 4
    assert np.array_equal(hamming_permutations(4, 10, seed=5), hamming_permutations(4, 10, seed=5))
    with pytest.raises(ValueError):
        hamming_permutations(3, 7)


def test_hamming_greedy_beats_random_permutations_of_nine_tiles():
    rng = np.random.default_rng(0)
    random_set = np.argsort(rng.random((30, 9)), axis=1)
    greedy = hamming_permutations(9, 30, seed=0)
    assert len({tuple(p) for p in greedy}) == 30
    assert np.array_equal(np.sort(greedy, 1), np.tile(np.arange(9), (30, 1)))
    assert min_hamming(greedy) >= 7  # measured 7 for seeds 0-2 (random sets: 4)
    assert min_hamming(greedy) > min_hamming(random_set)
    assert not np.array_equal(greedy, hamming_permutations(9, 30, seed=1))


def test_kmeans_separates_two_clusters_and_never_leaves_a_group_empty():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.1, (20, 3))
    b = rng.normal(5.0, 0.1, (15, 3))
    labels = kmeans_groups(np.concatenate([a, b]), k=2, seed=0)
    assert labels.shape == (35,)
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[20]
    same = kmeans_groups(np.zeros((7, 2)), k=4, seed=1)  # all points equal: groups still non-empty
    assert sorted(set(same.tolist())) == [0, 1, 2, 3]
    feats = rng.normal(size=(40, 5))
    assert np.array_equal(kmeans_groups(feats, 10, seed=2), kmeans_groups(feats, 10, seed=2))
    assert np.bincount(kmeans_groups(feats, 10, seed=2), minlength=10).min() >= 1


# ---- REINFORCE pieces -------------------------------------------------------------------------------
def test_extrapolated_reward_signs():
    assert extrapolated_reward([0.5, 0.4, 0.35]) == pytest.approx(0.3 - 0.35)  # slower than the trend
    assert extrapolated_reward([0.5, 0.4, 0.25]) == pytest.approx(0.05)  # faster than the trend
    assert extrapolated_reward([9.0, 0.5, 0.4, 0.35]) == pytest.approx(-0.05)  # only the last three count
    assert extrapolated_reward([0.5, 0.4]) == pytest.approx(0.1)  # two errors: constant extrapolation
    with pytest.raises(ValueError):
        extrapolated_reward([0.5])


def test_softmax_ratio_uses_plus_one_smoothing():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]])
    r = softmax_ratio(probs, torch.tensor([0, 0, 1]))
    assert r[0].item() == pytest.approx(((0.7 + 1) / (0.2 + 1) + (0.3 + 1) / (0.6 + 1)) / 2)
    assert r[1].item() == pytest.approx((0.4 + 1) / (0.5 + 1))
    assert math.isnan(r[2].item())  # no sample of class 2


@pytest.mark.parametrize("reward, sign", [(1.0, 1), (-1.0, -1)])
def test_policy_gradient_moves_the_log_probability_with_the_advantage(reward, sign):
    torch.manual_seed(0)
    policy = PermutationPolicy(6, 3, hidden=16)
    state, action = torch.randn(6), 1
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    before = policy.log_probs(state)[action].item()
    logp = policy.log_probs(state)
    ent = -(logp.exp() * logp).sum()
    loss = reinforce_loss(logp[action], reward, 0.2 * sign, ent, coef=0.0)  # advantage 0.8 * sign
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = policy.log_probs(state)[action].item()
    assert sign * (after - before) > 1e-4
    assert torch.allclose(policy(state).sum(), torch.tensor(1.0))
    # zero advantage and no entropy bonus: no gradient at all
    policy.zero_grad()
    reinforce_loss(policy.log_probs(state)[action], 0.5, 0.5, ent.detach(), coef=0.0).backward()
    assert all(p.grad.abs().max() == 0 for p in policy.parameters())


# ---- objective --------------------------------------------------------------------------------------
def test_config_validation():
    with pytest.raises(ValueError):
        ShuffleConfig(frames=3, temporal_perms=7)  # 3! = 6
    with pytest.raises(ValueError):
        ShuffleConfig(groups=30, temporal_perms=24)
    with pytest.raises(ValueError):
        ShuffleConfig(schedule="greedy")
    with pytest.raises(ValueError):
        ShuffleConfig(spatial_weight=0.0, temporal_weight=0.0)
    with pytest.raises(ValueError):
        ShuffleConfig(tile_fraction=0.0)


def test_tiles_and_the_shuffle_convention():
    m = _model(tile_fraction=0.75)
    frame = torch.arange(48 * 48, dtype=torch.float32).view(1, 1, 48, 48).expand(2, 3, 48, 48)
    tiles = m.cut_tiles(frame, jitter=False)  # cells 16x16, tiles 12x12 centred
    assert tiles.shape == (2, 9, 3, 12, 12)
    assert torch.equal(tiles[1, 5], frame[1, :, 18:30, 34:46])  # cell (row 1, col 2)
    jit = m.cut_tiles(frame, jitter=True)
    cell_rows, cell_cols = jit[:, 4, 0, 0, 0] // 48, jit[:, 4, 0, 0, 0] % 48  # centre cell, top-left pixel
    assert ((cell_rows >= 16) & (cell_rows <= 20) & (cell_cols >= 16) & (cell_cols <= 20)).all()
    feats = torch.arange(6.0).view(1, 3, 2)
    assert torch.equal(shuffle_items(feats, torch.tensor([[2, 0, 1]]))[0, :, 0], torch.tensor([4.0, 0.0, 2.0]))


def test_forward_backward_reaches_the_encoder_and_policy_is_not_trained_by_the_trainer():
    m = _model()
    m.set_validation(_batch(seed=9))  # explicit validation set: the first batch is trained on
    loss, logs = m(_batch())
    assert torch.isfinite(loss) and loss.item() > 0
    assert set(logs) == {"spatial_ce", "temporal_ce", "spatial_acc", "temporal_acc"}
    assert logs["temporal_ce"].item() == pytest.approx(loss.item() - logs["spatial_ce"].item(), rel=1e-5)
    loss.backward()
    enc = [p.grad for p in m.encoder.backbone.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in enc)
    assert m.spatial_cls.weight.grad.abs().sum() > 0 and m.temporal_lstm.weight_hh_l0.grad.abs().sum() > 0
    own = {id(p) for p in m.parameters()}
    for s in m.schedules.values():
        assert not any(id(p) in own for p in s.policy.parameters())
    assert not any("policy" in k for k in m.state_dict() if k != "_extra_state")
    # the policy actions of that training batch were recorded (one per sample and task)
    assert m.schedules["spatial"].counts.sum() == 2 and m.schedules["temporal"].counts.sum() == 2


def test_first_batch_is_held_out_as_validation_in_policy_mode_only():
    m = _model()
    loss, _ = m(_batch(seed=3))
    assert loss.item() == 0.0 and torch.equal(m.val_clip, _batch(seed=3)["clip"])
    u = _model(schedule="uniform")
    loss, _ = u(_batch(seed=3))
    assert loss.item() > 0 and u.val_clip is None and u.schedules == {}
    u.after_step(50, 100)  # no-op without a policy


def test_after_step_updates_the_policy_and_checkpoints_keep_the_schedule():
    m = _model(policy_every=2)
    m(_batch(seed=1))  # kept as validation
    before = {t: [p.detach().clone() for p in s.policy.parameters()] for t, s in m.schedules.items()}
    m.after_step(1, 10)  # not a multiple of policy_every
    assert m.schedule_log == []
    m.after_step(2, 10)  # first evaluation: error, groups, state; nothing to reward yet
    assert len(m.schedule_log) == 2 and "reward" not in m.schedule_log[0]
    sch = m.schedules["spatial"]
    assert sch.pending_state.shape == (6,) and torch.allclose(sch.group_probs.sum(), torch.tensor(1.0))
    assert torch.bincount(sch.labels, minlength=3).min() >= 1
    means = sch.pending_state[:3]
    assert (means[1:] >= means[:-1]).all()  # groups numbered hardest (lowest mean ratio) first
    m(_batch(seed=2)).__getitem__(0).backward()
    m.after_step(4, 10)  # second evaluation: reward e_1 - e_2 and one REINFORCE step per task
    rows = m.schedule_log[-2:]
    assert all("reward" in r and r["reward"] == pytest.approx(m.schedules[r["task"]].errors[-2] - r["error"])
               for r in rows)
    for t, s in m.schedules.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[t], s.policy.parameters()))
        assert s.updates == 1 and s.counts.sum() == 0
    assert m.training and m.encoder.training  # train mode restored after the evaluation

    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = _model(policy_every=2)
    m2.load_state_dict(torch.load(buf, weights_only=True))
    for t in m.schedules:
        a, b = m.schedules[t], m2.schedules[t]
        assert all(torch.equal(x, y) for x, y in zip(a.policy.parameters(), b.policy.parameters()))
        assert torch.equal(a.labels, b.labels) and a.errors == b.errors and a.baseline == b.baseline
    assert torch.equal(m2.val_clip, m.val_clip)


def test_trainer_runs_the_schedule(tmp_path):
    m = _model(policy_every=1, temporal_weight=0.0)  # jigsaw only: keeps the test fast
    tr = Trainer(m, TrainerConfig(steps=3, device="cpu", warmup=0, log_every=1, amp=False), tmp_path)
    assert sum(len(g["params"]) for g in tr.opt.param_groups) == len(list(m.parameters()))
    out = tr.fit(iter([_batch(seed=i) for i in range(3)]), progress=False)
    assert out["steps"] == 3 and m.schedules["spatial"].updates == 2 and "temporal" not in {r["task"] for r in m.schedule_log}
    assert tr.history[-1]["spatial_ce"] > 0
    m2 = _model(policy_every=1, temporal_weight=0.0)
    assert Trainer(m2, TrainerConfig(steps=3, device="cpu"), tmp_path).resume()
    assert m2.schedules["spatial"].updates == 2 and torch.equal(m2.val_clip, m.val_clip)


# ---- retrieval readout ------------------------------------------------------------------------------
def test_nn_retrieval_on_a_toy_set():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out = nn_retrieval(feats, labels, k=(1, 5))
    # nearest others: 0->1 hit, 1->0 hit, 2->3 hit, 3->2 hit, 4->(1 or 3) miss, 5->3 (cos 0.11) miss
    assert out["top1"] == pytest.approx(4 / 6)
    assert out["top5"] == pytest.approx(1.0)  # 5 others: everyone's label-mate is among them
    assert nn_retrieval(feats * 3.0, labels, k=(1,))["top1"] == pytest.approx(4 / 6)  # cosine: scale-free
    with pytest.raises(ValueError):
        nn_retrieval(feats[:1], labels[:1])
