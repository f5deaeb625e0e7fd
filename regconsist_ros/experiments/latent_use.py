"""Is RSP's stochastic latent used? Summaries and a figure of the diagnostics the trainer logs for it.

``RSP.diagnostics`` (models/objectives/rsp.py) puts ``diag_pred_post``, ``diag_pred_prior``,
``diag_latent_gain`` and ``diag_kl`` into the pretraining's ``metrics.jsonl`` on each logged step. A latent
gain (prediction loss with z from the prior minus with z from the posterior) near zero says the decoder
predicts the future as well without what the posterior saw of it: the latent carries nothing, because it is
ignored or because the future is predictable from the current frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


LATENT_PANELS = (("diag_pred_post", "diag_pred_prior", "prediction loss: posterior z (solid), prior z (dashed)"),
                 ("diag_latent_gain", None, "latent gain = prior loss - posterior loss"),
                 ("diag_kl", None, "KL(posterior || prior), nats"))


def latent_use_figure(runs: dict[str, list[dict]], path: Path) -> Path | None:
    """Does the stochastic latent carry information? For every run whose metrics have RSP's diagnostics
    (``diag_*`` columns, see ``RSP.diagnostics``): the prediction loss from the posterior vs from the prior,
    their difference and the KL, against the step -> ``path``; None when no run has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {n: [r for r in latest_run(rows) if "diag_pred_prior" in r] for n, rows in runs.items()}
    runs = {n: rows for n, rows in runs.items() if rows}
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(LATENT_PANELS), figsize=(5 * len(LATENT_PANELS), 3.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (key, dashed, title) in zip(axes[0], LATENT_PANELS):
        for i, (name, rows) in enumerate(runs.items()):
            steps = [r["step"] for r in rows]
            ax.plot(steps, [r[key] for r in rows], color=colours(i % 10), label=name)
            if dashed:
                ax.plot(steps, [r[dashed] for r in rows], color=colours(i % 10), ls="--")
        if key == "diag_latent_gain":
            ax.axhline(0, color="k", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("pretraining step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def latest_run(rows: list[dict]) -> list[dict]:
    """The rows of the last run in a ``metrics.jsonl`` that several runs appended to (a run trained again from
    scratch starts its steps over; a resumed one continues them)."""
    start = 0
    for i in range(1, len(rows)):
        if rows[i].get("step", 0) <= rows[i - 1].get("step", 0):
            start = i
    return rows[start:]


def latent_use(rows: list[dict], last: float = 0.25) -> dict | None:
    """RSP's diagnostics averaged over the last ``last`` fraction of the logged steps of a run's latest training
    (None without them): ``pred_post``, ``pred_prior``, ``latent_gain`` (with its std over those rows), ``kl``."""
    rows = [r for r in latest_run(rows) if "diag_pred_prior" in r]
    if not rows:
        return None
    tail = rows[-max(1, round(last * len(rows))):]
    out = {k: float(np.mean([r[f"diag_{k}"] for r in tail])) for k in ("pred_post", "pred_prior", "latent_gain", "kl")}
    out["latent_gain_std"] = float(np.std([r["diag_latent_gain"] for r in tail]))
    out["rows"] = len(tail)
    return out


def latent_markdown(records: list[dict]) -> str:
    """The benchmark's latent-use table: per row with ``latent_use`` in its records, the mean over seeds (and
    the seeds' std of the gain); "" when no record has it."""
    rows: dict[str, list[dict]] = {}
    labels = {}
    for r in records:
        if r.get("latent_use"):
            rows.setdefault(r["row"], []).append(r["latent_use"])
            labels[r["row"]] = r.get("label", r["row"])
    if not rows:
        return ""
    lines = ["", "Is RSP's latent used? Future-frame prediction loss with z from the posterior and from the prior at the "
             "end of pretraining (last quarter of the logged steps, mean over seeds; `RSP.diagnostics`). A gain near 0: "
             "the future is predicted as well without what the posterior saw of it.", "",
             "| encoder | seeds | loss, posterior z | loss, prior z | gain (std over seeds) | KL (nats) |",
             "|---|---|---|---|---|---|"]
    for row, us in sorted(rows.items()):
        m = {k: float(np.mean([u[k] for u in us])) for k in ("pred_post", "pred_prior", "latent_gain", "kl")}
        sd = float(np.std([u["latent_gain"] for u in us]))
        lines.append(f"| {labels[row]} | {len(us)} | {m['pred_post']:.4f} | {m['pred_prior']:.4f} | "
                     f"{m['latent_gain']:+.4f} ({sd:.4f}) | {m['kl']:.2f} |")
    return "\n".join(lines) + "\n"
