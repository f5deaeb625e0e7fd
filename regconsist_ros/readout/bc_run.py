"""BC readout runs: demonstrations -> frozen-encoder embeddings -> policy training -> rollouts.

One (encoder, task) run follows the CortexBench protocol (``readout.bc``): embeddings of every
demonstration frame are computed once, the policy trains for ``epochs`` epochs and is rolled out
every ``eval_every`` epochs (and after the last) on the same ``episodes`` evaluation seeds; the run
reports the final success rate and the best over evaluations (as the benchmark does).

An episode counts as a success when the task's goal is reached at any step (it ends there);
otherwise it runs to the horizon. Evaluation seeds start at ``eval_seed0`` (1000), away from the
demonstrations' seeds (0, 1, ...). The episodes of an evaluation run in lockstep on ``envs``
environments (``readout.vector_rollout``: one batched encoder forward per step, a frame history
per episode, optionally ``env_workers`` processes stepping and rendering); ``envs=1`` is the
sequential loop (``rollout``). Both give the same outcomes for the same seeds (``Agent``).

Results go to ``<out>/<suite>/<encoder>/<task>/``: ``result.json`` (written atomically when the
task finishes; a rerun with the same settings reuses it, so interrupted ``--all`` runs resume per
task), ``progress.jsonl`` (one line per evaluation), ``metrics.jsonl`` (the shared trainer's log: one
row per epoch, the loss of its last minibatch) and ``videos/*.gif`` (the first rollouts of the final
evaluation). Policy training runs in the project's one training loop (``readout.bc.train_bc`` ->
``learning.trainer.Trainer``); the rollouts are evaluation, run from its per-step callback at the
evaluation epochs. Encoders are ``random`` (a ViT from the --vit-* settings), ``state`` (the
ground-truth state instead of images: the harness sanity check), or a checkpoint / run directory,
optionally labelled ``label=path``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from regconsist_ros.readout.bc import BCConfig, episode_inputs, flare, train_bc
from regconsist_ros.readout.demos import NoDemonstrations
from regconsist_ros.readout.suites import EnvSpec, get_suite
from regconsist_ros.readout.suites.base import BCEnv, Obs

log = logging.getLogger(__name__)


@dataclass
class BCReadoutConfig:
    """Environment, demonstrations and evaluation schedule of a BC readout (the policy: ``BCConfig``)."""

    suite: str = field(default="metaworld", metadata={"help": "metaworld | adroit | dmc | trifinger | rlbench"})
    demos: int = field(default=25, metadata={"help": "demonstrations per task"})
    episodes: int = field(default=25, metadata={"help": "evaluation rollouts per evaluation"})
    eval_every: int = field(default=5, metadata={"help": "evaluate every this many epochs (and after the last)"})
    horizon: int = field(default=0, metadata={"help": "rollout steps (0 = the suite's episode length, MetaWorld 500)"})
    camera: str = field(default="", metadata={"help": "camera name ('' = the suite's default, MetaWorld corner2)"})
    render_size: int = field(default=256, metadata={"help": "rendered square frame size"})
    crop_size: int = field(default=224, metadata={"help": "centre crop fed to the encoder (a ViT needs a multiple of its patch)"})
    fast_render: bool = field(default=True, metadata={"help": "no shadows/reflections/multisampling (fast software GL)"})
    proprio: bool = field(default=True, metadata={"help": "append the suite's proprioception to the policy input"})
    demo_dir: str = field(default="runs/bc_demos", metadata={"help": "demonstration cache / local demonstration directories"})
    eval_seed0: int = field(default=1000, metadata={"help": "first evaluation seed"})
    videos: int = field(default=2, metadata={"help": "rollouts of the final evaluation saved as GIF"})
    embed_batch: int = field(default=64, metadata={"help": "frames per encoder forward pass"})
    envs: int = field(default=25, metadata={"help": "evaluation episodes stepped in lockstep, one batched encoder forward "
                                                    "per step (capped by episodes; 1 = one episode after another)"})
    env_workers: int = field(default=-1, metadata={"help": "worker processes stepping and rendering the lockstep "
                                                           "environments (-1 = one per CPU core, 0 = all in this "
                                                           "process; MetaWorld only)"})

    def __post_init__(self):
        if self.demos < 1 or self.episodes < 1 or self.eval_every < 1 or self.horizon < 0 or self.videos < 0:
            raise ValueError(f"BCReadoutConfig: demos, episodes, eval_every >= 1 and horizon, videos >= 0 needed, got "
                             f"{self.demos}, {self.episodes}, {self.eval_every}, {self.horizon}, {self.videos}")
        if self.envs < 1 or self.env_workers < -1:
            raise ValueError(f"BCReadoutConfig: envs >= 1 and env_workers >= -1 needed, got envs={self.envs}, "
                             f"env_workers={self.env_workers}")
        if not 0 < self.crop_size <= self.render_size:
            raise ValueError(f"BCReadoutConfig: need 0 < crop_size <= render_size, got {self.crop_size}, {self.render_size}")

    def env_spec(self) -> EnvSpec:
        return EnvSpec(camera=self.camera, render_size=self.render_size, horizon=self.horizon, fast_render=self.fast_render)


# ---- encoders -------------------------------------------------------------------------------------
@dataclass
class Encoder:
    label: str
    model: torch.nn.Module | None  # None: the ground-truth state is the embedding
    info: dict

    @property
    def is_state(self) -> bool:
        return self.model is None


def resolve_encoder(spec: str, vit_config=None, seed: int = 0) -> Encoder:
    """``random`` | ``state`` | checkpoint or run directory, optionally ``label=path``."""
    from regconsist_ros.models.encoder import load_encoder

    label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    if path == "state":
        return Encoder(label or "state", None, {"init": "state", "kind": "state"})
    model, info = load_encoder(path, kind="vit", config=vit_config, seed=seed)
    if not label:
        p = Path(path)
        label = "random" if path == "random" else (p.parent.parent.name if p.parent.name == "checkpoints" else p.name)
    if torch.cuda.is_available():
        model = model.cuda()
    return Encoder(label, model, info)


def centre_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """[..., H, W, 3] -> [..., size, size, 3] (the middle)."""
    H, W = frames.shape[-3:-1]
    if size > min(H, W):
        raise ValueError(f"centre crop {size} is larger than the frames ({H}x{W})")
    y, x = (H - size) // 2, (W - size) // 2
    return frames[..., y:y + size, x:x + size, :]


def check_crop(enc: Encoder, crop: int) -> None:
    patch = getattr(getattr(enc.model, "cfg", None), "patch", None)
    if patch and crop % patch:
        raise ValueError(f"encoder {enc.label}: crop_size {crop} is not a multiple of its patch {patch}")


def embed_frames(enc: Encoder, frames: np.ndarray, crop: int, batch: int = 64) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] -> [T, D] ([CLS] of a ViT, pooled features otherwise)."""
    from regconsist_ros.models.encoder import encode

    x = torch.from_numpy(np.ascontiguousarray(centre_crop(frames, crop)))
    return encode(enc.model, x, batch=batch, size=None)["cls"]


