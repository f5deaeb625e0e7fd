"""k-NN label propagation readout: metrics, object selection, propagation on oracle features, glue."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from regconsist_ros.readout import propagation as prop
from regconsist_ros.readout.propagation import (
    PropagationConfig,
    clips_from_frames,
    encode_clips,
    evaluate_clip,
    f_measure,
    j_measure,
    object_masks,
    propagate,
    run_propagation,
    search_propagation,
    sequence_of,
    split_clips,
)

CELL = 4  # label pixels per feature-grid cell in the synthetic clips


# ------------------------------------------------------------------------------- synthetic clips


def square_track(T: int, h: int, w: int, squares: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """Cell labels [T, h, w]: each (label, y0, x0, dy, dx) is a 3x3 square at (y0 + t dy, x0 + t dx)."""
    lab = np.zeros((T, h, w), np.int64)
    for t in range(T):
        for k, y0, x0, dy, dx in squares:
            y, x = y0 + t * dy, x0 + t * dx
            lab[t, y:y + 3, x:x + 3] = k
    return lab


def to_pixels(cells: np.ndarray) -> np.ndarray:
    """Cell labels [T, h, w] -> pixel labels [T, h * CELL, w * CELL] (each cell a CELL x CELL block)."""
    return np.repeat(np.repeat(cells, CELL, axis=1), CELL, axis=2)


def oracle_feats(cells: np.ndarray, num_classes: int, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Features [T, D, h, w] = one-hot of the cell's label (+ small noise): perfect appearance cues."""
    g = torch.Generator().manual_seed(seed)
    lab = torch.from_numpy(cells)
    f = torch.nn.functional.one_hot(lab, num_classes + 2).permute(0, 3, 1, 2).float()  # one spare dim
    return f + noise * torch.randn(f.shape, generator=g)


def per_frame_j(pred: np.ndarray, gt: np.ndarray, k: int) -> list[float]:
    return [j_measure(pred[t] == k, gt[t] == k) for t in range(gt.shape[0])]


# --------------------------------------------------------------------------------------- config


def test_config_defaults_and_help():
    cfg = PropagationConfig()
    assert (cfg.topk, cfg.queue, cfg.radius, cfg.temperature, cfg.min_object_pixels, cfg.max_objects,
            cfg.boundary_tolerance, cfg.frames) == (7, 30, 30.0, 0.1, 100, 8, 0.008, 0)
    assert {k: getattr(cfg, k) for k in prop.PAPER_DEFAULTS} == prop.PAPER_DEFAULTS  # RSP, Table 5 (DAVIS)
    assert all(f.metadata.get("help") for f in dataclasses.fields(PropagationConfig))


