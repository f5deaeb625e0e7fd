"""Seeded camera paths in synthetic floor plans (sim/trajectories.py)."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from regconsist_ros.sim.occupancy import OccupancyGrid
from regconsist_ros.sim.poses import validate_pose
from regconsist_ros.sim.trajectories import (
    PITCH_JITTER_DEG,
    TRAJECTORIES,
    YAW_JITTER_DEG,
    Trajectory,
    TrajectoryError,
    explore,
    grid,
    make_trajectory,
    spline,
)

RES = 0.05
FLOOR_Z = 0.3
WALL_X = (3.0, 3.1)  # the wall between the two rooms; room A is x < 3.0, room B x > 3.1


def _cell_centres(nx, ny, origin, res):
    xc = origin[0] + (np.arange(nx) + 0.5) * res
    yc = origin[1] + (np.arange(ny) + 0.5) * res
    return np.meshgrid(xc, yc)  # [NY, NX] each


def _dilate(blocked, radius_m, res):
    r = int(round(radius_m / res))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return binary_dilation(blocked, structure=(xx**2 + yy**2) <= r * r)


@pytest.fixture(scope="module")
def two_rooms() -> OccupancyGrid:
    """Two 3 x 4 m rooms joined by a 0.8 m doorway, some furniture, robot radius 0.15 m."""
    origin = (-0.1, -0.1)
    nx, ny = int(round(6.3 / RES)), int(round(4.2 / RES))
    X, Y = _cell_centres(nx, ny, origin, RES)
    blocked = (X < 0) | (X > 6.1) | (Y < 0) | (Y > 4.0)
    blocked |= (X > WALL_X[0]) & (X < WALL_X[1]) & ~((Y > 1.6) & (Y < 2.4))
    for x0, y0, x1, y1 in [(0.8, 0.8, 1.6, 1.4), (1.5, 2.8, 2.2, 3.3), (4.0, 0.5, 4.6, 1.5), (4.8, 2.6, 5.6, 3.0)]:
        blocked |= (X > x0) & (X < x1) & (Y > y0) & (Y < y1)
    return OccupancyGrid(~_dilate(blocked, 0.15, RES), RES, origin, floor_z=FLOOR_Z, clearance=0.15)


def _cluttered(seed: int, res: float = RES) -> OccupancyGrid:
    """8 x 6 m room with many random boxes and single-cell specks."""
    rng = np.random.default_rng(1000 + seed)
    nx, ny = int(round(8 / res)), int(round(6 / res))
    free = np.ones((ny, nx), dtype=bool)
    free[0, :] = free[-1, :] = free[:, 0] = free[:, -1] = False
    for _ in range(25):
        x0, y0 = rng.integers(0, nx), rng.integers(0, ny)
        w, h = rng.integers(1, int(0.8 / res), size=2)
        free[y0 : y0 + h, x0 : x0 + w] = False
    free[rng.integers(0, ny, 40), rng.integers(0, nx, 40)] = False
    return OccupancyGrid(free, res, (rng.uniform(-2, 2), rng.uniform(-2, 2)), floor_z=rng.uniform(-1, 1))


def _yaw_steps_deg(traj: Trajectory) -> np.ndarray:
    """Absolute wrapped yaw change between consecutive frames, degrees [N-1]."""
    return np.degrees(np.abs(np.angle(np.exp(1j * np.diff(traj.yaws)))))


def _steps(traj: Trajectory) -> np.ndarray:
    return np.linalg.norm(np.diff(traj.positions, axis=0), axis=1)  # [N-1]


def _segments_free(occ: OccupancyGrid, xy: np.ndarray) -> np.ndarray:
    """For consecutive positions [N, 2]: is the straight segment between them free? [N-1]"""
    out = []
    for a, b in zip(xy[:-1], xy[1:]):
        n = int(np.ceil(np.linalg.norm(b - a) / (occ.resolution / 10))) + 2
        t = np.linspace(0.0, 1.0, n)[:, None]
        out.append(bool(occ.is_free(a + t * (b - a)).all()))
    return np.asarray(out)


def _make(kind, occ, n_frames=300, seed=0, **kw):
    if kind == "grid":
        n_frames = None
    return make_trajectory(kind, occ, n_frames, seed=seed, **kw)


# ----------------------------------------------------------------------------- all kinds


@pytest.mark.parametrize("kind", TRAJECTORIES)
def test_poses_valid_free_and_at_height(two_rooms, kind):
    traj = _make(kind, two_rooms, height=1.2)
    assert traj.name == kind
    assert traj.poses.shape == (len(traj), 4, 4) and traj.poses.dtype == np.float64
    assert traj.positions.shape == (len(traj), 3) and traj.yaws.shape == (len(traj),)
    for k, T in enumerate(traj.poses):
        validate_pose(T, f"{kind}[{k}]")
    assert two_rooms.is_free(traj.positions[:, :2]).all()
    np.testing.assert_allclose(traj.positions[:, 2], FLOOR_Z + 1.2, atol=1e-12)


@pytest.mark.parametrize("kind", TRAJECTORIES)
def test_no_roll_and_camera_y_points_down(two_rooms, kind):
    traj = _make(kind, two_rooms)
    right, down = traj.poses[:, :3, 0], traj.poses[:, :3, 1]
    np.testing.assert_allclose(right[:, 2], 0.0, atol=1e-9)  # x axis stays horizontal
    assert (down[:, 2] < -0.9).all()


@pytest.mark.parametrize("kind", ["grid", "spline"])
def test_optical_convention_at_zero_pitch(two_rooms, kind):
    traj = _make(kind, two_rooms, pitch_deg=0.0)
    z_axis, y_axis = traj.poses[:, :3, 2], traj.poses[:, :3, 1]
    np.testing.assert_allclose(z_axis[:, 2], 0.0, atol=1e-12)  # looking horizontally
    np.testing.assert_allclose(y_axis, np.tile([0.0, 0.0, -1.0], (len(traj), 1)), atol=1e-12)
    np.testing.assert_allclose(traj.yaws, np.arctan2(z_axis[:, 1], z_axis[:, 0]))


@pytest.mark.parametrize("kind", ["grid", "spline"])
def test_pitch_is_applied(two_rooms, kind):
    traj = _make(kind, two_rooms, pitch_deg=-20.0)
    np.testing.assert_allclose(np.degrees(traj.pitches), -20.0, atol=1e-9)
    assert (traj.poses[:, 2, 2] < 0).all()  # looking down


def test_explore_pitch_jitter_is_small(two_rooms):
    traj = explore(two_rooms, 300, pitch_deg=-10.0)
    pitch = np.degrees(traj.pitches)
    assert np.abs(pitch + 10.0).max() <= PITCH_JITTER_DEG + 1e-9
    assert pitch.std() > 0.01  # some jitter there


@pytest.mark.parametrize("kind", TRAJECTORIES)
def test_deterministic_per_seed(two_rooms, kind):
    a = _make(kind, two_rooms, seed=7)
    b = _make(kind, two_rooms, seed=7)
    c = _make(kind, two_rooms, seed=8)
    np.testing.assert_array_equal(a.poses, b.poses)
    assert a.poses.shape != c.poses.shape or not np.allclose(a.poses, c.poses)


# ----------------------------------------------------------------------------- explore


@pytest.mark.parametrize("step,max_turn", [(0.1, 15.0), (0.25, 5.0), (0.03, 30.0)])
def test_explore_respects_step_and_turn_limits(two_rooms, step, max_turn):
    traj = explore(two_rooms, 400, seed=3, step=step, max_turn_deg=max_turn)
    assert len(traj) == 400
    assert _steps(traj).max() <= step + 1e-9
    assert _yaw_steps_deg(traj).max() <= max_turn + 1e-6
    assert _steps(traj).max() > 0.9 * step  # it does move at full speed on straight stretches


def test_explore_segments_between_frames_are_free(two_rooms):
    traj = explore(two_rooms, 600, seed=1, step=0.3)
    assert _segments_free(two_rooms, traj.positions[:, :2]).all()


def test_explore_looks_where_it_goes_and_turns_in_place(two_rooms):
    traj = explore(two_rooms, 600, seed=2)
    d = np.diff(traj.positions[:, :2], axis=0)  # [N-1, 2]
    moving = np.linalg.norm(d, axis=1) > 1e-9
    travel = np.arctan2(d[moving, 1], d[moving, 0])
    off = np.degrees(np.abs(np.angle(np.exp(1j * (travel - traj.yaws[1:][moving])))))
    assert off.max() <= YAW_JITTER_DEG + 1e-6  # only the small jitter separates the view from the travel direction
    turning_in_place = (~moving) & (_yaw_steps_deg(traj) > 5.0)
    assert turning_in_place.any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explore_covers_both_rooms(two_rooms, seed):
    x = explore(two_rooms, 600, seed=seed).positions[:, 0]
    in_a, in_b = (x < WALL_X[0]).mean(), (x > WALL_X[1]).mean()
    assert in_a > 0.15 and in_b > 0.15, (in_a, in_b)


def test_explore_on_cluttered_grids():
    for seed in range(3):
        occ = _cluttered(seed)
        traj = explore(occ, 300, seed=seed, step=0.2)
        assert occ.is_free(traj.positions[:, :2]).all()
        assert _segments_free(occ, traj.positions[:, :2]).all()
        assert _steps(traj).max() <= 0.2 + 1e-9


# ----------------------------------------------------------------------------- grid


@pytest.mark.parametrize("headings", [1, 4, 12])
def test_grid_headings_per_position(two_rooms, headings):
    traj = grid(two_rooms, seed=5, headings=headings, spacing=0.5)
    idx = np.asarray(traj.meta["position_index"])
    n_pos = idx.max() + 1
    assert len(traj) == n_pos * headings
    np.testing.assert_array_equal(idx, np.repeat(np.arange(n_pos), headings))  # consecutive blocks
    blocks = traj.positions.reshape(n_pos, headings, 3)
    np.testing.assert_allclose(blocks, np.repeat(blocks[:, :1], headings, axis=1), atol=1e-12)
    yaws = traj.yaws.reshape(n_pos, headings)
    if headings > 1:
        gaps = np.mod(np.diff(yaws, axis=1), 2 * np.pi)
        np.testing.assert_allclose(gaps, 2 * np.pi / headings, atol=1e-9)
    np.testing.assert_allclose(yaws, np.repeat(yaws[:1], n_pos, axis=0), atol=1e-9)  # common offset


def test_grid_lattice_spacing_and_serpentine_order(two_rooms):
    spacing = 0.4
    traj = grid(two_rooms, seed=2, spacing=spacing, headings=3)
    xy = traj.positions[:: 3, :2]  # one per position
    assert len(np.unique(np.round(xy, 9), axis=0)) == len(xy)
    for ax in range(2):
        k = (xy[:, ax] - xy[:, ax].min()) / spacing
        np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    rows = np.round((xy[:, 1] - xy[:, 1].min()) / spacing).astype(int)
    assert (np.diff(rows) >= 0).all()  # row by row
    row_ids = np.unique(rows)
    dirs = [np.sign(np.diff(xy[rows == r, 0])) for r in row_ids]
    dirs = [d[0] for d in dirs if len(d)]
    assert all(a == -b for a, b in zip(dirs[:-1], dirs[1:]))  # serpentine: alternate directions
    # the whole reachable floor is covered: every free lattice point of the component is used
    assert len(xy) > 0.6 * two_rooms.free.sum() * RES**2 / spacing**2


def test_grid_seed_changes_lattice_phase_and_offset(two_rooms):
    a, b = grid(two_rooms, seed=0), grid(two_rooms, seed=1)
    phase_a, phase_b = np.mod(a.positions[0, :2], 0.5), np.mod(b.positions[0, :2], 0.5)
    assert not np.allclose(phase_a, phase_b)
    assert not np.isclose(a.yaws[0], b.yaws[0])


def test_grid_n_frames_keeps_prefix(two_rooms):
    full = grid(two_rooms, seed=4)
    part = grid(two_rooms, n_frames=30, seed=4)
    assert len(part) == 30
    np.testing.assert_array_equal(part.poses, full.poses[:30])
    np.testing.assert_array_equal(part.meta["position_index"], full.meta["position_index"][:30])
    with pytest.raises(TrajectoryError, match="n_frames"):
        grid(two_rooms, n_frames=len(full) + 1, seed=4)


def test_grid_skips_blocked_lattice_points(two_rooms):
    traj = grid(two_rooms, spacing=0.1, headings=1)
    assert two_rooms.is_free(traj.positions[:, :2]).all()
    assert len(traj) < two_rooms.free.size * RES**2 / 0.1**2  # some lattice points were blocked


# ----------------------------------------------------------------------------- spline


def test_spline_is_smooth_and_evenly_stepped(two_rooms):
    step = 0.05
    traj = spline(two_rooms, 500, seed=1, step=step)
    steps = _steps(traj)
    assert steps.max() <= 1.5 * step
    assert np.median(steps) == pytest.approx(step, rel=1e-3)  # equal arc length (chords), mostly
    yaw_steps = _yaw_steps_deg(traj)
    assert yaw_steps.max() <= 10.0 + 1e-6
    d = np.diff(traj.positions[:, :2], axis=0)
    moving = np.linalg.norm(d, axis=1) > 1e-9  # [N-1]; the rest are turns in place at cusps
    assert moving.mean() > 0.7
    assert np.median(yaw_steps[moving]) < 3.0
    yaw_acc = np.abs(np.diff(np.angle(np.exp(1j * np.diff(traj.yaws)))))[moving[1:] & moving[:-1]]
    assert np.percentile(np.degrees(yaw_acc), 95) < 3.0  # no zig-zag while driving
    travel = np.arctan2(d[moving, 1], d[moving, 0])
    off = np.degrees(np.abs(np.angle(np.exp(1j * (travel - traj.yaws[1:][moving])))))
    assert np.median(off) < 10.0  # looks along the path


@pytest.mark.parametrize("seed", range(4))
def test_spline_collision_free_on_cluttered_grids(seed):
    occ = _cluttered(seed, res=[0.05, 0.02, 0.1, 0.05][seed])
    traj = spline(occ, 400, seed=seed, n_waypoints=8, step=0.1)
    xy = traj.positions[:, :2]
    assert occ.is_free(xy).all()
    assert _segments_free(occ, xy).all()
    assert _steps(traj).max() <= 0.1 * 1.5


def test_spline_short_path_goes_back_and_forth(two_rooms):
    traj = spline(two_rooms, 3000, seed=0, n_waypoints=2, step=0.05)
    assert len(traj) == 3000
    assert two_rooms.is_free(traj.positions[:, :2]).all()
    assert _steps(traj).max() <= 0.075
    assert _yaw_steps_deg(traj).max() <= 10.0 + 1e-6


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", TRAJECTORIES)
def test_zero_frames_rejected(two_rooms, kind):
    with pytest.raises(TrajectoryError, match="n_frames"):
        make_trajectory(kind, two_rooms, 0)


@pytest.mark.parametrize("kind", TRAJECTORIES)
def test_all_blocked_grid_rejected(kind):
    occ = OccupancyGrid(np.zeros((20, 20), dtype=bool), RES, (0.0, 0.0))
    with pytest.raises(TrajectoryError, match="no free cell"):
        make_trajectory(kind, occ, 10)


def test_unknown_kind_lists_kinds(two_rooms):
    with pytest.raises(TrajectoryError, match="helix") as err:
        make_trajectory("helix", two_rooms, 10)
    assert all(k in str(err.value) for k in TRAJECTORIES)


@pytest.mark.parametrize(
    "kind,kw,word",
    [
        ("explore", {"step": 0.0}, "step"),
        ("explore", {"max_turn_deg": -1.0}, "max_turn_deg"),
        ("explore", {"height": float("nan")}, "height"),
        ("grid", {"spacing": -0.5}, "spacing"),
        ("grid", {"headings": 0}, "headings"),
        ("spline", {"n_waypoints": 1}, "n_waypoints"),
        ("spline", {"pitch_deg": 95.0}, "pitch_deg"),
    ],
)
def test_bad_parameters_rejected(two_rooms, kind, kw, word):
    with pytest.raises(TrajectoryError, match=word):
        make_trajectory(kind, two_rooms, 10, **kw)


def test_single_free_cell_still_works():
    free = np.zeros((5, 5), dtype=bool)
    free[2, 2] = True
    occ = OccupancyGrid(free, 0.1, (0.0, 0.0))
    for kind in ("explore", "spline"):
        traj = make_trajectory(kind, occ, 20)
        np.testing.assert_allclose(traj.positions[:, :2], np.tile([0.25, 0.25], (20, 1)), atol=1e-12)
        assert _yaw_steps_deg(traj).max() > 0  # looks around


def test_largest_component_only():
    free = np.zeros((40, 40), dtype=bool)
    free[2:10, 2:10] = True  # small room
    free[15:38, 15:38] = True  # big room, not connected
    occ = OccupancyGrid(free, 0.1, (0.0, 0.0))
    for kind in TRAJECTORIES:
        kw = {"spacing": 0.3} if kind == "grid" else {}
        xy = _make(kind, occ, 200, seed=3, **kw).positions[:, :2]
        assert (xy >= 1.5).all(), kind
