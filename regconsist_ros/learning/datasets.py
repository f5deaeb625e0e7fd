"""View pairs: the batches of the ``view_pairs`` batch kind (RegConsist), offline and online.

A *registered view pair* (:class:`RegisteredPair`) is two views of the same surfaces with their
integer pixel correspondences and region maps. :func:`view_pair_batch` turns any source of them
(``len()``, ``[k] -> RegisteredPair or None``, ``match_iou``) into a batch: region overlap by Cantor
pairing, region matching, pixel-pair sampling, view 1 strongly and view 2 weakly augmented, each
flipped with its pixel coordinates. Two sources feed it:

- offline, :class:`ViewPairData` loads a TUM sequence once and does the following:
  - selects view pairs by overlap IoU, cached on disk per sequence and selection settings;
  - computes region maps, Felzenszwalb or ground truth, cached per frame;
  - computes exact correspondences on demand, cached in memory;
- online, the learner's replay buffers of keyframes and registration's view pairs.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from regconsist_ros.models.augment import PhotometricAug, hflip_with_points
from regconsist_ros.registration.geometry import CorrespondenceConfig, correspond
from regconsist_ros.registration.pairs import PairSelectionConfig, ViewPair, select_pairs
from regconsist_ros.registration.regions import (RegionConfig, correspondence_regions, felzenszwalb_regions, gt_regions,
                                                 match_regions, nearest_pixels, region_overlap)
from regconsist_ros.registration.sampling import SamplingConfig, sample_pixel_pairs

log = logging.getLogger(__name__)


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class ViewPairData:
    """View pairs of one sequence, with regions and correspondences, for pixel-pair objectives."""

    def __init__(self, frames: list, pair_cfg: PairSelectionConfig | None = None, region_cfg: RegionConfig | None = None,
                 regions: str = "felzenszwalb", corr_cfg: CorrespondenceConfig | None = None,
                 cache_dir: str | Path | None = None, progress: bool = True):
        from tqdm import tqdm

        if regions not in ("felzenszwalb", "gt"):
            raise ValueError(f"regions must be 'felzenszwalb' or 'gt', got {regions!r}")
        if len(frames) < 2:
            raise ValueError(f"need at least 2 frames for view pairs, got {len(frames)}")
        if regions == "gt" and any(f.semantic is None for f in frames):
            raise ValueError("regions='gt' needs semantic labels in every frame")
        self.frames = frames
        self.pair_cfg = pair_cfg or PairSelectionConfig()
        self.region_cfg = region_cfg or RegionConfig()
        self.corr_cfg = corr_cfg or CorrespondenceConfig()
        self.regions_source = regions
        self.cache_dir = Path(cache_dir) if cache_dir else None
        key = _digest([f.stamp for f in frames], frames[0].size)
        # ---- view pairs (selected once per sequence and settings, cached) ----
        pair_file = self.cache_dir / f"pairs_{_digest(key, asdict(self.pair_cfg), asdict(self.corr_cfg))}.json" if self.cache_dir else None
        if pair_file is not None and pair_file.exists():
            self.pairs = [ViewPair(**p) for p in json.loads(pair_file.read_text())["pairs"]]
        else:
            self.pairs = select_pairs(frames, self.pair_cfg, self.corr_cfg)
            if pair_file is not None:
                pair_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = pair_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"pairs": [asdict(p) for p in self.pairs], "config": asdict(self.pair_cfg)}))
                tmp.replace(pair_file)
        if not self.pairs:
            raise ValueError(f"no view pair with overlap IoU in [{self.pair_cfg.iou_low}, {self.pair_cfg.iou_high}] "
                             f"among {len(frames)} frames (gap {self.pair_cfg.min_gap}..{self.pair_cfg.max_gap})")
        # ---- regions per frame (cached) ----
        if regions == "gt":
            self.labels = [gt_regions(f.semantic) for f in frames]
        else:
            lab_file = self.cache_dir / f"regions_{_digest(key, asdict(self.region_cfg))}.npz" if self.cache_dir else None
            if lab_file is not None and lab_file.exists():
                z = np.load(lab_file)
                self.labels = [z[f"l{i}"] for i in range(len(frames))]
            else:
                self.labels = [felzenszwalb_regions(f.rgb, self.region_cfg)
                               for f in tqdm(frames, desc="regions", unit="frame", disable=not progress)]
                if lab_file is not None:
                    tmp = lab_file.with_name(lab_file.stem + ".tmp.npz")
                    np.savez_compressed(tmp, **{f"l{i}": l for i, l in enumerate(self.labels)})
                    tmp.replace(lab_file)
        self._corr: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def correspondences(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair k -> (uv1 [M, 2], uv2 [M, 2]) integer pixels (uv2 rounded to the nearest pixel, clipped)."""
        if k not in self._corr:
            p = self.pairs[k]
            c = correspond(self.frames[p.i], self.frames[p.j], self.corr_cfg)
            uv2 = nearest_pixels(c.uv2, *self.frames[p.j].size)
            self._corr[k] = (c.uv1.astype(np.int16), uv2.astype(np.int16))
        uv1, uv2 = self._corr[k]
        return uv1.astype(np.int64), uv2.astype(np.int64)

    def pixel_pairs(self, k: int, n: int, sampling: SamplingConfig, rng: np.random.Generator):
        """Sample n pixel pairs of view pair k -> (p [n', 2], q [n', 2]) with n' <= n (0 when nothing matches)."""
        p = self.pairs[k]
        uv1, uv2 = self.correspondences(k)
        return region_pixel_pairs(uv1, uv2, self.labels[p.i], self.labels[p.j], self.region_cfg.match_iou, n,
                                  sampling, rng)

    @property
    def match_iou(self) -> float:
        return self.region_cfg.match_iou

    def __getitem__(self, k: int) -> "RegisteredPair":
        p = self.pairs[k]
        uv1, uv2 = self.correspondences(k)
        return RegisteredPair(self.frames[p.i].rgb, self.frames[p.j].rgb, uv1, uv2, self.labels[p.i], self.labels[p.j])

    def sample_batch(self, view_pairs: int, pixel_pairs: int, sampling: SamplingConfig, rng: np.random.Generator,
                     hflip: bool = True, strong: PhotometricAug | None = None, weak: PhotometricAug | None = None) -> dict:
        """A RegConsist batch of ``view_pairs`` view pairs and ``pixel_pairs`` pixel pairs (:func:`view_pair_batch`)."""
        cfg = ViewPairBatchConfig(size=view_pairs, pixel_pairs=pixel_pairs, sampling=sampling.sampling,
                                  matching=sampling.matching, regions=self.regions_source, hflip=hflip)
        return view_pair_batch(self, cfg, rng, strong=strong, weak=weak)


