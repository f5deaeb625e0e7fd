"""`regconsist bench odometry`: RGB-D odometry against ground truth (docs/odometry.md).

For each embedded-world case (world x camera path, rendered with ground truth) and each odometry
method: the trajectory errors as the TUM RGB-D benchmark defines them (ATE after a rigid
alignment; RPE per frame and per second, translational and rotational), the frames tracked and
dropped by reason, the time per frame, and the accuracy of view-pair correspondences built with
the estimated poses (:func:`regconsist_ros.registration.geometry.correspond`) against where the
true poses put the same pixels. Then the same on the real samples in ``--data`` (the team's
``../shared/data``): Redwood (5 frames; its ``odometry.log`` is itself an estimate, so the figures
are agreement, not error) and OpenLORIS (4 frames; camera ground truth from the 2D base pose and the
base-to-camera extrinsic).
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from regconsist_ros.bench import machine

# "hard" is the project's evaluation world (docs/world.md), moving objects included; "hard_static" the same
# without them (registration and odometry assume a static scene)
WORLDS = {"default": {}, "hard": {"world": "hard"},
          "hard_static": {"shared_textures": True, "lighting": 1.0, "clutter": 1.0}}
SIM_CASES = {"spline": {"trajectory": "spline", "step": 0.05}, "explore": {"trajectory": "explore", "step": 0.1}}


def _r(v, nd=4):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), nd)


def _project(uv1: np.ndarray, depth1: np.ndarray, K, T_2_1: np.ndarray) -> np.ndarray:
    """[N, 2] pixels (x, y) of view 1 with their depth -> [N, 2] where ``T_2_1`` puts them in view 2."""
    x, y = uv1[:, 0].astype(np.int64), uv1[:, 1].astype(np.int64)
    z = depth1[y, x].astype(np.float64)
    P = np.stack([(x - K.cx) / K.fx * z, (y - K.cy) / K.fy * z, z])  # [3, N]
    Q = T_2_1[:3, :3] @ P + T_2_1[:3, 3:4]
    return np.stack([K.fx * Q[0] / Q[2] + K.cx, K.fy * Q[1] / Q[2] + K.cy], 1)


def correspondence_accuracy(frames, est, ref, gap: int, max_pairs: int = 12) -> dict:
    """Pairs (i, i + gap) of frames posed in both ``est`` and ``ref`` ([N] poses or None): correspondences
    built with the estimated poses, their pixel error against the reference poses' reprojection of
    the same pixels, and their count and overlap IoU against the reference poses' own correspondences."""
    from regconsist_ros.registration.geometry import RegistrationError, correspond
    from regconsist_ros.sim.poses import invert

    idx = [i for i in range(len(frames) - gap) if all(p is not None for p in (est[i], est[i + gap], ref[i], ref[i + gap]))]
    if len(idx) > max_pairs:
        idx = [idx[k] for k in np.linspace(0, len(idx) - 1, max_pairs).round().astype(int)]
    errs, counts, counts_ref, ious, ious_ref = [], [], [], [], []
    for i in idx:
        j = i + gap
        a_e, b_e = (dataclasses.replace(frames[k], T_world_cam=est[k]) for k in (i, j))
        a_r, b_r = (dataclasses.replace(frames[k], T_world_cam=ref[k]) for k in (i, j))
        try:
            c, c_ref = correspond(a_e, b_e), correspond(a_r, b_r)
        except RegistrationError:
            continue
        counts.append(len(c)), counts_ref.append(len(c_ref)), ious.append(c.overlap_iou), ious_ref.append(c_ref.overlap_iou)
        if len(c):
            true = _project(c.uv1, frames[i].depth, frames[i].intrinsics, invert(ref[j]) @ ref[i])
            errs.append(np.linalg.norm(c.uv2.astype(np.float64) - true, axis=1))
    e = np.concatenate(errs) if errs else np.zeros(0)
    return {"pairs": len(counts), "gap_frames": gap, "correspondences": int(np.sum(counts)),
            "within_1px": _r(np.mean(e < 1.0)) if len(e) else None, "within_2px": _r(np.mean(e < 2.0)) if len(e) else None,
            "within_5px": _r(np.mean(e < 5.0)) if len(e) else None,
            "px_error_mean": _r(e.mean(), 3) if len(e) else None, "px_error_median": _r(np.median(e), 3) if len(e) else None,
            "px_error_p90": _r(np.percentile(e, 90), 3) if len(e) else None,
            "count_ratio": _r(np.sum(counts) / max(np.sum(counts_ref), 1)),
            "overlap_iou_mean": _r(np.mean(ious)) if ious else None,
            "overlap_iou_reference_mean": _r(np.mean(ious_ref)) if ious_ref else None}


