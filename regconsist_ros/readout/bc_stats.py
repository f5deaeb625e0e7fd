"""Aggregates of BC readout results: IQM over training seeds x tasks with intervals, paired differences, tables.

Per encoder, the per-(seed, task) success rates form a matrix [seeds, tasks]. Its interquartile
mean (``stats.iqm``: the 25%-trimmed mean of all values) is the headline number; the 95% interval is
``stats.iqm_ci``'s stratified bootstrap (each task's training seeds resampled on their own, the task
set fixed, as rliable does). It shows the uncertainty from training-seed variation; with one seed
per task it has zero width, and the table then shows the rollout interval instead (``bootstrap_iqm``:
each task's evaluation episodes, pooled over seeds, resampled). Both are computed for "final" (the
last evaluation) and "best" (the best evaluation over training, as CortexBench reports it; biased
upwards: the maximum of 20 noisy evaluations).

Paired differences (``stats.paired_bootstrap_diff``, mean over [seeds, tasks], tasks paired, seeds
paired by index when the counts agree) compare every encoder with ``random`` and with the best floor
(``pixels`` / ``colour``: the one with the higher final IQM) when those are in the run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from regconsist_ros.readout.stats import iqm, iqm_ci, paired_bootstrap_diff

KINDS = (("success", "final"), ("best_success", "best"))


def bootstrap_iqm(outcomes: list[list[int]], reps: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Stratified bootstrap CI of the IQM over tasks from rollouts; ``outcomes[k]`` = task k's 0/1 episode results."""
    rng = np.random.default_rng(seed)
    rates = np.empty((reps, len(outcomes)))
    for k, o in enumerate(outcomes):
        o = np.asarray(o, float)
        rates[:, k] = o[rng.integers(0, len(o), (reps, len(o)))].mean(1)
    boot = iqm(rates, axis=1)  # [reps]
    a = (1 - level) / 2
    return float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def role(info: dict | None) -> str:
    """What an encoder is in a results table: ``floor`` (pixels / colour), ``random``, ``oracle`` (state), ``encoder``."""
    info = info or {}
    if str(info.get("kind", "")).startswith("floor:"):
        return "floor"
    if info.get("init") == "random":
        return "random"
    if info.get("kind") == "state":
        return "oracle"
    return "encoder"


def _flat(outcomes) -> list[int]:
    """One task's episode outcomes, pooled over seeds ([seeds][episodes] or one seed's [episodes])."""
    return [int(x) for o in outcomes for x in (o if isinstance(o, (list, tuple)) else [o])]


def _seed_rates(r: dict, kind: str) -> list[float]:
    return list(r.get(f"seed_{kind}", [r[kind]]))


def seed_matrix(rs: list[dict], kind: str) -> np.ndarray:
    """Per-(seed, task) rates [S, K] of one encoder's results (S = the fewest seeds any task has)."""
    S = min(len(_seed_rates(r, kind)) for r in rs)
    return np.array([_seed_rates(r, kind)[:S] for r in rs], float).T


def comparisons(ok: list[dict], rows: dict, reps: int = 2000) -> list[dict]:
    """Paired differences of every encoder against ``random`` and the best floor (those in the run)."""
    floors = [e for e, row in rows.items() if row["role"] == "floor"]
    refs = [e for e, row in rows.items() if row["role"] == "random"]
    if floors:
        best_floor = max(floors, key=lambda e: (rows[e]["iqm_success"], -floors.index(e)))
        refs.append(best_floor)
    out = []
    for ref in refs:
        for enc in rows:
            if enc == ref:
                continue
            mine = {r["task"]: r for r in ok if r["encoder"] == enc}
            theirs = {r["task"]: r for r in ok if r["encoder"] == ref}
            tasks = [t for t in mine if t in theirs]
            if not tasks:
                continue
            c = {"encoder": enc, "reference": ref, "reference_role": rows[ref]["role"], "tasks": tasks,
                 "seeds": [seed_matrix([mine[t] for t in tasks], "success").shape[0],
                           seed_matrix([theirs[t] for t in tasks], "success").shape[0]]}
            for kind, name in KINDS:
                a = seed_matrix([mine[t] for t in tasks], kind)  # [Sa, N]
                b = seed_matrix([theirs[t] for t in tasks], kind)  # [Sb, N]
                c[name] = paired_bootstrap_diff(a, b, reps=reps)
            out.append(c)
    return out