@dataclass
class ViewPairBatchConfig:
    """How RegConsist batches are drawn from registered view pairs (the ``view_pairs`` batch kind; the
    paper's defaults, CPU-sized counts)."""

    size: int = field(default=8, metadata={"help": "view pairs per batch (paper: 16)"})
    pixel_pairs: int = field(default=4096, metadata={"help": "pixel pairs per batch (paper: 81920)"})
    sampling: Literal["balanced", "random"] = field(default="balanced", metadata={"help": "pixel sampling in view 1: equal counts per region (balanced) or uniform (random)"})
    matching: Literal["region", "exact"] = field(default="region", metadata={"help": "partner of p in view 2: any pixel of the matched region, or the exact correspondence"})
    regions: Literal["felzenszwalb", "gt"] = field(default="felzenszwalb", metadata={"help": "unsupervised regions, or ground-truth classes (the supervised upper bound; offline only)"})
    hflip: bool = field(default=True, metadata={"help": "random horizontal flips (correspondences move with them)"})

    def __post_init__(self):
        if self.size < 1 or self.pixel_pairs < 2 * self.size:
            raise ValueError(f"ViewPairBatchConfig needs size >= 1 and pixel_pairs >= 2 per view pair, "
                             f"got size={self.size}, pixel_pairs={self.pixel_pairs}")

    @property
    def sampling_config(self) -> SamplingConfig:
        return SamplingConfig(sampling=self.sampling, matching=self.matching)


@dataclass
class RegisteredPair:
    """Two views and what registration knows of them, at one image size."""

    rgb1: np.ndarray  # [H, W, 3] uint8
    rgb2: np.ndarray  # [H, W, 3] uint8
    uv1: np.ndarray  # [M, 2] int64 pixels (x, y) in view 1 ...
    uv2: np.ndarray  # [M, 2] int64 ... and their correspondences in view 2
    regions1: np.ndarray  # [H, W] int32 region ids of view 1
    regions2: np.ndarray  # [H, W] int32 region ids of view 2


