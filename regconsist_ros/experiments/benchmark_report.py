"""The benchmark's tables, figures and self-contained HTML page (see :mod:`.benchmark`).

Per row (an encoder of one architecture) and readout:

- **J&F**: label propagation's J&F averaged over the test objects (DAVIS's J&F-Mean), mean over seeds;
  the 95% interval resamples seeds, then objects (:func:`regconsist_ros.readout.stats.paired_bootstrap_diff`
  against zero).
- **probe mIoU**: the frozen linear probe's mIoU (per test apartment over its test views, then averaged
  over apartments and seeds). Its interval, and every probe difference, is over the views' own mIoU
  (resampling seeds, then views), since a dataset-level mIoU has no per-item score.
- **differences**: each trained row minus the best floor of its architecture (the higher of pixels
  and colour for that readout) and minus random init, paired on the same objects / views.
- **feature eff. rank**: the effective rank of the frozen dense features on 16 test views
  (:mod:`regconsist_ros.readout.feature_rank`), mean over seeds; near 1 when one direction carries the
  features' variance. A warning to read beside the scores, not a score: the floors' ranks are low too
  (docs/results/benchmark.md). "-" for records from before it.
"""
from __future__ import annotations

import base64
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

READOUTS = (("JF", "propagation", "per_object_JF", "label propagation J&F (objects)"),
            ("miou", "probe", "per_view_miou", "linear probe mIoU"))


def _items(recs: list[dict], part: str, key: str) -> np.ndarray:
    return np.array([r[part][key] for r in sorted(recs, key=lambda r: r["seed"])], np.float64)  # [seeds, items]


def summarise(records: list[dict]) -> dict:
    """Table rows (means, intervals, differences) from the per-encoder-seed records."""
    from regconsist_ros.readout.stats import paired_bootstrap_diff

    rows: dict[str, list[dict]] = {}
    for r in records:
        rows.setdefault(r["row"], []).append(r)
    table = {}
    for name, recs in rows.items():
        first = recs[0]
        t = {"label": first["label"], "role": first["role"], "kind": first["kind"], "seeds": len(recs)}
        for short, part, key, _ in READOUTS:
            A = _items(recs, part, key)
            head = [r[part]["JF" if part == "propagation" else "miou"] for r in recs]
            ci = paired_bootstrap_diff(A, np.zeros_like(A))
            t[short] = float(np.mean(head))
            t[f"{short}_items_mean"] = ci["diff"]
            t[f"{short}_low"], t[f"{short}_high"] = ci["low"], ci["high"]
            t[f"{short}_per_seed"] = [float(h) for h in head]
        ranks = [r["features"]["effective_rank"] for r in recs if "features" in r]
        t["rank"] = float(np.mean(ranks)) if ranks else None  # mean over the seeds that have it
        table[name] = t
    for name, t in table.items():
        if t["role"] == "floor":
            continue
        for short, part, key, _ in READOUTS:
            floors = [n for n, u in table.items() if u["role"] == "floor" and u["kind"] == t["kind"]]
            others = {"best_floor": max(floors, key=lambda n: table[n][short]) if floors else None,
                      "random": next((n for n, u in table.items() if u["role"] == "random" and u["kind"] == t["kind"]), None)}
            for tag, other in others.items():
                if other is None or other == name:
                    continue
                d = paired_bootstrap_diff(_items(rows[name], part, key), _items(rows[other], part, key))
                t[f"{short}_vs_{tag}"] = {"other": other, **d}
    return {"table": table}


def comparisons(records: list[dict], pairs) -> list[dict]:
    """Paired differences ``a - b`` of the readouts for each pair of rows ``[a, b]`` present in ``records``
    (the definition's ``compare:`` list, e.g. RSP against MAE): per readout the mean difference with its
    95% bootstrap interval over seeds, then objects / views, and ``p_le_0``. Pairs of different
    architectures are compared as well; a pair with a row missing is left out."""
    from regconsist_ros.readout.stats import paired_bootstrap_diff

    rows: dict[str, list[dict]] = {}
    for r in records:
        rows.setdefault(r["row"], []).append(r)
    out = []
    for a, b in pairs or []:
        if a not in rows or b not in rows:
            continue
        c = {"a": a, "b": b, "a_label": rows[a][0]["label"], "b_label": rows[b][0]["label"],
             "seeds": [len(rows[a]), len(rows[b])]}
        for short, part, key, _ in READOUTS:
            c[short] = paired_bootstrap_diff(_items(rows[a], part, key), _items(rows[b], part, key))
        out.append(c)
    return out


