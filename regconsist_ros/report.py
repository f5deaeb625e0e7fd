"""The demo report: what the online graph did, as Markdown with PNG figures and as one HTML page.

Reads a learner directory (``<objective>/metrics.jsonl``, checkpoints), the evaluator's
``eval_results.jsonl`` (checkpoint rows, the floors' row, BC rollouts under ``bc_eval/``), the graph's
settings (``graph.json``) and the registration pictures, and writes next to them ``report.md`` (loss
curves per objective, readout scores over training steps beside the floors, correspondence and region
pictures) and ``report.html``: the same, self-contained (figures and a short rollout GIF embedded), with
the run's settings and timings (:mod:`regconsist_ros.report_html`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from regconsist_ros.learning.trainer import read_jsonl

FLOOR_STYLE = {"pixels": (0, (1, 1)), "colour": (0, (4, 2)), "random": (0, (6, 2, 1, 2))}


def region_figure(f1, f2, c, path: Path, region_cfg=None) -> Path:
    """Felzenszwalb regions of two views and the regions matched through their correspondences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from regconsist_ros.registration.regions import (RegionConfig, correspondence_regions, felzenszwalb_regions,
                                                     match_regions, nearest_pixels, region_overlap)

    cfg = region_cfg or RegionConfig()
    l1, l2 = felzenszwalb_regions(f1.rgb, cfg), felzenszwalb_regions(f2.rgb, cfg)
    uv1 = c.uv1.astype(np.int64)
    uv2 = nearest_pixels(c.uv2, *f2.size).astype(np.int64)
    r1, r2 = correspondence_regions(l1, l2, uv1, uv2)
    ov = region_overlap(r1, r2, int(l1.max()) + 1, int(l2.max()) + 1)
    matches = match_regions(ov, cfg.match_iou)
    rng = np.random.default_rng(0)
    colors = rng.integers(40, 255, (max(int(l1.max()), int(l2.max())) + 2, 3)).astype(np.uint8)
    matched2 = np.full(int(l2.max()) + 1, -1)
    order = np.argsort(matches.iou)  # the best match of a view-2 region is written last
    matched2[matches.dst[order]] = matches.src[order]  # colour a matched view-2 region like its view-1 partner
    img2 = np.where(matched2[l2][..., None] >= 0, colors[np.maximum(matched2[l2], 0)], 60).astype(np.uint8)
    fig, ax = plt.subplots(1, 4, figsize=(13, 2.9))
    for a, im, t in zip(ax, [f1.rgb, colors[l1], f2.rgb, img2],
                        ["view 1", f"view 1: {int(l1.max()) + 1} Felzenszwalb regions", "view 2",
                         "view 2: matched regions (grey: unmatched)"]):
        a.imshow(im)
        a.set_title(t, fontsize=8)
        a.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def collect_run(online_dir: Path) -> dict:
    """What the report shows of a learner directory: per objective its logged rows and checkpoints; the
    evaluator's checkpoint rows, its floors ("floor (architecture)" -> readouts) and the BC rollout GIFs."""
    online_dir = Path(online_dir)
    objectives = {}
    if online_dir.is_dir():
        for p in sorted(p for p in online_dir.iterdir() if (p / "metrics.jsonl").exists()):
            rows = [r for r in read_jsonl(p / "metrics.jsonl") if "step" in r and "loss" in r]
            objectives[p.name] = {"rows": rows, "checkpoints": len(list((p / "checkpoints").glob("step_*")))}
    rows = read_jsonl(online_dir / "eval_results.jsonl")
    floor_rows = [r for r in rows if r.get("objective") == "floors"]
    results = [r for r in rows if r.get("objective") != "floors" and "step" in r]
    graph = online_dir / "graph.json"
    return {"objectives": objectives, "results": results, "floor_rows": floor_rows,
            "floors": _floor_rows(floor_rows + results), "gifs": rollout_gifs(online_dir, results),
            "graph": json.loads(graph.read_text()) if graph.is_file() else None}


def rollout_gifs(online_dir: Path, results: list[dict]) -> dict[str, dict]:
    """objective -> {"step", "task", "outcome", "path"}: a rollout GIF of the newest checkpoint whose BC readout
    recorded one (``<online_dir>/bc_eval/<suite>/<objective>_step<step>/<task>/seed*/videos/*.gif``); a
    successful episode when there is one."""
    out = {}
    for r in sorted((r for r in results if isinstance(r.get("bc"), dict)), key=lambda r: -int(r["step"])):
        if r["objective"] in out:
            continue
        label = f"{r['objective']}_step{int(r['step']):08d}"
        gifs = sorted(Path(online_dir).glob(f"bc_eval/*/{label}/*/seed*/videos/*.gif"))
        gifs.sort(key=lambda p: "_success" not in p.name)  # successes first, stable otherwise
        if gifs:
            g = gifs[0]
            out[r["objective"]] = {"step": int(r["step"]), "task": g.parents[2].name, "path": str(g),
                                   "outcome": "success" if "_success" in g.name else "failure"}
    return out


