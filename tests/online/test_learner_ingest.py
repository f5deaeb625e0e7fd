"""What the online learner takes in is checked as it arrives (issue 18.1, 18.2): view pairs with NaN or
out-of-image pixels, frame stamps from 2038, batches that fail to build."""
import numpy as np
import pytest

from regconsist_ros.online.keyframes import KeyframeConfig, PairBuilder
from regconsist_ros.online.learner import BATCH_TRIES, LearnerConfig, OnlineLearner, clean_pair_points

from tests.online.test_learner import small_run

Y2038 = float(2**31 - 1)


@pytest.fixture(scope="module")
def stream():
    from regconsist_ros.sim.source import SimConfig, SimSource

    return list(SimSource(SimConfig(seed=0, frames=40, width=64, height=48, step=0.1)))


def _learner(tmp_path, objectives):
    cfg = LearnerConfig(objectives=objectives, out_dir=str(tmp_path / "online"), store_height=32, store_width=48,
                        min_frames=8, min_pairs=2, slice_steps=2)
    return OnlineLearner(cfg, {m: small_run(m, cfg) for m in objectives})


def test_clean_pair_points_keeps_finite_in_image_rows():
    uv1 = np.array([[0, 0], [63, 47], [np.nan, 3], [64.0, 2], [-0.6, 1], [10, 10]], np.float32)
    uv2 = np.array([[1, 1], [62.4, 47.4], [1, 1], [1, 1], [1, 1], [np.inf, 2]], np.float32)
    a, b, non_finite, outside = clean_pair_points(uv1, uv2, (48, 64), (48, 64))
    assert a.tolist() == [[0, 0], [63, 47]] and np.allclose(b, [[1, 1], [62.4, 47.4]])
    assert (non_finite, outside) == (2, 2)


def test_nan_pairs_among_good_ones_are_counted_and_no_batch_fails(stream, tmp_path):
    """Issue 18.2: three NaN pairs among the good ones made 108 of 200 RegConsist batches fail. Now they are
    dropped (or stripped of their bad rows) as they arrive, counted, and every batch builds."""
    learner = _learner(tmp_path, ("regconsist",))
    builder = PairBuilder(KeyframeConfig(min_translation=0.15))
    good = bad = nan_rows = 0
    for f in stream:
        pairs = builder.add(f)
        if builder.keyframes and builder.keyframes[-1] is f:
            learner.add_keyframe(f.rgb, f.stamp)
        for p in pairs:
            assert learner.add_view_pair(p["src"].stamp, p["dst"].stamp, p["uv1"], p["uv2"], p["overlap_iou"])
            good += 1
            if bad < 3:  # the same pair again, all NaN
                nan = np.full_like(p["uv1"], np.nan)
                assert not learner.add_view_pair(p["src"].stamp, p["dst"].stamp, nan, p["uv2"], p["overlap_iou"])
                bad += 1
                nan_rows += len(nan)
    assert good >= 3 and bad == 3, (good, bad)
    # one more: mostly good, one row NaN and one outside the image
    src, last = builder.keyframes[-2], builder.keyframes[-1]
    uv1 = np.array([[1, 1], [2, 2], [np.nan, 1], [5000, 1]], np.float32)
    uv2 = np.array([[1, 1], [3, 3], [1, 1], [1, 1]], np.float32)
    assert learner.add_view_pair(src.stamp, last.stamp, uv1, uv2, 0.5)
    st = learner.status()
    assert st["ingest"]["dropped"] == {"view_pair_empty": 3}, st["ingest"]
    assert st["received"]["view_pair_points_non_finite"] == nan_rows + 1
    assert st["received"]["view_pair_points_outside"] == 1
    assert st["buffers"]["view_pairs"] == good + 1
    done = learner.train(12)
    assert done["regconsist"] == 12
    assert learner.status()["batches_failed"] == {}


def test_nan_rows_are_counted_exactly(tmp_path):
    learner = _learner(tmp_path, ("regconsist",))
    rgb = np.full((48, 64, 3), 120, np.uint8)
    learner.add_keyframe(rgb, 1.0)
    learner.add_keyframe(rgb, 2.0)
    uv = np.array([[1, 1], [np.nan, 2], [3, np.inf], [4, 4]], np.float32)
    assert learner.add_view_pair(1.0, 2.0, uv, uv[::-1].copy(), 0.5)
    st = learner.status()
    assert st["received"]["view_pair_points_non_finite"] == 2  # rows 1 and 2 (reversed: 2 and 1)
    assert not learner.add_view_pair(1.0, 2.0, uv[:2], uv[:2], float("nan"))
    assert learner.status()["ingest"]["dropped"] == {"view_pair_iou": 1}


