"""Procedural, seamlessly tileable textures (numpy only, seeded).

Every generator returns a ``[S, S, 3]`` uint8 tile that repeats without seams, so meshes can use
world-scaled texture coordinates (uv 1.0 = one tile). The families are chosen so that region
segmentation and self-supervision see real texture: wood grain, woven fabric, tiles with grout,
wallpaper patterns, fractal noise (plaster, carpet, foliage), book spines, pictures, sky.
"""
from __future__ import annotations

import numpy as np

TILE = 128  # default tile size in pixels


def _periodic_upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, periodic upsampling with smoothstep weights: [g, g] -> [size, size]."""
    g = grid.shape[0]
    t = np.arange(size) * g / size
    i0 = np.floor(t).astype(int)
    f = t - i0
    f = f * f * (3 - 2 * f)  # smoothstep
    i1 = (i0 + 1) % g
    a = grid[i0][:, i0] * (1 - f)[None, :] + grid[i0][:, i1] * f[None, :]
    b = grid[i1][:, i0] * (1 - f)[None, :] + grid[i1][:, i1] * f[None, :]
    return a * (1 - f)[:, None] + b * f[:, None]


def fractal_noise(rng: np.random.Generator, size: int = TILE, base: int = 4, octaves: int = 4, gain: float = 0.5) -> np.ndarray:
    """Tileable fractal value noise in [0, 1]: [size, size] float32."""
    out = np.zeros((size, size), np.float64)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = min(base * 2**o, size)
        out += amp * _periodic_upsample(rng.random((cells, cells)), size)
        total += amp
        amp *= gain
    out /= total
    out = (out - out.min()) / max(out.max() - out.min(), 1e-9)
    return out.astype(np.float32)


def _mix(c0, c1, t: np.ndarray) -> np.ndarray:
    """Blend two RGB colours (0-255) by t [H, W] -> [H, W, 3] float."""
    c0, c1 = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return c0 + (c1 - c0) * t[..., None]


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


def _jitter(rng, color, amount=20):
    return np.clip(np.asarray(color, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def wood(rng: np.random.Generator, color=(150, 100, 60), size: int = TILE, planks: int = 4) -> np.ndarray:
    """Plank floor / furniture wood: grain rings distorted by noise, plank seams, per-plank tone."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = fractal_noise(rng, size, base=2, octaves=3)
    grain = 0.5 + 0.5 * np.sin((x * 6 + warp * 3.0) * 2 * np.pi * 3)  # periodic in x (integer freq)
    fine = fractal_noise(rng, size, base=16, octaves=2)
    plank = np.floor(y * planks).astype(int)
    tone = rng.uniform(0.8, 1.15, planks)[plank]
    seam = (np.abs(((y * planks) % 1.0) - 0.0) < 0.03).astype(np.float32)
    dark = np.asarray(color, np.float32) * 0.6
    img = _mix(dark, color, 0.55 * grain + 0.45 * fine) * tone[..., None]
    img *= (1 - 0.5 * seam)[..., None]
    return _to_u8(img)