def loss_figure(run: dict, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(run["objectives"])
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = run["objectives"][name]["rows"]
        steps = [r["step"] for r in rows]
        loss = [r["loss"] for r in rows]
        ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss")
        if len(loss) >= 10:
            k = max(2, len(loss) // 20)
            ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.6, label=f"mean of {k}")
        ax.set_title(f"{name}: training loss (online)")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def readout_figure(run: dict, path: Path) -> Path | None:
    """Readouts against the training step of the evaluated checkpoint: label propagation J&F and
    segmentation mIoU (probe; few-label fine-tuning for dense encoders), the floors as horizontal lines,
    and BC success when that readout ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in run["results"] if "quarantined" not in r]
    if not results:
        return None
    bc = any(isinstance(r.get("bc"), dict) and "iqm_success" in r["bc"] for r in results)
    panels = [("J&F", "label propagation J&F"), ("mIoU", "segmentation mIoU")] + ([("BC", "BC success")] if bc else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.6), squeeze=False)
    ax = dict(zip([p for p, _ in panels], axes[0]))
    kind_colour = {}  # architecture -> the colour of its (first) objective: its floors are drawn in it
    for k, name in enumerate(sorted({r["objective"] for r in results})):
        colour = f"C{k}"
        kind_colour.setdefault(next((r["kind"] for r in results if r["objective"] == name and "kind" in r), name), colour)
        rs = sorted((r for r in results if r["objective"] == name), key=lambda r: r["step"])
        series = {("J&F", "o-", "J&F"): [(r["step"], r.get("propagation", {}).get("JF_mean")) for r in rs],
                  ("mIoU", "o-", "probe"): [(r["step"], r.get("segmentation", {}).get("probe_miou")) for r in rs],
                  ("mIoU", "s--", "few-label fine-tuning"): [(r["step"], r.get("segmentation", {}).get("miou")) for r in rs],
                  ("BC", "o-", "IQM success"): [(r["step"], (r.get("bc") or {}).get("iqm_success")) for r in rs]}
        for (panel, style, what), pts in series.items():
            pts = [(s, v) for s, v in pts if isinstance(v, (int, float))]
            if pts and panel in ax:
                ax[panel].plot(*zip(*pts), style, color=colour, label=f"{name}: {what}")
    for label, f in run["floors"].items():  # "pixels (vit)": floor name and architecture
        floor, _, kind = label.partition(" (")
        style = {"color": kind_colour.get(kind.rstrip(")"), "grey"), "lw": 1, "alpha": 0.7, "ls": FLOOR_STYLE.get(floor, ":")}
        jf = f.get("propagation", {}).get("JF_mean")
        miou = f.get("segmentation", {}).get("probe_miou")
        if jf is not None:
            ax["J&F"].axhline(jf, label=f"floor {label}", **style)
        if miou is not None:
            ax["mIoU"].axhline(miou, label=f"floor {label}: probe", **style)
    for panel, title in panels:
        a = ax[panel]
        a.set_xlabel("training step of the evaluated checkpoint")
        a.set_title(title, fontsize=10)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
    ax["J&F"].set_ylabel("score")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _cell(v) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) else "-"


def readout_rows(run: dict) -> list[tuple[str, str, list[str]]]:
    """(label, step, cells of J&F, J, F, probe mIoU, mIoU): the floors first, then each checkpoint."""
    rows = [(label, "floor", f) for label, f in run["floors"].items()]
    rows += [(r["objective"], r["step"], r) for r in sorted(run["results"], key=lambda r: (r["objective"], r["step"]))]
    out = []
    for name, step, r in rows:
        p, seg = r.get("propagation", {}), r.get("segmentation", {})
        out.append((name, str(step), [_cell(p.get("JF_mean")), _cell(p.get("J_mean")), _cell(p.get("F_mean")),
                                      _cell(seg.get("probe_miou")), _cell(seg.get("miou"))]))
    return out


def bc_rows(run: dict) -> list[list[str]]:
    """[objective, step, task, success, best success, IQM] per checkpoint and task of the BC readout."""
    out = []
    for r in sorted(run["results"], key=lambda r: (r["objective"], r["step"])):
        bc = r.get("bc")
        if not isinstance(bc, dict):
            continue
        if "error" in bc:
            out.append([r["objective"], str(r["step"]), "-", bc["error"], "", ""])
            continue
        for task, v in bc.items():
            if task == "iqm_success":
                continue
            if "success" in v:
                out.append([r["objective"], str(r["step"]), task, _cell(v["success"]), _cell(v["best_success"]),
                            _cell(bc.get("iqm_success"))])
            else:
                out.append([r["objective"], str(r["step"]), task, f"{v.get('status')}: {v.get('reason', '')}", "", ""])
    return out


def write_report(out: Path, online_dir: Path, up_result: dict | None, pictures: dict[str, str],
                 settings: dict | None = None, timings: dict | None = None) -> Path:
    """``report.md`` with loss curves, readouts over steps and the given pictures (name -> file in out),
    and ``report.html`` beside it (also ``settings``: group -> values, ``timings``: stage -> seconds)."""
    out = Path(out)
    run = collect_run(online_dir)
    figs = {"losses": loss_figure(run, out / "losses.png"), "readouts": readout_figure(run, out / "readouts.png")}
    lines = ["# regconsist_ros demo report", "", "The same as one self-contained page, with the run's settings and "
             "timings: [report.html](report.html).", ""]
    if up_result:
        lines += [f"Online graph `{up_result.get('graph')}` ran {up_result.get('seconds')} s "
                  f"(stopped by {up_result.get('stopped_by')}; node exit codes {up_result.get('exit_codes')}).", ""]
    if run["objectives"]:
        lines += ["## Learner", "", "| objective | steps | first loss | last loss | checkpoints |", "|---|---|---|---|---|"]
        for name, s, a, b, n in _learner_rows(run):
            lines.append(f"| {name} | {s} | {a:.4g} | {b:.4g} | {n} |" if a is not None else f"| {name} | {s} | - | - | {n} |")
        lines += ["", "![losses](losses.png)", ""]
    if run["results"]:
        lines += ["## Evaluator", "", "Floors (learn nothing) first, then the learner's checkpoints. J&F per clip; "
                  "probe = frozen linear probe mIoU; mIoU = few-label fine-tuning (dense encoders).", "",
                  "| objective | step | J&F | J | F | probe mIoU | mIoU |", "|---|---|---|---|---|---|---|"]
        for name, step, cells in readout_rows(run):
            lines.append(f"| {name} | {step} | " + " | ".join(cells) + " |")
        lines += ["", "![readouts](readouts.png)", ""] if figs["readouts"] else [""]
        bc = bc_rows(run)
        if bc:
            lines += ["### Behaviour cloning", "", "| objective | step | task | success | best success | IQM success |",
                      "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in bc] + [""]
    if pictures:
        lines += ["## Registration", ""]
        for title, file in pictures.items():
            lines += [f"### {title}", "", f"![{title}]({file})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    write_html(out / "report.html", run, figs, up_result, {t: out / f for t, f in pictures.items()}, settings, timings)
    return path


def _learner_rows(run: dict) -> list[tuple]:
    """(objective, last step, first loss, last loss, checkpoints) per objective."""
    out = []
    for name, o in run["objectives"].items():
        rows = o["rows"]
        out.append((name, rows[-1]["step"] if rows else 0, rows[0]["loss"] if rows else None,
                    rows[-1]["loss"] if rows else None, o["checkpoints"]))
    return out


def write_html(path: Path, run: dict, figs: dict, up_result: dict | None, pictures: dict[str, Path],
               settings: dict | None, timings: dict | None) -> Path:
    """``report.html``: losses, readouts with floors, BC (rollout GIF), registration, settings, timings."""
    from regconsist_ros import report_html as H

    S = H.Section
    graph_s = (up_result or {}).get("seconds")
    subtitle = (f"Online graph '{up_result.get('graph')}' ran {graph_s} s, stopped by {up_result.get('stopped_by')}; "
                f"node exit codes {up_result.get('exit_codes')}." if up_result else "The online graph did not run in this report's run.")
    learner = S("losses", "Losses per objective")
    if run["objectives"]:
        learner.blocks.append(H.table(["objective", "steps", "first loss", "last loss", "checkpoints"],
                                      [[n, s, "-" if a is None else f"{a:.4g}", "-" if b is None else f"{b:.4g}", c]
                                       for n, s, a, b, c in _learner_rows(run)]))
        learner.blocks.append(H.image(figs["losses"], "training loss of each objective against its steps (online)"))
    else:
        learner.blocks.append(H.paragraph("No learner logs (no <objective>/metrics.jsonl in the online directory).", note=True))

    readouts = S("readouts", "Readouts against training steps, with the floors")
    if run["results"]:
        rows = readout_rows(run)
        readouts.blocks.append(H.paragraph(
            "Floors learn nothing: raw pixels and colour (mean + histogram per cell) on the architecture's grid, and "
            "the architecture randomly initialised; the evaluator reads them out once per architecture on the same "
            "held-out clips. Scores in %: J&F of label propagation, the frozen linear probe's mIoU, and few-label "
            "fine-tuning mIoU (dense encoders)."))
        if not run["floors"]:
            readouts.blocks.append(H.paragraph("This run has no floors: the evaluator wrote no floor row (floors "
                                               "off, or stopped before they were read out).", note=True))
        readouts.blocks.append(H.table(["objective", "step", "J&F", "J", "F", "probe mIoU", "mIoU"],
                                       [[n, s, *c] for n, s, c in rows], ["floor" if s == "floor" else "" for _, s, _ in rows]))
        quarantined = [r for r in run["results"] if "quarantined" in r]
        if quarantined:
            readouts.blocks.append(H.paragraph(f"{len(quarantined)} checkpoint(s) quarantined: " + "; ".join(
                f"{r['objective']} step {r['step']}: {r['quarantined']}" for r in quarantined[:5]), note=True))
        if figs["readouts"]:
            readouts.blocks.append(H.image(figs["readouts"], "readouts of the learner's checkpoints (markers) and the "
                                           "floors of each architecture (thin lines, in the colour of its objective)"))
    else:
        readouts.blocks.append(H.paragraph("The evaluator wrote no results (no eval_results.jsonl).", note=True))

    bc = S("bc", "Behaviour cloning")
    rows = bc_rows(run)
    if rows:
        bc.blocks.append(H.paragraph("Frozen encoder + MLP policy trained on demonstrations, success over the "
                                     "evaluation rollouts (the evaluator computes no BC floors)."))
        bc.blocks.append(H.table(["objective", "step", "task", "success", "best success", "IQM success"], rows))
        cells = []
        for name, g in run["gifs"].items():
            try:
                cells.append("<div>" + H.image(H.short_gif(g["path"]), f"{name} step {g['step']}, {g['task']}: "
                                               f"a {g['outcome']} rollout", width=224) + "</div>")
            except (OSError, ValueError) as e:
                cells.append("<div>" + H.paragraph(f"{name}: rollout GIF unreadable ({e})", note=True) + "</div>")
        if cells:
            bc.blocks.append("<div class=grid>" + "".join(cells) + "</div>")
        else:
            bc.blocks.append(H.paragraph("No rollout was recorded (BC readout with videos = 0).", note=True))
    else:
        bc.blocks.append(H.paragraph("No BC readout ran in this run (the demo graph's evaluator runs propagation and "
                                     "segmentation; add bc to evaluator.readouts for rollouts).", note=True))

    reg = S("registration", "Registration pictures")
    for title, file in pictures.items():
        reg.blocks += [H.heading(title), H.image(file, alt=title)]
    if not pictures:
        reg.blocks.append(H.paragraph("No registration pictures.", note=True))

    sett = S("settings", "Settings")
    groups = dict(settings or {})
    for node, spec in ((run["graph"] or {}).get("nodes") or {}).items():
        groups[f"node {node}"] = spec.get("params", {}) if isinstance(spec, dict) else {}
    sett.blocks.append(H.settings_block(groups) if groups else H.paragraph("No settings recorded.", note=True))

    tim = S("timings", "Timings")
    trows = [[k, f"{v:.1f}"] for k, v in (timings or {}).items() if isinstance(v, (int, float))]
    if graph_s:
        for name, s, *_ in _learner_rows(run):
            trows.append([f"learner {name}: steps per second of the graph's run", f"{s / graph_s:.2f}"])
    scored = [r for r in run["results"] if isinstance(r.get("seconds"), (int, float))]
    for name in sorted({r["objective"] for r in scored}):
        secs = [r["seconds"] for r in scored if r["objective"] == name]
        trows.append([f"evaluator {name}: readouts of one checkpoint, mean of {len(secs)}", f"{np.mean(secs):.1f}"])
    for r in run["floor_rows"]:
        if isinstance(r.get("seconds"), (int, float)):
            trows.append([f"evaluator: floors of {r.get('kind')}", f"{r['seconds']:.1f}"])
    tim.blocks.append(H.table(["what", "seconds"], trows) if trows else H.paragraph("No timings recorded.", note=True))
    text = H.page("regconsist_ros demo report", [learner, readouts, bc, reg, sett, tim], subtitle)
    Path(path).write_text(text)
    return Path(path)


def _floor_rows(results: list[dict]) -> dict:
    """"floor (architecture)" -> readouts, from the evaluator rows' ``floors`` (one set per architecture)."""
    out = {}
    for r in results:
        for name, f in (r.get("floors") or {}).items():
            if not isinstance(f, dict):  # e.g. "interrupted": the evaluator stopped before every floor
                continue
            out.setdefault(f"{name} ({r.get('kind', '?')})", f)
    return out
