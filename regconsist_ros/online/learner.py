"""The online learner without ROS: replay buffers fed from the stream, objectives trained in slices.

* **RSP** (or MAE) trains a ViT on frame pairs (t, t+k) drawn from a bounded buffer of the colour
  stream (frames stored at ``store_height x store_width``; k in buffer positions).
* **RegConsist** trains a DeepLabV3+ on view pairs from the registration node: keyframes (stored
  resized, with Felzenszwalb regions computed once) and correspondences (scaled to the stored size).

Each objective has its own :class:`~regconsist_ros.learning.trainer.Trainer` and run directory
(``out_dir/<objective>``), so checkpoints are the same atomic safetensors + JSON checkpoints the
offline CLI writes, readouts take them as they are, and a restarted learner resumes each objective
at its last checkpoint step. ``train(n)`` runs n steps, choosing the objective of each slice by the
mixing ratio among the objectives whose buffers are ready. Memory caps are in bytes; the oldest
items are evicted first.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from regconsist_ros.learning.pretrain import PRETEXT_METHODS
from regconsist_ros.learning.trainer import Trainer, TrainerConfig, seed_everything
from regconsist_ros.online.replay import FrameBuffer, ReplayBuffer

log = logging.getLogger(__name__)
FRAME_OBJECTIVES = ("rsp", "mae", *PRETEXT_METHODS, "shuffle")  # trained on the frame stream
VIEW_OBJECTIVES = ("regconsist", "flowe")  # trained on registered keyframe pairs
OBJECTIVES = FRAME_OBJECTIVES + VIEW_OBJECTIVES


@dataclass
class LearnerConfig:
    """What the online learner trains, on what, and how its state is kept."""

    objectives: tuple[str, ...] = field(default=("rsp",), metadata={"help": f"objectives trained online, from {OBJECTIVES}"})
    mix: tuple[float, ...] = field(default=(), metadata={"help": "relative share of steps per objective (empty = equal)"})
    out_dir: str = field(default="runs/online", metadata={"help": "run directory (one sub-directory per objective)"})
    store_height: int = field(default=96, metadata={"help": "height frames and keyframes are stored and trained at"})
    store_width: int = field(default=128, metadata={"help": "width frames and keyframes are stored and trained at"})
    frame_buffer_mb: float = field(default=256.0, metadata={"help": "memory cap of the frame buffer (MB)"})
    pair_buffer_mb: float = field(default=256.0, metadata={"help": "memory cap of keyframes + view pairs (MB)"})
    min_frames: int = field(default=32, metadata={"help": "frames buffered before frame-pair training starts"})
    min_pairs: int = field(default=4, metadata={"help": "view pairs buffered before RegConsist training starts"})
    slice_steps: int = field(default=5, metadata={"help": "steps of one objective per slice"})
    batch: int = field(default=16, metadata={"help": "frame pairs (clips) per step of a frame-stream objective"})
    clip_gap: int = field(default=2, metadata={"help": "stream frames between the frames of a shuffle clip"})
    view_pairs: int = field(default=4, metadata={"help": "view pairs per RegConsist step"})
    pixel_pairs: int = field(default=2048, metadata={"help": "pixel pairs per RegConsist step"})
    ckpt_every: int = field(default=50, metadata={"help": "steps (per objective) between checkpoints"})
    seed: int = field(default=0, metadata={"help": "seed of sampling and initialisation"})

    def __post_init__(self):
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"LearnerConfig.objectives must be distinct names from {OBJECTIVES}, got {self.objectives}")
        if "rsp" in self.objectives and "mae" in self.objectives:
            raise ValueError("LearnerConfig.objectives: rsp and mae both train the ViT; choose one")
        if self.clip_gap < 1:
            raise ValueError(f"LearnerConfig.clip_gap must be >= 1, got {self.clip_gap}")
        if self.mix and (len(self.mix) != len(self.objectives) or min(self.mix) < 0 or sum(self.mix) <= 0):
            raise ValueError(f"LearnerConfig.mix must give one non-negative share per objective, got {self.mix}")
        for f in ("store_height", "store_width", "min_frames", "min_pairs", "slice_steps", "batch", "view_pairs",
                  "pixel_pairs", "ckpt_every"):
            if getattr(self, f) < 1:
                raise ValueError(f"LearnerConfig.{f} must be >= 1, got {getattr(self, f)!r}")
        if self.frame_buffer_mb <= 0 or self.pair_buffer_mb <= 0:
            raise ValueError(f"LearnerConfig buffer caps must be > 0 MB, got {self.frame_buffer_mb}, {self.pair_buffer_mb}")


@dataclass
class StreamFrame:
    stamp: float
    rgb: np.ndarray  # [h, w, 3] uint8 at the stored size


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] -> [h, w, 3] (antialiased bilinear; the same image when the size matches)."""
    if rgb.shape[:2] == tuple(size):
        return np.array(rgb, copy=True)  # never keep a view of a message buffer
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).contiguous().numpy()