def fabric(rng: np.random.Generator, color=(120, 120, 160), size: int = TILE, threads: int = 32) -> np.ndarray:
    """Woven fabric: interleaved warp/weft threads plus mottling."""
    threads = max(2, min(threads, size // 4))  # at least 4 texels per thread, else the weave aliases away
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = 0.5 + 0.5 * np.sin(2 * np.pi * threads * x)
    weft = 0.5 + 0.5 * np.sin(2 * np.pi * threads * y)
    checker = ((np.floor(x * threads) + np.floor(y * threads)) % 2).astype(np.float32)
    weave = checker * warp + (1 - checker) * weft
    mottle = fractal_noise(rng, size, base=4, octaves=3)
    c2 = _jitter(rng, color, 35)
    img = _mix(np.asarray(color) * 0.7, c2, 0.6 * weave + 0.4 * mottle)
    return _to_u8(img)


def tiles(rng: np.random.Generator, color=(220, 220, 225), grout=(120, 120, 120), size: int = TILE, n: int = 2) -> np.ndarray:
    """Square tiles with grout lines and per-tile colour variation."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ix, iy = np.floor(x * n).astype(int), np.floor(y * n).astype(int)
    tone = rng.uniform(0.85, 1.1, (n, n))[iy, ix]
    fx, fy = (x * n) % 1.0, (y * n) % 1.0
    line = ((fx < 0.04) | (fx > 0.96) | (fy < 0.04) | (fy > 0.96)).astype(np.float32)
    speck = fractal_noise(rng, size, base=8, octaves=3)
    base = np.asarray(color, np.float32) * tone[..., None] * (0.9 + 0.2 * speck[..., None])
    img = base * (1 - line[..., None]) + np.asarray(grout, np.float32) * line[..., None]
    return _to_u8(img)


def pattern(rng: np.random.Generator, c0=(230, 220, 200), c1=(180, 150, 120), size: int = TILE, kind: str | None = None) -> np.ndarray:
    """Wallpaper / rug patterns: stripes, checker, dots, diamonds, with a little noise."""
    kind = kind or rng.choice(["stripes", "checker", "dots", "diamonds"])
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    k = int(rng.integers(3, 7))
    if kind == "stripes":
        t = (np.sin(2 * np.pi * k * x) > 0.3).astype(np.float32)
    elif kind == "checker":
        t = ((np.floor(x * k) + np.floor(y * k)) % 2).astype(np.float32)
    elif kind == "dots":
        t = ((((x * k) % 1 - 0.5) ** 2 + ((y * k) % 1 - 0.5) ** 2) < 0.08).astype(np.float32)
    else:
        t = ((np.abs((x * k) % 1 - 0.5) + np.abs((y * k) % 1 - 0.5)) < 0.3).astype(np.float32)
    n = fractal_noise(rng, size, base=8, octaves=2)
    return _to_u8(_mix(c0, c1, t) * (0.9 + 0.2 * n[..., None]))


def noise(rng: np.random.Generator, color=(200, 200, 195), size: int = TILE, contrast: float = 0.25, base: int = 4) -> np.ndarray:
    """Plaster, concrete, carpet, foliage: fractal noise around a colour."""
    n = fractal_noise(rng, size, base=base, octaves=5)
    c = np.asarray(color, np.float32)
    return _to_u8(c * (1 - contrast + 2 * contrast * n[..., None]))


def foliage(rng: np.random.Generator, size: int = TILE) -> np.ndarray:
    """Leafy green noise with dark gaps."""
    n1 = fractal_noise(rng, size, base=8, octaves=4)
    n2 = fractal_noise(rng, size, base=16, octaves=2)
    leaf = _mix((20, 60, 20), _jitter(rng, (70, 150, 60), 25), n1)
    return _to_u8(leaf * (0.5 + 0.7 * (n2 > 0.35))[..., None])


def book_spines(rng: np.random.Generator, size: int = TILE, books: int = 8) -> np.ndarray:
    """A row of book spines (vertical bands of colour with title bands)."""
    x = np.arange(size) / size
    edges = np.sort(rng.random(books - 1))
    idx = np.searchsorted(edges, x)
    cols = rng.integers(30, 230, (books, 3)).astype(np.float32)
    img = np.repeat(cols[idx][None], size, axis=0)
    y = np.arange(size)[:, None] / size
    band = ((np.abs(y - 0.25) < 0.04) | (np.abs(y - 0.75) < 0.03)).astype(np.float32)
    img = img * (1 - 0.5 * band[..., None]) + 200 * 0.5 * band[..., None]
    return _to_u8(img * (0.9 + 0.2 * fractal_noise(rng, size, base=8, octaves=2)[..., None]))


def painting(rng: np.random.Generator, size: int = TILE) -> np.ndarray:
    """An abstract picture: a colour-field background with random discs and bars (each one unique)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = _mix(rng.integers(0, 255, 3), rng.integers(0, 255, 3), fractal_noise(rng, size, base=2, octaves=3))
    for _ in range(int(rng.integers(3, 8))):
        col = rng.integers(0, 255, 3).astype(np.float32)
        if rng.random() < 0.5:
            cx, cy, r = rng.random(), rng.random(), rng.uniform(0.05, 0.25)
            m = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        else:
            x0, y0 = rng.random(2) * 0.8
            m = (x > x0) & (x < x0 + rng.uniform(0.05, 0.3)) & (y > y0) & (y < y0 + rng.uniform(0.05, 0.5))
        img[m] = col
    return _to_u8(img)


def sky(rng: np.random.Generator, size: int = TILE) -> np.ndarray:
    """Outdoor view for windows: sky gradient with clouds over a band of distant greenery."""
    y = np.mgrid[0:size, 0:size][0].astype(np.float32) / size
    clouds = fractal_noise(rng, size, base=4, octaves=4)
    img = _mix((110, 160, 230), (190, 215, 245), y)
    img = _mix_img(img, np.full_like(img, 245), np.clip((clouds - 0.55) * 3, 0, 1) * (y < 0.65))
    trees = fractal_noise(rng, size, base=8, octaves=3)
    green = (y > 0.65 - 0.1 * trees).astype(np.float32)
    img = _mix_img(img, _mix((30, 80, 30), (90, 140, 60), trees), green)
    return _to_u8(img)


def _mix_img(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t[..., None]


def screen(rng: np.random.Generator, size: int = TILE) -> np.ndarray:
    """A switched-off TV screen: near-black with faint reflections."""
    n = fractal_noise(rng, size, base=2, octaves=3)
    return _to_u8(_mix((10, 10, 14), (60, 62, 70), n * 0.6))


def metal(rng: np.random.Generator, color=(190, 190, 195), size: int = TILE) -> np.ndarray:
    """Brushed metal / ceramic: fine streaks along u."""
    streak = _periodic_upsample(rng.random((4, 64)).repeat(16, 0)[:64, :64], size)
    n = fractal_noise(rng, size, base=4, octaves=2)
    return _to_u8(np.asarray(color, np.float32) * (0.85 + 0.1 * streak + 0.1 * n)[..., None])


def clock_face(rng: np.random.Generator, size: int = TILE) -> np.ndarray:
    """A clock dial: light disc, dark rim, tick marks and two hands."""
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size - 0.5
    r, a = np.hypot(x, y), np.arctan2(y, x)
    img = np.full((size, size, 3), 235, np.float32)
    img[r > 0.45] = (40, 40, 40)
    ticks = (r > 0.36) & (r < 0.43) & (np.abs(((a / (2 * np.pi) * 12) % 1) - 0.5) > 0.45)
    img[ticks] = (20, 20, 20)
    for ang, length in ((rng.uniform(0, 2 * np.pi), 0.25), (rng.uniform(0, 2 * np.pi), 0.38)):
        d = np.abs(x * np.sin(ang) - y * np.cos(ang))
        along = x * np.cos(ang) + y * np.sin(ang)
        img[(d < 0.015) & (along > 0) & (along < length)] = (10, 10, 10)
    return _to_u8(img)
