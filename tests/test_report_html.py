"""The demo report as one self-contained HTML page: every section, embedded pictures only, and a render
in Debian's headless Chromium.

The run directory is made by the real writers: the trainer writes ``metrics.jsonl`` and checkpoints of two
objectives, the real evaluator scores them (propagation, linear probe, the floors) into
``eval_results.jsonl``; only the BC readout is replaced (no MetaWorld rollouts here) by one that returns a
result of the evaluator's form and records a GIF with the BC readout's own ``save_gif`` where
``readout.bc_run`` keeps its videos.
"""
import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from torch import nn

from regconsist_ros import report_html
from regconsist_ros.report import write_report

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["losses", "readouts", "bc", "registration", "settings", "timings"]


class _Tiny(nn.Module):
    """An objective in the trainer's sense around a one-block ViT: the loss pulls the weights to zero."""

    encoder_kind = "vit"

    def __init__(self, cfg):
        super().__init__()
        from regconsist_ros.models.encoder import random_encoder

        self.encoder_config = cfg
        self.encoder = random_encoder("vit", cfg)

    def forward(self, batch):
        loss = sum((p ** 2).mean() for p in self.encoder.parameters())
        return loss, {"weights_l2": loss.detach()}


def _fake_bc(self, objective, step, model, info):
    """The evaluator's BC result for one checkpoint, with one recorded rollout (frames of a moving square)."""
    from regconsist_ros.readout.bc_run import save_gif, seed_dir

    frames = []
    for t in range(30):
        f = np.full((64, 64, 3), 30, np.uint8)
        f[20:36, 2 * t % 48:2 * t % 48 + 16] = (230, 120, 20)
        frames.append(f)
    sdir = seed_dir(Path(self.cfg.watch_dir) / "bc_eval", "metaworld", f"{objective}_step{step:08d}", "button-press-topdown", 0)
    save_gif(sdir / "videos" / "rollout1000_success.gif", frames)
    return {"button-press-topdown": {"success": 0.4, "best_success": 0.6}, "iqm_success": 0.4}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """online/: rsp and regconsist trained 20 steps each, checkpoints at 10 and 20 scored by the real evaluator."""
    from regconsist_ros.learning.trainer import Trainer, TrainerConfig
    from regconsist_ros.models.vit import ViTConfig
    from regconsist_ros.online.evaluator import Evaluator, EvaluatorConfig

    online = tmp_path_factory.mktemp("run") / "online"
    vit = ViTConfig(size="tiny", img_size=(32, 48), patch=8, depth=1)
    torch.manual_seed(0)
    trainers = {name: Trainer(_Tiny(vit), TrainerConfig(steps=20, lr=0.05, warmup=0, log_every=2, threads=1), online / name)
                for name in ("rsp", "regconsist")}
    ev = Evaluator(EvaluatorConfig(watch_dir=str(online), readouts=("propagation", "segmentation", "bc"), eval_frames=8,
                                   clip_len=4, eval_width=64, eval_height=48, min_object_pixels=20, probe_steps=5))
    mp = pytest.MonkeyPatch()
    mp.setattr(Evaluator, "bc_readout", _fake_bc)
    try:
        for until in (10, 20):
            for t in trainers.values():
                t.fit(lambda step: {}, progress=False, until=until, checkpoint=False)
                t.save()
            ev.poll()
    finally:
        mp.undo()
    (online / "graph.json").write_text(json.dumps({"name": "demo", "nodes": {
        "learner": {"params": {"learner.objectives": ["rsp", "regconsist"], "rsp.trainer.ckpt_every": 10}},
        "evaluator": {"params": {"eval_width": 64, "eval_height": 48}}}}))
    return online


def _report(tmp_path, online, with_pictures=True):
    out = tmp_path / "report"
    out.mkdir()
    pictures = {}
    if with_pictures:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(out / "pairs.png")
        pictures = {"Correspondences of view pairs (offline)": "pairs.png"}
    up_result = {"graph": "demo", "seconds": 40.0, "stopped_by": "duration", "exit_codes": {"learner": 0}}
    md = write_report(out, online, up_result if with_pictures else None, pictures,
                      {"demo": {"seed": 0, "online_seconds": 40.0}}, {"render the sequence": 1.5})
    return md, out / "report.html"


def _images(text):
    """Every <img> src as (mime, decoded bytes)."""
    out = []
    for src in re.findall(r"<img[^>]*\ssrc='([^']*)'", text):
        m = re.fullmatch(r"data:(image/(?:png|gif));base64,([A-Za-z0-9+/=]+)", src)
        assert m, src[:80]
        out.append((m.group(1), base64.b64decode(m.group(2), validate=True)))
    return out


