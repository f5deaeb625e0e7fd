"""The demo report: what the online graph did, as Markdown with PNG figures.

Reads a learner directory (``<objective>/metrics.jsonl``, checkpoints), the evaluator's
``eval_results.jsonl`` and the registration pictures, and writes ``report.md`` next to them:
loss curves per objective, readout scores over training steps, correspondence and region pictures.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from regconsist_ros.learning.trainer import read_jsonl


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


def write_report(out: Path, online_dir: Path, up_result: dict | None, pictures: dict[str, str]) -> Path:
    """``report.md`` with loss curves, readouts over steps and the given pictures (name -> file in out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    lines = ["# regconsist_ros demo report", ""]
    if up_result:
        lines += [f"Online graph `{up_result.get('graph')}` ran {up_result.get('seconds')} s "
                  f"(stopped by {up_result.get('stopped_by')}; node exit codes {up_result.get('exit_codes')}).", ""]
    objectives = sorted(p.name for p in Path(online_dir).iterdir() if (p / "metrics.jsonl").exists()) \
        if Path(online_dir).is_dir() else []
    summary = []
    if objectives:
        fig, axes = plt.subplots(1, len(objectives), figsize=(5 * len(objectives), 3.2), squeeze=False)
        for ax, name in zip(axes[0], objectives):
            rows = read_jsonl(Path(online_dir) / name / "metrics.jsonl")
            steps = [r["step"] for r in rows]
            loss = [r["loss"] for r in rows]
            ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss")
            if len(loss) >= 10:
                k = max(2, len(loss) // 20)
                ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.6, label=f"mean of {k}")
            ax.set_title(f"{name}: training loss (online)")
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
            ckpts = sorted((Path(online_dir) / name / "checkpoints").glob("step_*"))
            summary.append((name, steps[-1] if steps else 0, loss[0] if loss else None, loss[-1] if loss else None,
                            len(ckpts)))
        fig.tight_layout()
        fig.savefig(out / "losses.png", dpi=90)
        plt.close(fig)
        lines += ["## Learner", "", "| objective | steps | first loss | last loss | checkpoints |", "|---|---|---|---|---|"]
        for name, s, a, b, n in summary:
            lines.append(f"| {name} | {s} | {a:.4g} | {b:.4g} | {n} |" if a is not None else f"| {name} | {s} | - | - | {n} |")
        lines += ["", "![losses](losses.png)", ""]
    results = read_jsonl(Path(online_dir) / "eval_results.jsonl")
    floor_lines = [r for r in results if r.get("objective") == "floors"]
    results = [r for r in results if r.get("objective") != "floors"]
    if results:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for name in sorted({r["objective"] for r in results}):
            rs = sorted((r for r in results if r["objective"] == name), key=lambda r: r["step"])
            pr = [(r["step"], r["propagation"]["JF_mean"]) for r in rs if "propagation" in r]
            if pr:
                ax.plot(*zip(*pr), "o-", label=f"{name}: label propagation J&F")
            seg = [(r["step"], r["segmentation"]["miou"]) for r in rs if "miou" in r.get("segmentation", {})]
            if seg:
                ax.plot(*zip(*seg), "s--", label=f"{name}: few-label segmentation mIoU")
        floors = _floor_rows(floor_lines + results)
        for k, (label, f) in enumerate(floors.items()):
            jf = f.get("propagation", {}).get("JF_mean")
            if jf is not None:
                ax.axhline(jf, color="grey", lw=0.8, ls=(0, (1 + k, 2)), label=f"{label} (floor): J&F")
        ax.set_xlabel("training step of the evaluated checkpoint")
        ax.set_ylabel("score")
        ax.set_title("readouts of the learner's checkpoints")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "readouts.png", dpi=90)
        plt.close(fig)
        lines += ["## Evaluator", "", "Floors (learn nothing) first, then the learner's checkpoints. J&F per clip; "
                  "probe = frozen linear probe mIoU; mIoU = few-label fine-tuning (dense encoders).", "",
                  "| objective | step | J&F | J | F | probe mIoU | mIoU |", "|---|---|---|---|---|---|---|"]
        cell = lambda v: f"{100 * v:.1f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        rows = [(label, "floor", f) for label, f in floors.items()]
        rows += [(r["objective"], r["step"], r) for r in sorted(results, key=lambda r: (r["objective"], r["step"]))]
        for name, step, r in rows:
            p, seg = r.get("propagation", {}), r.get("segmentation", {})
            lines.append(f"| {name} | {step} | {cell(p.get('JF_mean'))} | {cell(p.get('J_mean'))} | "
                         f"{cell(p.get('F_mean'))} | {cell(seg.get('probe_miou'))} | {cell(seg.get('miou'))} |")
        lines += ["", "![readouts](readouts.png)", ""]
    if pictures:
        lines += ["## Registration", ""]
        for title, file in pictures.items():
            lines += [f"### {title}", "", f"![{title}]({file})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _floor_rows(results: list[dict]) -> dict:
    """"floor (architecture)" -> readouts, from the evaluator rows' ``floors`` (one set per architecture)."""
    out = {}
    for r in results:
        for name, f in (r.get("floors") or {}).items():
            if not isinstance(f, dict):  # e.g. "interrupted": the evaluator stopped before every floor
                continue
            out.setdefault(f"{name} ({r.get('kind', '?')})", f)
    return out
