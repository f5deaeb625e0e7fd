"""Bootstrap intervals: coverage on simulated data, degenerate cases, paired differences, IQM."""
import numpy as np
import pytest
from scipy.stats import trim_mean

from regconsist_ros.readout.stats import bootstrap_ci, iqm, iqm_ci, paired_bootstrap_diff


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(123)
    hits = 0
    for i in range(200):
        x = rng.normal(0.6, 0.1, size=40)  # true mean 0.6
        ci = bootstrap_ci(x, reps=1000, seed=i)
        assert ci["low"] <= ci["stat"] <= ci["high"]
        hits += ci["low"] <= 0.6 <= ci["high"]
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_ci_constant_data_is_zero_width_and_seeded():
    ci = bootstrap_ci(np.full(25, 0.3))
    assert ci["low"] == ci["high"] == ci["stat"]
    x = np.random.default_rng(0).random(30)
    assert bootstrap_ci(x, seed=4) == bootstrap_ci(x, seed=4)
    assert bootstrap_ci(x, seed=4) != bootstrap_ci(x, seed=5)
    wide, narrow = bootstrap_ci(x, level=0.99), bootstrap_ci(x, level=0.5)
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]
    med = bootstrap_ci(x, stat=np.median)
    assert med["stat"] == pytest.approx(np.median(x)) and med["low"] <= med["stat"] <= med["high"]


@pytest.mark.parametrize("kwargs,match", [
    ({"values": []}, "empty"), ({"values": [[1.0, 2.0]]}, "dimension"), ({"values": [1.0, np.nan]}, "non-finite"),
    ({"values": [1.0], "reps": 0}, "reps"), ({"values": [1.0], "level": 1.0}, "level"),
])
def test_bootstrap_ci_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(**kwargs)


def test_paired_diff_detects_a_real_shift():
    rng = np.random.default_rng(1)
    item = rng.normal(0.5, 0.2, size=60)  # per-item difficulty, shared by both encoders
    a = item + 0.05 + rng.normal(0, 0.02, size=(3, 60))  # [seeds, items]: 0.05 better everywhere
    b = item + rng.normal(0, 0.02, size=(3, 60))
    r = paired_bootstrap_diff(a, b, seed=0)
    assert set(r) == {"diff", "low", "high", "p_le_0"}
    assert r["diff"] == pytest.approx(a.mean() - b.mean())
    assert 0 < r["low"] <= r["diff"] <= r["high"] and r["p_le_0"] < 0.01
    # pairing matters: the shared item difficulty dwarfs the shift, an unpaired comparison would not see it
    assert r["high"] - r["low"] < 0.5 * (2 * 1.96 * item.std() / np.sqrt(60))
    rev = paired_bootstrap_diff(b, a, seed=0)
    assert rev["high"] < 0 and rev["p_le_0"] > 0.99


def test_paired_diff_does_not_detect_a_null_shift():
    rng = np.random.default_rng(2)
    false_alarms = 0
    for i in range(100):
        item = rng.normal(0.5, 0.2, size=40)
        a = item + rng.normal(0, 0.05, size=(3, 40))
        b = item + rng.normal(0, 0.05, size=(3, 40))
        r = paired_bootstrap_diff(a, b, reps=500, seed=i)
        false_alarms += not (r["low"] <= 0 <= r["high"])
    assert false_alarms / 100 <= 0.15


def test_paired_diff_unequal_seed_counts_one_seed_and_reproducibility():
    rng = np.random.default_rng(3)
    a, b = rng.random((4, 30)), rng.random((2, 30))
    r = paired_bootstrap_diff(a, b, seed=7)
    assert r == paired_bootstrap_diff(a, b, seed=7) and r != paired_bootstrap_diff(a, b, seed=8)
    assert r["low"] <= r["diff"] <= r["high"]
    one = paired_bootstrap_diff(a[0], b[0])  # 1-D: one seed each, items resampled only
    assert one["diff"] == pytest.approx(a[0].mean() - b[0].mean())
    same = paired_bootstrap_diff(a, a)
    assert same["diff"] == same["low"] == same["high"] == 0.0 and same["p_le_0"] == 1.0
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap_diff(a, b[:, :10])


def test_seed_level_resampling_widens_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(4)
    item = rng.normal(0.5, 0.1, size=50)
    seed_offsets = np.array([-0.1, 0.0, 0.1])[:, None]  # pretraining seeds that differ a lot
    a = item + 0.02 + seed_offsets + rng.normal(0, 0.01, size=(3, 50))
    b = item + rng.normal(0, 0.01, size=(3, 50))
    two_level = paired_bootstrap_diff(a, b[:1], seed=0)  # seeds resampled independently (3 vs 1)
    items_only = paired_bootstrap_diff(a.mean(0), b[0], seed=0)
    assert two_level["high"] - two_level["low"] > 3 * (items_only["high"] - items_only["low"])


def test_iqm_matches_trim_mean_and_iqm_ci_is_stratified():
    rng = np.random.default_rng(5)
    x = rng.random((5, 7))  # [seeds, tasks]
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25, axis=None))
    assert np.allclose(iqm(x, axis=0), trim_mean(x, 0.25, axis=0))
    assert iqm([1.0, 2.0, 3.0]) == 2.0 and iqm([0, 0, 0, 0, 100, 1, 1, 1]) == 0.5
    r = iqm_ci(x, seed=0)
    assert set(r) == {"iqm", "low", "high"} and r["low"] <= r["iqm"] <= r["high"] and r == iqm_ci(x, seed=0)
    # per-task constants across seeds: stratified resampling has nothing to vary -> zero width
    flat = np.tile(rng.random(7), (4, 1))
    c = iqm_ci(flat)
    assert c["low"] == c["high"] == c["iqm"]
    one = iqm_ci(rng.random(6))  # one seed per task
    assert one["low"] == one["high"] == one["iqm"]
    with pytest.raises(ValueError, match="non-finite"):
        iqm_ci([[1.0, np.inf]])


def test_iqm_ci_covers_the_true_iqm_in_simulation():
    rng = np.random.default_rng(6)
    task_means = np.linspace(0.2, 0.8, 10)
    true = 0.5  # the pooled population IQM: task means symmetric about 0.5 plus symmetric noise
    hits = 0
    for i in range(200):
        x = task_means + rng.normal(0, 0.05, size=(8, 10))
        r = iqm_ci(x, reps=500, seed=i)
        hits += r["low"] <= true <= r["high"]
    assert 0.88 <= hits / 200 <= 0.99