def evaluate(frames, ref, cfg, gap: int, fps: float | None = None) -> dict:
    """Odometry on ``frames`` against the reference poses ``ref``: trajectory errors, drops, time, correspondences."""
    from regconsist_ros.sim.odometry import estimate_trajectory
    from regconsist_ros.sim.trajectory_errors import ate, rpe

    t0 = time.perf_counter()
    tr = estimate_trajectory(frames, cfg, initial_pose=ref[0])
    seconds = time.perf_counter() - t0
    seg = tr.largest_segment()
    est = [p if s == seg else None for p, s in zip(tr.poses, tr.segments)]
    stamps = [f.stamp for f in frames]
    a = ate(est, ref)
    r1 = rpe(est, ref)
    out = {"frames": len(frames), "posed": int(sum(p is not None for p in est)), "dropped": tr.dropped(seg),
           "keyframes": tr.counts["keyframes"], "resets": tr.counts["resets"], "retried": tr.counts["retried"],
           "ms_per_frame_median": _r(np.median(tr.ms), 1), "seconds": _r(seconds, 2),
           "fitness_min": _r(np.nanmin(tr.fitness), 3) if np.isfinite(tr.fitness).any() else None,
           "fitness_median": _r(np.nanmedian(tr.fitness), 3) if np.isfinite(tr.fitness).any() else None,
           "ate_rmse_m": _r(a["rmse"]), "ate_max_m": _r(a["max"]),
           "rpe_frame": {"n": r1["n"], "trans_rmse_m": _r(r1["trans_rmse"]), "trans_max_m": _r(r1["trans_max"]),
                         "rot_rmse_deg": _r(r1["rot_rmse_deg"], 3), "rot_max_deg": _r(r1["rot_max_deg"], 3)}}
    if fps and len(frames) > fps:
        rs = rpe(est, ref, 1.0, "seconds", stamps)
        out["rpe_second"] = {"n": rs["n"], "trans_rmse_m": _r(rs["trans_rmse"]), "trans_max_m": _r(rs["trans_max"]),
                             "rot_rmse_deg": _r(rs["rot_rmse_deg"], 3), "rot_max_deg": _r(rs["rot_max_deg"], 3)}
    out["reference_path_m"] = _r(sum(float(np.linalg.norm(ref[i + 1][:3, 3] - ref[i][:3, 3])) for i in range(len(ref) - 1)), 3)
    static = [ref[0]] * len(ref)  # the floor: a camera taken as standing still
    a0, r0 = ate(static, ref), rpe(static, ref)
    out["floor_static"] = {"ate_rmse_m": _r(a0["rmse"]), "rpe_frame_trans_rmse_m": _r(r0["trans_rmse"]),
                           "rpe_frame_rot_rmse_deg": _r(r0["rot_rmse_deg"], 3)}
    if gap:
        out["correspondences"] = correspondence_accuracy(frames, est, ref, gap)
        c0 = correspondence_accuracy(frames, static, ref, gap)
        out["floor_static"]["correspondences_within_2px"] = c0["within_2px"]
        out["floor_static"]["correspondences_px_error_median"] = c0["px_error_median"]
    return out


def _read_log(path: Path) -> list[np.ndarray]:
    """Redwood .log: blocks of a header line and a 4x4 camera-to-world matrix."""
    rows = [r for r in path.read_text().splitlines() if r.strip()]
    return [np.array([[float(x) for x in r.split()] for r in rows[b + 1:b + 5]]) for b in range(0, len(rows), 5)]


def redwood(root: Path):
    """(frames, reference poses) of Open3D's 5-frame Redwood sample (PrimeSense 525/319.5/239.5, depth mm)."""
    from PIL import Image

    from regconsist_ros.sim.frame import Frame, Intrinsics

    d = root / "examples" / "test_data" / "RGBD"
    K = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)
    poses = _read_log(d / "odometry.log")
    frames = [Frame(np.asarray(Image.open(d / "color" / f"{i:05d}.jpg").convert("RGB")),
                    np.asarray(Image.open(d / "depth" / f"{i:05d}.png")).astype(np.float32) / 1000.0, K, None,
                    stamp=i / 30.0) for i in range(len(poses))]
    return frames, poses