def test_a_batch_that_fails_to_build_is_counted_and_redrawn(stream, tmp_path, monkeypatch):
    import dataclasses

    from regconsist_ros.learning.runs import MethodRun

    learner = _learner(tmp_path, ("rsp",))
    for f in stream:
        learner.add_frame(f.rgb, f.stamp)
    kind = learner.settings["rsp"].kind
    calls = {"n": 0, "broken": False}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["broken"] or calls["n"] % 3 == 1:
            raise ValueError("uv1 has pixels outside the 48x32 image")
        return kind.build(*a, **k)

    monkeypatch.setattr(MethodRun, "kind", property(lambda self: dataclasses.replace(kind, build=flaky)))
    assert learner.train(4)["rsp"] == 4  # every third batch fails: counted, another drawn
    failed = learner.status()["batches_failed"]
    assert failed == {"rsp.ValueError": calls["n"] - 4} and calls["n"] > 4, (failed, calls)
    calls["broken"], before = True, calls["n"]
    with pytest.raises(ValueError, match="outside"):  # every try fails: the error reaches the caller
        learner.train(2)
    assert calls["n"] - before == BATCH_TRIES


def test_a_frame_stamped_2038_does_not_wedge_the_frame_buffer(stream, tmp_path):
    """Issue 18.1: after one frame stamped 2038 the learner took 0 of 40 frames (stamp_backwards)."""
    learner = _learner(tmp_path, ("rsp",))
    for f in stream[:10]:
        learner.add_frame(f.rgb, f.stamp)
    learner.add_frame(stream[10].rgb, Y2038)
    for f in stream[10:]:
        learner.add_frame(f.rgb, f.stamp)
    st = learner.status()
    assert st["buffers"]["frames"] == 40, st
    assert st["ingest"]["dropped"] == {"stamp_jump": 1} and st["ingest"]["accepted"] == 40


def test_with_the_node_clock_a_frame_from_the_future_is_dropped_even_first(stream, tmp_path):
    """The learner node passes its clock: a stamp more than 10 s ahead of it is a jump at once, with no
    earlier stamps to compare against (the stream check alone would have to accept a first stamp)."""
    cfg = LearnerConfig(objectives=("rsp",), out_dir=str(tmp_path / "online"), store_height=32, store_width=48,
                        min_frames=8, min_pairs=2, slice_steps=2)
    now = stream[0].stamp + 1.0
    learner = OnlineLearner(cfg, {"rsp": small_run("rsp", cfg)}, clock=lambda: now)
    learner.add_frame(stream[0].rgb, now + 3600.0)  # an hour ahead of the clock, as the first frame
    for f in stream[:5]:
        learner.add_frame(f.rgb, f.stamp)
    st = learner.status()
    assert st["ingest"]["dropped"] == {"stamp_jump": 1} and st["buffers"]["frames"] == 5, st


def test_a_looping_stream_starts_a_new_buffer(stream, tmp_path):
    learner = _learner(tmp_path, ("rsp",))
    for lap in range(2):
        for f in stream[:20]:
            learner.add_frame(f.rgb, f.stamp)
    st = learner.status()
    assert st["received"]["frames_reset"] == 20 and st["buffers"]["frames"] == 20, st
    assert "stamp_backwards" not in st["ingest"]["dropped"]


def _kf_learner(tmp_path, clock=None):
    cfg = LearnerConfig(objectives=("regconsist",), out_dir=str(tmp_path / "online"), store_height=32, store_width=48,
                        min_frames=8, min_pairs=2, slice_steps=2)
    return OnlineLearner(cfg, {"regconsist": small_run("regconsist", cfg)}, clock=clock)


