"""BC readout runs: demonstrations -> frozen-encoder embeddings -> policy training -> rollouts.

One (encoder, task) run follows the CortexBench protocol (``readout.bc``): embeddings of every
demonstration frame are computed once, then the policy is trained ``seeds`` times (policy seeds
``BCConfig.seed + 0 .. seeds-1``: initialisation and minibatch order; the frozen encoder, the
demonstrations and the evaluation seeds are the same for all). Each training runs ``epochs``
epochs and is rolled out every ``eval_every`` epochs (and after the last) on the same ``episodes``
evaluation seeds; it reports the final success rate and the best over evaluations (CortexBench's
number, biased upwards). Protocol defaults: 25 demonstrations, 25 rollouts per evaluation, an
evaluation every 5 of the policy's 100 epochs (20 evaluations), 3 training seeds.

An episode counts as a success when the task's goal is reached at any step (it ends there);
otherwise it runs to the horizon. Evaluation seeds start at ``eval_seed0`` (1000), away from the
demonstrations' seeds (0, 1, ...). The episodes of an evaluation run in lockstep on ``envs``
environments (``readout.vector_rollout``: one batched encoder forward per step, a frame history
per episode, optionally ``env_workers`` processes stepping and rendering); ``envs=1`` is the
sequential loop (``rollout``). Both give the same outcomes for the same seeds (``Agent``).

Results go to ``<out>/<suite>/<encoder>/<task>/seed<s>/`` per training seed ``s``: ``result.json``
(written atomically when that training finishes; a rerun with the same settings reuses it, so
interrupted ``--all`` runs resume per task and seed, and raising ``seeds`` only trains the new
ones), ``progress.jsonl`` (one line per evaluation), ``metrics.jsonl`` (the shared trainer's log: one
row per epoch) and ``videos/*.gif``: after the final evaluation, up to ``videos`` of its successful
and ``videos`` of its failed episodes are replayed with recording (the same seed gives the same
episode, see ``Agent``) and saved as GIF. ``<task>/result.json`` combines the seeds (means over
seeds, per-seed lists, and one success and one failure GIF of the final evaluations: the first
training seed that has one). Policy training runs in the project's one training loop
(``readout.bc.train_bc`` -> ``learning.trainer.Trainer``); the rollouts are evaluation, run from its
per-step callback at the evaluation epochs. Encoders are ``random`` (a ViT from the --encoder.*
settings), the feature-free floors ``pixels`` and ``colour`` (``models.floors``, on the ViT's grid),
``state`` (the ground-truth state instead of images: the harness sanity check), or a checkpoint /
run directory, optionally labelled ``label=path``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
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
    eval_every: int = field(default=5, metadata={"help": "evaluate every this many of the policy's epochs (and after the "
                                                         "last); 'best' is the best of these evaluations"})
    seeds: int = field(default=3, metadata={"help": "policy-training seeds per (task, encoder): policy.seed + 0 .. "
                                                    "seeds-1, each cached and resumed on its own"})
    horizon: int = field(default=0, metadata={"help": "rollout steps (0 = the suite's episode length, MetaWorld 500)"})
    camera: str = field(default="", metadata={"help": "camera name ('' = the suite's default, MetaWorld corner2)"})
    render_size: int = field(default=256, metadata={"help": "rendered square frame size"})
    crop_size: int = field(default=224, metadata={"help": "centre crop fed to the encoder (a ViT needs a multiple of its patch)"})
    fast_render: bool = field(default=True, metadata={"help": "no shadows/reflections/multisampling (fast software GL)"})
    proprio: bool = field(default=True, metadata={"help": "append the suite's proprioception to the policy input"})
    demo_dir: str = field(default="runs/bc_demos", metadata={"help": "demonstration cache / local demonstration directories"})
    eval_seed0: int = field(default=1000, metadata={"help": "first evaluation seed"})
    videos: int = field(default=1, metadata={"help": "GIFs per outcome of each final evaluation: up to this many "
                                                     "successful and this many failed episodes, replayed (0 = none)"})
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
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"BCReadoutConfig.seeds (policy-training seeds) must be an integer >= 1, got {self.seeds!r}")
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
    """``random`` | ``pixels`` | ``colour`` | ``state`` | checkpoint or run directory, optionally ``label=path``.

    ``random`` is a ViT of ``vit_config`` initialised from ``seed``; the floors ``pixels`` / ``colour``
    have no weights and read frames on that ViT's grid (``models.encoder.load_encoder``)."""
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
    """What a cached result.json of one training (policy seed ``bc.seed``) must match to be reused.

    Execution settings (envs, workers, batch of the encoder, GIFs) and the number of seeds are not part of it:
    a run with more seeds reuses the trainings it already has."""
    blob = json.dumps({"cfg": {k: v for k, v in asdict(cfg).items()
                               if k not in ("videos", "embed_batch", "demo_dir", "envs", "env_workers", "seeds")},
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

    def run(self, agent, record: int = 0, desc: str = "rollouts", seeds=None) -> list[dict]:
        """One episode per evaluation seed (or per seed of ``seeds``, e.g. a replay); frames of the first ``record``."""
        from regconsist_ros.readout.vector_rollout import rollout_lockstep

        seeds = self.seeds if seeds is None else list(seeds)
        if self.pool is None:
            return rollout(self.env, agent, seeds, record=record, progress=self.progress, desc=desc)
        return rollout_lockstep(self.pool, agent, seeds, record=record, progress=self.progress, desc=desc)

    def close(self) -> None:
        (self.env if self.pool is None else self.pool).close()


def seed_dir(out: str | Path, suite: str, encoder: str, task: str, seed: int) -> Path:
    """Where the training with policy seed ``seed`` of (encoder, task) keeps its files."""
    return Path(out) / suite / encoder / task / f"seed{seed}"


def _cached(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        log.warning("%s: unreadable, the training is run again", path)
        return None
    return old if old.get("key") == key else None


def gif_picks(seeds: list[int], outcomes: list[int], n: int) -> list[int]:
    """The evaluation seeds to replay for GIFs: the first ``n`` successful and the first ``n`` failed episodes."""
    wins = [s for s, o in zip(seeds, outcomes) if o][:n]
    losses = [s for s, o in zip(seeds, outcomes) if not o][:n]
    return sorted(wins + losses)


def train_and_evaluate(task: str, enc: Encoder, cfg: BCReadoutConfig, bc: BCConfig, inputs: torch.Tensor,
                       actions: torch.Tensor, use_prop: bool, rollouts: Rollouts, sdir: Path) -> dict:
    """One training (policy seed ``bc.seed``) with its evaluations; the GIFs of the final evaluation.

    Returns the per-seed part of the result (the caller adds the shared fields and writes it)."""
    evals: list[dict] = []
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "progress.jsonl").unlink(missing_ok=True)
    (sdir / "metrics.jsonl").unlink(missing_ok=True)  # the trainer's loss log (one row per epoch), appended to
    videos: list[str] = []
    gifs: dict = {"success": None, "failure": None}
    mismatch: list[int] = []

    def on_epoch(epoch: int, policy) -> None:
        e = epoch + 1
        if e % cfg.eval_every and e != bc.epochs:
            return
        agent = Agent(enc, policy, bc, cfg.crop_size, use_prop, embed_batch=cfg.embed_batch)
        rows = rollouts.run(agent, desc=f"{enc.label}/{task} seed {bc.seed} epoch {e}")
        outcomes = [int(r["success"]) for r in rows]
        row = {"epoch": e, "success": float(np.mean(outcomes)), "outcomes": outcomes, "steps": [r["steps"] for r in rows]}
        if "return" in rows[0]:
            row["mean_return"] = float(np.mean([r["return"] for r in rows]))
        evals.append(row)
        with (sdir / "progress.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        picks = gif_picks(rollouts.seeds, outcomes, cfg.videos) if e == bc.epochs else []
        if picks:  # replay the chosen episodes with recording: all 25 episodes' frames would not fit in memory
            expected = dict(zip(rollouts.seeds, outcomes))
            replay = Agent(enc, policy, bc, cfg.crop_size, use_prop, embed_batch=cfg.embed_batch)
            for r in rollouts.run(replay, record=len(picks), seeds=picks, desc=f"{enc.label}/{task} GIFs"):
                if int(r["success"]) != expected[r["seed"]]:
                    mismatch.append(r["seed"])
                    log.warning("%s/%s seed %d: the replay of episode %d ended %s, the evaluation %s", enc.label,
                                task, bc.seed, r["seed"], bool(r["success"]), bool(expected[r["seed"]]))
                kind = "success" if r["success"] else "failure"
                path = str(save_gif(sdir / "videos" / f"rollout{r['seed']}_{'success' if r['success'] else 'fail'}.gif",
                                    r["frames"]))
                videos.append(path)
                gifs[kind] = gifs[kind] or path

    _, losses = train_bc(inputs, actions, bc, on_epoch=on_epoch, run_dir=sdir)
    best = max(evals, key=lambda r: (r["success"], -r["epoch"]))
    return {
        "seed": bc.seed, "success": evals[-1]["success"], "best_success": best["success"], "best_epoch": best["epoch"],
        "evaluations": [{k: r[k] for k in ("epoch", "success", "mean_return") if k in r} for r in evals],
        "final_outcomes": evals[-1]["outcomes"], "best_outcomes": best["outcomes"],
        "mean_steps_final": float(np.mean(evals[-1]["steps"])),
        **({"mean_return_final": evals[-1]["mean_return"]} if "mean_return" in evals[-1] else {}),
        "train_loss": [round(float(x), 6) for x in losses], "videos": videos, "gifs": gifs,
        **({"replay_mismatch": mismatch} if mismatch else {}),
    }


def run_task(task: str, enc: Encoder, cfg: BCReadoutConfig, bc: BCConfig, out: str | Path,
             progress: bool = True) -> dict:
    """One (encoder, task) readout over ``cfg.seeds`` trainings; see the module docstring.

    Trainings whose ``seed<s>/result.json`` matches the settings are reused; the others share one
    embedding of the demonstrations and one set of rollout environments. Returns the combined result
    (:func:`combine_seeds`, also ``<task>/result.json``)."""
    suite = get_suite(cfg.suite)
    tdir = Path(out) / cfg.suite / enc.label / task
    seeds = [bc.seed + k for k in range(cfg.seeds)]
    keys = {s: run_key(cfg, replace(bc, seed=s), task, enc) for s in seeds}
    done = {s: r for s in seeds if (r := _cached(seed_dir(out, cfg.suite, enc.label, task, s) / "result.json", keys[s]))}
    todo = [s for s in seeds if s not in done]
    if todo:
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
        shared = {"suite": cfg.suite, "task": task, "encoder": enc.label, "encoder_info": enc.info, "status": "ok",
                  "episodes": cfg.episodes, "demos": len(demos), "demo_steps": int(sum(len(d) for d in demos)),
                  "demo_success": float(np.mean([d.success for d in demos])), "input_dim": int(inputs.shape[1])}

        eval_seeds = [cfg.eval_seed0 + i for i in range(cfg.episodes)]
        rollouts = Rollouts(suite, cfg.suite, task, spec, eval_seeds, cfg.envs, cfg.env_workers, progress)
        try:
            for s in todo:
                t0 = time.time()
                sbc = replace(bc, seed=s)
                sdir = seed_dir(out, cfg.suite, enc.label, task, s)
                part = train_and_evaluate(task, enc, cfg, sbc, inputs, actions, use_prop, rollouts, sdir)
                result = {**shared, "key": keys[s], **part, "rollout_envs": rollouts.envs,
                          "rollout_workers": rollouts.workers,
                          "seconds": {**{k: round(v, 1) for k, v in times.items()}, "train_eval": round(time.time() - t0, 1)},
                          "config": asdict(cfg), "bc": asdict(sbc)}
                _write_json(sdir / "result.json", result)
                done[s] = result
        finally:
            rollouts.close()
    combined = combine_seeds([done[s] for s in seeds], tdir)
    combined["resumed"] = not todo
    _write_json(tdir / "result.json", combined)
    return combined


def combine_seeds(rs: list[dict], tdir: Path | None = None) -> dict:
    """The per-seed results of one (encoder, task) -> one result: means over seeds, per-seed lists, GIFs.

    ``success`` / ``best_success`` are the means over seeds of the final / best success rates (the
    per-seed rates are ``seed_success`` / ``seed_best_success``, what ``bc_stats`` aggregates);
    ``evaluations`` are the mean success per evaluation epoch; ``gifs`` holds one successful and one
    failed episode of the final evaluations (the first seed that has one; None and named in
    ``gifs_missing`` when no seed has one)."""
    first = rs[0]
    epochs = sorted(set.intersection(*[{e["epoch"] for e in r["evaluations"]} for r in rs]))
    gifs = {k: next((r["gifs"][k] for r in rs if r.get("gifs", {}).get(k)), None) for k in ("success", "failure")}
    out = {k: first[k] for k in ("suite", "task", "encoder", "encoder_info", "status", "episodes", "demos", "demo_steps",
                                 "demo_success", "input_dim", "rollout_envs", "rollout_workers")}
    out.update({
        "key": hashlib.sha1("".join(r["key"] for r in rs).encode()).hexdigest()[:16],
        "seeds": [r["seed"] for r in rs],
        "success": float(np.mean([r["success"] for r in rs])),
        "best_success": float(np.mean([r["best_success"] for r in rs])),
        "seed_success": [r["success"] for r in rs], "seed_best_success": [r["best_success"] for r in rs],
        "best_epochs": [r["best_epoch"] for r in rs],
        "evaluations": [{"epoch": e, "success": float(np.mean([next(x["success"] for x in r["evaluations"] if x["epoch"] == e)
                                                                for r in rs]))} for e in epochs],
        "final_outcomes": [r["final_outcomes"] for r in rs], "best_outcomes": [r["best_outcomes"] for r in rs],
        "mean_steps_final": float(np.mean([r["mean_steps_final"] for r in rs])),
        "train_loss": [r["train_loss"] for r in rs],
        "videos": [v for r in rs for v in r.get("videos", [])],
        "gifs": gifs, "gifs_missing": [k for k, v in gifs.items() if v is None],
        "seed_dirs": [str(tdir / f"seed{r['seed']}") for r in rs] if tdir is not None else [],
        "seconds": {k: round(float(sum(r["seconds"].get(k, 0.0) for r in rs)), 1) for k in ("demos", "embed", "train_eval")},
        "config": {**first["config"], "seeds": len(rs)}, "bc": first["bc"],
    })
    if all("mean_return_final" in r for r in rs):
        out["mean_return_final"] = float(np.mean([r["mean_return_final"] for r in rs]))
    return out


def run_readout(tasks, encoders: list[Encoder], cfg: BCReadoutConfig, bc: BCConfig, out: str | Path,
                progress: bool = True) -> tuple[dict, list[dict]]:
    """Every (encoder, task) pair (each over ``cfg.seeds`` trainings), then the aggregate (IQM over seeds x tasks
    with intervals, paired differences against ``random`` and the best floor, plots, results.md):
    (summary, per-(encoder, task) results of :func:`combine_seeds`)."""
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
            log.info("%s %s/%s: success %.2f (best %.2f), mean of %d seeds", cfg.suite, enc.label, task,
                     r["success"], r["best_success"], len(r["seeds"]))
        else:
            log.warning("%s %s/%s: %s", cfg.suite, enc.label, task, r.get("reason", r.get("status")))
    return summarise(results, Path(out) / cfg.suite, tasks), results
