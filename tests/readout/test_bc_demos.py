"""Demonstration format: atomic episode files, directory reads, clear errors on bad files."""
import json

import numpy as np
import pytest

from regconsist_ros.readout.demos import DemoDir, DemoError, Episode, NoDemonstrations, load_episode, save_episode


def _episode(T=5, seed=3, rng=None):
    rng = rng or np.random.default_rng(seed)
    return Episode(frames=rng.integers(0, 255, (T, 8, 6, 3), dtype=np.uint8), actions=rng.normal(size=(T, 4)),
                   proprio=rng.normal(size=(T, 4)), states=rng.normal(size=(T, 39)), success=True, seed=seed)


def test_episode_round_trip_is_exact(tmp_path):
    ep = _episode()
    p = save_episode(tmp_path / "d" / "episode_0000.npz", ep)
    back = load_episode(p)
    for k in ("frames", "actions", "proprio", "states"):
        a, b = getattr(ep, k), getattr(back, k)
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    assert back.success is True and back.seed == 3 and len(back) == 5
    assert not list(p.parent.glob(".*tmp"))  # no temporary left behind


def test_demo_dir_orders_episodes_and_checks_consistency(tmp_path):
    d = DemoDir(tmp_path / "task")
    with pytest.raises(NoDemonstrations, match="no episode"):
        d.load()
    for i in (10, 2, 1):
        save_episode(d.episode_path(i), _episode(T=3 + i, seed=i))
    d.write_meta({"suite": "x", "task": "task"})
    assert [p.name for p in d.paths()] == ["episode_0001.npz", "episode_0002.npz", "episode_0010.npz"]
    assert [e.seed for e in d.load()] == [1, 2, 10] and [e.seed for e in d.load(2)] == [1, 2]
    assert d.meta["format"] == 1 and d.meta["task"] == "task"
    with pytest.raises(NoDemonstrations, match="3 episodes, 5 requested"):
        d.load(5)
    ep = _episode()
    ep.frames = np.zeros((5, 4, 4, 3), np.uint8)  # a different frame size
    save_episode(d.episode_path(11), ep)
    with pytest.raises(DemoError, match="disagree"):
        d.load()


def test_bad_files_raise_clear_errors(tmp_path):
    bad = tmp_path / "episode_0000.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DemoError, match="unreadable demonstration"):
        load_episode(bad)
    np.savez(tmp_path / "episode_0001.npz", frames=np.zeros((3, 4, 4, 3), np.uint8))
    with pytest.raises(DemoError, match="missing arrays"):
        load_episode(tmp_path / "episode_0001.npz")
    np.savez(tmp_path / "episode_0002.npz", frames=np.zeros((3, 4, 4, 3), np.uint8), actions=np.zeros((4, 2)))
    with pytest.raises(DemoError, match="frames must be uint8"):
        load_episode(tmp_path / "episode_0002.npz")
    np.savez(tmp_path / "episode_0003.npz", frames=np.zeros((2, 4, 4, 3), np.uint8), actions=np.array([[0.0], [np.nan]]))
    with pytest.raises(DemoError, match="NaN"):
        load_episode(tmp_path / "episode_0003.npz")
    (tmp_path / "meta.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(DemoError, match="format 1"):
        DemoDir(tmp_path).meta


def test_minari_episodes_with_images_convert_and_state_only_datasets_are_refused(monkeypatch):
    """Against a stand-in ``minari`` module shaped like its documented API (EpisodeData fields)."""
    import sys
    import types

    from regconsist_ros.readout.demos import load_minari

    def episode(i, T=4, image=True):
        obs = {"proprio": np.arange((T + 1) * 2, dtype=np.float32).reshape(T + 1, 2)}
        if image:
            obs["pixels"] = np.full((T + 1, 6, 6, 3), i, np.uint8)
        return types.SimpleNamespace(id=i, observations=obs, actions=np.zeros((T, 3), np.float32),
                                     terminations=np.array([False] * (T - 1) + [True]), infos={"success": np.array([False] * T + [i == 0])})

    fake = types.ModuleType("minari")
    datasets = {"d/img-v0": [episode(0), episode(1)], "d/state-v0": [episode(0, image=False)]}

    def load_dataset(name):
        if name not in datasets:
            raise FileNotFoundError(name)
        return types.SimpleNamespace(iterate_episodes=lambda: iter(datasets[name]))

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "minari", fake)
    eps = load_minari("d/img-v0", proprio_key="proprio")
    assert len(eps) == 2 and eps[1].frames.shape == (4, 6, 6, 3) and eps[1].frames[0, 0, 0, 0] == 1
    assert eps[0].proprio.shape == (4, 2) and eps[0].success and not eps[1].success  # from infos["success"] only
    assert len(load_minari("d/img-v0", n=1)) == 1
    with pytest.raises(NoDemonstrations, match="no image key"):
        load_minari("d/state-v0")
    with pytest.raises(NoDemonstrations, match="not available locally"):
        load_minari("d/missing-v0")
