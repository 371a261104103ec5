"""Tasks on the NAS-Bench-201 cells that are unlike a prior's source tasks, with a controlled Spearman.

A task's score is a blend of a real column's normal scores with a smooth random function of the cell:
a sample of a Gaussian process with the exponential Hamming kernel ``exp(-edges that differ /
length_scale)`` over the 6 edges (drawn exactly: the kernel is a product over edges, so the sample is a
Kronecker product of 5 x 5 Cholesky factors applied to white noise over all 15,625 cells). The random part
is made orthogonal to the sources' consensus (the mean normal score of the source columns), and the blend
angle is bisected until the Spearman of the task with that consensus is the one asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr

from evonas.gp import normal_scores
from evonas.spaces import NB201Space


def gp_sample(archs: Sequence[str], seed: int, length_scale: float = 3.0) -> np.ndarray:
    """One draw of the exponential-Hamming GP at each cell string of ``archs`` (table order)."""
    space = NB201Space()
    n_ops, n_edges = len(space.ops), len(space.edges)
    K = np.exp(-(1.0 - np.eye(n_ops)) / length_scale)
    L = np.linalg.cholesky(K)
    f = np.random.default_rng(seed).standard_normal((n_ops,) * n_edges)
    for axis in range(n_edges):  # (L x ... x L) vec(Z): one factor per edge
        f = np.moveaxis(np.tensordot(L, f, axes=([1], [axis])), 0, axis)
    index = [np.ravel_multi_index(tuple(space.from_string(a)), f.shape) for a in archs]
    return f.ravel()[index]


def consensus(columns: Sequence[np.ndarray]) -> np.ndarray:
    """The mean normal score of the source columns (higher is better)."""
    return np.mean([normal_scores(c) for c in columns], axis=0)


def unlike_task(base: np.ndarray, sources: Sequence[np.ndarray], archs: Sequence[str], spearman: float,
                seed: int, length_scale: float = 3.0, tol: float = 1e-3) -> np.ndarray:
    """Scores (higher is better) blending ``base`` with a GP sample so that their Spearman with the
    sources' consensus is ``spearman`` (within ``tol``)."""
    ref = consensus(sources)
    ref_c = ref - ref.mean()
    g = normal_scores(gp_sample(archs, seed, length_scale))
    g = g - (g @ ref_c) / (ref_c @ ref_c) * ref_c  # orthogonal to the consensus
    g /= g.std()
    b = normal_scores(base)

    def blend(theta: float) -> np.ndarray:
        return np.cos(theta) * b + np.sin(theta) * g

    def rho(theta: float) -> float:
        return float(spearmanr(blend(theta), ref)[0])

    lo, hi = 0.0, np.pi  # rho falls from Spearman(base, ref) towards -Spearman(base, ref)
    if not rho(hi) <= spearman <= rho(lo):
        raise ValueError(f"spearman: {spearman} is out of reach (between {rho(hi):.3f} and {rho(lo):.3f})")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        r = rho(mid)
        if abs(r - spearman) <= tol:
            return blend(mid)
        lo, hi = (mid, hi) if r > spearman else (lo, mid)
    return blend(0.5 * (lo + hi))
