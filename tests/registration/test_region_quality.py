"""Scores of an over-segmentation against labelled segments (choosing Felzenszwalb settings)."""
import math

import numpy as np
import pytest

from regconsist_ros.registration.region_quality import covering, purity, region_scores


def _two_classes():
    """A 4x6 view: class 1 on the left half, class 2 on the right, one instance id (0) for both."""
    sem = np.zeros((4, 6), np.int64)
    sem[:, :3], sem[:, 3:] = 1, 2
    return sem, np.zeros_like(sem)


def test_the_extremes_score_as_computed_by_hand():
    sem, inst = _two_classes()
    exact = region_scores(sem.copy(), inst, sem)
    assert exact == {"covering": 1.0, "purity": 1.0, "vi_under": 0.0, "vi_over": 0.0, "regions": 2, "region_px": 12.0}
    # one region over both halves: each segment's IoU is 12/24; H(truth | regions) = 1 bit
    one = region_scores(np.zeros((4, 6), np.int64), inst, sem)
    assert one["covering"] == 0.5 and one["purity"] == 0.5 and one["vi_under"] == pytest.approx(1.0)
    assert one["vi_over"] == pytest.approx(0.0) and one["regions"] == 1
    # every pixel its own region: pure, but each segment is covered by 1/12 of itself; H(regions | truth) = log2 12
    fine = region_scores(np.arange(24).reshape(4, 6), inst, sem)
    assert fine["covering"] == pytest.approx(1 / 12) and fine["purity"] == 1.0
    assert fine["vi_under"] == pytest.approx(0.0) and fine["vi_over"] == pytest.approx(math.log2(12))


def test_covering_weights_segments_by_size_and_ignores_void():
    truth = np.array([[1, 1, 1, 2], [1, 1, 1, 2], [0, 0, 0, 0]])  # 6 px of 1, 2 px of 2, a void row
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 5, 5]])
    # segment 1: best region 0 (IoU 4/6); segment 2: region 1 (IoU 2/4); weights 6/8 and 2/8
    assert covering(truth, regions) == pytest.approx(6 / 8 * 4 / 6 + 2 / 8 * 2 / 4)
    # purity: region 0 is all 1 (4 px), region 1 has two 1s and two 2s (majority 2 px)
    assert purity(truth, regions) == pytest.approx((4 + 2) / 8)


def test_instances_of_different_classes_are_different_segments():
    sem, inst = _two_classes()  # instance 0 on both classes
    s = region_scores(np.zeros((4, 6), np.int64), inst, sem)
    assert s["covering"] == 0.5  # not 1.0: (class, instance) pairs are the segments


def test_bad_input_is_named():
    sem, inst = _two_classes()
    with pytest.raises(ValueError, match="shapes differ"):
        region_scores(np.zeros((4, 5), np.int64), inst, sem)
    with pytest.raises(ValueError, match="no labelled pixel"):
        region_scores(np.zeros((4, 6), np.int64), inst, np.zeros_like(sem))