def summarise(results: list[dict], out_dir: str | Path, tasks, reps: int = 2000) -> dict:
    """Per-encoder aggregate of finished tasks; writes summary.json, results.md and plots to ``out_dir``."""
    out_dir = Path(out_dir)
    ok = [r for r in results if r.get("status") == "ok"]
    missing = [{"encoder": r["encoder"], "task": r["task"], "status": r.get("status"), "reason": r.get("reason", "")}
               for r in results if r.get("status") != "ok"]
    encoders = list(dict.fromkeys(r["encoder"] for r in results))
    summary: dict = {"suite": results[0]["suite"] if results else "", "tasks": list(tasks), "encoders": {},
                     "missing": missing}
    for enc in encoders:
        rs = [r for r in ok if r["encoder"] == enc]
        if not rs:
            continue
        row = {"role": role(rs[0].get("encoder_info")),
               "tasks": {r["task"]: {"success": r["success"], "best_success": r["best_success"],
                                     "seed_success": _seed_rates(r, "success"),
                                     "seed_best_success": _seed_rates(r, "best_success"),
                                     "best_epochs": r.get("best_epochs", [r.get("best_epoch")]),
                                     "gifs": r.get("gifs", {}), "gifs_missing": r.get("gifs_missing", [])}
                         for r in rs}}
        for kind, _ in KINDS:
            X = seed_matrix(rs, kind)  # [S, K]
            ci = iqm_ci(X, reps=reps)
            row[f"iqm_{kind}"] = ci["iqm"]
            row[f"iqm_{kind}_ci95"] = [ci["low"], ci["high"]]
            row[f"iqm_{kind}_rollout_ci95"] = list(bootstrap_iqm(
                [_flat(r["final_outcomes" if kind == "success" else "best_outcomes"]) for r in rs], reps))
            row[f"mean_{kind}"] = float(X.mean())
        row["seeds"] = int(seed_matrix(rs, "success").shape[0])
        row["episodes"] = rs[0]["episodes"]
        row["complete"] = len(rs) == len(list(tasks))
        summary["encoders"][enc] = row
    summary["comparisons"] = comparisons(ok, summary["encoders"], reps)
    if ok:
        out_dir.mkdir(parents=True, exist_ok=True)
        summary["plots"] = [str(p) for p in (success_vs_epoch(ok, out_dir / "success_vs_epoch.png"),
                                             iqm_bars(summary, out_dir / "iqm.png"))]
        (out_dir / "results.md").write_text(markdown_table(summary, out_dir))
        tmp = out_dir / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, out_dir / "summary.json")
    return summary


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _interval(row: dict, kind: str) -> str:
    """``IQM [low, high]``; with one seed the rollout interval, marked ``r``."""
    if row["seeds"] > 1:
        lo, hi = row[f"iqm_{kind}_ci95"]
        return f"{_pct(row[f'iqm_{kind}'])} [{_pct(lo)}, {_pct(hi)}]"
    lo, hi = row[f"iqm_{kind}_rollout_ci95"]
    return f"{_pct(row[f'iqm_{kind}'])} [{_pct(lo)}, {_pct(hi)}]r"


def _link(path: str | None, out_dir: Path | None, text: str) -> str:
    if not path:
        return ""
    rel = os.path.relpath(path, out_dir) if out_dir is not None else path
    return f"[{text}]({rel})"