class OnlineLearner:
    """Thread-safe: ``add_*`` may be called from ROS callbacks while ``train`` runs in a worker."""

    PENDING = 32  # view pairs kept while their keyframe is still on its way

    def __init__(self, cfg: LearnerConfig, trainer: TrainerConfig | None = None, vit=None, rsp=None, mae=None,
                 pairs=None, deeplab=None, regconsist=None, regions=None, rc_trainer: TrainerConfig | None = None):
        from pathlib import Path

        from regconsist_ros.models.deeplab import DeepLabConfig
        from regconsist_ros.models.objectives.regconsist import RegConsistConfig
        from regconsist_ros.models.vit import ViTConfig
        from regconsist_ros.learning.frame_pairs import FramePairConfig
        from regconsist_ros.registration.regions import RegionConfig

        self.cfg = cfg
        self.size = (cfg.store_height, cfg.store_width)
        self.out = Path(cfg.out_dir)
        self.trainer_cfg = trainer or TrainerConfig(steps=1_000_000, lr=1e-3, optimizer="adamw", betas=(0.9, 0.95),
                                                    weight_decay=0.05, warmup=50)
        self.pairs_cfg = pairs or FramePairConfig(gap_min=2, gap_max=16)
        self.regions_cfg = regions or RegionConfig()
        self.rc_cfg = regconsist or RegConsistConfig(view_pairs=cfg.view_pairs, pixel_pairs=cfg.pixel_pairs)
        self.frame_buffers: dict[str, FrameBuffer] = {}  # one ordered stream per source (robot namespace)
        self.keyframes = ReplayBuffer(int(cfg.pair_buffer_mb * 2**20) // 2)  # items: (stamp, rgb, regions)
        self.view_pairs = ReplayBuffer(int(cfg.pair_buffer_mb * 2**20) // 2)  # items: dict
        self._kf_index: dict[float, tuple] = {}
        self._pending: list[tuple] = []
        self._newest_kf: dict[str, float] = {}
        self._lock = threading.Lock()
        from regconsist_ros.learning.trainer import dist_rank

        # batches differ per rank under torch.distributed; the objective chosen for a slice must not
        self.rank = dist_rank()
        self.rng = np.random.default_rng([cfg.seed, self.rank] if self.rank else cfg.seed)
        self.choice_rng = np.random.default_rng([cfg.seed, 7919])
        self.runs: dict[str, Trainer] = {}
        self.counts = {"frames": 0, "keyframes": 0, "view_pairs": 0, "view_pairs_unjoined": 0}
        seed_everything(cfg.seed)
        rc_trainer = rc_trainer or TrainerConfig(steps=1_000_000, lr=0.02, optimizer="sgd", weight_decay=1e-4, warmup=50)
        for name in cfg.objectives:
            if name in ("rsp", "mae"):
                from regconsist_ros.models.objectives.mae import MAEConfig
                from regconsist_ros.models.objectives.rsp import RSPConfig
                from regconsist_ros.learning.pretrain import build_frame_objective

                vcfg = vit or ViTConfig(size="tiny", depth=6, img_size=self.size, patch=16)
                if tuple(vcfg.img_size) != self.size:
                    raise ValueError(f"vit img_size {tuple(vcfg.img_size)} must equal the stored size {self.size}")
                cpu_dec = {"decoder_width": 256, "decoder_depth": 2, "decoder_heads": 8}  # CPU-sized decoder by default
                obj = build_frame_objective(name, vcfg, rsp or RSPConfig(**cpu_dec), mae or MAEConfig(**cpu_dec))
                base = self.trainer_cfg
            elif name == "regconsist":
                from regconsist_ros.models.objectives.regconsist import RegConsist

                obj = RegConsist(self.rc_cfg, deeplab or DeepLabConfig.small(width=0.5))
                base = rc_trainer
            else:  # pretext baselines, shuffling, FlowE: DeepLabV3+ encoders, AdamW 1e-3
                obj = self._dense_objective(name, deeplab, self.pairs_cfg.repeats)
                base = TrainerConfig(steps=1_000_000, lr=1e-3, optimizer="adamw", weight_decay=1e-4, warmup=50)
            tcfg = TrainerConfig(**{**asdict(base), "seed": cfg.seed, "ckpt_every": 0, "log_every": 1})
            self.runs[name] = Trainer(obj, tcfg, self.out / name, meta={"method": name, "online": True})
        self.resumed = {name: t.resume() for name, t in self.runs.items()}
        self._last_ckpt = {name: t.step for name, t in self.runs.items()}
        self.losses: dict[str, list[tuple[int, float]]] = {name: [] for name in self.runs}

    @staticmethod
    def _dense_objective(name: str, deeplab=None, repeats: int = 1):
        from regconsist_ros.models.deeplab import DeepLabConfig

        enc = deeplab or DeepLabConfig.small(width=0.5, output_stride=8 if name == "flowe" else 16)
        if name in PRETEXT_METHODS:
            from regconsist_ros.learning.pretrain import build_frame_objective
            return build_frame_objective(name, enc, repeats=repeats)
        if name == "shuffle":
            from regconsist_ros.models.objectives.shuffle import Shuffle, ShuffleConfig
            return Shuffle(ShuffleConfig(), enc)
        from regconsist_ros.models.objectives.flowe import FlowE, FlowEConfig
        return FlowE(FlowEConfig(), enc)

    # ---- stream input (cheap; safe from callbacks) -------------------------------------------------------
    @property
    def frames(self) -> FrameBuffer:
        """The frame buffer of the first source (the only one on a single robot)."""
        return next(iter(self.frame_buffers.values())) if self.frame_buffers else FrameBuffer(1)

    def add_frame(self, rgb: np.ndarray, stamp: float, source: str = "") -> None:
        """A colour frame of ``source``'s stream (any size; stored resized; each source has its own
        buffer capped at ``frame_buffer_mb``). Non-increasing stamps within a source raise BadInput."""
        if not any(o in self.runs for o in FRAME_OBJECTIVES):
            return
        buf = self.frame_buffers.get(source)
        if buf is None:
            buf = self.frame_buffers[source] = FrameBuffer(int(self.cfg.frame_buffer_mb * 2**20))
        buf.add(StreamFrame(stamp, resize_rgb(rgb, self.size)))
        self.counts["frames"] += 1

    def add_keyframe(self, rgb: np.ndarray, stamp: float, source: str = "") -> None:
        """A keyframe from the registration node; its regions are computed here, once."""
        if not any(o in self.runs for o in VIEW_OBJECTIVES):
            return
        from regconsist_ros.registration.regions import felzenszwalb_regions

        H, W = rgb.shape[:2]
        small = resize_rgb(rgb, self.size)
        regions = (felzenszwalb_regions(small, self.regions_cfg) if "regconsist" in self.runs  # FlowE needs none
                   else np.zeros(small.shape[:2], np.int32))
        item = (stamp, small, regions, (H, W))
        self.keyframes.add(item, small.nbytes + regions.nbytes)
        with self._lock:
            self._kf_index[round(stamp, 6)] = item
            self._newest_kf[source] = max(self._newest_kf.get(source, -float("inf")), stamp)
            pending, self._pending = self._pending, []
            if len(self._kf_index) > 4 * max(1, len(self.keyframes)):  # forget evicted keyframes
                live = {round(s, 6) for s, *_ in self.keyframes.items()}
                self._kf_index = {k: v for k, v in self._kf_index.items() if k in live}
        self.counts["keyframes"] += 1
        for args in pending:  # pairs that arrived before this keyframe (topics are not ordered with each other)
            self.add_view_pair(*args)

    def add_view_pair(self, src_stamp: float, dst_stamp: float, uv1: np.ndarray, uv2: np.ndarray, iou: float,
                      source: str = "") -> bool:
        """Correspondences (full-resolution pixels) between two published keyframes. False when either
        keyframe is unknown. A pair whose missing keyframe is newer than every keyframe received waits
        (up to ``PENDING`` pairs) for it; otherwise it counts as unjoined."""
        if not any(o in self.runs for o in VIEW_OBJECTIVES):
            return False
        with self._lock:
            a = self._kf_index.get(round(src_stamp, 6))
            b = self._kf_index.get(round(dst_stamp, 6))
            missing = [s for s, kf in ((src_stamp, a), (dst_stamp, b)) if kf is None]
            newest = self._newest_kf.get(source, -float("inf"))
            if missing and min(missing) > newest and len(self._pending) < self.PENDING:
                self._pending.append((src_stamp, dst_stamp, uv1, uv2, iou, source))
                return False
        if a is None or b is None:
            self.counts["view_pairs_unjoined"] += 1
            return False
        h, w = self.size

        def scale(uv, full):
            H, W = full
            x = np.clip(np.floor(uv[:, 0] * w / W), 0, w - 1)
            y = np.clip(np.floor(uv[:, 1] * h / H), 0, h - 1)
            return np.stack([x, y], 1).astype(np.int64)

        s1, s2 = scale(uv1, a[3]), scale(uv2, b[3])
        self.view_pairs.add({"src": round(src_stamp, 6), "dst": round(dst_stamp, 6), "uv1": s1, "uv2": s2, "iou": iou},
                            s1.nbytes + s2.nbytes)
        self.counts["view_pairs"] += 1
        return True

    # ---- training --------------------------------------------------------------------------------------
    def ready(self, name: str) -> bool:
        if name in FRAME_OBJECTIVES:
            return bool(self._ready_sources(self._clip_span() if name == "shuffle" else self.pairs_cfg.gap_min + 1))
        return len(self.view_pairs) >= self.cfg.min_pairs

    def _clip_span(self) -> int:
        return (self.runs["shuffle"].objective.cfg.frames - 1) * self.cfg.clip_gap + 1

    def _ready_sources(self, need: int | None = None) -> list[FrameBuffer]:
        need = max(self.cfg.min_frames, need if need is not None else self.pairs_cfg.gap_min + 1)
        return [b for b in list(self.frame_buffers.values()) if len(b) >= need]

    def _clip_batch(self, step: int) -> dict:
        """Shuffle clips: ``frames`` stream frames ``clip_gap`` apart, one crop and flip per clip."""
        from regconsist_ros.learning.frame_pairs import crop_clips

        span = self._clip_span()
        bufs = self._ready_sources(span)
        n = self.cfg.batch
        which = self.rng.choice(len(bufs), size=n, p=np.array([len(b) for b in bufs], np.float64) / sum(len(b) for b in bufs))
        offs = np.arange(0, span, self.cfg.clip_gap)
        clips = [bufs[i].rgb_array(int(self.rng.integers(0, len(bufs[i]) - span + 1)) + offs) for i in which]
        out = crop_clips(lambda b: clips[b], n, self.size, self.pairs_cfg, self.rng, self.size)
        return {"clip": out["clips"]}

    def _flow_batch(self, step: int) -> dict:
        """FlowE pairs from registered keyframes: the registration's exact correspondences, scattered into a
        sparse flow field (valid only at corresponding pixels), both directions."""
        h, w = self.size
        x1, x2, flows, valids = [], [], [], []
        for _ in range(20 * self.cfg.view_pairs):
            if len(x1) == self.cfg.view_pairs:
                break
            vp = self.view_pairs.sample(1, self.rng)[0]
            with self._lock:
                a, b = self._kf_index.get(vp["src"]), self._kf_index.get(vp["dst"])
            if a is None or b is None or not len(vp["uv1"]):
                continue
            f = np.zeros((2, 2, h, w), np.float32)  # [direction, xy, h, w]
            v = np.zeros((2, 1, h, w), bool)
            (u1, y1), (u2, y2) = vp["uv1"].T, vp["uv2"].T
            f[0, :, y1, u1] = (vp["uv2"] - vp["uv1"]).astype(np.float32)
            v[0, 0, y1, u1] = True
            f[1, :, y2, u2] = (vp["uv1"] - vp["uv2"]).astype(np.float32)
            v[1, 0, y2, u2] = True
            x1.append(a[1]), x2.append(b[1]), flows.append(f), valids.append(v)
        if not x1:
            raise RuntimeError("no view pair with both keyframes buffered could be sampled")
        img = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().div_(255.0)  # noqa: E731
        fl, va = torch.from_numpy(np.stack(flows)), torch.from_numpy(np.stack(valids))
        return {"x1": img(x1), "x2": img(x2), "flow": fl[:, 0], "valid": va[:, 0], "flow21": fl[:, 1], "valid21": va[:, 1]}

    def _frame_batch(self, step: int) -> dict:
        from regconsist_ros.learning.frame_pairs import crop_pairs

        r = self.pairs_cfg.repeats
        n = max(1, self.cfg.batch // r)
        bufs = self._ready_sources()
        counts = self.rng.multinomial(n, np.array([len(b) for b in bufs], np.float64) / sum(len(b) for b in bufs))
        pairs = [p for b, c in zip(bufs, counts) if c
                 for p in b.sample_pairs(int(c), self.pairs_cfg.gap_min, self.pairs_cfg.gap_max, self.rng)]
        out = crop_pairs(lambda b: np.stack([pairs[b // r][0].rgb, pairs[b // r][1].rgb]), n * r, self.size,
                         self.pairs_cfg, self.rng, self.size)
        return {"x_t": out["x_t"], "x_k": out["x_k"]}

    def _regconsist_batch(self, step: int) -> dict:
        from regconsist_ros.learning.datasets import assemble_batch, region_pixel_pairs
        from regconsist_ros.registration.sampling import SamplingConfig

        sampling = SamplingConfig(sampling=self.rc_cfg.sampling, matching=self.rc_cfg.matching)
        n = max(1, self.rc_cfg.pixel_pairs // self.rc_cfg.view_pairs)
        rgb1, rgb2, ps, qs = [], [], [], []
        for _ in range(20 * self.rc_cfg.view_pairs):
            if len(ps) == self.rc_cfg.view_pairs:
                break
            vp = self.view_pairs.sample(1, self.rng)[0]
            with self._lock:
                a, b = self._kf_index.get(vp["src"]), self._kf_index.get(vp["dst"])
            if a is None or b is None:
                continue
            p, q = region_pixel_pairs(vp["uv1"], vp["uv2"], a[2], b[2], self.regions_cfg.match_iou, n, sampling, self.rng)
            if len(p) == 0:
                continue
            rgb1.append(a[1])
            rgb2.append(b[1])
            ps.append(p)
            qs.append(q)
        if not ps:
            raise RuntimeError("no pixel pairs could be sampled from the buffered view pairs")
        return assemble_batch(torch.from_numpy(np.stack(rgb1)), torch.from_numpy(np.stack(rgb2)), ps, qs, n, self.rng,
                              self.rc_cfg.hflip)

    def train(self, steps: int) -> dict[str, int]:
        """Run up to ``steps`` optimisation steps in slices; returns steps done per objective."""
        done = {name: 0 for name in self.runs}
        names = list(self.runs)
        shares = np.asarray(self.cfg.mix or [1.0] * len(names), np.float64)
        left = steps
        while left > 0:
            flags = self.agree([self.ready(nm) for nm in names])  # every rank trains the same objective
            ready = [i for i, nm in enumerate(names) if flags[i] and shares[i] > 0]
            if not ready:
                break
            w = shares[ready] / shares[ready].sum()
            name = names[ready[int(self.choice_rng.choice(len(ready), p=w))]]
            t = self.runs[name]
            k = min(left, self.cfg.slice_steps)
            fn = {"shuffle": self._clip_batch, "flowe": self._flow_batch, "regconsist": self._regconsist_batch}.get(
                name, self._frame_batch)
            t.fit(fn, progress=False, until=t.step + k, checkpoint=False)
            for row in t.history[-k:]:
                self.losses[name].append((row["step"], row["loss"]))
            done[name] += k
            left -= k
            if t.step - self._last_ckpt[name] >= self.cfg.ckpt_every:
                self.checkpoint(name)
        return done

    @staticmethod
    def agree(flags: list[bool]) -> list[bool]:
        """Flags that hold on every rank (logical AND over torch.distributed ranks; as is otherwise).

        Every rank receives the stream itself, so buffers fill at slightly different times; training
        a slice only when all ranks can keeps DDP's collective calls in step."""
        d = torch.distributed
        if not (d.is_available() and d.is_initialized()):
            return list(flags)
        t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int64)
        d.all_reduce(t, op=d.ReduceOp.MIN)
        return [bool(x) for x in t.tolist()]

    def checkpoint(self, name: str | None = None) -> list[str]:
        """Atomic checkpoint of one (or every) objective at its current step (rank 0 writes under DDP)."""
        paths = []
        for nm in ([name] if name else list(self.runs)):
            t = self.runs[nm]
            if t.step == 0:
                continue
            path = t.save()
            if path is not None:
                paths.append(str(path))
            self._last_ckpt[nm] = t.step
        return paths

    def status(self) -> dict:
        bufs = self.frame_buffers.values()
        st = {"buffers": {"frames": sum(len(b) for b in bufs), "frames_mb": round(sum(b.nbytes for b in bufs) / 2**20, 1),
                          "frames_evicted": sum(b.evicted for b in bufs), "sources": len(self.frame_buffers),
                          "keyframes": len(self.keyframes),
                          "view_pairs": len(self.view_pairs)},
              "received": dict(self.counts)}
        for name, t in self.runs.items():
            last = self.losses[name][-1][1] if self.losses[name] else None
            st[name] = {"step": t.step, "loss": last, "ready": self.ready(name), "resumed": self.resumed[name],
                        "last_checkpoint_step": self._last_ckpt[name]}
        return st