def openloris(root: Path):
    """(frames, camera ground truth or None) of the 4-frame OpenLORIS sample.

    Ground truth: the 2D base pose of ``groundtruth.txt`` (map frame) interpolated at each colour
    stamp (linear position, SLERP rotation; None outside its stamps), times T_base_camera from
    ``trans_matrix.yaml`` (base_link -> d400_color_optical_frame)."""
    import yaml
    from PIL import Image
    from scipy.spatial.transform import Rotation, Slerp

    from regconsist_ros.sim.frame import Frame, Intrinsics

    def lines(name):
        return [ln.split() for ln in (root / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]

    K = Intrinsics(611.451, 611.486, 433.204, 249.473, 848, 480)  # sensors.yaml d400_color: [fx, cx, fy, cy]
    frames = [Frame(np.asarray(Image.open(root / c[1]).convert("RGB")),
                    np.asarray(Image.open(root / d[1])).astype(np.float32) / 1000.0, K, None, stamp=float(c[0]))
              for c, d in zip(lines("color.txt"), lines("aligned_depth.txt"))]
    gt = np.array(lines("groundtruth.txt"), np.float64)  # t x y z qx qy qz qw
    text = (root / "trans_matrix.yaml").read_text().replace("%YAML:1.0", "").replace("!!opencv-matrix", "")
    mats = yaml.safe_load(text)["trans_matrix"]
    m = next(x for x in mats if x["parent_frame"] == "base_link" and x["child_frame"] == "d400_color_optical_frame")
    T_base_cam = np.array(m["matrix"]["data"], np.float64).reshape(4, 4)
    slerp = Slerp(gt[:, 0], Rotation.from_quat(gt[:, 4:8]))
    ref = []
    for f in frames:
        if not gt[0, 0] <= f.stamp <= gt[-1, 0]:
            ref.append(None)
            continue
        T = np.eye(4)
        T[:3, :3] = slerp([f.stamp]).as_matrix()[0]
        T[:3, 3] = [np.interp(f.stamp, gt[:, 0], gt[:, k]) for k in (1, 2, 3)]
        ref.append(T @ T_base_cam)
    return frames, ref


def bench_odometry(width=320, height=240, n=80, seed=0, worlds=("default", "hard", "hard_static"), cases=("spline", "explore"),
                   methods=("point_to_plane", "hybrid", "intensity"), gap=5, data: str | None = None, nthreads=1) -> dict:
    """The figures of docs/odometry.md (see the module docstring)."""
    import torch

    from regconsist_ros.sim.odometry import OdometryConfig
    from regconsist_ros.sim.source import SimConfig, SimSource

    torch.set_num_threads(max(1, nthreads))
    out = {"bench": "odometry", "width": width, "height": height, "frames": n, "seed": seed,
           "defaults": dataclasses.asdict(OdometryConfig()), "sim": {}, "real": {}}
    for world in worlds:
        for case in cases:
            sim = SimConfig(seed=seed, frames=n, width=width, height=height, **WORLDS[world], **SIM_CASES[case])
            t0 = time.perf_counter()
            frames = list(SimSource(sim))
            render_s = time.perf_counter() - t0
            gt = [f.T_world_cam for f in frames]
            res = {"render_s": _r(render_s, 1), "fps": sim.fps, "step_m": sim.step}
            for m in methods:
                res[m] = evaluate(frames, gt, OdometryConfig(method=m), gap, fps=sim.fps)
            out["sim"][f"{world}/{case}"] = res
    root = Path(data) if data else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if (root / "redwood_open3d_5frames").is_dir():
        frames, ref = redwood(root / "redwood_open3d_5frames")
        out["real"]["redwood_5frames (reference: its odometry.log, itself an estimate)"] = {
            m: evaluate(frames, ref, OdometryConfig(method=m), gap=2) for m in methods}
    if (root / "openloris_4frames").is_dir():
        from regconsist_ros.sim.odometry import estimate_trajectory
        from regconsist_ros.sim.trajectory_errors import ate, rpe

        frames, ref = openloris(root / "openloris_4frames")
        start = next(p for p in ref if p is not None)
        res = {}
        for m in methods:
            tr = estimate_trajectory(frames, OdometryConfig(method=m), initial_pose=start)
            a, rp = ate(tr.poses, ref), rpe(tr.poses, ref)  # frames outside the ground truth's stamps: not scored
            steps = lambda P: [_r(np.linalg.norm(P[i + 1][:3, 3] - P[i][:3, 3]))  # noqa: E731
                               for i in range(len(P) - 1) if P[i] is not None and P[i + 1] is not None]
            res[m] = {"frames": len(frames), "with_ground_truth": int(sum(q is not None for q in ref)),
                      "posed": int(sum(p is not None for p in tr.poses)), "dropped": tr.dropped(),
                      "fitness_min": _r(np.nanmin(tr.fitness), 3), "ate_rmse_m": _r(a["rmse"]),
                      "rpe_frame_trans_rmse_m": _r(rp["trans_rmse"]), "rpe_frame_rot_rmse_deg": _r(rp["rot_rmse_deg"], 3),
                      "true_motion_per_frame_m": steps(ref), "estimated_motion_per_frame_m": steps(tr.poses)}
        out["real"]["openloris_4frames (reference: 2D base ground truth x base-to-camera extrinsic)"] = res
    if not out["real"]:
        out["real"] = f"no samples at {root} (the team's ../shared/data)"
    return {**out, **machine()}