class Agent:
    """Frozen encoder + BC policy acting on observations (same fusion as training), one frame history per slot.

    ``act_batch(obs, slots)`` acts for several episodes at once (the lockstep rollouts of
    ``readout.vector_rollout``): one encoder forward over all frames (chunks of ``embed_batch``),
    then each slot's history (the last ``history`` embeddings of its episode) is fused and fed to
    the policy. ``reset(slot)`` starts a new episode in a slot. ``agent(obs)`` / ``reset()`` are the
    one-episode form (slot 0).

    Batch invariance: an episode's actions must not depend on which episodes share its batch, or
    lockstep and sequential rollouts of the same seeds would drift apart. ViT encoder rows are
    bitwise the same in a batch of 1 or 25 on the CPU (measured for >= 49 tokens); the policy's
    rows are not (the BLAS picks other kernels for other batch sizes: differences of ~1e-9, for
    most batch sizes), so the policy runs on one row at a time, as in the sequential loop: ~0.1 ms
    a row, under 1% of a lockstep step."""

    def __init__(self, enc: Encoder, policy: torch.nn.Module, bc: BCConfig, crop: int, proprio: bool,
                 embed_batch: int = 64):
        self.enc, self.policy, self.history, self.crop, self.proprio = enc, policy, bc.history, crop, proprio
        self.embed_batch = embed_batch  # frames per encoder forward (more episodes than this: several forwards)
        self.hist: dict[int, list[torch.Tensor]] = {}  # slot -> the last `history` embeddings of its episode

    def reset(self, slot: int = 0) -> None:
        self.hist.pop(slot, None)

    @torch.no_grad()
    def act_batch(self, obs: list[Obs], slots: list[int]) -> np.ndarray:
        """Observations of the episodes in ``slots`` -> their actions [B, A]."""
        if self.enc.is_state:
            emb = torch.from_numpy(np.stack([o.state for o in obs])).float()  # [B, S]
        else:
            emb = embed_frames(self.enc, np.stack([o.rgb for o in obs]), self.crop, batch=self.embed_batch)  # [B, D]
        rows = []
        for k, slot in enumerate(slots):
            h = self.hist[slot] = (self.hist.get(slot, []) + [emb[k]])[-self.history:]
            x = flare(torch.stack(h), self.history)[-1]
            if self.proprio:
                x = torch.cat([x, torch.from_numpy(obs[k].proprio).float()])
            rows.append(self.policy(x[None])[0])  # one row at a time: batch invariant (class docstring)
        return torch.stack(rows).numpy()

    def __call__(self, obs: Obs) -> np.ndarray:
        return self.act_batch([obs], [0])[0]


