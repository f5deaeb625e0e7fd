"""Aggregates of BC readout results: interquartile mean over tasks, bootstrap confidence intervals, plots.

The IQM is the 25%-trimmed mean of the per-task success rates (the middle half of the tasks;
with 5 tasks, the middle 3). Confidence intervals are stratified bootstrap intervals: each task's
evaluation episodes are resampled with replacement, the per-task rates and their IQM recomputed
(``reps`` times), and the 2.5/97.5 percentiles reported. They show the uncertainty from the finite
number of rollouts (not from training seeds; one training seed per task here). "best" is the best
evaluation over training (as CortexBench reports it) and is biased upwards; "final" is not.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean


def iqm(scores) -> float:
    return float(trim_mean(np.asarray(scores, float), 0.25, axis=None))


def bootstrap_iqm(outcomes: list[list[int]], reps: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Stratified bootstrap CI of the IQM over tasks; ``outcomes[k]`` = task k's 0/1 episode results."""
    rng = np.random.default_rng(seed)
    rates = np.empty((reps, len(outcomes)))
    for k, o in enumerate(outcomes):
        o = np.asarray(o, float)
        rates[:, k] = o[rng.integers(0, len(o), (reps, len(o)))].mean(1)
    boot = trim_mean(rates, 0.25, axis=1)
    a = (1 - level) / 2
    return float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def summarise(results: list[dict], out_dir: str | Path, tasks, reps: int = 2000) -> dict:
    """Per-encoder aggregate of finished tasks; writes summary.json, results.md and plots to ``out_dir``."""
    out_dir = Path(out_dir)
    ok = [r for r in results if r.get("status") == "ok"]
    missing = [{"encoder": r["encoder"], "task": r["task"], "status": r.get("status"), "reason": r.get("reason", "")}
               for r in results if r.get("status") != "ok"]
    encoders = list(dict.fromkeys(r["encoder"] for r in results))
    summary: dict = {"suite": results[0]["suite"] if results else "", "tasks": list(tasks), "encoders": {}, "missing": missing}
    for enc in encoders:
        rs = [r for r in ok if r["encoder"] == enc]
        if not rs:
            continue
        row = {"tasks": {r["task"]: {"success": r["success"], "best_success": r["best_success"], "best_epoch": r["best_epoch"]}
                         for r in rs}}
        for kind in ("success", "best_success"):
            outs = [r["final_outcomes" if kind == "success" else "best_outcomes"] for r in rs]
            lo, hi = bootstrap_iqm(outs, reps)
            row[f"iqm_{kind}"] = iqm([r[kind] for r in rs])
            row[f"iqm_{kind}_ci95"] = [lo, hi]
            row[f"mean_{kind}"] = float(np.mean([r[kind] for r in rs]))
        row["episodes"] = rs[0]["episodes"]
        row["complete"] = len(rs) == len(list(tasks))
        summary["encoders"][enc] = row
    if ok:
        out_dir.mkdir(parents=True, exist_ok=True)
        summary["plots"] = [str(p) for p in (success_vs_epoch(ok, out_dir / "success_vs_epoch.png"),
                                             iqm_bars(summary, out_dir / "iqm.png"))]
        (out_dir / "results.md").write_text(markdown_table(summary))
        tmp = out_dir / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, out_dir / "summary.json")
    return summary


def markdown_table(summary: dict) -> str:
    tasks = summary["tasks"]
    head = "| encoder | " + " | ".join(tasks) + " | IQM final [95% CI] | IQM best [95% CI] |"
    lines = [head, "|" + "---|" * (len(tasks) + 3)]
    for enc, row in summary["encoders"].items():
        cells = []
        for t in tasks:
            r = row["tasks"].get(t)
            cells.append(f"{100 * r['success']:.0f} ({100 * r['best_success']:.0f})" if r else "n/a")
        ci = lambda k: f"{100 * row[f'iqm_{k}']:.1f} [{100 * row[f'iqm_{k}_ci95'][0]:.1f}, {100 * row[f'iqm_{k}_ci95'][1]:.1f}]"  # noqa: E731
        lines.append(f"| {enc} | " + " | ".join(cells) + f" | {ci('success')} | {ci('best_success')} |")
    lines.append("")
    lines.append("Cells: final success % (best over evaluations %). "
                 f"{next(iter(summary['encoders'].values()))['episodes'] if summary['encoders'] else '?'} rollouts per evaluation.")
    for m in summary["missing"]:
        lines.append(f"- {m['encoder']}/{m['task']}: {m['status']} {m['reason']}")
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
