"""Ordered-frame loading (image folders, video, TUM, sim) and RSP frame-pair sampling."""
import logging
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from regconsist_ros.config import build
from regconsist_ros.learning.frame_pairs import FramePairConfig, sample_frame_pairs
from regconsist_ros.learning.frame_sources import _Drop, _pil_to_rgb, load_ordered_frames


def _pattern(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    """A random [h, w, 3] uint8 image (never constant)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------


@pytest.fixture
def image_dir(tmp_path):
    """frame1, frame2, frame10 good; frame3 truncated; frame4 black; frame5 grey (not colour); frame6 other size."""
    d = tmp_path / "imgs"
    d.mkdir()
    imgs = {}
    for i in (1, 2, 10):
        imgs[i] = _pattern(i)
        Image.fromarray(imgs[i]).save(d / f"frame{i}.png")
    Image.fromarray(_pattern(3)).save(d / "frame3.png")
    data = (d / "frame3.png").read_bytes()
    (d / "frame3.png").write_bytes(data[: len(data) // 2])  # truncated
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(d / "frame4.png")
    grey = np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1))  # [24, 32]
    Image.fromarray(grey, mode="L").save(d / "frame5.png")
    Image.fromarray(_pattern(6, 30, 40)).save(d / "frame6.png")
    (d / "notes.txt").write_text("not an image")
    return d, imgs


def test_image_folder_natural_order_and_drop_reasons(image_dir, caplog):
    d, imgs = image_dir
    with caplog.at_level(logging.WARNING, logger="regconsist_ros.learning.frame_sources"):
        fr = load_ordered_frames(d, progress=False)
    assert fr.names == ["frame1.png", "frame2.png", "frame10.png"]  # 2 < 10: natural order
    assert fr.dropped == {"unreadable": 1, "blank": 1, "not_colour": 1, "size_mismatch": 1}
    assert len(fr) == 3 and fr.rgb.shape == (3, 24, 32, 3) and fr.rgb.dtype == np.uint8
    for k, i in enumerate((1, 2, 10)):
        assert np.array_equal(fr.rgb[k], imgs[i])  # no frame replaced by another
    # stamps keep the position in the folder (dropped files leave gaps): index / 30
    np.testing.assert_allclose(fr.stamps, np.array([0, 1, 6]) / 30)
    assert fr.instance is None and fr.semantic is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dropped 4 of 7" in warnings[0] and "frame3.png" in warnings[0]
    assert "frame5.png (not_colour" in warnings[0]  # a grey image is never a grey colour frame


def test_image_folder_resizes_to_size_and_applies_stride_and_max_frames(image_dir):
    d, _ = image_dir
    fr = load_ordered_frames(d, size=(12, 20), progress=False)
    assert fr.rgb.shape == (4, 12, 20, 3)  # frame6 is resized instead of dropped
    assert fr.names == ["frame1.png", "frame2.png", "frame6.png", "frame10.png"]
    assert fr.dropped == {"unreadable": 1, "blank": 1, "not_colour": 1}
    # stride picks files 0, 2, 4, 6 of the sorted list; frame3 (index 2) is unreadable, frame5 grey
    fr = load_ordered_frames(d, stride=2, progress=False)
    assert fr.names == ["frame1.png", "frame10.png"] and fr.dropped == {"unreadable": 1, "not_colour": 1}
    fr = load_ordered_frames(d, max_frames=2, progress=False)
    assert fr.names == ["frame1.png", "frame2.png"] and fr.dropped == {}


def test_image_modes_16bit_and_float_are_not_colour_frames(tmp_path):
    """A 16-bit PNG (a depth map beside the colour images) is skipped as not_colour, never loaded as a frame."""
    a = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80)  # up to 61360
    Image.fromarray(a).save(tmp_path / "deep.png")
    Image.fromarray(_pattern(0)).convert("RGBA").save(tmp_path / "rgba.png")
    fr = load_ordered_frames(tmp_path, progress=False)
    assert fr.names == ["rgba.png"] and fr.dropped == {"not_colour": 1}
    assert np.array_equal(fr.rgb[0], _pattern(0))  # alpha dropped
    for img in (Image.fromarray(np.random.rand(4, 4).astype(np.float32)), Image.fromarray(a)):
        with pytest.raises(_Drop) as e:
            _pil_to_rgb(img)
        assert e.value.reason == "not_colour"


def test_all_frames_bad_and_unknown_specs_raise(tmp_path):
    (tmp_path / "a.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"2 of 2 .*1 unreadable, 1 blank"):
        load_ordered_frames(tmp_path, progress=False)
    with pytest.raises(ValueError, match="does not exist.*accepted"):
        load_ordered_frames(tmp_path / "missing", progress=False)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"x\.csv.*accepted"):
        load_ordered_frames(tmp_path / "x.csv", progress=False)
    with pytest.raises(ValueError, match="size"):
        load_ordered_frames(tmp_path, size=(0, 4))


# --------------------------------------------------------------------------------------------
# video
# --------------------------------------------------------------------------------------------


def _write_video(path, codec: str, pix_fmt: str, n: int = 12, h: int = 48, w: int = 64) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(n):
            img = np.full((h, w, 3), 40, np.uint8)
            img[:, : 4 + 4 * i] = 220  # a bar growing to the right: each frame differs
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_video_frames_stamps_stride_and_max_frames(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path, "mpeg4", "yuv420p")
    fr = load_ordered_frames(path, progress=False)
    assert fr.rgb.shape == (12, 48, 64, 3) and fr.dropped == {}
    np.testing.assert_allclose(fr.stamps, np.arange(12) / 10, atol=1e-6)
    assert fr.names[3] == "clip.mp4#3"
    bar = (fr.rgb[:, 24, :, 0] > 130).sum(axis=1)  # width of the bright bar, despite lossy coding
    assert np.all(np.abs(bar - (4 + 4 * np.arange(12))) <= 2)
    fr = load_ordered_frames(path, stride=3, progress=False)
    assert fr.names == ["clip.mp4#0", "clip.mp4#3", "clip.mp4#6", "clip.mp4#9"]
    np.testing.assert_allclose(fr.stamps, [0, 0.3, 0.6, 0.9], atol=1e-6)
    fr = load_ordered_frames(path, stride=2, max_frames=3, size=(24, 32), progress=False)
    assert fr.names == ["clip.mp4#0", "clip.mp4#2", "clip.mp4#4"] and fr.rgb.shape == (3, 24, 32, 3)


def test_video_corrupt_packet_is_counted_and_unopenable_file_raises(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.avi"
    _write_video(path, "mjpeg", "yuvj420p", n=8)  # intra-only: one bad packet loses one frame
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = packets[4]
    data = bytearray(path.read_bytes())
    data[pos: pos + size] = bytes(size)  # zero the fifth frame's JPEG data
    path.write_bytes(bytes(data))
    fr = load_ordered_frames(path, progress=False)
    assert fr.dropped == {"decode_error": 1} and len(fr) == 7
    assert 0.4 not in np.round(fr.stamps, 6)  # the lost frame is skipped, not replaced
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="noise.mp4"):
        load_ordered_frames(bad, progress=False)


# --------------------------------------------------------------------------------------------
# TUM sequences and the embedded world
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tum_dir(tmp_path_factory):
    from regconsist_ros.sim.sequences import TumWriter
    from regconsist_ros.sim.source import SimConfig, SimSource, frames_meta

    src = SimSource(SimConfig(seed=0, frames=8, width=64, height=48))
    frames = list(src)
    out = tmp_path_factory.mktemp("tum") / "seq"
    with TumWriter(out, src.intrinsics, classes=src.classes, meta=frames_meta(src)) as w:
        for f in frames:
            w.write(f)
    return out, frames


def test_tum_sequence_with_labels(tum_dir):
    out, frames = tum_dir
    fr = load_ordered_frames(out, progress=False)
    assert len(fr) == 8 and fr.dropped == {} and fr.source.startswith("TUM sequence")
    assert fr.instance is not None and fr.instance.shape == (8, 48, 64) and fr.instance.dtype == np.uint16
    assert fr.semantic is not None and fr.semantic.shape == (8, 48, 64)
    assert np.array_equal(fr.rgb, np.stack([f.rgb for f in frames]))
    assert np.array_equal(fr.instance, np.stack([f.instance for f in frames]))
    np.testing.assert_allclose(fr.stamps, [f.stamp for f in frames], atol=1e-6)
    assert fr.names[0].startswith("rgb/")
    fr = load_ordered_frames(out, size=(24, 32), progress=False)  # labels follow, nearest: no blended ids
    assert fr.rgb.shape == (8, 24, 32, 3) and fr.instance.shape == (8, 24, 32)
    for small, f in zip(fr.instance, frames):
        assert set(np.unique(small)) <= set(np.unique(f.instance))


def test_tum_corrupt_rgb_is_dropped_not_replaced(tum_dir, tmp_path):
    out, frames = tum_dir
    seq = tmp_path / "seq"
    shutil.copytree(out, seq)
    rgb_files = sorted((seq / "rgb").iterdir())
    rgb_files[3].write_bytes(b"\x89PNG garbage, not an image")
    fr = load_ordered_frames(seq, progress=False)
    assert fr.dropped == {"unreadable": 1} and len(fr) == 7
    keep = [i for i in range(8) if i != 3]
    assert np.array_equal(fr.rgb, np.stack([frames[i].rgb for i in keep]))
    assert np.array_equal(fr.instance, np.stack([frames[i].instance for i in keep]))
    # without depth.txt (or when read_tum cannot open it, e.g. the first image is corrupt): rgb.txt + labels
    (seq / "depth.txt").unlink()
    rgb_files[0].write_bytes(b"")
    fr = load_ordered_frames(seq, progress=False)
    assert fr.dropped == {"unreadable": 2} and len(fr) == 6 and fr.source.startswith("TUM rgb list")
    keep = [i for i in range(8) if i not in (0, 3)]
    assert np.array_equal(fr.rgb, np.stack([frames[i].rgb for i in keep]))
    assert np.array_equal(fr.semantic, np.stack([frames[i].semantic for i in keep]))


def test_sim_spec_renders_frames_with_labels_and_rejects_bad_keys():
    fr = load_ordered_frames("sim:seed=1,frames=6,width=64,height=48", progress=False)
    assert fr.rgb.shape == (6, 48, 64, 3) and fr.instance.shape == (6, 48, 64) and fr.semantic is not None
    assert fr.names == [f"sim:{i}" for i in range(6)] and fr.dropped == {}
    np.testing.assert_allclose(fr.stamps, np.arange(6) / 10)  # SimConfig.fps = 10
    assert len(np.unique(fr.instance)) > 1
    with pytest.raises(ValueError, match="bogus"):
        load_ordered_frames("sim:seed=1,bogus=3", progress=False)
    with pytest.raises(ValueError, match="key=value"):
        load_ordered_frames("sim:frames", progress=False)
    with pytest.raises(ValueError, match="frames"):
        load_ordered_frames("sim:frames=0", progress=False)


# --------------------------------------------------------------------------------------------
# frame pairs
# --------------------------------------------------------------------------------------------


def test_pairs_shapes_gaps_and_repeats():
    frames = np.stack([_pattern(i, 24, 32) for i in range(10)])
    cfg = FramePairConfig(gap_min=4, gap_max=48, repeats=2)
    out = sample_frame_pairs(frames, 400, cfg, np.random.default_rng(0), (12, 16))
    assert out["x_t"].shape == out["x_k"].shape == (400, 3, 12, 16)
    assert out["x_t"].dtype == torch.float32 and out["x_t"].min() >= 0 and out["x_t"].max() <= 1
    assert out["t"].dtype == out["gap"].dtype == torch.int64 and out["boxes"].dtype == torch.float32
    assert out["flip"].dtype == torch.bool and out["boxes"].shape == (400, 4)
    t, gap = out["t"].numpy(), out["gap"].numpy()
    assert gap.min() == 4 and gap.max() == 9  # [gap_min, min(gap_max, N-1)], both ends reached
    assert t.min() == 0 and np.all(t + gap <= 9)
    assert np.array_equal(t[0::2], t[1::2]) and np.array_equal(gap[0::2], gap[1::2])
    boxes = out["boxes"].numpy()
    assert (boxes[0::2] != boxes[1::2]).any(axis=1).mean() > 0.9  # repeats get their own crops
    assert 0.3 < out["flip"].float().mean() < 0.7
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 32) and np.all(boxes[:, 3] <= 24)
    frac = w * h / (24 * 32)
    assert frac.min() >= 0.45 and frac.max() <= 1.0


def test_pairs_fetch_the_right_frames():
    frames = np.stack([np.full((24, 32, 3), 10 * j, np.uint8) for j in range(12)])  # frame j = 10 j
    out = sample_frame_pairs(frames, 32, FramePairConfig(gap_min=2, gap_max=5), np.random.default_rng(1), (12, 16))
    for b in range(32):
        t, k = int(out["t"][b]), int(out["gap"][b])
        assert torch.all(out["x_t"][b] == 10 * t / 255) and torch.all(out["x_k"][b] == 10 * (t + k) / 255)


def test_pairs_share_crop_and_flip_and_boxes_are_the_ones_used():
    img = _pattern(7, 40, 56)
    frames = np.repeat(img[None], 8, axis=0)  # identical frames: any crop/flip difference would show
    cfg = FramePairConfig(gap_min=1, gap_max=7, crop_scale=(0.2, 1.0))
    out = sample_frame_pairs(frames, 16, cfg, np.random.default_rng(3), (20, 24))
    assert torch.equal(out["x_t"], out["x_k"])
    assert out["flip"].any() and not out["flip"].all()
    src = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255  # [1, 3, 40, 56]
    for b in range(16):
        x0, y0, x1, y1 = out["boxes"][b].int().tolist()
        ref = F.interpolate(src[:, :, y0:y1, x0:x1], size=(20, 24), mode="bilinear", align_corners=False,
                            antialias=True)[0]
        if out["flip"][b]:
            ref = ref.flip(-1)
        assert (out["x_t"][b] - ref).abs().max() <= 1.5 / 255


def test_pairs_hflip_mirrors_and_full_crop_is_the_whole_frame():
    img = _pattern(5, 24, 32)
    frames = np.repeat(img[None], 6, axis=0)
    ref = torch.from_numpy(img).permute(2, 0, 1).float() / 255  # [3, 24, 32]
    full = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), gap_min=1)
    out = sample_frame_pairs(frames, 4, FramePairConfig(hflip=1.0, **full), np.random.default_rng(0), (24, 32))
    assert out["flip"].all() and torch.equal(out["x_t"][0], ref.flip(-1)) and torch.equal(out["x_k"][1], ref.flip(-1))
    out = sample_frame_pairs(frames, 4, FramePairConfig(hflip=0.0, **full), np.random.default_rng(0), (24, 32))
    assert not out["flip"].any() and torch.equal(out["x_t"][2], ref)
    # full-area crop at the output aspect, resized: drawn directly (ratio 1) or by the centred
    # fallback (a ratio range whose full-area crops never fit the image)
    small = F.interpolate(ref[None], size=(12, 16), mode="bilinear", align_corners=False, antialias=True)[0]
    for ratio in ((1.0, 1.0), (1.2, 1.3)):
        cfg = FramePairConfig(hflip=0.0, crop_scale=(1.0, 1.0), crop_ratio=ratio, gap_min=1)
        out = sample_frame_pairs(frames, 8, cfg, np.random.default_rng(0), (12, 16))
        assert torch.equal(out["boxes"], torch.tensor([[0.0, 0.0, 32.0, 24.0]]).repeat(8, 1))
        assert (out["x_t"] - small).abs().max() <= 1.5 / 255
    # the fallback keeps the output aspect: a centred 24x24 crop of a 24x32 frame for square output
    cfg = FramePairConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.5, 1.6), gap_min=1)  # w/h >= 1.5: never fits
    out = sample_frame_pairs(frames, 2, cfg, np.random.default_rng(0), (8, 8))
    assert torch.equal(out["boxes"][0], torch.tensor([4.0, 0.0, 28.0, 24.0]))


def test_pairs_are_deterministic_and_validate_inputs():
    frames = np.stack([_pattern(i, 24, 32) for i in range(20)])
    cfg = FramePairConfig()
    a = sample_frame_pairs(frames, 8, cfg, np.random.default_rng(5), (12, 16))
    b = sample_frame_pairs(frames, 8, cfg, np.random.default_rng(5), (12, 16))
    c = sample_frame_pairs(frames, 8, cfg, np.random.default_rng(6), (12, 16))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x_t"], c["x_t"]) and not torch.equal(a["boxes"], c["boxes"])
    with pytest.raises(ValueError, match="at least gap_min"):
        sample_frame_pairs(frames[:4], 8, cfg, np.random.default_rng(0), (12, 16))
    with pytest.raises(ValueError, match="repeats"):
        sample_frame_pairs(frames, 7, cfg, np.random.default_rng(0), (12, 16))
    with pytest.raises(ValueError, match="uint8"):
        sample_frame_pairs(frames.astype(np.float32), 8, cfg, np.random.default_rng(0), (12, 16))


@pytest.mark.parametrize("kw, field", [
    ({"gap_min": 0}, "gap_min"), ({"gap_min": 10, "gap_max": 5}, "gap_max=5"), ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
    ({"crop_scale": (0.8, 0.5)}, "crop_scale"), ({"crop_scale": (0.5, 1.2)}, "crop_scale"),
    ({"crop_scale": (0.5,)}, "crop_scale"), ({"crop_ratio": (2.0, 1.0)}, "crop_ratio"), ({"hflip": 1.5}, "hflip"),
    ({"repeats": 0}, "repeats"),
])
def test_frame_pair_config_validation(kw, field):
    with pytest.raises(ValueError, match=field):
        FramePairConfig(**kw)


def test_frame_pair_config_builds_from_a_dict():
    cfg = build(FramePairConfig, {"crop_scale": [0.3, 1], "gap_max": 8})
    assert cfg.crop_scale == (0.3, 1.0) and cfg.gap_max == 8 and math.isclose(cfg.crop_ratio[1], 4 / 3)


def test_clip_batches_fetch_ordered_frames_with_one_crop_per_clip():
    from types import SimpleNamespace

    from regconsist_ros.learning.batches import NotReady, clip_batch
    from regconsist_ros.learning.frame_pairs import ArrayStream, ClipConfig
    from regconsist_ros.learning.stores import OfflineStore

    N, H, W = 30, 24, 32
    rgb = np.zeros((N, H, W, 3), np.uint8)
    rgb[..., 0] = np.arange(N, dtype=np.uint8)[:, None, None] * 8  # frame index in the red channel
    rgb[..., 1] = np.arange(W, dtype=np.uint8)[None, None, :] * 7  # columns in green (shows flips)
    store = OfflineStore(streams=[ArrayStream(rgb)])
    objective = SimpleNamespace(clip_len=4)
    cfg = ClipConfig(size=6, frame_gap=3, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.5)

    def batch(step):
        return clip_batch(store, cfg, np.random.default_rng([1, step]), (H, W), objective)["clip"]

    b = batch(0)
    assert b.shape == (6, 4, 3, H, W) and 0 <= float(b.min()) and float(b.max()) <= 1
    idx = torch.round(b[:, :, 0].mean((-2, -1)) * 255 / 8)  # [B, U] frame indices
    assert torch.equal(idx[:, 1:] - idx[:, :-1], torch.full((6, 3), 3.0))  # ordered, 3 apart
    green = b[:, :, 1, 0, :]  # [B, U, W] first row
    assert all(torch.equal(g[0], g[u]) for g in green for u in range(4))  # one flip per clip
    assert torch.equal(batch(0), b) and not torch.equal(batch(1), b)
    with pytest.raises(NotReady, match="spans"):
        clip_batch(store, ClipConfig(size=2, frame_gap=3), np.random.default_rng(0), (H, W), SimpleNamespace(clip_len=12))
