"""One self-contained HTML page from a report's sections, and its check in headless Chromium.

A page is a title and a list of :class:`Section` (an id, a heading and HTML blocks made by the helpers
below: :func:`paragraph`, :func:`table`, :func:`image`, :func:`settings_block`). Images are embedded as
``data:`` URIs (PNG figures, GIF rollouts), the style is inline: the file opens anywhere, offline, and can
be mailed or attached as one file. :func:`external_references` lists whatever would still reach outside
the page (used by the tests and by :func:`check_page`).

:func:`screenshot` renders a page with Debian's headless Chromium (``chromium-headless-shell`` or
``chromium``), which ``make demo`` uses to check its ``report.html``; :func:`short_gif` cuts a rollout
GIF down to a few small frames for embedding.
"""
from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

CHROMIUM = ("chromium-headless-shell", "chromium", "chromium-browser")  # Debian's names, smallest first
STYLE = """
body{font-family:'DejaVu Sans',sans-serif;margin:0 auto;max-width:1180px;padding:0 16px 24px;color:#222;font-size:14px}
h1{font-size:24px;margin:14px 0 4px}h2{font-size:18px;border-bottom:2px solid #1f77b4;padding-bottom:2px;margin:20px 0 8px}
h3{font-size:14px;margin:10px 0 4px}nav{background:#f2f5f9;padding:6px 10px;border-radius:4px}nav a{margin-right:14px}
table{border-collapse:collapse;font-size:12px;margin:4px 0 8px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#eef2f7}td:first-child,th:first-child{text-align:left}tr.floor td{color:#666;background:#fafafa}
img{max-width:100%}figure{margin:6px 0}figcaption{font-size:12px;color:#555}
.note{color:#555;font-style:italic}.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.grid>div{flex:1 1 360px}.kv td{text-align:left}.kv td:first-child{font-family:'DejaVu Sans Mono',monospace;color:#444}
"""


@dataclass
class Section:
    id: str  # anchor (letters, digits, dashes)
    title: str
    blocks: list[str] = field(default_factory=list)  # HTML fragments, already escaped


def heading(text: str) -> str:
    return f"<h3>{html.escape(text)}</h3>"


def paragraph(text: str, note: bool = False) -> str:
    return f"<p{' class=note' if note else ''}>{html.escape(text)}</p>"


def table(header: list[str], rows: list[list], row_class: list[str] | None = None) -> str:
    """An HTML table; cells are escaped; ``row_class[k]`` (e.g. ``floor``) styles row k."""
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for k, r in enumerate(rows):
        cls = f" class={row_class[k]}" if row_class and row_class[k] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "".join(out)


def settings_block(groups: dict[str, dict]) -> str:
    """Side-by-side key/value tables, one per group (e.g. a node's parameters); nested dicts are flattened."""
    out = ["<div class=grid>"]
    for name, values in groups.items():
        flat = _flatten(values)
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_short(v))}</td></tr>" for k, v in flat.items())
        out.append(f"<div><h3>{html.escape(name)}</h3><table class=kv>{rows}</table></div>")
    out.append("</div>")
    return "".join(out)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v, limit: int = 90) -> str:
    s = str(v)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image(data: bytes | str | Path, caption: str = "", mime: str | None = None, width: int | None = None,
          alt: str = "") -> str:
    """An embedded picture: ``data`` is the file's bytes or its path (PNG or GIF, told by its signature)."""
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    mime = mime or ("image/gif" if data[:6] in (b"GIF87a", b"GIF89a") else "image/png")
    style = f" style='width:{width}px'" if width else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure><img alt='{html.escape(alt or caption or 'figure')}' src='{data_uri(data, mime)}'{style}>{cap}</figure>"