def test_the_page_has_every_section_and_only_embedded_pictures(tmp_path, run_dir):
    md, page = _report(tmp_path, run_dir)
    text = page.read_text()
    parsed = report_html.parse(text)  # html.parser: the whole page parses
    assert [i for i in SECTIONS if i in parsed.ids] == SECTIONS
    assert parsed.tags.count("section") == len(SECTIONS) and parsed.tags.count("h2") == len(SECTIONS)
    assert report_html.external_references(text) == []
    imgs = _images(text)
    assert len(imgs) == parsed.tags.count("img") == 5  # losses, readouts, pairs, 2 rollout GIFs (one per objective)
    kinds = []
    for mime, data in imgs:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == mime.split("/")[1].upper()
            kinds.append((im.format, getattr(im, "n_frames", 1), max(im.size)))
    gifs = [k for k in kinds if k[0] == "GIF"]
    assert len(gifs) == 2 and all(1 < n <= 40 and side <= 160 for _, n, side in gifs), kinds
    # losses: both objectives, their steps; readouts: the three floors (styled as floors) before the checkpoints
    for name in ("rsp", "regconsist"):
        assert f"<td>{name}</td><td>20</td>" in text
        assert f"<td>{name}</td><td>10</td>" in text  # the checkpoint of step 10 was read out
    floors = re.findall(r"<tr class=floor><td>([^<]*)</td>", text)
    assert floors == ["pixels (vit)", "colour (vit)", "random (vit)"]
    rows = [json.loads(l) for l in (run_dir / "eval_results.jsonl").read_text().splitlines()]
    jf = next(r for r in rows if r["objective"] == "rsp" and r["step"] == 20)["propagation"]["JF_mean"]
    assert f"<td>rsp</td><td>20</td><td>{100 * jf:.1f}</td>" in text
    # BC: the table and the GIF's caption; settings from the demo and graph.json; timings
    assert "<td>button-press-topdown</td><td>40.0</td><td>60.0</td>" in text and "a success rollout" in text
    assert "node learner" in text and "rsp.trainer.ckpt_every" in text and "online_seconds" in text
    assert "<td>render the sequence</td><td>1.5</td>" in text
    assert "learner rsp: steps per second of the graph&#x27;s run</td><td>0.50</td>" in text  # 20 steps / 40 s
    assert "evaluator rsp: readouts of one checkpoint, mean of 2" in text and "evaluator: floors of vit" in text
    # the Markdown report is still written, and links the page
    m = md.read_text()
    assert "| pixels (vit) | floor |" in m and "| rsp | 20 |" in m and "[report.html](report.html)" in m
    assert "| rsp | 20 | button-press-topdown | 40.0 | 60.0 | 40.0 |" in m


def test_a_run_without_the_online_graph_still_has_every_section(tmp_path):
    md, page = _report(tmp_path, tmp_path / "missing", with_pictures=False)
    text = page.read_text()
    assert [i for i in SECTIONS if i in report_html.parse(text).ids] == SECTIONS
    assert report_html.external_references(text) == [] and "<img" not in text
    assert "did not run" in text and "No BC readout ran" in text and "no eval_results.jsonl" in text


def test_external_references_are_found():
    good = report_html.page("t", [report_html.Section("a", "A", [report_html.image(_png())])])
    assert report_html.external_references(good) == []
    for bad in ("<img src='https://example.org/x.png'>", "<script src='x.js'></script>",
                "<link rel=stylesheet href='s.css'>", "<a href='#nowhere'>x</a>", "<a href='http://x'>x</a>",
                "<style>body{background:url(http://x/y.png)}</style>", "<div style=\"background:url('a.png')\"></div>",
                "<style>@import 'x.css';</style>", "<img srcset='a.png 2x'>"):
        assert report_html.external_references(good.replace("</body>", bad + "</body>")), bad


def test_short_gif_keeps_the_last_frame_and_fits(tmp_path):
    from regconsist_ros.readout.bc_run import save_gif

    frames = [np.full((240, 320, 3), 4 * t, np.uint8) for t in range(60)]  # save_gif keeps every second: 30
    data = report_html.short_gif(save_gif(tmp_path / "r.gif", frames), max_frames=10, max_side=100)
    with Image.open(io.BytesIO(data)) as im:
        got = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    assert len(got) == 10 and got[0].shape == (75, 100, 3)
    assert abs(int(got[-1][0, 0, 0]) - 4 * 58) <= 4 and abs(int(got[0][0, 0, 0])) <= 4  # first and last steps kept


def _png():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_make_installs_a_headless_chromium_that_the_check_finds():
    """`make test` / `make demo` install it through the apt step: the Chromium test below runs in CI."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")  # continuation lines joined
    line = next(l for l in text.splitlines() if l.startswith("APT_PACKAGES"))
    assert any(name in line.split() for name in report_html.CHROMIUM), line


def test_the_page_opens_in_headless_chromium(tmp_path, run_dir):
    if report_html.find_chromium() is None:
        pytest.skip("no headless Chromium here (the Makefile's apt step installs chromium-headless-shell)")
    _, page = _report(tmp_path, run_dir)
    result = report_html.check_page(page, tmp_path / "shot.png", width=1200, height=3000)
    with Image.open(tmp_path / "shot.png") as im:
        assert im.width == 1200 and 1500 < im.height == result["height"] < 3000  # trimmed below the page's end
        g = np.asarray(im.convert("L"), np.float32)  # [H, W]
    assert result["pixel_std"] > 5 and g.std() > 5
    # the page is drawn, not only its top: rows with something on them reach its last section (timings)
    drawn = np.flatnonzero(g.max(1) > g.min(1))
    assert drawn.size > 600 and drawn.max() > im.height - 100, (drawn.size, drawn.max() if drawn.size else None)
    # a blank page is refused
    (tmp_path / "blank.html").write_text("<!doctype html><html><body></body></html>")
    with pytest.raises(RuntimeError, match="blank"):
        report_html.check_page(tmp_path / "blank.html", tmp_path / "blank.png", height=400)
