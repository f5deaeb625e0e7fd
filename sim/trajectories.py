"""Seeded, reproducible camera paths for a robot moving in a floor plan.

Every generator takes an :class:`~regconsist_ros.sim.occupancy.OccupancyGrid` (free space already dilated by the
robot radius) and returns a :class:`Trajectory` of optical-frame ``T_world_cam`` poses (x right,
y down, z forward; world Z-up) at ``floor_z + height``:

- :func:`explore` - a robot wandering between random far / rarely visited goals along shortest
  8-connected paths, at most ``step`` metres and ``max_turn_deg`` of yaw per frame;
- :func:`grid` - an Active-Vision-Dataset-like lattice of positions with ``headings`` evenly spaced
  yaws at each one (serpentine order);
- :func:`spline` - a smooth centripetal Catmull-Rom path through random waypoints, resampled at
  equal arc length.

All randomness comes from ``np.random.default_rng(seed)``: the same arguments give identical
arrays. Every camera position lies on a free cell of the largest connected free component, and the
straight segment between consecutive explore / spline positions stays in free space (checked
exactly against the cells it crosses). :func:`make_trajectory` dispatches on a kind name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from regconsist_ros.sim.occupancy import OccupancyGrid
from regconsist_ros.sim.poses import camera_from_yaw_pitch

TRAJECTORIES = ("explore", "grid", "spline")

MAX_ABS_PITCH_DEG = 80.0  # keeps look-at cameras away from the degenerate straight up/down view
YAW_JITTER_DEG = 4.0  # explore: bound of the smooth seeded yaw jitter around the travel direction
PITCH_JITTER_DEG = 3.0  # explore: bound of the smooth seeded pitch jitter around pitch_deg
_CORNER_EPS = 1e-6  # cells: points this close to a cell edge also count the neighbouring cell


class TrajectoryError(ValueError):
    """Bad trajectory parameters, or a floor plan with nowhere to stand."""


@dataclass
class Trajectory:
    """A named camera path: ``poses`` [N, 4, 4] float64 ``T_world_cam`` (optical convention)."""

    name: str
    poses: np.ndarray  # [N, 4, 4] float64
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.poses = np.asarray(self.poses, dtype=np.float64)
        if self.poses.ndim != 3 or self.poses.shape[1:] != (4, 4):
            raise TrajectoryError(f"Trajectory.poses must be [N, 4, 4], got {self.poses.shape}")

    def __len__(self) -> int:
        return int(self.poses.shape[0])

    @property
    def positions(self) -> np.ndarray:
        """Camera centres in the world [N, 3]."""
        return self.poses[:, :3, 3].copy()

    @property
    def yaws(self) -> np.ndarray:
        """Heading of the viewing direction (rad, from +x towards +y, in (-pi, pi]) [N]."""
        fwd = self.poses[:, :3, 2]  # [N, 3] optical z axis in the world
        return np.arctan2(fwd[:, 1], fwd[:, 0])

    @property
    def pitches(self) -> np.ndarray:
        """Elevation of the viewing direction (rad, positive looks up) [N]."""
        fwd = self.poses[:, :3, 2]  # [N, 3]
        return np.arcsin(np.clip(fwd[:, 2], -1.0, 1.0))


# ----------------------------------------------------------------------------- parameter checks


def _check_n_frames(n_frames, allow_none: bool = False) -> int | None:
    if n_frames is None and allow_none:
        return None
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise TrajectoryError(f"n_frames must be an integer >= 1, got {n_frames!r}")
    return int(n_frames)


def _check_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TrajectoryError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise TrajectoryError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _check_pitch(pitch_deg) -> float:
    try:
        p = float(pitch_deg)
    except (TypeError, ValueError):
        raise TrajectoryError(f"pitch_deg must be a number, got {pitch_deg!r}") from None
    if not math.isfinite(p) or abs(p) > MAX_ABS_PITCH_DEG:
        raise TrajectoryError(f"pitch_deg must be within +-{MAX_ABS_PITCH_DEG:g} degrees, got {pitch_deg!r}")
    return p


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TrajectoryError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- grid graph


def _grid_graph(free: np.ndarray, res: float) -> csr_matrix:
    """8-connected graph over all cells (index iy * NX + ix) with metric edge costs.

    Diagonal moves need both orthogonal neighbours free (no corner cutting).
    """
    ny, nx = free.shape
    idx = np.arange(ny * nx).reshape(ny, nx)  # [NY, NX]
    rows, cols, costs = [], [], []
    for dx, dy in ((1, 0), (0, 1), (1, 1), (1, -1)):  # the other four are the reverse edges
        ys = slice(max(0, -dy), ny - max(0, dy))
        xs = slice(0, nx - dx)
        ys2 = slice(max(0, dy), ny - max(0, -dy))
        xs2 = slice(dx, nx)
        ok = free[ys, xs] & free[ys2, xs2]  # [ny', nx'] both ends free
        if dx and dy:
            ok &= free[ys, xs2] & free[ys2, xs]  # the two cells the diagonal passes between
        a, b = idx[ys, xs][ok], idx[ys2, xs2][ok]
        c = res * (math.sqrt(2.0) if dx and dy else 1.0)
        rows += [a, b]
        cols += [b, a]
        costs += [np.full(a.size, c), np.full(a.size, c)]
    rows, cols, costs = np.concatenate(rows), np.concatenate(cols), np.concatenate(costs)
    return csr_matrix((costs, (rows, cols)), shape=(ny * nx, ny * nx))


@dataclass
class _Space:
    """The largest connected free component of a floor plan and its path graph."""

    occ: OccupancyGrid
    graph: csr_matrix
    mask: np.ndarray  # [NY, NX] bool: cells of the largest component
    cells: np.ndarray  # [M, 2] int (ix, iy) of the component, row-major order

    @property
    def nx(self) -> int:
        return self.mask.shape[1]


def _largest_component(occ: OccupancyGrid) -> _Space:
    """Path graph + largest component (by cell count; ties go to the lowest cell index)."""
    if not occ.free.any():
        raise TrajectoryError(f"occupancy grid {occ.free.shape} has no free cell: nowhere to place the camera")
    graph = _grid_graph(occ.free, occ.resolution)
    _, labels = connected_components(graph, directed=False)
    labels = labels.reshape(occ.free.shape)  # [NY, NX]
    counts = np.bincount(labels[occ.free])
    mask = occ.free & (labels == int(np.argmax(counts)))
    iy, ix = np.nonzero(mask)
    return _Space(occ, graph, mask, np.stack([ix, iy], axis=1))


def _shortest_from(space: _Space, cell) -> tuple[np.ndarray, np.ndarray]:
    """Dijkstra from cell (ix, iy): (distance [NY, NX] in metres, predecessor [NY*NX])."""
    src = int(cell[1]) * space.nx + int(cell[0])
    dist, pred = dijkstra(space.graph, directed=True, indices=src, return_predecessors=True)
    return dist.reshape(space.mask.shape), pred


def _path_to(space: _Space, pred: np.ndarray, goal) -> np.ndarray:
    """Cells (ix, iy) [K, 2] from the Dijkstra source to ``goal`` (both included)."""
    node = int(goal[1]) * space.nx + int(goal[0])
    out = [node]
    while pred[node] >= 0:
        node = int(pred[node])
        out.append(node)
    out = np.asarray(out[::-1])
    return np.stack([out % space.nx, out // space.nx], axis=1)


# ----------------------------------------------------------------------------- free-space tests


def _points_free(space: _Space, xy) -> np.ndarray:
    """World (x, y) [..., 2] -> bool [...]: inside the largest component."""
    c = space.occ.to_cell(xy)
    ny, nx = space.mask.shape
    inside = (c[..., 0] >= 0) & (c[..., 0] < nx) & (c[..., 1] >= 0) & (c[..., 1] < ny)
    out = np.zeros(c.shape[:-1], dtype=bool)
    out[inside] = space.mask[c[..., 1][inside], c[..., 0][inside]]
    return out


def _segment_free(space: _Space, a, b) -> bool:
    """True if every cell the segment a -> b (world xy) touches is in the component.

    Exact: the segment is cut where it crosses cell edges; the cell of every piece is tested, and
    at each crossing all cells sharing that point (so passing through a cell corner requires all
    cells around the corner to be free).
    """
    occ = space.occ
    u0 = (np.asarray(a, dtype=np.float64) - np.asarray(occ.origin)) / occ.resolution  # [2] cell units
    u1 = (np.asarray(b, dtype=np.float64) - np.asarray(occ.origin)) / occ.resolution
    d = u1 - u0
    ts = [np.array([0.0, 1.0])]
    for ax in range(2):
        if abs(d[ax]) > 1e-12:
            lo, hi = sorted((u0[ax], u1[ax]))
            ks = np.arange(math.ceil(lo), math.floor(hi) + 1, dtype=np.float64)
            ts.append((ks - u0[ax]) / d[ax])
    t = np.unique(np.clip(np.concatenate(ts), 0.0, 1.0))  # [T]
    t = np.concatenate([t, 0.5 * (t[1:] + t[:-1])])
    pts = u0 + t[:, None] * d  # [P, 2]
    e = _CORNER_EPS
    offs = np.array([[0, 0], [e, e], [e, -e], [-e, e], [-e, -e]])  # [5, 2]
    cells = np.floor(pts[:, None, :] + offs[None]).reshape(-1, 2).astype(np.int64)  # [5P, 2]
    ny, nx = space.mask.shape
    if (cells < 0).any() or (cells[:, 0] >= nx).any() or (cells[:, 1] >= ny).any():
        return False
    return bool(space.mask[cells[:, 1], cells[:, 0]].all())


def _simplify(space: _Space, pts: np.ndarray) -> np.ndarray:
    """Greedy line-of-sight shortcutting of a free polyline [K, 2] -> [K', 2] (ends kept)."""
    out = [pts[0]]
    i = 0
    while i < len(pts) - 1:
        j = i + 1
        while j + 1 < len(pts) and _segment_free(space, pts[i], pts[j + 1]):
            j += 1
        out.append(pts[j])
        i = j
    return np.asarray(out)


# ----------------------------------------------------------------------------- pose assembly


def _poses(xy: np.ndarray, z: float, yaws: np.ndarray, pitches: np.ndarray) -> np.ndarray:
    """Positions [N, 2] + yaw [N] + pitch [N] (rad) -> T_world_cam [N, 4, 4]."""
    out = np.empty((len(xy), 4, 4))
    for k in range(len(xy)):
        out[k] = camera_from_yaw_pitch((xy[k, 0], xy[k, 1], z), float(yaws[k]), float(pitches[k]))
    return out


def _wrap(a):
    """Angle(s) -> (-pi, pi]."""
    return np.pi - np.mod(np.pi - np.asarray(a, dtype=np.float64), 2 * np.pi)


def _smooth_noise(rng: np.random.Generator, n: int, amplitude: float, max_rate: float) -> np.ndarray:
    """Seeded smooth jitter [n] with |value| <= amplitude and |change per frame| <= max_rate."""
    w = rng.uniform(0.03, 0.1, size=2)  # rad / frame
    phase = rng.uniform(0.0, 2 * np.pi, size=2)
    a = min(amplitude / 2, max_rate / (2 * float(w.max())))  # two terms: |d/dk| <= sum a * w
    k = np.arange(n)[:, None]  # [n, 1]
    return a * np.sin(w[None] * k + phase[None]).sum(axis=1)


def _rate_limit(target: np.ndarray, max_step: float) -> np.ndarray:
    """Follow an unwrapped angle sequence [N], changing by at most ``max_step`` per frame."""
    out = np.empty_like(target)
    out[0] = target[0]
    for k in range(1, len(target)):
        out[k] = out[k - 1] + np.clip(target[k] - out[k - 1], -max_step, max_step)
    return out


def _random_cell(space: _Space, rng: np.random.Generator) -> np.ndarray:
    return space.cells[rng.integers(len(space.cells))]


# ----------------------------------------------------------------------------- explore


def _pick_goal(space, rng, dist, visits, block) -> np.ndarray | None:
    """Random component cell, weighted by path distance and 1 / (1 + visits of its block)^2."""
    c = space.cells  # [M, 2]
    d = dist[c[:, 1], c[:, 0]]  # [M]
    w = d / (1.0 + visits[c[:, 1] // block, c[:, 0] // block]) ** 2
    total = w.sum()
    if not np.isfinite(total) or total <= 0:
        return None
    return c[rng.choice(len(c), p=w / total)]


def explore(
    occ: OccupancyGrid,
    n_frames: int,
    seed: int = 0,
    height: float = 1.0,
    step: float = 0.1,
    max_turn_deg: float = 15.0,
    pitch_deg: float = -10.0,
) -> Trajectory:
    """A robot exploring the largest free component at camera height ``floor_z + height``.

    It starts on a random cell, repeatedly picks a goal (far and rarely visited regions are
    preferred), follows the shortest 8-connected path (line-of-sight shortcut) translating at most
    ``step`` metres per frame and turning at most ``max_turn_deg`` per frame (in place first when
    the turn is larger). Small smooth seeded yaw / pitch jitter is added within the turn budget.
    """
    n = _check_n_frames(n_frames)
    z = occ.floor_z + _check_positive("height", height)
    step = _check_positive("step", step)
    max_turn = math.radians(_check_positive("max_turn_deg", max_turn_deg))
    if max_turn > np.pi:
        raise TrajectoryError(f"max_turn_deg must be <= 180, got {max_turn_deg!r}")
    pitch = math.radians(_check_pitch(pitch_deg))
    rng = np.random.default_rng(seed)
    space = _largest_component(occ)

    jitter_rate = 0.2 * max_turn  # part of the per-frame turn budget left to the jitter
    turn = max_turn - jitter_rate
    block = max(1, int(round(1.0 / occ.resolution)))  # ~1 m visit-count blocks
    visits = np.zeros((-(-space.mask.shape[0] // block), -(-space.mask.shape[1] // block)))

    cell = _random_cell(space, rng)
    pos = occ.to_world(cell)  # [2]
    heading = rng.uniform(-np.pi, np.pi)
    xy, head = [pos], [heading]  # per frame
    visits[cell[1] // block, cell[0] // block] += 1

    def emit(p, h):
        xy.append(p)
        head.append(h)
        c = occ.to_cell(p)
        visits[c[1] // block, c[0] // block] += 1

    while len(xy) < n:
        dist, pred = _shortest_from(space, occ.to_cell(pos))
        goal = _pick_goal(space, rng, dist, visits, block)
        if goal is None:  # a single-cell component: look around in place
            heading += turn
            emit(pos, heading)
            continue
        path = _simplify(space, occ.to_world(_path_to(space, pred, goal)))  # [K, 2]
        for target in path[1:]:
            while len(xy) < n:
                delta = target - pos
                dlen = float(np.hypot(*delta))
                if dlen < 1e-12:
                    break
                diff = float(_wrap(math.atan2(delta[1], delta[0]) - heading))
                if abs(diff) > turn:  # rotate in place first
                    heading += math.copysign(turn, diff)
                    emit(pos, heading)
                    continue
                heading += diff
                pos = target.copy() if dlen <= step else pos + delta * (step / dlen)
                emit(pos, heading)

    xy = np.asarray(xy)  # [N, 2]
    yaws = np.asarray(head) + _smooth_noise(rng, n, math.radians(YAW_JITTER_DEG), jitter_rate)  # [N]
    pitches = pitch + _smooth_noise(rng, n, math.radians(PITCH_JITTER_DEG), math.radians(0.5))  # [N]
    pitches = np.clip(pitches, -math.radians(MAX_ABS_PITCH_DEG), math.radians(MAX_ABS_PITCH_DEG))
    return Trajectory("explore", _poses(xy, z, yaws, pitches), {"seed": seed})


# ----------------------------------------------------------------------------- grid


def _lattice(space: _Space, rng: np.random.Generator, spacing: float) -> np.ndarray:
    """Free lattice points [P, 2] with a seeded phase, in serpentine row order."""
    occ = space.occ
    ny, nx = space.mask.shape
    phase = rng.uniform(0.0, spacing, size=2)  # [2]
    xs = occ.origin[0] + phase[0] + spacing * np.arange(int(nx * occ.resolution / spacing) + 1)
    ys = occ.origin[1] + phase[1] + spacing * np.arange(int(ny * occ.resolution / spacing) + 1)
    rows = []
    for r, y in enumerate(ys):
        row = np.stack([xs if r % 2 == 0 else xs[::-1], np.full(len(xs), y)], axis=1)  # [NXL, 2]
        rows.append(row[_points_free(space, row)])
    return np.concatenate(rows, axis=0)


def grid(
    occ: OccupancyGrid,
    n_frames: int | None = None,
    seed: int = 0,
    spacing: float = 0.5,
    headings: int = 12,
    height: float = 1.0,
    pitch_deg: float = 0.0,
) -> Trajectory:
    """Active-Vision-Dataset-like capture: a lattice of positions ``spacing`` metres apart (seeded
    phase) on free cells of the largest component, each seen at ``headings`` evenly spaced yaws
    (seeded common offset). Positions are in serpentine row order, the headings of one position are
    consecutive; ``n_frames`` (if given) keeps the first frames. ``meta["position_index"]`` [N]
    gives each frame's position, ``meta["lattice"]`` [P, 2] the positions' world (x, y).
    """
    n = _check_n_frames(n_frames, allow_none=True)
    spacing = _check_positive("spacing", spacing)
    h = _check_int("headings", headings, 1)
    z = occ.floor_z + _check_positive("height", height)
    pitch = math.radians(_check_pitch(pitch_deg))
    rng = np.random.default_rng(seed)
    space = _largest_component(occ)

    lattice = _lattice(space, rng, spacing)  # [P, 2]
    if len(lattice) == 0:
        raise TrajectoryError(f"no lattice point with spacing={spacing} m falls on a free cell; use a smaller spacing")
    offset = rng.uniform(0.0, 2 * np.pi / h)
    yaw_set = offset + 2 * np.pi * np.arange(h) / h  # [H]
    position_index = np.repeat(np.arange(len(lattice)), h)  # [P*H]
    yaws = np.tile(yaw_set, len(lattice))  # [P*H]
    if n is not None:
        if n > len(yaws):
            raise TrajectoryError(
                f"n_frames={n} exceeds the {len(yaws)} grid frames ({len(lattice)} positions x {h} headings)"
            )
        position_index, yaws = position_index[:n], yaws[:n]
    xy = lattice[position_index]  # [N, 2]
    poses = _poses(xy, z, yaws, np.full(len(yaws), pitch))
    meta = {"seed": seed, "position_index": position_index, "lattice": lattice, "spacing": spacing}
    return Trajectory("grid", poses, meta)


# ----------------------------------------------------------------------------- spline


def _catmull_rom(ctrl: np.ndarray, seg: int, n: int) -> np.ndarray:
    """Centripetal Catmull-Rom segment ``seg`` (ctrl[seg] -> ctrl[seg+1]) sampled at n points [n, 2].

    End segments use mirrored phantom points.
    """
    ext = np.concatenate([2 * ctrl[:1] - ctrl[1:2], ctrl, 2 * ctrl[-1:] - ctrl[-2:-1]])  # [M+2, 2]
    p = ext[seg : seg + 4]  # [4, 2]
    gaps = np.maximum(np.linalg.norm(np.diff(p, axis=0), axis=1) ** 0.5, 1e-9)  # [3]
    t0, t1, t2, t3 = np.concatenate([[0.0], np.cumsum(gaps)])
    t = np.linspace(t1, t2, n)[:, None]  # [n, 1]
    a1 = ((t1 - t) * p[0] + (t - t0) * p[1]) / (t1 - t0)
    a2 = ((t2 - t) * p[1] + (t - t1) * p[2]) / (t2 - t1)
    a3 = ((t3 - t) * p[2] + (t - t2) * p[3]) / (t3 - t2)
    b1 = ((t2 - t) * a1 + (t - t0) * a2) / (t2 - t0)
    b2 = ((t3 - t) * a2 + (t - t1) * a3) / (t3 - t1)
    return ((t2 - t) * b1 + (t - t1) * b2) / (t2 - t1)


class _Polyline:
    """A path [K, 2] parametrised by arc length."""

    def __init__(self, pts: np.ndarray):
        keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-12])
        self.pts = pts[keep]  # [K, 2]
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.pts, axis=0), axis=1))])  # [K]
        self.length = float(self.s[-1])

    def at(self, s) -> np.ndarray:
        """Points at arc lengths s [S] -> [S, 2]."""
        s = np.asarray(s, dtype=np.float64)
        return np.stack([np.interp(s, self.s, self.pts[:, 0]), np.interp(s, self.s, self.pts[:, 1])], axis=-1)

    def between(self, a: float, b: float, spacing: float) -> np.ndarray:
        """Points from arc length a to b: every vertex in between, densified to ``spacing`` [S, 2]."""
        n = max(2, int(math.ceil((b - a) / spacing)) + 1)
        inner = self.s[(self.s > a) & (self.s < b)]
        return self.at(np.unique(np.concatenate([np.linspace(a, b, n), inner])))


def _waypoint_path(space: _Space, rng: np.random.Generator, n_waypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """Shortest paths through random distinct waypoints: (world path [K, 2], waypoint indices into it)."""
    m = len(space.cells)
    order = rng.choice(m, size=min(n_waypoints, m), replace=False)
    if len(order) < n_waypoints:  # tiny component: revisit cells, never twice in a row
        order = np.resize(order, n_waypoints)
    cells = space.cells[order]  # [W, 2]
    path, joins = [cells[:1]], [0]
    for a, b in zip(cells[:-1], cells[1:]):
        _, pred = _shortest_from(space, a)
        leg = _path_to(space, pred, b)  # [L, 2]
        path.append(leg[1:])
        joins.append(joins[-1] + len(leg) - 1)
    return space.occ.to_world(np.concatenate(path)), np.asarray(joins)


def _initial_controls(line: _Polyline, join_s: np.ndarray, spacing: float, res: float) -> np.ndarray:
    """Control arc lengths: every ~``spacing`` metres plus the waypoints [C]."""
    even = np.linspace(0.0, line.length, max(2, int(math.ceil(line.length / spacing)) + 1))
    near_join = np.abs(even[:, None] - join_s[None]).min(axis=1) < res  # [E]
    return np.unique(np.concatenate([even[~near_join], join_s, [0.0, line.length]]))


class _SplinePath:
    """Catmull-Rom through polyline points at control arc lengths; some segments may stay linear."""

    def __init__(self, space: _Space, line: _Polyline, ctrl_s: np.ndarray):
        self.space, self.line = space, line
        self.ctrl_s = ctrl_s  # [C]
        self.linear = np.zeros(len(ctrl_s) - 1, dtype=bool)  # [C-1]
        self.dense_spacing = 0.2 * space.occ.resolution

    def segment(self, i: int) -> np.ndarray:
        """Dense points of segment i [S, 2] (both ends included)."""
        a, b = self.ctrl_s[i], self.ctrl_s[i + 1]
        if self.linear[i]:
            return self.line.between(a, b, self.dense_spacing)
        ctrl = self.line.at(self.ctrl_s)  # [C, 2]
        chord = float(np.linalg.norm(ctrl[i + 1] - ctrl[i]))
        return _catmull_rom(ctrl, i, max(8, int(math.ceil(3 * chord / self.dense_spacing))))

    def bad_segments(self) -> list[int]:
        return [i for i in range(len(self.linear)) if not _points_free(self.space, self.segment(i)).all()]

    def refine(self, bad: list[int], spacing: float | None) -> None:
        """Add control points inside the bad segments (every ``spacing`` m, or at every path vertex
        when None); bad segments that cannot be refined become linear."""
        new, linear_s = [], []
        for i in bad:
            a, b = self.ctrl_s[i], self.ctrl_s[i + 1]
            if spacing is None:
                extra = self.line.s[(self.line.s > a + 1e-9) & (self.line.s < b - 1e-9)]
            else:
                extra = np.linspace(a, b, max(2, int(math.ceil((b - a) / spacing)) + 1))[1:-1]
            if len(extra):
                new.append(extra)
            else:
                linear_s.append(0.5 * (a + b))
        old_s, old_linear = self.ctrl_s, self.linear
        self.ctrl_s = np.unique(np.concatenate([old_s, *new]))
        mids = 0.5 * (self.ctrl_s[1:] + self.ctrl_s[:-1])  # [C'-1] inherit flags from the old segments
        self.linear = old_linear[np.clip(np.searchsorted(old_s, mids) - 1, 0, len(old_linear) - 1)]
        for s in linear_s:
            self.linear[np.searchsorted(self.ctrl_s, s) - 1] = True

    def dense(self) -> np.ndarray:
        """The whole curve [D, 2]."""
        segs = [self.segment(i) for i in range(len(self.linear))]
        return np.concatenate([segs[0]] + [s[1:] for s in segs[1:]])


def _fit_free_spline(space: _Space, line: _Polyline, ctrl_s: np.ndarray, ctrl_spacing: float) -> _SplinePath:
    """Fit, then refine segments leaving free space; what still leaves it falls back to the path."""
    curve = _SplinePath(space, line, ctrl_s)
    for spacing in (ctrl_spacing / 2, ctrl_spacing / 4, None):
        bad = curve.bad_segments()
        if not bad:
            return curve
        curve.refine(bad, spacing)
    curve.linear[curve.bad_segments()] = True  # linear segments keep the neighbours' shapes
    return curve


def _resample_free(space: _Space, curve: np.ndarray, step: float, halvings: int = 10) -> np.ndarray:
    """Walk a free dense curve [D, 2] in ``step`` arc-length strides -> positions [S, 2].

    A stride whose end or chord leaves free space is halved; after ``halvings`` tries the walk
    moves to the next dense (free) curve point instead.
    """
    line = _Polyline(curve)
    out = [line.pts[0]]
    s = 0.0
    while s < line.length - 1e-9:
        ds = step
        for _ in range(halvings):
            s2 = min(s + ds, line.length)
            q = line.at(s2)
            if _points_free(space, q) and _segment_free(space, out[-1], q):
                break
            ds *= 0.5
        else:
            nxt = int(np.searchsorted(line.s, s, side="right"))
            s2, q = float(line.s[nxt]), line.pts[nxt]
        out.append(q)
        s = s2
    return np.asarray(out)


def _ping_pong(xy: np.ndarray, n: int) -> np.ndarray:
    """Positions [S, 2] walked forward, back, forward ... until at least n of them [>= n, 2]."""
    out, count, forward = [xy], len(xy), False
    while count < n and len(xy) > 1:
        out.append((xy if forward else xy[::-1])[1:])
        count += len(xy) - 1
        forward = not forward
    return np.concatenate(out)


def _headings(xy: np.ndarray, max_turn: float, sigma: float, split: float) -> tuple[np.ndarray, np.ndarray]:
    """Yaw along the travel direction for positions [S, 2] -> (positions [S', 2], unwrapped yaw [S']).

    Stretches between kinks sharper than ``split`` (rad per frame: cusps, path reversals) are
    smoothed separately (Gaussian, ``sigma`` frames); at each kink the camera turns in place by at
    most ``max_turn`` per frame (extra frames at the kink position).
    """
    d = np.diff(xy, axis=0)  # [S-1, 2] towards the next position
    yaw = np.unwrap(np.append(np.arctan2(d[:, 1], d[:, 0]), math.atan2(d[-1, 1], d[-1, 0])))  # [S]
    cuts = np.nonzero(np.abs(np.diff(yaw)) > split)[0] + 1  # first frame of each new stretch
    out_xy, out_yaw, prev = [], [], None
    for idx in np.split(np.arange(len(xy)), cuts):
        y = gaussian_filter1d(yaw[idx], sigma, mode="nearest")
        if prev is not None:
            y = y + 2 * np.pi * np.round((prev - y[0]) / (2 * np.pi))  # turn the short way round
            m = max(0, int(math.ceil(abs(y[0] - prev) / max_turn)) - 1)  # in-place frames
            out_xy.append(np.repeat(xy[idx[:1]], m, axis=0))
            out_yaw.append(prev + (y[0] - prev) * np.arange(1, m + 1) / (m + 1))
        out_xy.append(xy[idx])
        out_yaw.append(y)
        prev = y[-1]
    return np.concatenate(out_xy), np.concatenate(out_yaw)


def spline(
    occ: OccupancyGrid,
    n_frames: int,
    seed: int = 0,
    height: float = 1.0,
    n_waypoints: int = 6,
    step: float = 0.05,
    pitch_deg: float = -5.0,
    control_spacing: float = 0.75,
    max_turn_deg: float = 10.0,
) -> Trajectory:
    """A smooth path: shortest paths through ``n_waypoints`` random cells, a centripetal
    Catmull-Rom spline through control points every ``control_spacing`` metres of it (refined, or
    replaced by the path, where it would leave free space), walked in ``step`` metre strides with
    the yaw along the smoothed travel direction (at most ``max_turn_deg`` per frame; at cusps and
    kinks sharper than 60 degrees the camera stops and turns in place). A path shorter than needed
    is walked back and forth.
    """
    n = _check_n_frames(n_frames)
    z = occ.floor_z + _check_positive("height", height)
    w = _check_int("n_waypoints", n_waypoints, 2)
    step = _check_positive("step", step)
    pitch = math.radians(_check_pitch(pitch_deg))
    ctrl_spacing = _check_positive("control_spacing", control_spacing)
    max_turn = math.radians(_check_positive("max_turn_deg", max_turn_deg))
    rng = np.random.default_rng(seed)
    space = _largest_component(occ)

    path, joins = _waypoint_path(space, rng, w)  # [K, 2], [W]
    line = _Polyline(path)
    meta = {"seed": seed, "waypoints": path[joins], "linear_segments": 0}
    if line.length < 1e-9:  # one-cell component: look around in place
        yaws = rng.uniform(-np.pi, np.pi) + 0.5 * max_turn * np.arange(n)
        return Trajectory("spline", _poses(np.repeat(path[:1], n, axis=0), z, yaws, np.full(n, pitch)), meta)

    join_s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])[joins]  # [W]
    curve = _fit_free_spline(space, line, _initial_controls(line, join_s, ctrl_spacing, occ.resolution), ctrl_spacing)
    meta["linear_segments"] = int(curve.linear.sum())
    xy = _resample_free(space, curve.dense(), step)  # [S, 2]
    xy, yaw = _headings(_ping_pong(xy, n), max_turn, sigma=max(1.0, 0.15 / step), split=math.radians(60.0))
    xy, yaw = xy[:n], _rate_limit(yaw[:n], max_turn)  # [n, 2], [n]
    return Trajectory("spline", _poses(xy, z, yaw, np.full(n, pitch)), meta)


# ----------------------------------------------------------------------------- dispatch


_GENERATORS = {"explore": explore, "grid": grid, "spline": spline}


def make_trajectory(kind: str, occ: OccupancyGrid, n_frames: int | None, seed: int = 0, **kw) -> Trajectory:
    """Build a trajectory by kind name (one of :data:`TRAJECTORIES`); extra keywords go through."""
    if kind not in _GENERATORS:
        raise TrajectoryError(f"unknown trajectory kind {kind!r}; expected one of {', '.join(TRAJECTORIES)}")
    return _GENERATORS[kind](occ, n_frames, seed=seed, **kw)
