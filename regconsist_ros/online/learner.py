"""The online learner without ROS: replay buffers fed from the stream, methods trained in slices.

Any registered method trains online; its batch kind says what it reads from the replay store
(:class:`ReplayStore`, the online :class:`~regconsist_ros.learning.stores.FrameStore`):

* ``streams``: frame pairs / clips from a bounded buffer of each robot's colour stream (frames
  stored at ``store_height x store_width``; gaps in buffer positions);
* ``view_pairs``: registration's view pairs joined to the buffered keyframes (stored resized, with
  Felzenszwalb regions computed once on arrival when a method needs them), correspondences scaled
  to the stored size;
* ``flow_pairs``: the same view pairs with their correspondences scattered into a sparse flow field.

The batches come from the same builders the offline runs use (:mod:`regconsist_ros.learning.batches`).
Each method has its own settings (a :class:`~regconsist_ros.learning.runs.MethodRun`: its recipe with
the online trainer schedule of :func:`online_recipe` unless given), its own
:class:`~regconsist_ros.learning.trainer.Trainer` and run directory (``out_dir/<method>``), so
checkpoints are the same atomic safetensors + JSON checkpoints the offline CLI writes, readouts take
them as they are, and a restarted learner resumes each method at its last checkpoint step.
``train(n)`` runs n steps, choosing the method of each slice by the mixing ratio among the methods
whose batches are ready. Memory caps are in bytes; the oldest items are evicted first.

What it takes is checked as it arrives and counted in ``ingest`` (a
:class:`~regconsist_ros.online.counters.DropCounter`, reported by :meth:`OnlineLearner.status`):
each stream's frame stamps pass a :class:`~regconsist_ros.online.stamps.StampGuard` (a stamp far
from the stream is dropped as ``stamp_jump`` without moving its notion of now; a timeline that
restarts starts a new frame buffer); keyframe stamps pass one too (a 5 s jump bound: keyframes come
when the camera moves); view-pair correspondences with non-finite or out-of-image coordinates are
dropped (``view_pair_points``), a pair left with none as ``view_pair_empty``, a pair delivered twice
as ``view_pair_duplicate``, and a pair whose keyframe has not come after two more keyframes counts
as unjoined. A view pair names its keyframes by stamp within :data:`STAMP_TOL`. A
batch that still fails to build is dropped and counted (``batches_failed``) and another is drawn.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from regconsist_ros.learning.batches import out_size
from regconsist_ros.learning.datasets import RegisteredPair
from regconsist_ros.learning.runs import MethodRun, recipe
from regconsist_ros.learning.stores import FrameStore
from regconsist_ros.learning.trainer import Trainer, dist_rank, seed_everything
from regconsist_ros.models.methods import methods
from regconsist_ros.online.counters import DropCounter
from regconsist_ros.online.errors import BadInput
from regconsist_ros.online.replay import FrameBuffer, ReplayBuffer
from regconsist_ros.online.stamps import StampGuard

log = logging.getLogger(__name__)

# The trainer schedule of an online run, over every method's recipe: a long cosine (the run has no
# end), a short warm-up, a loss row per step and a checkpoint every 50 steps of each method.
ONLINE_TRAINER = {"steps": 1_000_000, "warmup": 50, "log_every": 1, "ckpt_every": 50}
LOSS_HISTORY = 1000  # (step, loss) rows kept per method for status and TensorBoard
BATCH_TRIES = 5  # batches drawn per step before a failure is raised
STAMP_TOL = 1.5e-6  # seconds: a view pair's stamp names the keyframe within this


def _microseconds(stamp: float) -> int:
    return int(round(float(stamp) * 1e6))


def clean_pair_points(uv1: np.ndarray, uv2: np.ndarray, size1: tuple[int, int], size2: tuple[int, int]):
    """Correspondences uv1 [M, 2], uv2 [M, 2] (pixel x, y) of images ``size1`` / ``size2`` (H, W) ->
    ``(uv1, uv2, non_finite, outside)``: the rows whose four coordinates are finite and inside both
    images (pixel centres at integers: [-0.5, W - 0.5] x [-0.5, H - 0.5]), and the counts dropped."""
    uv1 = np.asarray(uv1, np.float64).reshape(-1, 2)
    uv2 = np.asarray(uv2, np.float64).reshape(-1, 2)
    if len(uv1) != len(uv2):
        raise BadInput("view_pair_shape", f"uv1 has {len(uv1)} rows, uv2 {len(uv2)}")
    finite = np.isfinite(uv1).all(1) & np.isfinite(uv2).all(1)

    def inside(uv, size):
        H, W = size
        with np.errstate(invalid="ignore"):
            return (uv[:, 0] >= -0.5) & (uv[:, 0] <= W - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= H - 0.5)

    ok = finite & inside(uv1, size1) & inside(uv2, size2)
    return uv1[ok], uv2[ok], int((~finite).sum()), int((finite & ~ok).sum())


@dataclass
class LearnerConfig:
    """What the online learner trains, on what, and how its state is kept."""

    objectives: tuple[str, ...] = field(default=(), metadata={"help": "methods trained online: any of `regconsist pretrain` (the graphs of config/graph.yaml set them)"})
    mix: tuple[float, ...] = field(default=(), metadata={"help": "relative share of steps per method (empty = equal)"})
    out_dir: str = field(default="runs/online", metadata={"help": "run directory (one sub-directory per method)"})
    store_height: int = field(default=96, metadata={"help": "height frames and keyframes are stored at"})
    store_width: int = field(default=128, metadata={"help": "width frames and keyframes are stored at"})
    frame_buffer_mb: float = field(default=256.0, metadata={"help": "memory cap of each frame buffer (MB)"})
    pair_buffer_mb: float = field(default=256.0, metadata={"help": "memory cap of keyframes + view pairs (MB)"})
    min_frames: int = field(default=32, metadata={"help": "frames buffered before a stream gives batches"})
    min_pairs: int = field(default=4, metadata={"help": "view pairs buffered before view / flow pairs give batches"})
    slice_steps: int = field(default=5, metadata={"help": "steps of one method per slice"})
    seed: int = field(default=0, metadata={"help": "seed of batch sampling and of the choice of method per slice"})

    def __post_init__(self):
        known = sorted(methods())
        if not self.objectives:
            raise ValueError(f"LearnerConfig.objectives is empty: name the methods to train, from {known}")
        bad = [o for o in self.objectives if o not in known]
        if bad or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"LearnerConfig.objectives must be distinct method names from {known}, got {self.objectives}")
        if self.mix and (len(self.mix) != len(self.objectives) or min(self.mix) < 0 or sum(self.mix) <= 0):
            raise ValueError(f"LearnerConfig.mix must give one non-negative share per method, got {self.mix}")
        for f in ("store_height", "store_width", "min_frames", "min_pairs", "slice_steps"):
            if getattr(self, f) < 1:
                raise ValueError(f"LearnerConfig.{f} must be >= 1, got {getattr(self, f)!r}")
        if self.frame_buffer_mb <= 0 or self.pair_buffer_mb <= 0:
            raise ValueError(f"LearnerConfig buffer caps must be > 0 MB, got {self.frame_buffer_mb}, {self.pair_buffer_mb}")


def online_recipe(method: str, cfg: LearnerConfig) -> MethodRun:
    """A method's default online settings: its recipe with :data:`ONLINE_TRAINER`, batches at the stored
    frame size (``batch.height`` / ``batch.width`` 0) and a ViT's input size set to it."""
    run = recipe(method)
    values = {f"trainer.{k}": v for k, v in ONLINE_TRAINER.items()}
    values.update({"batch.height": 0, "batch.width": 0, "encoder.img_size": (cfg.store_height, cfg.store_width)})
    return run.replace({f"{method}.{k}": v for k, v in values.items()}, only_known=True)


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


