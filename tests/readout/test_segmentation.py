"""Few-label fine-tuning readout: metrics, view split, fine-tuning on a toy problem, figure, glue."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import regconsist_ros.learning.trainer as _trainer
from regconsist_ros.learning.trainer import warmup_cosine
from regconsist_ros.readout import segmentation as seg
from regconsist_ros.readout.segmentation import (
    FinetuneConfig,
    SegmentationFinetune,
    confusion_matrix,
    evaluate,
    finetune,
    miou,
    prediction_figure,
    run_readout,
    split_views,
    to_batch,
)
from regconsist_ros.sim.frame import Frame, Intrinsics
from regconsist_ros.sim.world.classes import ClassTable

CLASSES = ClassTable.from_names(["floor", "red", "green", "blue"])  # ids 1..4, void 0
COLOURS = {2: (220, 30, 30), 3: (30, 200, 40), 4: (40, 50, 220)}


# ------------------------------------------------------------------------------------ toy data


def toy_views(n: int = 8, size: int = 32, seed: int = 0):
    """Grey noisy background = floor (1); one or two coloured square blobs (class = colour); void border."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((n, size, size, 3), np.uint8)
    sem = np.ones((n, size, size), np.uint16)
    for i in range(n):
        rgb[i] = np.clip(rng.normal(120, 12, (size, size, 3)), 0, 255)
        for c in rng.choice([2, 3, 4], size=2, replace=False):
            h = int(rng.integers(size // 4, size // 2))
            r, q = rng.integers(1, size - h - 1, size=2)
            rgb[i, r:r + h, q:q + h] = np.clip(np.array(COLOURS[int(c)]) + rng.normal(0, 8, (h, h, 3)), 0, 255)
            sem[i, r:r + h, q:q + h] = c
        sem[i, 0, :] = 0  # unlabelled top row
    return rgb, sem


def toy_frames(n: int = 10, size: int = 32, seed: int = 0) -> list[Frame]:
    rgb, sem = toy_views(n, size, seed)
    K = Intrinsics.from_fov(size, size, 90.0)
    return [Frame(rgb[i], np.ones((size, size), np.float32), K, np.eye(4), stamp=float(i), semantic=sem[i])
            for i in range(n)]


class TinySeg(nn.Module):
    """Stand-in with the DeepLab contract: forward(normalized x) -> logits, reset_classifier(C)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.width = width
        self.classifier = nn.Conv2d(width, 2, 1)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Conv2d(self.width, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.body(x))


class Oracle(nn.Module):
    """Returns one-hot logits of fixed labels (whatever the input): a perfect segmenter."""

    def __init__(self, labels: torch.Tensor, num_classes: int):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.labels, self.C, self.at = labels, num_classes, 0

    def forward(self, x):
        y = self.labels[self.at:self.at + x.shape[0]]
        self.at += x.shape[0]
        return nn.functional.one_hot(y, self.C).permute(0, 3, 1, 2).float() * 10


# --------------------------------------------------------------------------------------- config


def test_config_defaults_and_help():
    cfg = FinetuneConfig()
    assert (cfg.labels, cfg.steps, cfg.batch, cfg.lr, cfg.warmup, cfg.eval_views, cfg.hflip) == (0.05, 300, 8, 0.01, 20, 0, True)
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(FinetuneConfig))


@pytest.mark.parametrize("field,value", [
    ("labels", 0.0), ("labels", 1.0), ("labels", -0.1), ("labels", float("nan")), ("steps", 0), ("steps", 2.5),
    ("batch", 0), ("lr", 0.0), ("lr", -1.0), ("momentum", 1.0), ("momentum", -0.1), ("weight_decay", -1e-4),
    ("gamma", -1.0), ("warmup", -1), ("eval_views", -1), ("hflip", "yes"), ("device", "toaster"), ("seed", True),
    ("jitter", -0.1), ("jitter", 1.0),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        FinetuneConfig(**{field: value})


def test_lr_schedule_warmup_then_cosine():
    cfg = FinetuneConfig(steps=100, warmup=10, lr=0.1)
    lrs = [seg.lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))  # rising warm-up
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))  # falling cosine
    assert lrs[55] == pytest.approx(0.05) and lrs[-1] < 1e-3


# ------------------------------------------------------------------------------------- metrics


def test_confusion_and_miou_hand_computed():
    # (target, pred) pairs; void targets (0) are dropped, class 3 is predicted but absent from the test set.
    target = np.array([0, 1, 1, 1, 2, 2, 0, 1, 2])
    pred = np.array([1, 1, 1, 2, 2, 3, 3, 3, 0])
    conf = confusion_matrix(pred, target, 4)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, [[0, 0, 0, 0], [0, 2, 1, 1], [1, 0, 1, 1], [0, 0, 0, 0]])
    m = miou(conf)
    assert m["present"] == [1, 2]
    assert m["per_class"][1] == pytest.approx(2 / 4)  # TP 2, FN 2, FP 0
    assert m["per_class"][2] == pytest.approx(1 / 4)  # TP 1, FN 2 (one to void), FP 1
    assert 3 not in m["per_class"]
    assert m["miou"] == pytest.approx((0.5 + 0.25) / 2)
    assert m["pixel_acc"] == pytest.approx(3 / 7)


def test_confusion_matches_loop_reference():
    rng = np.random.default_rng(3)
    t = torch.from_numpy(rng.integers(0, 5, (2, 17, 13)))
    p = torch.from_numpy(rng.integers(0, 5, (2, 17, 13)))
    ref = np.zeros((5, 5), np.int64)
    for a, b in zip(t.ravel().tolist(), p.ravel().tolist()):
        if a != 0:
            ref[a, b] += 1
    np.testing.assert_array_equal(confusion_matrix(p, t, 5), ref)
    with pytest.raises(ValueError):
        confusion_matrix(p, t, 3)  # ids beyond the class count


def test_miou_void_row_and_empty():
    conf = np.array([[9, 9], [0, 4]])  # void row must not count
    m = miou(conf)
    assert m["miou"] == pytest.approx(1.0) and m["pixel_acc"] == pytest.approx(1.0) and m["present"] == [1]
    assert math.isnan(miou(np.zeros((3, 3), np.int64))["miou"])


# ---------------------------------------------------------------------------------------- split


def test_split_views_sizes_disjoint_deterministic():
    for n, frac, k in [(100, 0.05, 5), (30, 0.1, 3), (10, 0.2, 2), (7, 0.3, 3), (3, 0.05, 1), (1, 0.5, 1), (2, 0.9, 1),
                         (25, 0.28, 7)]:  # 0.28 * 25 == 7.000000000000001 in floating point
        tr, te = split_views(n, frac, seed=1)
        assert len(tr) == k, (n, frac)
        assert len(tr) + len(te) == n and not set(tr.tolist()) & set(te.tolist())
        assert set(tr.tolist()) | set(te.tolist()) == set(range(n))
    a, b = split_views(50, 0.2, 7), split_views(50, 0.2, 7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(split_views(50, 0.2, 8)[0], a[0])
    assert set(split_views(50, 0.1, 7)[0].tolist()) <= set(a[0].tolist())  # nested fractions


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.5, 1.5])
def test_split_views_rejects_fraction(frac):
    with pytest.raises(ValueError):
        split_views(10, frac, 0)


def test_to_batch_shapes_and_values():
    frames = toy_frames(4)
    x, y = to_batch(frames, [2, 0])
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (2, 32, 32) and y.dtype == torch.long
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy() * 255, frames[2].rgb, atol=1e-3)
    np.testing.assert_array_equal(y[1].numpy(), frames[0].semantic)


# ------------------------------------------------------------------------------ fine-tune + eval


def test_finetune_tiny_model_learns_toy_problem():
    torch.manual_seed(0)
    rgb, sem = toy_views(8, seed=0)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(sem.astype(np.int64))
    cfg = FinetuneConfig(steps=60, batch=4, lr=0.05, warmup=5, seed=0)
    model, hist = finetune(TinySeg(), x, y, cfg, num_classes=len(CLASSES), progress=False)
    assert len(hist) == 60 and all({"step", "loss", "lr"} <= set(h) for h in hist)
    assert model.classifier.out_channels == len(CLASSES)
    losses = [h["loss"] for h in hist]
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:5])
    xt, yt = (torch.from_numpy(a) for a in toy_views(6, seed=1))
    res = evaluate(model, xt.permute(0, 3, 1, 2).float() / 255, yt.long(), len(CLASSES))
    assert res["miou"] > 0.8, res["per_class"]


@pytest.mark.parametrize("hflip", [True, False])
def test_finetune_flips_image_and_label_together(monkeypatch, hflip):
    import regconsist_ros.models.losses

    rgb, sem = toy_views(4, seed=5)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(sem.astype(np.int64))
    seen = []

    class Spy(TinySeg):
        def forward(self, xn):
            seen.append({"x": xn.detach().clone()})
            return super().forward(xn)

    real = regconsist_ros.models.losses.focal_loss

    def spy_loss(logits, target, **kw):
        seen[-1]["y"] = target.clone()
        return real(logits, target, **kw)

    monkeypatch.setattr(regconsist_ros.models.losses, "focal_loss", spy_loss)
    from regconsist_ros.models.deeplab import normalize_images

    xn = normalize_images(x)
    finetune(Spy(), x, y, FinetuneConfig(steps=6, batch=4, hflip=hflip, warmup=0), len(CLASSES), progress=False)
    flips = 0
    for rec in seen:
        for xb, yb in zip(rec["x"], rec["y"]):
            i = int(torch.argmin(torch.stack([torch.minimum((xb - a).abs().amax(), (xb - a.flip(-1)).abs().amax()) for a in xn])))
            flipped = not torch.allclose(xb, xn[i], atol=1e-5)
            assert torch.allclose(xb, xn[i].flip(-1) if flipped else xn[i], atol=1e-5)
            assert torch.equal(yb, y[i].flip(-1) if flipped else y[i])  # label follows its image
            flips += flipped
    assert len(seen) == 6 and (flips > 0) == hflip


def test_photometric_jitter_recolours_views_within_its_bounds_and_leaves_labels():
    from regconsist_ros.readout.segmentation import finetune_batches, photometric

    gen = torch.Generator().manual_seed(0)
    x = torch.full((64, 3, 4, 4), 0.5)
    out = photometric(x, 0.4, gen)
    grey = out.mean(dim=(2, 3))  # [B, 3]; a flat grey view keeps only brightness x gain
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(grey.min()) >= 0.5 * 0.6 * 0.8 - 1e-6 and float(grey.max()) <= 0.5 * 1.4 * 1.2 + 1e-6
    assert float(grey.std()) > 0.03 and float((grey[:, 0] - grey[:, 1]).abs().max()) > 0.01  # views and channels differ
    assert torch.equal(photometric(x, 0.4, torch.Generator().manual_seed(0)), out)  # seeded
    rgb, sem = toy_views(4, seed=5)
    xs = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    ys = torch.from_numpy(sem.astype(np.int64))
    plain = next(finetune_batches(xs, ys, FinetuneConfig(hflip=False, batch=6)))
    jittered = next(finetune_batches(xs, ys, FinetuneConfig(hflip=False, batch=6, jitter=0.3)))
    assert torch.equal(plain["y"], jittered["y"]) and not torch.allclose(plain["x"], jittered["x"])


def test_finetune_deeplab_small():
    from regconsist_ros.models import deeplab
    torch.manual_seed(0)
    model = deeplab.DeepLabV3Plus(deeplab.DeepLabConfig.small(width=0.25, aspp_channels=32, decoder_channels=32, num_classes=7))
    rgb, sem = toy_views(8, size=32, seed=0)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(sem.astype(np.int64))
    cfg = FinetuneConfig(steps=60, batch=8, lr=0.2, warmup=5, seed=0)
    model, hist = finetune(model, x, y, cfg, num_classes=len(CLASSES), progress=False)
    assert model.num_classes == len(CLASSES)
    losses = [h["loss"] for h in hist]
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])
    # a randomly initialised DeepLab at 32x32 (stride-4 decoder) fits its few labelled views well
    res = evaluate(model, x, y, len(CLASSES))
    assert res["miou"] > 0.8, res["per_class"]
    xt, yt = (torch.from_numpy(a) for a in toy_views(6, seed=1))
    held_out = evaluate(model, xt.permute(0, 3, 1, 2).float() / 255, yt.long(), len(CLASSES))
    assert held_out["miou"] > 0.6, held_out["per_class"]


def test_evaluate_keys_and_consistency():
    frames = toy_frames(5)
    x, y = to_batch(frames, range(5))
    perfect = evaluate(Oracle(y, len(CLASSES)), x, y, len(CLASSES), batch=2)
    assert {"miou", "pixel_acc", "per_class", "present", "confusion"} <= set(perfect)
    assert perfect["miou"] == pytest.approx(1.0) and perfect["pixel_acc"] == pytest.approx(1.0)
    assert perfect["confusion"].sum() == int((y != 0).sum())
    # a model that always says "floor": floor IoU = floor pixels / non-void pixels, others 0
    wrong = y.clone()
    wrong[:] = 1
    r = evaluate(Oracle(wrong, len(CLASSES)), x, y, len(CLASSES), batch=16)
    n_floor, n_all = int((y == 1).sum()), int((y != 0).sum())
    assert r["per_class"][1] == pytest.approx(n_floor / n_all)
    assert r["pixel_acc"] == pytest.approx(n_floor / n_all)
    assert r["miou"] == pytest.approx(np.mean(list(r["per_class"].values())))
    assert r["present"] == sorted(int(c) for c in torch.unique(y) if c != 0)


def test_prediction_never_void():
    y = torch.zeros(1, 4, 4, dtype=torch.long)  # oracle logits favour void everywhere
    pred = seg.predict(Oracle(y, 3), torch.rand(1, 3, 4, 4))
    assert int(pred.min()) >= 1


def test_prediction_figure_writes_png(tmp_path):
    frames = toy_frames(3)
    x, y = to_batch(frames, range(3))
    p = prediction_figure((x, y, y.flip(-1)), CLASSES, tmp_path / "sub" / "pred.png", n=2)
    assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    q = prediction_figure(frames, CLASSES, tmp_path / "frames.png", pred=y.numpy())
    assert q.exists() and q.stat().st_size > 1000


def test_run_readout_end_to_end(tmp_path):
    torch.manual_seed(0)
    frames = toy_frames(12)
    frames.append(Frame(frames[0].rgb, frames[0].depth, frames[0].intrinsics, np.eye(4)))  # unlabelled: skipped
    cfg = FinetuneConfig(labels=0.3, steps=60, batch=4, lr=0.05, warmup=5, eval_views=5, seed=2)
    res = run_readout(TinySeg(), frames, CLASSES, cfg, out_dir=tmp_path, progress=False)
    assert res["n_train"] == 4 and res["n_test"] == 5 and res["labels"] == 0.3 and res["steps"] == 60
    assert not set(res["train_views"]) & set(res["test_views"]) and 12 not in res["train_views"] + res["test_views"]
    assert set(res["per_class"]) <= set(CLASSES.names[1:]) and "floor" in res["per_class"]
    assert res["miou"] == pytest.approx(np.mean(list(res["per_class"].values())))
    assert res["miou"] > 0.7
    saved = json.loads((tmp_path / "readout.json").read_text())
    assert saved["miou"] == pytest.approx(res["miou"]) and saved["n_test"] == 5
    assert (tmp_path / "readout_predictions.png").exists()
    again = run_readout(TinySeg(), frames, CLASSES, cfg, progress=False)
    assert again["test_views"] == res["test_views"] and again["train_views"] == res["train_views"]


def test_run_readout_needs_two_labelled_views():
    with pytest.raises(ValueError, match="labelled"):
        run_readout(TinySeg(), toy_frames(1), CLASSES, FinetuneConfig(steps=1), progress=False)


# ----------------------------------------------------------- through the shared trainer


def toy_xy(n=8, seed=0):
    rgb, sem = toy_views(n, seed=seed)
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(sem.astype(np.int64))


def test_finetune_runs_in_the_trainer_with_the_shared_schedule(fits):
    x, y = toy_xy()
    cfg = FinetuneConfig(steps=12, batch=2, lr=0.05, warmup=3, momentum=0.8, weight_decay=1e-3)
    _, hist = finetune(TinySeg(), x, y, cfg, len(CLASSES), progress=False)
    (t, lrs), = fits
    assert isinstance(t.objective, SegmentationFinetune) and not t.distributed and t.run_dir is None
    assert isinstance(t.opt, torch.optim.SGD)
    g = t.opt.param_groups[0]
    assert (g["momentum"], g["weight_decay"]) == (0.8, 1e-3)
    assert (t.cfg.grad_clip, t.cfg.amp, t.cfg.min_lr_ratio) == (0.0, False, 0.0)
    expected = [warmup_cosine(s, 0.05, 3, 12) for s in range(12)]
    assert [l[0] for l in lrs] == expected  # what the optimiser used at each step
    assert [h["lr"] for h in hist] == expected and [h["step"] for h in hist] == list(range(12))
    assert t.step == 12


def test_finetune_skips_a_non_finite_loss_and_keeps_training(caplog):
    class Spiky(TinySeg):
        calls = 0

        def forward(self, xn):
            Spiky.calls += 1
            out = super().forward(xn)
            return out * float("nan") if Spiky.calls == 3 else out

    torch.manual_seed(0)
    x, y = toy_xy()
    model, hist = finetune(Spiky(), x, y, FinetuneConfig(steps=20, batch=4, lr=0.05, warmup=2), len(CLASSES),
                           progress=False)
    losses = [h["loss"] for h in hist]
    assert len(hist) == 20 and math.isnan(losses[2]) and all(math.isfinite(v) for i, v in enumerate(losses) if i != 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the nan never reached the weights
    assert "non-finite loss" in caplog.text
    assert losses[-1] < losses[0]


def test_finetune_all_void_draws_pass_without_updates_and_without_the_error_limit():
    x, y = toy_xy(2)
    y[:] = 0  # nothing labelled: every step is empty (15 > the limit of 10 non-finite losses)
    torch.manual_seed(0)
    model = TinySeg()
    body = {k: v.clone() for k, v in model.body.state_dict().items()}
    model, hist = finetune(model, x, y, FinetuneConfig(steps=15, batch=2, warmup=0), len(CLASSES), progress=False)
    assert len(hist) == 15 and all(math.isnan(h["loss"]) for h in hist)
    assert all(torch.equal(v, body[k]) for k, v in model.body.state_dict().items())


def test_finetune_is_deterministic_for_a_seed():
    x, y = toy_xy()

    def run(seed):
        torch.manual_seed(0)
        cfg = FinetuneConfig(steps=15, batch=3, lr=0.05, warmup=2, seed=seed)
        model, hist = finetune(TinySeg(), x, y, cfg, len(CLASSES), progress=False)
        return [h["loss"] for h in hist], [p.detach().clone() for p in model.parameters()]

    (la, wa), (lb, wb), (lc, _) = run(1), run(1), run(2)
    assert la == lb and all(torch.equal(p, q) for p, q in zip(wa, wb))
    assert la != lc  # the seed draws the minibatches and flips


def test_run_readout_writes_the_trainer_log_once(tmp_path):
    frames = toy_frames(10)
    cfg = FinetuneConfig(labels=0.3, steps=8, batch=2, lr=0.05, warmup=2)
    for _ in range(2):  # a rerun into the same directory starts the curve afresh
        torch.manual_seed(0)
        res = run_readout(TinySeg(), frames, CLASSES, cfg, out_dir=tmp_path, progress=False, figure_views=0)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["lr"] for r in rows] == [warmup_cosine(s, 0.05, 2, 8) for s in range(8)]
    assert res["final_loss"] == pytest.approx(np.mean([r["loss"] for r in rows][-10:]))
    assert not (tmp_path / "checkpoints").exists()


def test_segmentation_objective_checkpoints_a_deeplab(tmp_path):
    from regconsist_ros.models.checkpoint import load_checkpoint
    from regconsist_ros.models.deeplab import DeepLabConfig, DeepLabV3Plus

    torch.manual_seed(0)
    model = DeepLabV3Plus(DeepLabConfig.small(width=0.25, aspp_channels=16, decoder_channels=16, num_classes=len(CLASSES)))
    obj = SegmentationFinetune(model)
    assert obj.encoder is model and obj.encoder_kind == "deeplabv3plus" and obj.encoder_config == model.cfg
    assert SegmentationFinetune(TinySeg()).encoder_kind is None
    x, y = toy_xy(2)
    t = _trainer.Trainer(obj, seg.trainer_config(FinetuneConfig(steps=2, warmup=0)), tmp_path)
    t.fit(iter([{"x": x, "y": y}] * 2), progress=False)
    back, info = load_checkpoint(tmp_path / "checkpoints" / "step_00000002")
    assert info["kind"] == "deeplabv3plus" and back.num_classes == len(CLASSES)




def test_zoom_crops_and_resizes_each_view_and_keeps_labels_valid():
    from regconsist_ros.readout.segmentation import finetune_batches, zoom

    B, H, W = 16, 24, 32
    cols = torch.arange(W).expand(B, H, W).clone()  # label = column index
    x = torch.rand(B, 3, H, W)
    same = zoom({"x": x, "y": cols}, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(same["x"], x, atol=1e-5) and torch.equal(same["y"], cols)  # s = 1: unchanged
    out = zoom({"x": x, "y": cols}, 2.0, torch.Generator().manual_seed(0))
    assert out["x"].shape == x.shape and out["y"].shape == cols.shape and out["y"].dtype == cols.dtype
    assert float(out["x"].min()) >= float(x.min()) - 1e-6 and float(out["x"].max()) <= float(x.max()) + 1e-6
    spans = []
    for b in range(B):
        row = out["y"][b, H // 2]
        assert bool((row[1:] >= row[:-1]).all())  # a crop: columns stay in order
        spans.append(int(row.max() - row.min()) + 1)  # how many original columns the view now covers
    assert all(W // 2 - 1 <= s <= W for s in spans) and min(spans) < W - 4  # zoomed by 1-2x, some by much
    assert torch.equal(zoom({"x": x, "y": cols}, 2.0, torch.Generator().manual_seed(0))["y"], out["y"])  # seeded
    rgb, sem = toy_views(4, seed=5)
    xs = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    ys = torch.from_numpy(sem.astype(np.int64))
    zoomed = next(finetune_batches(xs, ys, FinetuneConfig(hflip=False, batch=6, zoom=2.0)))
    assert set(zoomed["y"].unique().tolist()) <= set(ys.unique().tolist())
    with pytest.raises(ValueError, match="zoom"):
        FinetuneConfig(zoom=0.5)