def comparisons_markdown(comps: list[dict]) -> str:
    if not comps:
        return ""
    lines = ["", "Paired comparisons (the definition's `compare:` list; a minus b, points, 95% bootstrap interval "
             "over seeds, then objects / views; an interval excluding 0 is marked *):", "",
             "| a | b | seeds | J&F a − b | probe mIoU a − b |", "|---|---|---|---|---|"]
    for c in comps:
        cells = [_diff(c[short]) + (" *" if c[short]["low"] > 0 or c[short]["high"] < 0 else "")
                 for short, *_ in READOUTS]
        lines.append(f"| {c['a_label']} | {c['b_label']} | {c['seeds'][0]} / {c['seeds'][1]} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _rank(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _diff(d) -> str:
    if not d:
        return "-"
    return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def markdown(summary: dict, cfg, timings: dict, test_clips: int, val_clips: int) -> str:
    t = summary["table"]
    lines = [
        f"Embedded world `{cfg.world}`; pretraining and ceiling on apartments {list(cfg.train_seeds)}, settings chosen on "
        f"{list(cfg.val_seeds)} ({val_clips} clips), scores on "
        f"{'the validation apartments themselves (choosing settings, not a result) ' if cfg.report == 'val' else ''}"
        f"{list(cfg.val_seeds if cfg.report == 'val' else cfg.test_seeds)} ({test_clips} clips of "
        f"{cfg.clip_len} frames at {cfg.eval_width}x{cfg.eval_height}; encoders trained at {cfg.width}x{cfg.height}, ViTs read out "
        f"at {cfg.eval_width}x{cfg.eval_height} with interpolated positions). Trained rows: {cfg.seeds} seeds; floors have none. "
        f"Values in %, 95% bootstrap intervals in brackets (seeds, then objects / views). "
        f"Wall time {timings.get('total_s', 0) / 60:.1f} min"
        f"{f' (this invocation; {r} readouts reused from earlier runs of the directory)' if (r := timings.get('readouts_reused')) else ''}.", "",
        "| encoder | arch | role | seeds | J&F | J&F 95% CI | J&F − best floor | J&F − random | probe mIoU | view mIoU 95% CI | mIoU − best floor | mIoU − random | feature eff. rank |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {"floor": 0, "random": 1, "method": 2, "ceiling": 3}
    for name, r in sorted(t.items(), key=lambda kv: (kv[1]["kind"], order[kv[1]["role"]], kv[0])):
        lines.append(f"| {r['label']} | {r['kind']} | {r['role']} | {r['seeds']} | {_pct(r['JF'])} | "
                     f"[{_pct(r['JF_low'])}, {_pct(r['JF_high'])}] | {_diff(r.get('JF_vs_best_floor'))} | "
                     f"{_diff(r.get('JF_vs_random'))} | {_pct(r['miou'])} | [{_pct(r['miou_low'])}, {_pct(r['miou_high'])}] | "
                     f"{_diff(r.get('miou_vs_best_floor'))} | {_diff(r.get('miou_vs_random'))} | "
                     f"{_rank(r.get('rank'))} |")
    return "\n".join(lines) + "\n"


def bars(summary: dict, path: Path) -> Path:
    """Grouped bars per readout with the 95% intervals; floors grey, random init light, ceiling green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = summary["table"]
    order = {"floor": 0, "random": 1, "method": 2, "ceiling": 3}
    names = sorted(t, key=lambda n: (t[n]["kind"], order[t[n]["role"]], n))
    colour = {"floor": "#9e9e9e", "random": "#cfd8dc", "method": "#1f77b4", "ceiling": "#2ca02c"}
    fig, axes = plt.subplots(1, len(READOUTS), figsize=(6 + 0.6 * len(names), 4), squeeze=False)
    for ax, (short, _, _, title) in zip(axes[0], READOUTS):
        vals = np.array([100 * t[n][short] for n in names])
        lo = np.array([100 * t[n][f"{short}_low"] for n in names])
        hi = np.array([100 * t[n][f"{short}_high"] for n in names])
        centre = np.array([100 * t[n][f"{short}_items_mean"] for n in names])
        x = np.arange(len(names))
        ax.bar(x, vals, color=[colour[t[n]["role"]] for n in names])
        ax.errorbar(x, vals, yerr=[np.maximum(centre - lo, 0), np.maximum(hi - centre, 0)], fmt="none", ecolor="k", capsize=3)
        ax.set_xticks(x, [f"{t[n]['label']}\n({t[n]['kind']})" for n in names], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("%")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def html_page(md: str, images: list[Path], title: str) -> str:
    """A self-contained page: the table (markdown turned into an HTML table) and the figures inline."""
    import html

    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1400px;margin:2em auto}table{border-collapse:collapse;"
           "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}"
           "</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    rows = [l for l in md.splitlines() if l.startswith("|")]
    text = [l for l in md.splitlines() if l and not l.startswith("|")]
    out += [f"<p>{html.escape(p)}</p>" for p in text]
    if rows:
        out.append("<table>")
        for i, l in enumerate(r for r in rows if not set(r) <= set("|-")):
            cells = [c.strip() for c in l.strip("|").split("|")]
            tag = "th" if i == 0 else "td"
            out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
        out.append("</table>")
    for img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode()
        out.append(f"<p><img alt='{html.escape(Path(img).name)}' src='data:image/png;base64,{data}' style='max-width:100%'></p>")
    out.append("</body></html>")
    return "\n".join(out)


def curve_figure(curves: dict, table: dict, path: Path) -> Path:
    """mIoU against fine-tuning steps, mean over seeds (band: min-max): one panel per architecture, one
    colour per row, random init dotted and the ceiling dashed, the legend beside each panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = lambda row: table.get(row, {"label": row, "kind": "?", "role": "method"})
    kinds = sorted({info(r)["kind"] for r in curves})
    fig, axes = plt.subplots(len(kinds), 1, figsize=(8, 3.6 * len(kinds)), squeeze=False)
    style = {"random": ":", "ceiling": "--"}
    for ax, kind in zip(axes[:, 0], kinds):
        rows = sorted((r for r in curves if info(r)["kind"] == kind), key=lambda r: (info(r)["role"] != "random",
                                                                                       info(r)["role"] == "ceiling", r))
        colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
        for k, row in enumerate(rows):
            cs = curves[row]
            steps = cs[0]["steps"]
            m = np.array([c["miou"] for c in cs], np.float64) * 100  # [seeds, points]
            line, = ax.plot(steps, m.mean(0), marker="o", ls=style.get(info(row)["role"], "-"), color=colours(k),
                            label=info(row)["label"])
            if len(cs) > 1:
                ax.fill_between(steps, m.min(0), m.max(0), color=line.get_color(), alpha=0.12)
        ax.set_xscale("log")
        ax.set_xlabel("fine-tuning steps (one poly-schedule run, weight decay 5e-4)")
        ax.set_ylabel("mIoU (%)")
        ax.set_title(f"{kind}: full fine-tuning on the first test apartment (band: min-max over seeds)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curve_markdown(curves: dict, table: dict) -> str:
    if not curves:
        return ""
    steps = next(iter(curves.values()))[0]["steps"]
    lines = ["", "Full fine-tuning curves (mIoU %, mean over seeds; last column: gain over the last stretch):", "",
             "| encoder | arch | " + " | ".join(f"{s} steps" for s in steps) + " | last gain |",
             "|---|---|" + "---|" * (len(steps) + 1)]
    for row, cs in sorted(curves.items()):
        m = np.mean([c["miou"] for c in cs], 0) * 100
        t = table.get(row, {"label": row, "kind": "?"})
        lines.append(f"| {t['label']} | {t['kind']} | " + " | ".join(f"{v:.1f}" for v in m) +
                     f" | {m[-1] - m[-2] if len(m) > 1 else float('nan'):+.1f} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, cfg, exp, records: list[dict], timings: dict, test_clips: int, val_clips: int,
                 curves: dict | None = None) -> dict:
    summary = summarise(records)
    curves = curves or {}
    from regconsist_ros.experiments.latent_use import latent_markdown, latent_use_figure
    from regconsist_ros.learning.trainer import read_jsonl

    comps = comparisons(records, exp.extra.get("compare"))
    md = (markdown(summary, cfg, timings, test_clips, val_clips) + comparisons_markdown(comps)
          + curve_markdown(curves, summary["table"]) + latent_markdown(records))
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "timings": timings, **summary,
                                                  "comparisons": comps, "records": records, "curves": curves},
                                                 indent=1, default=float))
    figs = [bars(summary, out / "benchmark_scores.png")]
    if curves:
        figs.append(curve_figure(curves, summary["table"], out / "finetune_curves.png"))
    runs = {d.name: read_jsonl(d / "metrics.jsonl") for d in sorted((out / "pretrain").glob("*"))}
    if (latent_fig := latent_use_figure(runs, out / "rsp_latent_use.png")) is not None:
        figs.append(latent_fig)
    (out / "report.html").write_text(html_page(md, figs, f"regconsist benchmark ({exp.name})"))
    return summary