def rollout(env: BCEnv, act: Callable, seeds, record: int = 0, progress: bool = False, desc: str = "rollouts") -> list[dict]:
    """Run one episode per seed; ``act`` maps Obs -> action (with an optional ``reset()``).

    Returns per episode {"seed", "success", "steps"} (+ "frames" for the first ``record``)."""
    from tqdm import tqdm

    out = []
    for i, seed in enumerate(tqdm(list(seeds), desc=desc, disable=not progress, leave=False)):
        obs = env.reset(int(seed))
        if hasattr(act, "reset"):
            act.reset()
        frames = [obs.rgb] if i < record else None
        success, steps = False, 0
        for _ in range(env.horizon):
            obs, success, done = env.step(act(obs))
            steps += 1
            if frames is not None:
                frames.append(obs.rgb)
            if success or done:
                break
        row = {"seed": int(seed), "success": bool(success), "steps": steps}
        if hasattr(env, "reward_sum"):  # suites scored by return (DMC)
            row["return"] = float(env.reward_sum)
        if frames is not None:
            row["frames"] = frames
        out.append(row)
    return out


def save_gif(path: Path, frames: list[np.ndarray], fps: int = 20) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    imgs = [Image.fromarray(f) for f in frames[::2]]  # every second step keeps files small
    tmp = path.with_name(f".{path.name}.tmp")
    imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=int(2000 / fps), loop=0)
    os.replace(tmp, path)
    return path


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def run_key(cfg: BCReadoutConfig, bc: BCConfig, task: str, enc: Encoder) -> str:
    """What a cached result.json must match to be reused."""
    blob = json.dumps({"cfg": {k: v for k, v in asdict(cfg).items()
                               if k not in ("videos", "embed_batch", "demo_dir", "envs", "env_workers")},
                       "bc": asdict(bc), "task": task, "encoder": enc.info}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Rollouts:
    """The evaluation episodes of one task: ``run(agent, record, desc)`` rolls out every seed.

    With ``envs`` > 1 (after capping by the episodes and the suite's ``max_envs``), the episodes run
    in lockstep on that many environments (``vector_rollout.rollout_lockstep``), in this process or
    in ``env_workers`` worker processes for suites that allow it; otherwise one after another on one
    environment (``rollout``, the sequential loop). The environments are made once and reused by
    every evaluation; ``close()`` frees them."""

    def __init__(self, suite, suite_name: str, task: str, spec: EnvSpec, seeds, envs: int, env_workers: int,
                 progress: bool):
        from regconsist_ros.readout.vector_rollout import LocalEnvs, WorkerEnvs

        self.seeds, self.progress = list(seeds), progress
        cap = getattr(suite, "max_envs", None)
        self.envs = max(1, min(envs, len(self.seeds), cap or envs))
        workers = cpu_cores() if env_workers == -1 else env_workers
        self.workers = min(workers, self.envs) if self.envs > 1 and getattr(suite, "process_safe", False) else 0
        if self.envs == 1:
            self.env = suite.make_env(task, spec)
            self.pool = None
        elif self.workers:
            self.pool = WorkerEnvs(suite_name, task, spec, self.envs, self.workers)
        else:
            made = []
            try:
                for _ in range(self.envs):
                    made.append(suite.make_env(task, spec))
            except BaseException:
                for env in made:
                    env.close()
                raise
            self.pool = LocalEnvs(made)

    def run(self, agent, record: int = 0, desc: str = "rollouts") -> list[dict]:
        from regconsist_ros.readout.vector_rollout import rollout_lockstep

        if self.pool is None:
            return rollout(self.env, agent, self.seeds, record=record, progress=self.progress, desc=desc)
        return rollout_lockstep(self.pool, agent, self.seeds, record=record, progress=self.progress, desc=desc)

    def close(self) -> None:
        (self.env if self.pool is None else self.pool).close()


def run_task(task: str, enc: Encoder, cfg: BCReadoutConfig, bc: BCConfig, out: str | Path,
             progress: bool = True) -> dict:
    """One (encoder, task) readout; see the module docstring. Returns the result (also result.json)."""
    suite = get_suite(cfg.suite)
    tdir = Path(out) / cfg.suite / enc.label / task
    key = run_key(cfg, bc, task, enc)
    res_path = tdir / "result.json"
    if res_path.is_file():
        try:
            old = json.loads(res_path.read_text())
            if old.get("key") == key:
                old["resumed"] = True
                return old
        except (OSError, json.JSONDecodeError):
            log.warning("%s: unreadable, the task is run again", res_path)
    if not enc.is_state:
        check_crop(enc, cfg.crop_size)
    times = {}
    t0 = time.time()
    spec = cfg.env_spec()
    try:
        demos = suite.demonstrations(task, spec, cfg.demos, Path(cfg.demo_dir), progress=progress)
    except NoDemonstrations as e:
        return {"suite": cfg.suite, "task": task, "encoder": enc.label, "status": "no demonstrations", "reason": str(e)}
    times["demos"] = time.time() - t0

    t0 = time.time()
    if enc.is_state:
        embs = [torch.from_numpy(d.states) for d in demos]
        if embs[0].shape[1] == 0:
            raise ValueError(f"{cfg.suite}/{task}: the demonstrations carry no ground-truth state for the 'state' encoder")
    else:
        from tqdm import tqdm

        embs = [embed_frames(enc, d.frames, cfg.crop_size, cfg.embed_batch)
                for d in tqdm(demos, desc=f"embed {enc.label}/{task}", disable=not progress, leave=False)]
    use_prop = cfg.proprio and demos[0].proprio.shape[1] > 0
    inputs = episode_inputs(embs, [d.proprio for d in demos] if use_prop else None, bc.history)
    actions = torch.from_numpy(np.concatenate([d.actions for d in demos])).float()
    times["embed"] = time.time() - t0

    t0 = time.time()
    seeds = [cfg.eval_seed0 + i for i in range(cfg.episodes)]
    evals: list[dict] = []
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "progress.jsonl").unlink(missing_ok=True)
    (tdir / "metrics.jsonl").unlink(missing_ok=True)  # the trainer's loss log (one row per epoch), appended to
    videos: list[str] = []

    def on_epoch(epoch: int, policy) -> None:
        e = epoch + 1
        if e % cfg.eval_every and e != bc.epochs:
            return
        last = e == bc.epochs
        agent = Agent(enc, policy, bc, cfg.crop_size, use_prop, embed_batch=cfg.embed_batch)
        rows = rollouts.run(agent, record=cfg.videos if last else 0, desc=f"{enc.label}/{task} epoch {e}")
        outcomes = [int(r["success"]) for r in rows]
        row = {"epoch": e, "success": float(np.mean(outcomes)), "outcomes": outcomes, "steps": [r["steps"] for r in rows]}
        if "return" in rows[0]:
            row["mean_return"] = float(np.mean([r["return"] for r in rows]))
        evals.append(row)
        with (tdir / "progress.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        for r in rows:
            if "frames" in r:
                name = f"seed{r['seed']}_{'success' if r['success'] else 'fail'}.gif"
                videos.append(str(save_gif(tdir / "videos" / name, r["frames"])))

    rollouts = Rollouts(suite, cfg.suite, task, spec, seeds, cfg.envs, cfg.env_workers, progress)
    try:
        _, losses = train_bc(inputs, actions, bc, on_epoch=on_epoch, run_dir=tdir)
    finally:
        rollouts.close()
    times["train_eval"] = time.time() - t0
    best = max(evals, key=lambda r: (r["success"], -r["epoch"]))
    result = {
        "suite": cfg.suite, "task": task, "encoder": enc.label, "encoder_info": enc.info, "status": "ok", "key": key,
        "success": evals[-1]["success"], "best_success": best["success"], "best_epoch": best["epoch"],
        "episodes": cfg.episodes, "demos": len(demos), "demo_steps": int(sum(len(d) for d in demos)),
        "demo_success": float(np.mean([d.success for d in demos])), "input_dim": int(inputs.shape[1]),
        "evaluations": [{k: r[k] for k in ("epoch", "success", "mean_return") if k in r} for r in evals],
        "final_outcomes": evals[-1]["outcomes"], "best_outcomes": best["outcomes"],
        "mean_steps_final": float(np.mean(evals[-1]["steps"])),
        **({"mean_return_final": evals[-1]["mean_return"]} if "mean_return" in evals[-1] else {}),
        "train_loss": [round(float(x), 6) for x in losses], "videos": videos,
        "rollout_envs": rollouts.envs, "rollout_workers": rollouts.workers,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "config": asdict(cfg), "bc": asdict(bc),
    }
    _write_json(res_path, result)
    return result


def run_readout(tasks, encoders: list[Encoder], cfg: BCReadoutConfig, bc: BCConfig, out: str | Path,
                progress: bool = True) -> tuple[dict, list[dict]]:
    """Every (encoder, task) pair, then the aggregate (IQM, bootstrap CIs, plots): (summary, per-task results)."""
    from tqdm import tqdm

    from regconsist_ros.readout.bc_stats import summarise

    results = []
    pairs = [(e, t) for e in encoders for t in tasks]
    bar = tqdm(pairs, desc="bc readout", disable=not progress)
    for enc, task in bar:
        bar.set_postfix_str(f"{enc.label}/{task}")
        r = run_task(task, enc, cfg, bc, out, progress=progress)
        results.append(r)
        if r.get("status") == "ok":
            log.info("%s %s/%s: success %.2f (best %.2f at epoch %d)", cfg.suite, enc.label, task,
                     r["success"], r["best_success"], r["best_epoch"])
        else:
            log.warning("%s %s/%s: %s", cfg.suite, enc.label, task, r.get("reason", r.get("status")))
    return summarise(results, Path(out) / cfg.suite, tasks), results
