"""Permutation sets and permutation grouping for the shuffling objectives (pure numpy, no model).

- :func:`hamming_permutations`: a set of permutations chosen greedily so that they are spread out
  in Hamming distance (the number of positions at which two permutations differ). Starting from a
  random permutation, it repeatedly adds the candidate whose *minimum* distance to the permutations
  already chosen is largest (maximin; ties go to the earliest candidate). For ``n_items <= 8`` the
  candidates are all ``n!`` permutations, beyond that a large random pool. A set that is spread out
  keeps the classification task from hinging on near-identical permutations.
- :func:`min_hamming`: the smallest pairwise Hamming distance of a set (what the greedy maximises).
- :func:`kmeans_groups`: a small k-means (k-means++ initialisation, Lloyd iterations) whose groups
  are never empty; the shuffling objective groups permutations by how the network currently
  handles them.

Everything is deterministic for a given ``seed``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

FULL_ENUMERATION_MAX = 8  # n! candidates up to 8! = 40320; above that a random pool
DEFAULT_POOL = 100_000  # random candidates for n_items > 8 (at least 10 * size)


def _as_perm_array(perms) -> np.ndarray:
    a = np.asarray(perms)
    if a.ndim != 2 or a.shape[0] < 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"permutations must be an integer array [P, n], got shape {a.shape} and dtype {a.dtype}")
    if not (np.sort(a, axis=1) == np.arange(a.shape[1])).all():
        raise ValueError("every row must be a permutation of 0..n-1")
    return a


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between permutations ``a [A, n]`` and ``b [B, n]`` -> ``[A, B]``."""
    return (np.asarray(a)[:, None, :] != np.asarray(b)[None, :, :]).sum(-1)


def min_hamming(perms) -> int:
    """Smallest Hamming distance between two different rows of ``perms [P, n]`` (P >= 2)."""
    a = _as_perm_array(perms)
    if a.shape[0] < 2:
        raise ValueError(f"min_hamming needs at least 2 permutations, got {a.shape[0]}")
    d = hamming_distances(a, a)  # [P, P]
    d[np.diag_indices_from(d)] = a.shape[1] + 1
    return int(d.min())


def hamming_permutations(n_items: int, size: int, seed: int = 0, candidates=None) -> np.ndarray:
    """``size`` permutations of ``n_items`` items, greedily spread in Hamming distance -> int64 ``[size, n_items]``.

    ``candidates``: None (all ``n!`` permutations for ``n_items <= 8``, else a random pool of
    ``max(100000, 10 * size)``), an int (size of a random pool, any ``n_items``), or an explicit
    array ``[C, n_items]`` of permutations. The first permutation is a uniformly random candidate;
    each next one maximises the minimum Hamming distance to those chosen so far (ties: the earliest
    candidate). Rows are distinct; deterministic for a given ``seed``.
    """
    for name, v in (("n_items", n_items), ("size", size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"hamming_permutations: {name} must be an integer >= 1, got {v!r}")
    if size > math.factorial(n_items):
        raise ValueError(f"hamming_permutations: {size} permutations requested but {n_items} items only have {math.factorial(n_items)}")
    rng = np.random.default_rng(seed)
    if candidates is None and n_items <= FULL_ENUMERATION_MAX:
        pool = np.array(list(itertools.permutations(range(n_items))), dtype=np.int8)  # [n!, n]
    elif candidates is None or isinstance(candidates, (int, np.integer)) and not isinstance(candidates, bool):
        count = max(DEFAULT_POOL, 10 * size) if candidates is None else int(candidates)
        if count < size:
            raise ValueError(f"hamming_permutations: a pool of {count} candidates cannot give {size} permutations")
        pool = np.argsort(rng.random((count, n_items)), axis=1).astype(np.int8)  # [C, n] random permutations
        pool = np.unique(pool, axis=0)  # distinct (sorted: order is irrelevant to the greedy but for ties)
        pool = pool[rng.permutation(len(pool))]
    else:
        pool = _as_perm_array(candidates).astype(np.int8)
        if pool.shape[1] != n_items:
            raise ValueError(f"hamming_permutations: candidates have {pool.shape[1]} items, expected {n_items}")
        pool = pool[np.sort(np.unique(pool, axis=0, return_index=True)[1])]  # distinct, order kept
    if len(pool) < size:
        raise ValueError(f"hamming_permutations: only {len(pool)} distinct candidates for {size} permutations")

    chosen = [int(rng.integers(len(pool)))]
    mind = (pool != pool[chosen[0]]).sum(1)  # [C] min distance of every candidate to the chosen set
    for _ in range(size - 1):
        j = int(np.argmax(mind))  # chosen rows have distance 0 and lose to any distinct candidate
        chosen.append(j)
        np.minimum(mind, (pool != pool[j]).sum(1), out=mind)
    return pool[chosen].astype(np.int64)


def kmeans_groups(perm_features, k: int = 10, seed: int = 0, iters: int = 50) -> np.ndarray:
    """k-means labels ``[P]`` (int64 in ``0..k-1``, every label used) of the rows of ``perm_features [P, F]``.

    k-means++ initialisation (each next centre drawn with probability proportional to the squared
    distance to the nearest centre so far; uniformly when all points coincide), then at most
    ``iters`` Lloyd iterations (stopping when assignments no longer change). A group left empty is
    given the point farthest from its own centre among groups with more than one member, so all
    ``k`` groups are non-empty (requires ``P >= k``). Deterministic for a given ``seed``.
    """
    x = np.asarray(perm_features.detach().cpu() if hasattr(perm_features, "detach") else perm_features,
                   dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"kmeans_groups expects finite features [P, F], got shape {x.shape}")
    P = x.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= P:
        raise ValueError(f"kmeans_groups: k must be an integer in [1, {P}], got {k!r}")
    if iters < 0:
        raise ValueError(f"kmeans_groups: iters must be >= 0, got {iters}")
    rng = np.random.default_rng(seed)

    def sqdist(c: np.ndarray) -> np.ndarray:  # [P, K]
        return ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)

    centres = [x[rng.integers(P)]]
    d2 = sqdist(np.array(centres))[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        i = rng.choice(P, p=d2 / total) if total > 0 else rng.integers(P)
        centres.append(x[i])
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(-1))
    c = np.array(centres)  # [k, F]

    labels = np.full(P, -1, dtype=np.int64)
    for _ in range(max(1, iters)):
        new = sqdist(c).argmin(1)
        new = _fill_empty(x, c, new, k)
        if np.array_equal(new, labels):
            break
        labels = new
        c = np.stack([x[labels == g].mean(0) for g in range(k)])
    return labels


def _fill_empty(x: np.ndarray, c: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Move points into empty groups: each empty group takes the point farthest from its centre
    among groups with at least two members."""
    labels = labels.copy()
    for g in range(k):
        if (labels == g).any():
            continue
        counts = np.bincount(labels, minlength=k)
        movable = counts[labels] > 1  # [P]
        dist = ((x - c[labels]) ** 2).sum(-1)
        dist[~movable] = -1.0
        labels[int(np.argmax(dist))] = g
    return labels
