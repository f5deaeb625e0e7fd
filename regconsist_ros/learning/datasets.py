"""Offline datasets: a registered sequence -> batches of view pairs with sampled pixel pairs.

``ViewPairData`` loads a TUM sequence once and does the following:
- selects view pairs by overlap IoU, cached on disk per sequence and selection settings;
- computes region maps, Felzenszwalb or ground truth, cached per frame;
- computes exact correspondences on demand, cached in memory;
- samples RegConsist batches: view 1 strongly and view 2 weakly augmented, each flipped with
  its pixel coordinates.

The online learner feeds the same ``sample_batch`` from its bounded replay buffer.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from regconsist_ros.learning.augment import PhotometricAug, hflip_with_points
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
        self.rgb = torch.from_numpy(np.stack([f.rgb for f in frames]))  # [N, H, W, 3] uint8
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

    def sample_batch(self, view_pairs: int, pixel_pairs: int, sampling: SamplingConfig, rng: np.random.Generator,
                     hflip: bool = True, strong: PhotometricAug | None = None, weak: PhotometricAug | None = None) -> dict:
        """A RegConsist batch.

        x1, x2 [B, 3, H, W] float in [0, 1] (view 1 strongly, view 2 weakly augmented);
        p, q [B, n, 2] long pixel coordinates (x, y), moved with any flip; valid [B, n] bool.
        """
        n = max(1, pixel_pairs // view_pairs)
        idx, ps, qs = [], [], []
        tries = 0
        while len(idx) < view_pairs:
            tries += 1
            if tries > 20 * view_pairs:
                raise RuntimeError("could not sample pixel pairs from the view pairs (no matched regions?)")
            k = int(rng.integers(len(self.pairs)))
            p, q = self.pixel_pairs(k, n, sampling, rng)
            if len(p) == 0:
                continue
            idx.append(k)
            ps.append(p)
            qs.append(q)
        i = torch.tensor([self.pairs[k].i for k in idx])
        j = torch.tensor([self.pairs[k].j for k in idx])
        return assemble_batch(self.rgb[i], self.rgb[j], ps, qs, n, rng, hflip, strong, weak)


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