class ReplayViewPairs:
    """Buffered view pairs joined to buffered keyframes, as a view-pair source (a snapshot of the pairs)."""

    def __init__(self, learner: "OnlineLearner"):
        self.learner = learner
        self.items = learner.view_pairs.items()
        self.match_iou = learner.regions_cfg.match_iou

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> RegisteredPair | None:
        vp = self.items[k]
        a, b = self.learner.keyframe(vp["src"]), self.learner.keyframe(vp["dst"])
        if a is None or b is None:  # a keyframe evicted since
            return None
        return RegisteredPair(a[1], b[1], vp["uv1"], vp["uv2"], a[2], b[2])


class ReplayFlowPairs(ReplayViewPairs):
    """The same view pairs with registration's correspondences as a sparse flow field (valid only at
    corresponding pixels), both directions: the online flow-pair source."""

    def __init__(self, learner: "OnlineLearner", symmetric: bool = True):
        super().__init__(learner)
        self.symmetric = symmetric

    def sample(self, n: int, rng: np.random.Generator) -> dict:
        h, w = self.learner.size
        x1, x2, flows, valids = [], [], [], []
        for _ in range(20 * n):
            if len(x1) == n or not len(self):
                break
            pair = self[int(rng.integers(len(self)))]
            if pair is None or not len(pair.uv1):
                continue
            f = np.zeros((2, 2, h, w), np.float32)  # [direction, xy, h, w]
            v = np.zeros((2, 1, h, w), bool)
            (u1, y1), (u2, y2) = pair.uv1.T, pair.uv2.T
            f[0, :, y1, u1] = (pair.uv2 - pair.uv1).astype(np.float32)
            v[0, 0, y1, u1] = True
            f[1, :, y2, u2] = (pair.uv1 - pair.uv2).astype(np.float32)
            v[1, 0, y2, u2] = True
            x1.append(pair.rgb1), x2.append(pair.rgb2), flows.append(f), valids.append(v)
        if not x1:
            raise RuntimeError("no view pair with both keyframes buffered could be sampled")
        img = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().div_(255.0)  # noqa: E731
        fl, va = torch.from_numpy(np.stack(flows)), torch.from_numpy(np.stack(valids))
        batch = {"x1": img(x1), "x2": img(x2), "flow": fl[:, 0], "valid": va[:, 0]}
        if self.symmetric:
            batch.update(flow21=fl[:, 1], valid21=va[:, 1])
        return batch