def view_pair_batch(pairs, cfg: ViewPairBatchConfig, rng: np.random.Generator, strong: PhotometricAug | None = None,
                    weak: PhotometricAug | None = None) -> dict:
    """A RegConsist batch from a source of registered view pairs (``len()``, ``[k]`` -> RegisteredPair or None
    when the pair is gone, ``match_iou``).

    x1, x2 [B, 3, H, W] float in [0, 1] (view 1 strongly, view 2 weakly augmented);
    p, q [B, n, 2] long pixel coordinates (x, y), moved with any flip; valid [B, n] bool.
    """
    n = max(1, cfg.pixel_pairs // cfg.size)
    sampling = cfg.sampling_config
    rgb1, rgb2, ps, qs = [], [], [], []
    for _ in range(20 * cfg.size):
        if len(ps) == cfg.size or not len(pairs):
            break
        pair = pairs[int(rng.integers(len(pairs)))]
        if pair is None:
            continue
        p, q = region_pixel_pairs(pair.uv1, pair.uv2, pair.regions1, pair.regions2, pairs.match_iou, n, sampling, rng)
        if len(p) == 0:
            continue
        rgb1.append(pair.rgb1)
        rgb2.append(pair.rgb2)
        ps.append(p)
        qs.append(q)
    if len(ps) < cfg.size:
        raise RuntimeError(f"could only sample pixel pairs from {len(ps)} of {cfg.size} view pairs "
                           f"({len(pairs)} view pairs available; no matched regions?)")
    return assemble_batch(torch.from_numpy(np.stack(rgb1)), torch.from_numpy(np.stack(rgb2)), ps, qs, n, rng,
                          cfg.hflip, strong, weak)


def region_pixel_pairs(uv1: np.ndarray, uv2: np.ndarray, l1: np.ndarray, l2: np.ndarray, match_iou: float, n: int,
                       sampling: SamplingConfig, rng: np.random.Generator):
    """RegConsist pixel pairs of one view pair from its correspondences (integer pixels) and region
    maps: region overlap by Cantor pairing, region matching, then sampling -> (p [n', 2], q [n', 2])."""
    r1, r2 = correspondence_regions(l1, l2, uv1, uv2)
    ov = region_overlap(r1, r2, int(l1.max()) + 1, int(l2.max()) + 1)
    matches = match_regions(ov, match_iou)
    return sample_pixel_pairs(uv1, uv2, l1, l2, matches, n, sampling, rng)


def assemble_batch(rgb1: torch.Tensor, rgb2: torch.Tensor, ps: list, qs: list, n: int, rng: np.random.Generator,
                   hflip: bool = True, strong: PhotometricAug | None = None, weak: PhotometricAug | None = None) -> dict:
    """A RegConsist batch from view images uint8 [B, H, W, 3] and per-pair pixel pairs (offline data
    and the online learner's replay buffer share this): x1 strongly, x2 weakly augmented, random
    flips moving p / q with the pixels, ``valid`` marking the filled rows of p / q [B, n, 2]."""
    B = len(ps)
    P = torch.zeros((B, n, 2), dtype=torch.long)
    Q = torch.zeros((B, n, 2), dtype=torch.long)
    valid = torch.zeros((B, n), dtype=torch.bool)
    for b, (p, q) in enumerate(zip(ps, qs)):
        P[b, : len(p)] = torch.from_numpy(p)
        Q[b, : len(q)] = torch.from_numpy(q)
        valid[b, : len(p)] = True
    x1 = rgb1.permute(0, 3, 1, 2).float() / 255  # [B, 3, H, W]
    x2 = rgb2.permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    x1 = (strong or PhotometricAug.strong())(x1, g)
    x2 = (weak or PhotometricAug.weak())(x2, g)
    if hflip:
        x1, P = hflip_with_points(x1, P, torch.rand(B, generator=g) < 0.5)
        x2, Q = hflip_with_points(x2, Q, torch.rand(B, generator=g) < 0.5)
    return {"x1": x1, "x2": x2, "p": P, "q": Q, "valid": valid}