def markdown_table(summary: dict, out_dir: str | Path | None = None) -> str:
    """results.md: every encoder (floors flagged) with intervals, the paired differences, the GIFs."""
    out_dir = Path(out_dir) if out_dir is not None else None
    tasks = summary["tasks"]
    names = {"floor": " (floor)", "random": " (random init)", "oracle": " (state oracle)", "encoder": ""}
    head = "| encoder | " + " | ".join(tasks) + " | seeds | IQM final [95% CI] | IQM best [95% CI] |"
    lines = [head, "|" + "---|" * (len(tasks) + 4)]
    for enc, row in summary["encoders"].items():
        cells = []
        for t in tasks:
            r = row["tasks"].get(t)
            cells.append(f"{100 * r['success']:.0f} ({100 * r['best_success']:.0f})" if r else "n/a")
        lines.append(f"| {enc}{names.get(row.get('role', 'encoder'), '')} | " + " | ".join(cells)
                     + f" | {row['seeds']} | {_interval(row, 'success')} | {_interval(row, 'best_success')} |")
    lines.append("")
    eps = next(iter(summary["encoders"].values()))["episodes"] if summary["encoders"] else "?"
    lines.append(f"Cells: final success % (best over evaluations %), means over training seeds; {eps} rollouts per "
                 "evaluation. IQM over seeds x tasks; 95% CI: stratified bootstrap over training seeds (tasks fixed). "
                 "'best' is the best evaluation during training (CortexBench's number, biased upwards); 'final' is "
                 "the last. An interval marked r (one seed) resamples rollouts instead of seeds.")
    for m in summary["missing"]:
        lines.append(f"- {m['encoder']}/{m['task']}: {m['status']} {m['reason']}")
    comps = summary.get("comparisons", [])
    if comps:
        lines += ["", "Paired differences (percentage points; mean over seeds x shared tasks, 95% paired bootstrap CI; "
                      "P = share of replicates with a difference <= 0):", "",
                  "| encoder | vs | tasks | final diff [95% CI] | P final | best diff [95% CI] | P best |",
                  "|---|---|---|---|---|---|---|"]
        for c in comps:
            f, b = c["final"], c["best"]
            lines.append(f"| {c['encoder']} | {c['reference']} ({c['reference_role']}) | {len(c['tasks'])} | "
                         f"{100 * f['diff']:+.1f} [{100 * f['low']:+.1f}, {100 * f['high']:+.1f}] | {f['p_le_0']:.3f} | "
                         f"{100 * b['diff']:+.1f} [{100 * b['low']:+.1f}, {100 * b['high']:+.1f}] | {b['p_le_0']:.3f} |")
    gif_lines = []
    for enc, row in summary["encoders"].items():
        for t in tasks:
            r = row["tasks"].get(t)
            if not r:
                continue
            gifs = r.get("gifs") or {}
            parts = [_link(gifs.get(k), out_dir, k) for k in ("success", "failure") if gifs.get(k)]
            miss = [f"no {k} GIF (no {'successful' if k == 'success' else 'failed'} episode in any final evaluation, "
                    "or GIFs off)" for k in r.get("gifs_missing", []) if k in ("success", "failure")]
            if parts or miss:
                gif_lines.append(f"- {enc} / {t}: " + "; ".join(parts + miss))
    if gif_lines:
        lines += ["", "Rollouts of the final evaluation (GIF):", ""] + gif_lines
    return "\n".join(lines) + "\n"


def success_vs_epoch(results: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    encoders = list(dict.fromkeys(r["encoder"] for r in results))
    n = len(tasks) + (1 if len(tasks) > 1 else 0)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False, sharey=True)
    colours = {e: f"C{i}" for i, e in enumerate(encoders)}
    for ax, task in zip(axes[0], tasks):
        for r in results:
            if r["task"] == task:
                ev = r["evaluations"]
                ax.plot([x["epoch"] for x in ev], [100 * x["success"] for x in ev], "o-", ms=3, color=colours[r["encoder"]],
                        label=r["encoder"])
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("epoch")
    if len(tasks) > 1:
        ax = axes[0][-1]
        for enc in encoders:
            rs = [r for r in results if r["encoder"] == enc]
            epochs = sorted(set.intersection(*[{x["epoch"] for x in r["evaluations"]} for r in rs]))
            mean = [100 * np.mean([next(x["success"] for x in r["evaluations"] if x["epoch"] == e) for r in rs]) for e in epochs]
            ax.plot(epochs, mean, "o-", ms=3, color=colours[enc], label=enc)
        ax.set_title("mean over tasks", fontsize=9)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("success %")
    axes[0][0].set_ylim(-3, 103)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def iqm_bars(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encs = list(summary["encoders"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(encs), 3.0))
    x = np.arange(len(encs))
    for j, (kind, label) in enumerate((("success", "final"), ("best_success", "best"))):
        vals = np.array([100 * summary["encoders"][e][f"iqm_{kind}"] for e in encs])
        ci = np.array([[100 * c for c in summary["encoders"][e][f"iqm_{kind}_ci95"]] for e in encs]).reshape(-1, 2)
        ax.bar(x + (j - 0.5) * 0.38, vals, 0.36, yerr=[vals - ci[:, 0], ci[:, 1] - vals], capsize=3, label=label)
    ax.set_xticks(x, encs, fontsize=8)
    ax.set_ylabel("IQM success % (95% CI)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