def test_keyframe_stamps_pass_a_guard(stream, tmp_path):
    """Issue 18 fuzz: a keyframe stamped in 2038 or 1970 or repeated was buffered (and the 2038 one
    then made every later view pair wait for keyframes that could never come). Now: counted drops,
    and the good keyframes and pairs after them are taken."""
    now = 1000.0
    learner = _kf_learner(tmp_path, clock=lambda: now)
    rgb = stream[0].rgb
    t = [now - 30 + 0.1 * i for i in range(6)]
    for s in t[:3]:
        learner.add_keyframe(rgb, s)
    learner.add_keyframe(rgb, Y2038)  # ahead of the clock: dropped at once
    learner.add_keyframe(rgb, 0.0)  # 1970: a jump, held, then dropped when the stream continues
    learner.add_keyframe(rgb, t[2])  # a repeat
    for s in t[3:]:
        learner.add_keyframe(rgb, s)
    st = learner.status()
    assert st["ingest"]["dropped"] == {"stamp_jump": 2, "stamp_backwards": 1}, st["ingest"]
    assert st["received"]["keyframes"] == 6 and learner.keyframe(Y2038) is None and learner.keyframe(0.0) is None
    uv = np.array([[1.0, 1.0], [5.0, 5.0]], np.float32)
    assert learner.add_view_pair(t[4], t[5], uv, uv + 1, 0.5)


def test_a_pair_waiting_for_a_keyframe_that_never_comes_is_counted(stream, tmp_path):
    learner = _kf_learner(tmp_path)
    rgb, uv = stream[0].rgb, np.array([[1.0, 1.0], [5.0, 5.0]], np.float32)
    learner.add_keyframe(rgb, 10.0)
    assert not learner.add_view_pair(10.0, 15.0123, uv, uv, 0.5)  # its keyframe might still come: waits
    assert not learner.add_view_pair(10.1, 10.2, uv, uv, 0.5)  # the usual order: the pair before its keyframe
    assert len(learner._pending) == 2 and learner.counts["view_pairs_unjoined"] == 0
    learner.add_keyframe(rgb, 10.1)
    learner.add_keyframe(rgb, 10.2)  # the second pair joins; the first has waited through 2 keyframes
    assert learner.counts["view_pairs"] == 1 and learner.counts["view_pairs_unjoined"] == 1 and not learner._pending


def test_a_pair_delivered_twice_is_taken_once(stream, tmp_path):
    learner = _kf_learner(tmp_path)
    rgb, uv = stream[0].rgb, np.array([[1.0, 1.0], [5.0, 5.0]], np.float32)
    learner.add_keyframe(rgb, 1.0)
    learner.add_keyframe(rgb, 1.1)
    assert learner.add_view_pair(1.0, 1.1, uv, uv + 1, 0.5)
    assert not learner.add_view_pair(1.0, 1.1, uv, uv + 1, 0.5)
    assert learner.add_view_pair(1.0, 1.1, uv, uv + 2, 0.5)  # the same keyframes, other correspondences: taken
    st = learner.status()
    assert st["ingest"]["dropped"] == {"view_pair_duplicate": 1} and st["received"]["view_pairs"] == 2, st


def test_a_pair_names_its_keyframe_across_a_microsecond_boundary(stream, tmp_path):
    """The fuzz bench found pairs unjoined when a stamp sat on a half microsecond: the keyframe's stamp
    (header seconds + nanoseconds) and the pair's float64 src_stamp rounded to different microseconds."""
    learner = _kf_learner(tmp_path)
    rgb, uv = stream[0].rgb, np.array([[1.0, 1.0], [5.0, 5.0]], np.float32)
    a, b = 1796292313.3075135, 1796292313.4075135
    learner.add_keyframe(rgb, np.nextafter(a, np.inf))  # one ulp (2.4e-7 s) apart: another microsecond when rounded
    learner.add_keyframe(rgb, np.nextafter(b, -np.inf))
    assert round(a, 6) != round(float(np.nextafter(a, np.inf)), 6) or round(b, 6) != round(float(np.nextafter(b, -np.inf)), 6)
    assert learner.add_view_pair(a, b, uv, uv + 1, 0.5) and learner.counts["view_pairs_unjoined"] == 0
    assert learner.keyframe(a) is not None and learner.keyframe(a + 5e-6) is None  # within 1.5 us only
    vp = learner.view_pairs.items()[-1]
    assert learner.keyframe(vp["src"])[0] == np.nextafter(a, np.inf)  # stored under the keyframes' own stamps