class ReplayStore(FrameStore):
    """The online frame store over the learner's replay buffers (thread-safe snapshots)."""

    def __init__(self, learner: "OnlineLearner"):
        self.learner = learner

    def streams(self) -> list:
        need = self.learner.cfg.min_frames
        return [b.snapshot() for b in list(self.learner.frame_buffers.values()) if len(b) >= need]

    def view_pairs(self):
        ok = len(self.learner.view_pairs) >= self.learner.cfg.min_pairs
        return ReplayViewPairs(self.learner) if ok else None

    def flow_pairs(self):
        ok = len(self.learner.view_pairs) >= self.learner.cfg.min_pairs
        return ReplayFlowPairs(self.learner) if ok else None


class OnlineLearner:
    """Thread-safe: ``add_*`` may be called from ROS callbacks while ``train`` runs in a worker.

    ``runs``: each method's settings (default: :func:`online_recipe`); ``regions``: the Felzenszwalb
    settings of the keyframes' regions."""

    PENDING = 32  # view pairs kept while their keyframe is still on its way
    PENDING_KEYFRAMES = 2  # keyframe arrivals a waiting pair waits through before it counts as unjoined
    RECENT_PAIRS = 256  # (src, dst, content hashes) of the last pairs taken per source: a repeat is a duplicate
    KEYFRAME_JUMP_S = 5.0  # keyframes come when the camera moves: a stamp this far from the stream's is a jump

    def __init__(self, cfg: LearnerConfig, runs: dict[str, MethodRun] | None = None, regions=None, clock=None):
        """``clock`` (seconds, or None): the node's clock for the frame streams' stamp check."""
        from pathlib import Path

        from regconsist_ros.config import ConfigError
        from regconsist_ros.registration.regions import RegionConfig

        self.cfg = cfg
        self.size = (cfg.store_height, cfg.store_width)
        self.out = Path(cfg.out_dir)
        runs = dict(runs or {})
        extra = sorted(set(runs) - set(cfg.objectives))
        if extra:
            raise ConfigError(f"settings given for {extra}, which learner.objectives {list(cfg.objectives)} does not train")
        self.settings = {m: runs.get(m) or online_recipe(m, cfg) for m in cfg.objectives}
        self.regions_cfg = regions or RegionConfig()
        sources = {run.kind.source for run in self.settings.values()}
        self.uses_frames = "streams" in sources
        self.uses_keyframes = bool(sources & {"view_pairs", "flow_pairs"})
        self.needs_regions = any(getattr(run.batch, "regions", None) == "felzenszwalb" for run in self.settings.values())
        for m, run in self.settings.items():
            if getattr(run.batch, "regions", "felzenszwalb") != "felzenszwalb":
                raise ConfigError(f"{m}.batch.regions={run.batch.regions!r}: online keyframes have no ground-truth "
                                  "labels; only felzenszwalb regions are computed online")
            h, w = getattr(run.batch, "height", 0), getattr(run.batch, "width", 0)
            if run.kind.source == "flow_pairs" and h and (h, w) != self.size:
                raise ConfigError(f"{m}.batch height x width {h}x{w} must be 0 0 or the stored size {self.size} "
                                  "(online flow comes at the keyframes' stored size)")
        self.frame_buffers: dict[str, FrameBuffer] = {}  # one ordered stream per source (robot namespace)
        self.keyframes = ReplayBuffer(int(cfg.pair_buffer_mb * 2**20) // 2)  # items: (stamp, rgb, regions, (H, W))
        self.view_pairs = ReplayBuffer(int(cfg.pair_buffer_mb * 2**20) // 2)  # items: dict
        self._kf_index: dict[int, tuple] = {}  # keyframe stamp in whole microseconds -> keyframe
        self._pending: list[tuple] = []
        self._newest_kf: dict[str, float] = {}
        self._kf_guards: dict[str, StampGuard] = {}
        self._recent_pairs: dict[str, dict[tuple[float, float], None]] = {}
        self._lock = threading.Lock()
        self.store = ReplayStore(self)
        # batches differ per rank under torch.distributed; the method chosen for a slice must not
        self.rank = dist_rank()
        self.rng = np.random.default_rng([cfg.seed, self.rank] if self.rank else cfg.seed)
        self.choice_rng = np.random.default_rng([cfg.seed, 7919])
        self.runs: dict[str, Trainer] = {}
        self.out_sizes: dict[str, tuple | None] = {}
        self.counts = {"frames": 0, "keyframes": 0, "view_pairs": 0, "view_pairs_unjoined": 0, "frames_reset": 0,
                       "view_pair_points_non_finite": 0, "view_pair_points_outside": 0}
        self.ingest = DropCounter(log, "learner ingest")  # what the core took in, or dropped and why
        self.batches_failed = DropCounter(log, "learner batches")  # batches that failed to build, by method
        self._guards: dict[str, StampGuard] = {}
        self._clock = clock
        for name, run in self.settings.items():
            seed_everything(run.trainer.seed)
            obj = run.build_objective()
            tcfg = replace(run.trainer_config(), ckpt_every=0)  # the learner checkpoints between slices
            self.runs[name] = Trainer(obj, tcfg, self.out / name, meta={"method": name, "online": True,
                                                                       "settings": run.tree()})
            self.out_sizes[name] = self._out_size(run)
        self.resumed = {name: t.resume() for name, t in self.runs.items()}
        self._last_ckpt = {name: t.step for name, t in self.runs.items()}
        self.losses: dict[str, list[tuple[int, float]]] = {name: [] for name in self.runs}

    def _out_size(self, run: MethodRun):
        if run.kind.source != "streams":
            return None
        empty = FrameStore()  # the stored size unless the method sets one
        return out_size(run.batch, run.encoder, empty) or self.size

    # ---- stream input (cheap; safe from callbacks) -------------------------------------------------------
    @property
    def frames(self) -> FrameBuffer:
        """The frame buffer of the first source (the only one on a single robot)."""
        return next(iter(self.frame_buffers.values())) if self.frame_buffers else FrameBuffer(1)

    def add_frame(self, rgb: np.ndarray, stamp: float, source: str = "") -> None:
        """A colour frame of ``source``'s stream (any size; stored resized; each source has its own
        buffer capped at ``frame_buffer_mb``). Its stamp passes the source's :class:`StampGuard`
        first: drops are counted in ``ingest``; a frame after a jump waits for the next one; a
        timeline that restarts (a looping recording) starts the source's buffer afresh."""
        if not self.uses_frames:
            return
        small = resize_rgb(rgb, self.size)
        with self._lock:
            guard = self._guards.get(source)
            if guard is None:
                guard = self._guards[source] = StampGuard(f"frames {source or '/'}", self.ingest, max_ahead_s=10.0,
                                                          clock=self._clock)
            accepted, restarted = guard.add(stamp, small)
            buf = self.frame_buffers.get(source)
            if buf is None or restarted:
                if buf is not None:
                    self.counts["frames_reset"] += len(buf)
                buf = self.frame_buffers[source] = FrameBuffer(int(self.cfg.frame_buffer_mb * 2**20))
        for st, small in accepted:
            try:
                buf.add(StreamFrame(st, small))
            except BadInput as e:  # not expected after the guard; counted all the same
                self.ingest.drop(e.reason, e.message)
                continue
            self.ingest.accept()
            self.counts["frames"] += 1

    def add_keyframe(self, rgb: np.ndarray, stamp: float, source: str = "") -> None:
        """A keyframe from the registration node; its regions are computed here, once. Its stamp passes
        the source's keyframe :class:`StampGuard` first (a stamp ahead of the clock or far from the
        stream's dropped as ``stamp_jump``, a repeat as ``stamp_backwards``; the first keyframe after a
        pause waits for the next one); the view pairs waiting for it are joined once it is taken."""
        if not self.uses_keyframes:
            return
        from regconsist_ros.registration.regions import felzenszwalb_regions

        H, W = rgb.shape[:2]
        small = resize_rgb(rgb, self.size)
        with self._lock:
            guard = self._kf_guards.get(source)
            if guard is None:
                guard = self._kf_guards[source] = StampGuard(f"keyframes {source or '/'}", self.ingest,
                                                             jump_s=self.KEYFRAME_JUMP_S, max_ahead_s=10.0,
                                                             clock=self._clock)
            accepted, _ = guard.add(stamp, small)
        if not accepted:
            return
        for st, small in accepted:
            regions = (felzenszwalb_regions(small, self.regions_cfg) if self.needs_regions
                       else np.zeros(small.shape[:2], np.int32))
            item = (st, small, regions, (H, W))
            self.keyframes.add(item, small.nbytes + regions.nbytes)
            with self._lock:
                self._kf_index[_microseconds(st)] = item
                self._newest_kf[source] = max(self._newest_kf.get(source, -float("inf")), st)
                if len(self._kf_index) > 4 * max(1, len(self.keyframes)):  # forget evicted keyframes
                    live = {_microseconds(s) for s, *_ in self.keyframes.items()}
                    self._kf_index = {k: v for k, v in self._kf_index.items() if k in live}
            self.counts["keyframes"] += 1
        with self._lock:
            pending, self._pending = self._pending, []
        for args, waited in pending:  # pairs that arrived before this keyframe (topics are not ordered with each other)
            self._join_view_pair(*args, waited=waited + 1)

    def keyframe(self, stamp: float):
        """The buffered keyframe ``(stamp, rgb, regions, (H, W))`` at ``stamp`` (rounded to 1 us), or None."""
        with self._lock:
            return self._find_keyframe(stamp)

    def _find_keyframe(self, stamp: float):
        """The keyframe within :data:`STAMP_TOL` of ``stamp`` (caller holds the lock): a stamp that went
        through a message header (seconds and nanoseconds) and a float64 field can differ in the last
        bit, and so fall on either side of a microsecond."""
        us = _microseconds(stamp)
        for key in (us, us - 1, us + 1):
            item = self._kf_index.get(key)
            if item is not None and abs(item[0] - float(stamp)) <= STAMP_TOL:
                return item
        return None

    def add_view_pair(self, src_stamp: float, dst_stamp: float, uv1: np.ndarray, uv2: np.ndarray, iou: float,
                      source: str = "") -> bool:
        """Correspondences (full-resolution pixels) between two published keyframes. False when either
        keyframe is unknown. A pair whose missing keyframe is newer than every keyframe received waits
        for it (up to ``PENDING`` pairs, and through at most ``PENDING_KEYFRAMES`` keyframe arrivals:
        registration publishes a keyframe next to its pairs); otherwise it counts as unjoined
        (``view_pairs_unjoined``). A pair already taken (the same two keyframes and correspondences, among
        the last ``RECENT_PAIRS`` of its source: a message delivered twice) is dropped as
        ``view_pair_duplicate``."""
        if not self.uses_keyframes:
            return False
        return self._join_view_pair(src_stamp, dst_stamp, uv1, uv2, iou, source, waited=0)

    def _join_view_pair(self, src_stamp, dst_stamp, uv1, uv2, iou, source, waited: int) -> bool:
        with self._lock:
            a, b = self._find_keyframe(src_stamp), self._find_keyframe(dst_stamp)
            missing = [s for s, kf in ((src_stamp, a), (dst_stamp, b)) if kf is None]
            newest = self._newest_kf.get(source, -float("inf"))
            if (missing and min(missing) > newest and len(self._pending) < self.PENDING
                    and waited < self.PENDING_KEYFRAMES):
                self._pending.append(((src_stamp, dst_stamp, uv1, uv2, iou, source), waited))
                return False
        if a is None or b is None:
            self.counts["view_pairs_unjoined"] += 1
            return False
        try:
            iou = float(iou)
            uv1, uv2, non_finite, outside = clean_pair_points(uv1, uv2, a[3], b[3])
        except (BadInput, TypeError, ValueError) as e:
            self.ingest.drop(getattr(e, "reason", "view_pair_shape"), str(e))
            return False
        self.counts["view_pair_points_non_finite"] += non_finite
        self.counts["view_pair_points_outside"] += outside
        if not np.isfinite(iou):
            self.ingest.drop("view_pair_iou", f"pair {src_stamp:.6f} -> {dst_stamp:.6f}: iou {iou}")
            return False
        if not len(uv1):
            self.ingest.drop("view_pair_empty", f"pair {src_stamp:.6f} -> {dst_stamp:.6f}: no finite in-image "
                                                f"correspondence ({non_finite} non-finite, {outside} outside)")
            return False
        if non_finite or outside:
            log.warning("view pair %.6f -> %.6f: %d non-finite and %d out-of-image correspondences dropped",
                        src_stamp, dst_stamp, non_finite, outside)
        h, w = self.size

        def scale(uv, full):
            H, W = full
            x = np.clip(np.floor(uv[:, 0] * w / W), 0, w - 1)
            y = np.clip(np.floor(uv[:, 1] * h / H), 0, h - 1)
            return np.stack([x, y], 1).astype(np.int64)

        s1, s2 = scale(uv1, a[3]), scale(uv2, b[3])
        key = (a[0], b[0], hash(s1.tobytes()), hash(s2.tobytes()))  # the keyframes' own stamps
        with self._lock:
            recent = self._recent_pairs.setdefault(source, {})
            if key in recent:
                self.ingest.drop("view_pair_duplicate", f"pair {key[0]:.6f} -> {key[1]:.6f}: the same "
                                                        "correspondences were taken already")
                return False
        self.view_pairs.add({"src": a[0], "dst": b[0], "uv1": s1, "uv2": s2, "iou": iou},
                            s1.nbytes + s2.nbytes)
        with self._lock:
            recent[key] = None
            while len(recent) > self.RECENT_PAIRS:
                del recent[next(iter(recent))]  # the oldest (dicts keep insertion order)
        self.counts["view_pairs"] += 1
        self.ingest.accept()
        return True

    # ---- training --------------------------------------------------------------------------------------
    def ready(self, name: str) -> bool:
        """Whether ``name`` can train a slice now: batches available and its schedule not over."""
        run, t = self.settings[name], self.runs[name]
        return t.step < run.trainer.steps and run.kind.ready(self.store, run.batch, t.objective)

    def _sampler(self, name: str):
        """Batches of ``name``; one that fails to build is counted (``batches_failed``, by method and
        error) and another is drawn, up to :data:`BATCH_TRIES` times before the failure is raised."""
        run, obj, size = self.settings[name], self.runs[name].objective, self.out_sizes[name]

        def sample(step):
            for k in range(BATCH_TRIES):
                try:
                    return run.kind.build(self.store, run.batch, self.rng, size, obj)
                except (ValueError, RuntimeError, IndexError, KeyError) as e:
                    self.batches_failed.drop(f"{name}.{type(e).__name__}", str(e))
                    if k == BATCH_TRIES - 1:
                        raise
        return sample

    def train(self, steps: int) -> dict[str, int]:
        """Run up to ``steps`` optimisation steps in slices; returns steps done per method."""
        done = {name: 0 for name in self.runs}
        names = list(self.runs)
        shares = np.asarray(self.cfg.mix or [1.0] * len(names), np.float64)
        left = steps
        while left > 0:
            flags = self.agree([self.ready(nm) for nm in names])  # every rank trains the same method
            ready = [i for i, nm in enumerate(names) if flags[i] and shares[i] > 0]
            if not ready:
                break
            w = shares[ready] / shares[ready].sum()
            name = names[ready[int(self.choice_rng.choice(len(ready), p=w))]]
            t = self.runs[name]
            before = t.step
            k = min(left, self.cfg.slice_steps)
            t.fit(self._sampler(name), progress=False, until=t.step + k, checkpoint=False)
            self.losses[name] += [(row["step"], row["loss"]) for row in t.history if row["step"] > before]
            del self.losses[name][:-LOSS_HISTORY]
            del t.history[:-LOSS_HISTORY]
            done[name] += t.step - before
            left -= max(1, t.step - before)
            every = self.settings[name].trainer.ckpt_every
            if every and t.step - self._last_ckpt[name] >= every:
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
        """Atomic checkpoint of one (or every) method at its current step (rank 0 writes under DDP)."""
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
                          "keyframes": len(self.keyframes), "keyframes_mb": round(self.keyframes.nbytes / 2**20, 1),
                          "keyframes_evicted": self.keyframes.evicted, "view_pairs": len(self.view_pairs),
                          "view_pairs_mb": round(self.view_pairs.nbytes / 2**20, 1),
                          "view_pairs_evicted": self.view_pairs.evicted},
              "received": dict(self.counts), "ingest": self.ingest.snapshot(),
              "batches_failed": self.batches_failed.snapshot()["dropped"]}
        for name, t in self.runs.items():
            last = self.losses[name][-1][1] if self.losses[name] else None
            st[name] = {"step": t.step, "loss": last, "ready": self.ready(name), "resumed": self.resumed[name],
                        "last_checkpoint_step": self._last_ckpt[name]}
        return st