@pytest.mark.parametrize("field,value", [
    ("topk", 0), ("topk", 2.5), ("topk", True), ("queue", -1), ("radius", -1.0), ("radius", float("nan")),
    ("temperature", 0.0), ("temperature", float("inf")), ("min_object_pixels", 0), ("max_objects", 0),
    ("boundary_tolerance", -0.1), ("boundary_tolerance", 1.0), ("frames", -1), ("frames", 1), ("radius", "far"),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        PropagationConfig(**{field: value})


# --------------------------------------------------------------------------------------- metrics


def test_j_measure_by_hand():
    a = np.zeros((6, 6), bool)
    a[1:3, 1:3] = True
    assert j_measure(a, a) == 1.0
    b = np.zeros_like(a)
    b[4:6, 4:6] = True
    assert j_measure(a, b) == 0.0
    c = np.zeros_like(a)
    c[1:3, 1:5] = True  # 2x4 containing the 2x2
    assert j_measure(a, c) == pytest.approx(0.5)
    assert j_measure(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert j_measure(a, np.zeros_like(a)) == 0.0


def test_boundary_is_davis_seg2bmap():
    # a pixel is boundary when it differs from its east, south or south-east neighbour (inside the image)
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True  # a 2x2 square
    expected = np.array([[1, 1, 1, 0],
                         [1, 0, 1, 0],
                         [1, 1, 1, 0],
                         [0, 0, 0, 0]], bool)  # a 3x3 ring half a pixel up-left of the square's rim
    assert np.array_equal(prop.boundary(m), expected)
    big = np.zeros((6, 6), bool)
    big[1:5, 1:5] = True
    assert prop.boundary(big).sum() == 16  # the ring of an n x n square has 4n pixels
    full = np.ones((4, 4), bool)
    assert not prop.boundary(full).any()  # the image edge itself is no boundary
    half = np.zeros((4, 4), bool)
    half[:, :2] = True
    assert np.array_equal(prop.boundary(half), np.array([[0, 1, 0, 0]] * 4, bool))
    corner = np.zeros((3, 3), bool)
    corner[2, 2] = True  # the bottom-right pixel: never boundary itself, its neighbours are
    assert np.array_equal(prop.boundary(corner), np.array([[0, 0, 0], [0, 1, 1], [0, 1, 0]], bool))


def test_f_measure_by_hand():
    gt = np.zeros((12, 12), bool)
    gt[3:7, 2:6] = True  # boundary: the 5x5 ring rows 2..6, cols 1..5 (16 px)
    shifted = np.zeros_like(gt)
    shifted[2:6, 2:6] = True  # one pixel up: ring rows 1..5, cols 1..5
    far = np.zeros_like(gt)
    far[8:11, 8:11] = True
    assert f_measure(gt, gt, 1) == 1.0 and f_measure(gt, gt, 0) == 1.0
    assert f_measure(shifted, gt, 1) == 1.0  # every boundary pixel within 1 px of the other boundary
    # exact matching: the rings share only their side columns at rows 2..5 (2 x 4 = 8 of 16) -> P = R = 1/2
    assert f_measure(shifted, gt, 0) == pytest.approx(0.5)
    # P != R: the prediction is the 4x4 square, the ground truth the 2x2 square inside it (rows 4..5,
    # cols 3..4; ring rows 3..5, cols 2..4, 8 px). Radius 1 is the 4-neighbourhood: every GT ring pixel
    # has a predicted one straight above/below/beside it -> R = 8/8; the predicted ring's 4 corners
    # are a diagonal step from the GT ring -> P = 12/16. F = 2 * 0.75 * 1 / 1.75 = 6/7.
    inner = np.zeros_like(gt)
    inner[4:6, 3:5] = True
    assert f_measure(gt, inner, 1) == pytest.approx(6 / 7)
    assert f_measure(inner, gt, 1) == pytest.approx(6 / 7)  # P and R swap, F is symmetric
    assert f_measure(gt, inner, 2) == 1.0  # disk(2) holds the diagonal (1, 1) offsets
    assert f_measure(far, gt, 1) == 0.0  # disjoint and further apart than the tolerance
    assert f_measure(far, gt, 6) > 0.0  # a large tolerance reaches across
    empty = np.zeros_like(gt)
    assert f_measure(empty, empty, 1) == 1.0
    assert f_measure(empty, gt, 1) == 0.0 and f_measure(gt, empty, 1) == 0.0
    with pytest.raises(ValueError):
        f_measure(gt, gt, -1)


def test_tolerance_px_davis_convention_rounds_up():
    cfg = PropagationConfig()
    assert prop.tolerance_px(480, 854, cfg) == int(np.ceil(0.008 * np.hypot(480, 854))) == 8
    assert prop.tolerance_px(96, 128, cfg) == 2  # ceil(1.28); rounding to nearest would give 1
    assert prop.tolerance_px(48, 64, cfg) == 1  # ceil(0.64)
    assert prop.tolerance_px(96, 128, PropagationConfig(boundary_tolerance=0.0)) == 0


def test_evaluate_clip_at_128x96_matches_boundaries_within_2_px():
    gt = np.zeros((2, 96, 128), np.int64)
    gt[:, 30:60, 40:80] = 1
    pred = gt.copy()
    pred[1] = 0
    pred[1, 30:60, 42:82] = 1  # two pixels to the right
    r = evaluate_clip(pred, gt, 1, PropagationConfig())
    assert r["per_object"][0]["F"] == 1.0  # within the 2-px tolerance
    assert f_measure(pred[1] == 1, gt[1] == 1, 1) < 0.9  # a 1-px tolerance would miss the vertical edges


def test_evaluate_clip_excludes_first_frame_and_averages_objects():
    gt = to_pixels(square_track(4, 8, 8, [(1, 0, 0, 0, 1), (2, 5, 5, 0, 0)]))
    pred = gt.copy()
    pred[0] = 0  # the given frame never counts
    r = evaluate_clip(pred, gt, 2, PropagationConfig())
    assert (r["J"], r["F"], r["JF"], r["frames"]) == (1.0, 1.0, 1.0, 4)
    pred[1:][pred[1:] == 2] = 0  # object 2 lost in every scored frame
    r = evaluate_clip(pred, gt, 2, PropagationConfig())
    assert r["per_object"] == [{"J": 1.0, "F": 1.0}, {"J": 0.0, "F": 0.0}]
    assert r["J"] == 0.5 and r["F"] == 0.5 and r["JF"] == 0.5
    with pytest.raises(ValueError):
        evaluate_clip(pred[:1], gt[:1], 2, PropagationConfig())


# --------------------------------------------------------------------------------------- objects


def test_object_masks_keeps_largest_drops_small_maps_unseen_to_background():
    inst = np.zeros((2, 10, 10), np.uint16)
    inst[0, :5, :5] = 7  # 25 px
    inst[0, 5:, :6] = 3  # 30 px
    inst[0, :2, 6:9] = 9  # 6 px: too small
    inst[0, 6:9, 7:10] = 4  # 9 px
    inst[1] = inst[0]
    inst[1, 9, 9] = 42  # an id unseen in frame 0
    cfg = PropagationConfig(min_object_pixels=8, max_objects=2)
    labels, ids = object_masks(inst, cfg)
    assert ids == [3, 7] and labels.dtype == np.int64 and labels.shape == inst.shape
    assert (labels[:, 5:, :6] == 1).all() and (labels[:, :5, :5] == 2).all()
    assert labels[0, 6:9, 7:10].max() == 0  # third largest: beyond max_objects
    assert labels[:, :2, 6:9].max() == 0 and labels[1, 9, 9] == 0
    assert set(np.unique(labels)) == {0, 1, 2}
    labels, ids = object_masks(inst, PropagationConfig(min_object_pixels=8))
    assert ids == [3, 7, 4]
    with pytest.raises(ValueError, match="min_object_pixels"):
        object_masks(inst, PropagationConfig(min_object_pixels=31))


# ----------------------------------------------------------------------------------- propagation


def test_propagate_tracks_moving_objects_with_oracle_features_but_not_random_ones():
    T, h, w = 8, 12, 16
    cells = square_track(T, h, w, [(1, 1, 1, 1, 1), (2, 8, 12, 0, -1)])  # diagonal / leftwards, 1 cell a frame
    gt = to_pixels(cells)
    cfg = PropagationConfig()
    pred = propagate(oracle_feats(cells, 2), gt[0], 2, cfg)
    assert pred.shape == gt.shape and pred.dtype == np.int64
    assert np.array_equal(pred[0], gt[0])
    for k in (1, 2):
        assert min(per_frame_j(pred, gt, k)[1:]) > 0.9
    rnd = propagate(torch.randn(T, 16, h, w, generator=torch.Generator().manual_seed(0)), gt[0], 2, cfg)
    j_oracle = evaluate_clip(pred, gt, 2, cfg)["J"]
    j_random = evaluate_clip(rnd, gt, 2, cfg)["J"]
    assert j_oracle > 0.9 and j_random < 0.5 and j_random < j_oracle - 0.4


def test_propagate_soft_first_frame_is_area_average():
    # labels not aligned with the grid: a half-covered cell carries 0.5 of the object
    T, h, w = 3, 4, 4
    first = np.zeros((16, 16), np.int64)
    first[:, :6] = 1  # pixel columns 0..5: grid column 0 fully covered, column 1 half
    feats = torch.zeros(T, 2, h, w)
    feats[:, 0] = 1.0  # every position alike
    cfg = PropagationConfig(topk=4, radius=0.5, queue=0)  # radius 0.5: the same cell is the only neighbour
    pred = propagate(feats, first, 1, cfg)
    # soft labels stay the area averages (1, 0.5, 0, 0 per grid column); bilinear upsampling puts
    # the 0.5 crossing between pixel columns 5 and 6, i.e. the object edge comes back exactly
    assert (pred[1:, :, :6] == 1).all() and (pred[1:, :, 6:] == 0).all()


def test_radius_restricts_neighbours_to_a_spatial_window():
    T, h, w = 3, 12, 16
    cells = square_track(T, h, w, [(1, 1, 1, 0, 0)])
    cells[1:] = square_track(1, h, w, [(1, 8, 12, 0, 0)])[0]  # jumps far away in frame 1 and stays there
    gt = to_pixels(cells)
    feats = oracle_feats(cells, 1)
    follow = propagate(feats, gt[0], 1, PropagationConfig(radius=0))
    assert min(per_frame_j(follow, gt, 1)[1:]) > 0.9
    stuck = propagate(feats, gt[0], 1, PropagationConfig(radius=1))
    assert max(per_frame_j(stuck, gt, 1)[1:]) == 0.0  # no object cell within one cell: lost
    # whatever object label remains stays near the frame-0 square (cells 1..3 = pixels 4..15)
    assert (stuck[1:, 20:] == 0).all() and (stuck[1:, :, 20:] == 0).all()


def test_queue_holds_first_frame_plus_last_predictions(monkeypatch):
    T, h, w, q = 7, 3, 4, 2
    feats = torch.zeros(T, T, h, w)
    for t in range(T):
        feats[t, t] = 1.0  # frame t's features are the unit vector e_t everywhere: recognisable in the context
    seen = []
    orig = prop._affinity

    def spy(target, context):  # context [M, N, D]
        seen.append(sorted(int(i) for i in context[:, 0].argmax(1)))
        return orig(target, context)

    monkeypatch.setattr(prop, "_affinity", spy)
    propagate(feats, np.ones((h * CELL, w * CELL), np.int64), 1, PropagationConfig(queue=q))
    assert seen == [[0] + list(range(max(1, t - q), t)) for t in range(1, T)]
    seen.clear()
    propagate(feats, np.ones((h * CELL, w * CELL), np.int64), 1, PropagationConfig(queue=0))
    assert seen == [[0]] * (T - 1)


@pytest.mark.parametrize("queue,radius", [(2, 0.0), (30, 1.5), (0, 2.0)])
def test_cached_neighbours_give_the_same_predictions_for_every_topk_and_temperature(queue, radius):
    gen = torch.Generator().manual_seed(3)
    T, D, h, w = 6, 8, 4, 5
    feats = torch.randn(T, D, h, w, generator=gen)
    first = torch.randint(0, 3, (h * CELL, w * CELL), generator=gen).numpy()
    nearest = prop.neighbours(feats, queue, radius, k=10)
    assert len(nearest) == T - 1 and all(v.shape == i.shape for v, i in nearest)
    assert all(bool((v[:, :-1] >= v[:, 1:]).all()) for v, _ in nearest)  # sorted, largest first
    for topk in (1, 4, 10):
        for temperature in (0.05, 0.7):
            cfg = PropagationConfig(topk=topk, temperature=temperature, queue=queue, radius=radius)
            np.testing.assert_array_equal(propagate(feats, first, 2, cfg, nearest), propagate(feats, first, 2, cfg))
    with pytest.raises(ValueError, match="topk needs"):
        propagate(feats, first, 2, PropagationConfig(topk=11, queue=queue, radius=radius), prop.neighbours(feats, queue, radius, k=3))
    with pytest.raises(ValueError, match="frames"):
        propagate(feats, first, 2, PropagationConfig(queue=queue, radius=radius), nearest[:-1])


def test_search_finds_neighbours_once_per_queue_and_radius(monkeypatch):
    calls = []
    orig = prop.neighbours

    def spy(feats, queue, radius, k):
        calls.append((queue, radius, k))
        return orig(feats, queue, radius, k)

    monkeypatch.setattr(prop, "neighbours", spy)
    gen = torch.Generator().manual_seed(0)
    clip = {"name": "c_000", "rgb": np.zeros((4, 8, 8, 3), np.uint8),
            "instance": np.pad(np.ones((4, 4, 4), np.uint16), ((0, 0), (2, 2), (2, 2)))}
    feats = {"c_000": torch.randn(4, 8, 2, 2, generator=gen)}
    grid = {"topk": (1, 3), "temperature": (0.1, 0.7), "queue": (1, 2), "radius": (0.0,)}
    chosen, table = prop.search_propagation(feats, [clip], grid=grid, base=PropagationConfig(min_object_pixels=4))
    assert len(table) == 8 and sorted(calls) == [(1, 0.0, 3), (2, 0.0, 3)]
    plain = [prop._means(prop._score(prop._prepare([clip], PropagationConfig(min_object_pixels=4), "t")[0], feats,
                                     PropagationConfig(min_object_pixels=4, topk=r["topk"], temperature=r["temperature"],
                                                       queue=r["queue"], radius=r["radius"]), "t"))["JF_objects"]
             for r in table]
    assert plain == [r["JF_objects"] for r in table]


def test_queue_lets_a_radius_limited_tracker_follow_a_moving_object():
    # one cell a frame under radius 1: the first frame alone is soon out of reach, recent predictions are not
    T, h, w = 7, 8, 14
    cells = square_track(T, h, w, [(1, 2, 1, 0, 1)])
    gt = to_pixels(cells)
    feats = oracle_feats(cells, 1, noise=0.02)
    base = dict(radius=1.5, temperature=0.1)
    tracked = propagate(feats, gt[0], 1, PropagationConfig(queue=1, **base))
    assert min(per_frame_j(tracked, gt, 1)[1:]) > 0.9
    forgetful = propagate(feats, gt[0], 1, PropagationConfig(queue=0, **base))
    assert per_frame_j(forgetful, gt, 1)[-1] == 0.0  # 6 cells from where frame 0 saw it


def test_propagate_rejects_bad_inputs():
    cfg = PropagationConfig()
    with pytest.raises(ValueError):
        propagate(torch.zeros(3, 4, 4), np.zeros((8, 8), np.int64), 1, cfg)
    with pytest.raises(ValueError):
        propagate(torch.zeros(3, 4, 4, 4), np.full((8, 8), 3), 1, cfg)


# ------------------------------------------------------------------------------------------ glue


def test_clips_from_frames_cuts_consecutive_clips_and_drops_tail():
    rgb = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 5, 3), np.uint8)
    inst = np.arange(10, dtype=np.uint16)[:, None, None] * np.ones((1, 4, 5), np.uint16)
    clips = clips_from_frames(rgb, inst, 4, "seq")
    assert [c["name"] for c in clips] == ["seq_000", "seq_001"]
    assert [int(c["rgb"][0, 0, 0, 0]) for c in clips] == [0, 4]
    assert all(c["rgb"].shape == (4, 4, 5, 3) and c["instance"].shape == (4, 4, 5) for c in clips)
    assert clips[1]["instance"][-1, 0, 0] == 7
    with pytest.raises(ValueError):
        clips_from_frames(rgb, inst, 1, "seq")


class ColourEncoder(nn.Module):
    """A 'DeepLab-like' encoder whose stride-4 features are the mean normalised colour of each cell."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward_features(self, x):
        self.calls += 1
        return nn.functional.avg_pool2d(x, CELL) * 10.0


def coloured_clip(T: int = 6, h: int = 10, w: int = 12):
    cells = square_track(T, h, w, [(1, 1, 1, 1, 1), (2, 6, 8, 0, -1)])
    inst = to_pixels(cells).astype(np.uint16) * 5  # instance ids 5 and 10
    colours = np.array([(128, 128, 128), (220, 30, 30), (30, 40, 220)], np.uint8)
    rgb = colours[to_pixels(cells)]
    return {"name": "squares", "rgb": rgb, "instance": inst}


def test_run_propagation_tracks_coloured_squares(tmp_path):
    cfg = PropagationConfig(min_object_pixels=20, frames=5)
    res = run_propagation(ColourEncoder(), [coloured_clip()], cfg, progress=False, out_dir=tmp_path)
    (clip,) = res["clips"]
    assert clip["frames"] == 5 and clip["objects"] == 2 and clip["object_ids"] == [5, 10]
    assert res["J_mean"] > 0.9 and res["F_mean"] > 0.9
    assert res["JF_mean"] == pytest.approx((res["J_mean"] + res["F_mean"]) / 2)
    saved = json.loads((tmp_path / "propagation.json").read_text())
    assert saved["clips"][0]["name"] == "squares" and saved["config"]["frames"] == 5


def test_run_propagation_random_vit_on_rendered_clip(tmp_path):
    from regconsist_ros.models.encoder import random_encoder
    from regconsist_ros.sim.source import SimConfig, SimSource

    frames = list(SimSource(SimConfig(seed=0, frames=8, width=64, height=48)))
    rgb = np.stack([f.rgb for f in frames])
    instance = np.stack([f.instance for f in frames])
    model = random_encoder("vit", {"size": "tiny", "img_size": [48, 64], "depth": 1, "patch": 8})
    clips = clips_from_frames(rgb, instance, 4, "apartment") + [{"name": "whole", "rgb": rgb, "instance": instance}]
    cfg = PropagationConfig(min_object_pixels=20)
    res = run_propagation(model, clips, cfg, progress=False, out_dir=tmp_path)
    assert set(res) >= {"J_mean", "F_mean", "JF_mean", "clips", "seconds"}
    assert [c["name"] for c in res["clips"]] == ["apartment_000", "apartment_001", "whole"]
    for c in res["clips"]:
        assert set(c) >= {"name", "J", "F", "JF", "objects", "frames"}
        assert 0.0 <= c["J"] <= 1.0 and 0.0 <= c["F"] <= 1.0 and 1 <= c["objects"] <= cfg.max_objects
    assert [c["frames"] for c in res["clips"]] == [4, 4, 8]
    assert 0.0 <= res["J_mean"] <= 1.0 and 0.0 <= res["F_mean"] <= 1.0 and res["seconds"] > 0
    assert res["J_mean"] == pytest.approx(np.mean([c["J"] for c in res["clips"]]))
    saved = json.loads((tmp_path / "propagation.json").read_text())
    assert saved["JF_mean"] == pytest.approx(res["JF_mean"])
    png = tmp_path / "propagation.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_propagation_skips_clips_without_objects():
    clip = coloured_clip()
    empty = {"name": "empty", "rgb": clip["rgb"], "instance": np.zeros_like(clip["instance"])}
    cfg = PropagationConfig(min_object_pixels=20)
    with pytest.warns(UserWarning, match="empty"):
        res = run_propagation(ColourEncoder(), [empty, clip], cfg, progress=False)
    assert [c["name"] for c in res["clips"]] == ["squares"] and res["skipped"][0]["name"] == "empty"
    with pytest.raises(ValueError, match="no clip"), pytest.warns(UserWarning):
        run_propagation(ColourEncoder(), [empty], cfg, progress=False)


def test_run_propagation_reports_object_level_means_as_headline():
    two = coloured_clip()  # 2 objects, tracked by the colour features
    cells = square_track(6, 10, 12, [(1, 2, 2, 0, 1)])
    inst = to_pixels(cells).astype(np.uint16) * 3
    one = {"name": "one", "rgb": np.full(inst.shape + (3,), 128, np.uint8), "instance": inst}  # 1 object, no cue
    res = run_propagation(ColourEncoder(), [two, one], PropagationConfig(min_object_pixels=20), progress=False)
    objs = [o for c in res["clips"] for o in c["per_object"]]
    assert res["num_objects"] == len(objs) == 3
    assert res["J_objects"] == pytest.approx(np.mean([o["J"] for o in objs]))
    assert res["F_objects"] == pytest.approx(np.mean([o["F"] for o in objs]))
    assert res["JF_objects"] == pytest.approx((res["J_objects"] + res["F_objects"]) / 2)
    assert res["J_mean"] == pytest.approx(np.mean([c["J"] for c in res["clips"]]))
    assert abs(res["J_objects"] - res["J_mean"]) > 0.01  # the 2-object clip weighs more per object
    assert "JF_objects" in run_propagation.__doc__ and "headline" in run_propagation.__doc__


def test_run_propagation_reuses_precomputed_features():
    clip = coloured_clip()
    cfg = PropagationConfig(min_object_pixels=20, frames=5)
    enc = ColourEncoder()
    feats = encode_clips(enc, [clip], cfg, progress=False)
    assert feats["squares"].shape == (5, 3, 10, 12) and enc.calls == 1  # [T, D, h, w] of a 10 x 12 cell clip
    direct = run_propagation(ColourEncoder(), [clip], cfg, progress=False)
    reused = run_propagation(None, [clip], cfg, progress=False, features=feats)
    assert enc.calls == 1  # nothing encoded again
    assert reused["clips"] == direct["clips"] and reused["JF_objects"] == direct["JF_objects"]
    full = encode_clips(enc, [clip], progress=False)  # all 6 frames: cut to the clip's 5
    assert run_propagation(None, [clip], cfg, progress=False, features=full)["clips"] == direct["clips"]
    with pytest.raises(ValueError, match="no features for clip 'squares'"):
        run_propagation(None, [clip], cfg, progress=False, features={})
    with pytest.raises(ValueError, match="T >= 5"):
        run_propagation(None, [clip], cfg, progress=False, features={"squares": feats["squares"][:3]})
    with pytest.raises(ValueError, match="twice"):
        run_propagation(None, [clip, clip], cfg, progress=False, features=feats)


def tracking_clip(name: str, T: int = 7):
    """A square moving one cell a frame and its oracle features (a radius-1.5 tracker needs the queue)."""
    cells = square_track(T, 8, 14, [(1, 2, 1, 0, 1)])
    inst = to_pixels(cells).astype(np.uint16)
    clip = {"name": name, "rgb": np.zeros(inst.shape + (3,), np.uint8), "instance": inst}
    return clip, oracle_feats(cells, 1, noise=0.02)


def test_search_propagation_picks_the_setting_that_tracks():
    clips, feats = zip(*(tracking_clip(f"apt{i}_000") for i in range(2)))
    feats = {c["name"]: f for c, f in zip(clips, feats)}
    base = PropagationConfig(min_object_pixels=20, radius=1.5, temperature=0.1)
    best, table = search_propagation(feats, list(clips), {"queue": [0, 1], "topk": [3]}, base=base, progress=False)
    assert isinstance(best, PropagationConfig) and (best.queue, best.topk, best.radius) == (1, 3, 1.5)
    assert [(r["queue"], r["topk"]) for r in table] == [(0, 3), (1, 3)]  # grid order
    assert [r["rank"] for r in table] == [2, 1]
    assert table[1]["JF_objects"] > table[0]["JF_objects"] + 0.1
    assert set(table[0]) >= {"J_objects", "F_objects", "JF_objects", "J_mean", "F_mean", "JF_mean"}


def test_search_propagation_breaks_ties_towards_the_base_then_grid_order():
    clip, _ = tracking_clip("apt_000", T=4)
    flat = {"apt_000": torch.ones(4, 3, 8, 14)}  # every affinity equal: the temperature changes nothing
    base = PropagationConfig(min_object_pixels=20)
    grid = {"temperature": [0.05, 0.1, 0.7]}
    best, table = search_propagation(flat, [clip], grid, base=base, progress=False)
    assert len({r["JF_objects"] for r in table}) == 1  # a three-way tie
    assert best.temperature == 0.1 and table[1]["rank"] == 1  # the base (paper) value wins the tie
    best, _ = search_propagation(flat, [clip], grid, base=PropagationConfig(min_object_pixels=20, temperature=0.3),
                                 progress=False)
    assert best.temperature == 0.05  # no base value in the grid: the first listed


def test_search_propagation_encodes_each_clip_once_and_checks_the_grid():
    enc = ColourEncoder()
    clip = coloured_clip()
    base = PropagationConfig(min_object_pixels=20)
    best, table = search_propagation(enc, [clip], {"topk": [5, 7], "queue": [7, 30]}, base=base, progress=False)
    assert enc.calls == 1 and len(table) == 4 and sorted(r["rank"] for r in table) == [1, 2, 3, 4]
    assert best.min_object_pixels == 20  # everything outside the grid comes from base
    assert set(prop.SEARCH_GRID) == set(prop.SEARCHABLE) and len(list(__import__("itertools").product(
        *prop.SEARCH_GRID.values()))) == 36
    with pytest.raises(ValueError, match="cannot search 'frames'"):
        search_propagation(enc, [clip], {"frames": [3]}, base=base, progress=False)
    with pytest.raises(ValueError, match="topk"):
        search_propagation(enc, [clip], {"topk": [0]}, base=base, progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        search_propagation(enc, [clip], {"topk": []}, base=base, progress=False)


def test_split_clips_keeps_sequences_apart():
    names = ["apt0_000", "apt0_001", "apt1_000", "apt2_000", "apt2_001", "apt3_000", "whole", "my_flat_002"]
    clips = [{"name": n} for n in names]
    assert [sequence_of(n) for n in names] == ["apt0", "apt0", "apt1", "apt2", "apt2", "apt3", "whole", "my_flat"]
    val, test = split_clips(clips, 0.4, seed=0)
    vs, ts = {sequence_of(c["name"]) for c in val}, {sequence_of(c["name"]) for c in test}
    assert vs and ts and not vs & ts and vs | ts == {"apt0", "apt1", "apt2", "apt3", "whole", "my_flat"}
    assert len(vs) == 2  # round(0.4 * 6)
    assert [c["name"] for c in val + test if c in val] == [n for n in names if sequence_of(n) in vs]  # order kept
    assert split_clips(clips, 0.4, seed=0) == (val, test)
    assert len({frozenset(sequence_of(c["name"]) for c in split_clips(clips, 0.4, seed=s)[0]) for s in range(10)}) > 1
    val, test = split_clips(clips, ["apt2"])
    assert [c["name"] for c in val] == ["apt2_000", "apt2_001"] and len(test) == 6
    with pytest.raises(ValueError, match="not among"):
        split_clips(clips, ["apt9"])
    with pytest.raises(ValueError, match="none is left"):
        split_clips(clips, sorted({sequence_of(n) for n in names}))
    with pytest.raises(ValueError, match=">= 2 sequences"):
        split_clips([{"name": "apt0_000"}, {"name": "apt0_001"}], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        split_clips(clips, 1.5)


def test_disk_dilation_by_shifts_equals_skimage_disk_dilation():
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    from regconsist_ros.readout.propagation import dilate_disk

    rng = np.random.default_rng(0)
    for r in (0, 1, 2, 3, 5, 8, 9, 12):
        m = rng.random((37, 53)) < 0.02
        ref = binary_dilation(m, structure=disk(r).astype(bool)) if r else m
        assert np.array_equal(dilate_disk(m, r), ref), r
