"""Intervals for readout scores: percentile bootstrap, paired differences of two encoders, IQM.

All functions are plain numpy, seeded (``np.random.default_rng(seed)``: the same call gives the same
interval) and return dicts of floats, ready for a results table.

- ``bootstrap_ci(values)``: percentile bootstrap interval of a statistic (default the mean) of
  independent values, e.g. one encoder's per-object J&F.
- ``paired_bootstrap_diff(a, b)``: the difference of two encoders scored on the same items, with
  scores ``[seeds, items]`` (pretraining seeds x clips or objects). Two-level resampling: seeds
  (the uncertainty of pretraining), then items (the uncertainty of the evaluation set). Items are
  always paired across ``a`` and ``b`` (the same resampled items for both); seeds are paired when
  both have the same count (seed i of ``a`` and of ``b`` share the draw) and resampled
  independently otherwise.
- ``iqm`` / ``iqm_ci``: interquartile mean over ``[seeds, tasks]`` with a stratified bootstrap
  interval (each task's seeds resampled on their own), as rliable recommends for few runs.

The percentile bootstrap's intervals undercover a little for very few values (n < ~10); they
describe the spread of the estimate, not of a single run.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _check_common(reps: int, level: float, where: str) -> None:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"{where}: reps must be an integer >= 1, got {reps!r}")
    if not isinstance(level, (int, float, np.floating)) or not 0 < float(level) < 1:
        raise ValueError(f"{where}: level must be in (0, 1), got {level!r}")


def _finite(x, ndim: tuple[int, ...], where: str, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in ndim:
        raise ValueError(f"{where}: {name} must have {' or '.join(map(str, ndim))} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{where}: {name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: {name} has non-finite values (NaN or inf)")
    return arr


def _bounds(boot: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates [reps]."""
    a = (1 - float(level)) / 2
    low, high = np.quantile(boot, [a, 1 - a])
    return float(low), float(high)


def iqm(scores, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half after dropping floor(n / 4) values from each end
    (scipy's ``trim_mean(x, 0.25)``). ``axis=None`` pools every value (rliable's IQM over [runs, tasks]).

    With n < 4 nothing is dropped (the plain mean)."""
    x = np.asarray(scores, dtype=np.float64)
    if axis is None:
        x, axis = x.reshape(-1), 0
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm: no scores")
    cut = n // 4
    mid = np.sort(x, axis=axis).take(np.arange(cut, n - cut), axis=axis)
    out = mid.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(values, reps: int = 2000, level: float = 0.95, seed: int = 0,
                 stat: Callable = np.mean) -> dict:
    """Percentile bootstrap interval of ``stat`` over independent ``values`` [n].

    ``reps`` resamples of n values with replacement; ``stat(samples [reps, n], axis=1)`` must reduce
    along ``axis`` (``np.mean``, ``np.median``, ``iqm`` do). Returns ``{"stat": stat(values), "low",
    "high"}`` with the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates;
    constant values give a zero-width interval.
    """
    _check_common(reps, level, "bootstrap_ci")
    x = _finite(values, (1,), "bootstrap_ci", "values")  # [n]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(reps), x.size))  # [reps, n]
    boot = np.asarray(stat(x[idx], axis=1), dtype=np.float64)  # [reps]
    if boot.shape != (int(reps),):
        raise ValueError(f"bootstrap_ci: stat must reduce [reps, n] along axis 1 to [reps], got shape {boot.shape}")
    low, high = _bounds(boot, level)
    return {"stat": float(stat(x)), "low": low, "high": high}


def _seed_means(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-item means over resampled seeds: x [S, N], counts [reps, S] (summing to S) -> [reps, N]."""
    return counts @ x / x.shape[0]


def paired_bootstrap_diff(a, b, reps: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Bootstrap interval of mean(a) - mean(b) for two encoders scored on the same items.

    ``a`` [Sa, N] and ``b`` [Sb, N] (a 1-D [N] is one seed): scores per pretraining seed and item
    (clip or object), items in the same order in both. Each replicate resamples seeds with
    replacement (the same draw for ``a`` and ``b`` when Sa == Sb, independent draws otherwise),
    averages each item over the drawn seeds, then resamples the N items with replacement (the same
    items for ``a`` and ``b``) and takes the mean difference. With one seed per encoder only the
    items are resampled.

    Returns ``{"diff": mean(a) - mean(b), "low", "high"`` (percentile interval at ``level``),
    ``"p_le_0"``: the fraction of replicates with a difference <= 0, a one-sided bootstrap p-value
    for "a is no better than b"}.
    """
    _check_common(reps, level, "paired_bootstrap_diff")
    A = _finite(a, (1, 2), "paired_bootstrap_diff", "a")
    B = _finite(b, (1, 2), "paired_bootstrap_diff", "b")
    A, B = np.atleast_2d(A), np.atleast_2d(B)  # [Sa, N], [Sb, N]
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"paired_bootstrap_diff: a and b must score the same items, got {A.shape[1]} and {B.shape[1]} "
                         f"(shapes {A.shape} and {B.shape})")
    (Sa, N), Sb = A.shape, B.shape[0]
    rng = np.random.default_rng(seed)
    reps = int(reps)
    ca = rng.multinomial(Sa, np.full(Sa, 1 / Sa), size=reps)  # [reps, Sa]: how often each seed is drawn
    cb = ca if Sa == Sb else rng.multinomial(Sb, np.full(Sb, 1 / Sb), size=reps)  # [reps, Sb]
    d = _seed_means(A, ca) - _seed_means(B, cb)  # [reps, N] per-item differences
    ci = rng.multinomial(N, np.full(N, 1 / N), size=reps)  # [reps, N]: how often each item is drawn
    boot = (ci * d).sum(1) / N  # [reps]
    low, high = _bounds(boot, level)
    return {"diff": float(A.mean() - B.mean()), "low": low, "high": high, "p_le_0": float(np.mean(boot <= 0))}


def iqm_ci(scores, reps: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """IQM of ``scores`` [seeds, tasks] (all values pooled) with a stratified bootstrap interval.

    Each replicate resamples, for every task on its own, that task's seeds with replacement (the
    task set is fixed, as in rliable), and takes the IQM of the resampled [seeds, tasks] matrix.
    A 1-D [tasks] is one seed per task (then the interval has zero width: it reflects seed-to-seed
    variation only). Returns ``{"iqm", "low", "high"}``."""
    _check_common(reps, level, "iqm_ci")
    X = _finite(scores, (1, 2), "iqm_ci", "scores")
    X = np.atleast_2d(X)  # [S, K]
    S, K = X.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, S, size=(int(reps), S, K))  # [reps, S, K]: seed drawn per (slot, task)
    boot = iqm(X[idx, np.arange(K)].reshape(int(reps), S * K), axis=1)  # [reps]
    low, high = _bounds(np.asarray(boot), level)
    return {"iqm": float(iqm(X)), "low": low, "high": high}