def short_gif(path: str | Path, max_frames: int = 40, max_side: int = 160, frame_ms: int = 100) -> bytes:
    """A rollout GIF cut to at most ``max_frames`` frames spread over the episode (its last one kept: the
    outcome) and at most ``max_side`` pixels on its longer side, as GIF bytes."""
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(im)]
    if not frames:
        raise ValueError(f"{path}: a GIF without frames")
    keep = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    frames = [frames[k] for k in keep]
    scale = min(1.0, max_side / max(frames[0].size))
    if scale < 1:
        size = (max(1, round(frames[0].width * scale)), max(1, round(frames[0].height * scale)))
        frames = [f.resize(size, Image.BILINEAR) for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return buf.getvalue()


def page(title: str, sections: list[Section], subtitle: str = "") -> str:
    """The whole page: title, a contents line linking to each section, the sections."""
    nav = " ".join(f"<a href='#{s.id}'>{html.escape(s.title)}</a>" for s in sections)
    out = ["<!doctype html><html lang=en><head><meta charset='utf-8'>",
           f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        out.append(paragraph(subtitle))
    out.append(f"<nav>{nav}</nav>")
    for s in sections:
        out.append(f"<section id='{s.id}'><h2>{html.escape(s.title)}</h2>")
        out += s.blocks
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


class _Refs(HTMLParser):
    """Collects every (tag, attribute, value) that can load something, and the ids of the page."""

    LOADING = {"src", "href", "srcset", "poster", "data", "action", "formaction", "background"}

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.style = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_style = tag == "style"
        for k, v in attrs:
            if k in self.LOADING:
                self.refs.append((tag, k, v or ""))
            if k == "id":
                self.ids.add(v or "")
            if k == "style":
                self.style.append(v or "")

    def handle_endtag(self, tag):
        self._in_style = False if tag == "style" else self._in_style

    def handle_data(self, data):
        if self._in_style:
            self.style.append(data)


def parse(text: str) -> _Refs:
    p = _Refs()
    p.feed(text)
    p.close()
    return p


def external_references(text: str) -> list[str]:
    """What in the page would load from outside it: any src/href that is neither a ``data:`` URI nor a
    link to an id of the page, ``<script>``/``<link>``/``<iframe>``/``<object>`` tags, CSS ``url(...)``
    or ``@import``. [] for a self-contained page."""
    p = parse(text)
    bad = [f"<{t}>" for t in p.tags if t in ("script", "link", "iframe", "object", "embed", "base")]
    for tag, attr, value in p.refs:
        if attr == "href" and value.startswith("#") and value[1:] in p.ids:
            continue
        if attr in ("src", "data") and value.startswith("data:"):
            continue
        bad.append(f"<{tag} {attr}={value[:60]!r}>")
    css = " ".join(p.style)
    bad += [f"css {m[:60]}" for m in re.findall(r"url\s*\([^)]*\)|@import[^;]*", css, flags=re.I)]
    return bad


def find_chromium() -> str | None:
    """The path of Debian's headless Chromium (``chromium-headless-shell``, else ``chromium``), or None."""
    for name in CHROMIUM:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1200, height: int = 3000,
               timeout: float = 90.0, chromium: str | None = None) -> Path:
    """Render ``html_path`` in headless Chromium (no network, no GPU, no sandbox: it runs as root in CI)
    to a ``width`` x ``height`` PNG. Raises RuntimeError with Chromium's last line when no PNG comes out."""
    exe = chromium or find_chromium()
    if exe is None:
        raise RuntimeError(f"no headless Chromium found ({', '.join(CHROMIUM)}): apt-get install chromium-headless-shell")
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="regconsist-chromium-") as profile:  # never the user's profile
        cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
               "--disable-extensions", "--disable-background-networking", "--proxy-server=127.0.0.1:9",
               f"--user-data-dir={profile}", f"--screenshot={png_path}", f"--window-size={width},{height}",
               html_path.as_uri()]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{Path(exe).name} did not render {html_path.name} within {timeout:.0f} s") from None
    if not png_path.is_file() or png_path.stat().st_size == 0:
        last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{Path(exe).name} wrote no screenshot of {html_path.name} (exit {r.returncode}): {last}")
    return png_path


def blank_fraction(png_path: str | Path) -> tuple[float, float]:
    """(pixel standard deviation over the grey image, fraction of rows that hold more than one value) of a
    screenshot: a blank or failed render has ~0 and ~0."""
    from PIL import Image

    with Image.open(png_path) as im:
        g = np.asarray(im.convert("L"), np.float32)  # [H, W]
    return float(g.std()), float((g.max(1) > g.min(1)).mean())


def trim_bottom(png_path: str | Path, margin: int = 16) -> int:
    """Cut the empty band below a page's end (rows of the bottom row's colour) off a screenshot, in place,
    keeping ``margin`` rows; -> the new height. A window taller than the page thus gives the whole page."""
    from PIL import Image

    with Image.open(png_path) as im:
        im.load()
    a = np.asarray(im.convert("RGB"))  # [H, W, 3]
    drawn = np.flatnonzero((a != a[-1:, :1]).any(axis=(1, 2)))
    height = min(a.shape[0], int(drawn[-1]) + 1 + margin) if drawn.size else a.shape[0]
    if height < a.shape[0]:
        im.crop((0, 0, a.shape[1], height)).save(png_path)
    return height


def check_page(html_path: str | Path, png_path: str | Path, width: int = 1200, height: int = 6000) -> dict:
    """The demo's check of its page: self-contained, and rendered by headless Chromium into a screenshot
    that is not blank (trimmed below the page's end). -> {"screenshot", "height", "pixel_std",
    "rows_with_content", "seconds"}; RuntimeError otherwise."""
    import time

    text = Path(html_path).read_text()
    bad = external_references(text)
    if bad:
        raise RuntimeError(f"{html_path} is not self-contained: {', '.join(bad[:3])}")
    t0 = time.monotonic()
    png = screenshot(html_path, png_path, width, height)
    std, rows = blank_fraction(png)
    if std < 5 or rows < 0.05:
        raise RuntimeError(f"the screenshot of {html_path} is blank (pixel std {std:.1f}, {100 * rows:.0f}% rows drawn)")
    return {"screenshot": str(png), "height": trim_bottom(png), "pixel_std": round(std, 1),
            "rows_with_content": round(rows, 3), "seconds": round(time.monotonic() - t0, 1)}
