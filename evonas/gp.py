"""A Gaussian process over architecture encodings with an exponential Hamming kernel.

``k(x, x') = s^2 exp(-d(x, x') / length_scale)`` where ``d`` is the L1 distance of the encodings divided by
2: for a cell space's one-hot encoding, the number of edges whose op differs. Over categorical edges this
is the product of one exponential kernel per edge (a positive-definite kernel on any encoding, since
``exp(-|a - b|)`` is one per coordinate). Targets are replaced by the normal scores of their ranks (a
Gaussian copula), so a heavy-tailed metric (latency in ms) and a bounded one (accuracy in %) are modelled
alike and only the ranking matters. The length scale and the noise ratio are chosen from a grid by the
marginal likelihood, with the signal variance profiled out.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np
from scipy.linalg import cho_solve, solve_triangular
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata
from sklearn.base import BaseEstimator

LENGTH_SCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
NOISES = (1e-3, 1e-2, 0.05, 0.2)
PRIOR_WEIGHTS = (0.0, 0.1, 0.5, 2.0)


def hamming(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Half the L1 distance between the rows of ``A`` and ``B`` (edges that differ, for one-hot cells)."""
    A, B = np.asarray(A, np.float32), np.asarray(B, np.float32)
    if ((A == 0) | (A == 1)).all() and ((B == 0) | (B == 1)).all():  # binary: |a - b| = a + b - 2ab
        return 0.5 * (A.sum(1)[:, None] + B.sum(1)[None, :] - 2.0 * (A @ B.T)).astype(float)
    return 0.5 * np.abs(A[:, None, :] - B[None, :, :]).sum(-1).astype(float)


def normal_scores(y: np.ndarray) -> np.ndarray:
    """Normal quantiles of the mid-ranks of ``y`` (ties share a score), mean 0."""
    return ndtri((rankdata(y) - 0.5) / len(y))


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI of maximising over ``best`` for Gaussian predictions."""
    std = np.maximum(std, 1e-12)
    z = (mean - best) / std
    return (mean - best) * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


class HammingGP(BaseEstimator):
    """GP regression on rank-transformed targets (higher is better) with an exponential Hamming kernel.

    Parameters
    ----------
    length_scales, noises, prior_weights : grids searched by the marginal likelihood in :meth:`fit` (the
        noise and the prior's weight are fractions of the signal variance; see ``prior`` there).
    """

    def __init__(self, length_scales: Sequence[float] = LENGTH_SCALES, noises: Sequence[float] = NOISES,
                 prior_weights: Sequence[float] = PRIOR_WEIGHTS):
        self.length_scales = length_scales
        self.noises = noises
        self.prior_weights = prior_weights

    def _validate(self) -> None:
        for name in ("length_scales", "noises"):
            grid = getattr(self, name)
            if not len(grid) or not all(isinstance(v, Real) and v > 0 for v in grid):
                raise ValueError(f"{name}: expected a non-empty list of positive numbers, got {grid!r}")

    def fit(self, X: np.ndarray, y: np.ndarray, distances: np.ndarray | None = None,
            keep_hyperparameters: bool = False, prior: np.ndarray | None = None) -> "HammingGP":
        """Fit to encodings ``X`` and scores ``y``; ``distances``: :func:`hamming` ``(X, X)`` if known.
        ``keep_hyperparameters``: reuse the hyperparameters of the previous fit (no grid search).

        ``prior``: a prior score of each training point (about unit scale, e.g. a meta-learned predictor's
        standardised prediction). The kernel then gains a linear term ``weight * prior(x) prior(x')``, i.e.
        a mean function ``beta * prior(x)`` with ``beta ~ N(0, weight)``, and ``weight`` is chosen from
        ``prior_weights`` by the marginal likelihood with the rest: the prior counts as far as the data
        support it (0 when they do not)."""
        self._validate()
        X = np.asarray(X, np.float32)
        y = np.asarray(y, float)
        if X.ndim != 2 or len(X) != len(y) or len(y) < 1:
            raise ValueError(f"X, y: expected n x d encodings and n scores (n >= 1), got {X.shape} and {y.shape}")
        D = hamming(X, X) if distances is None else np.asarray(distances, float)
        t = normal_scores(y) if len(y) > 1 else np.zeros(1)
        p = None if prior is None else np.asarray(prior, float)
        weights = (0.0,) if p is None else tuple(self.prior_weights)
        if keep_hyperparameters and hasattr(self, "length_scale_"):
            grid = [(self.length_scale_, self.noise_, self.prior_weight_ if p is not None else 0.0)]
        else:
            grid = [(ls, nz, pw) for ls in self.length_scales for nz in self.noises for pw in weights]
        best = None
        for ls, nz, pw in grid:
            K = np.exp(-D / ls) + nz * np.eye(len(y))
            if pw:
                K += pw * np.outer(p, p)
            try:
                L = np.linalg.cholesky(K)
            except np.linalg.LinAlgError:
                continue
            alpha = cho_solve((L, True), t)
            s2 = max(float(t @ alpha) / len(y), 1e-6)  # profiled signal variance
            loglik = -0.5 * len(y) * np.log(s2) - np.log(np.diag(L)).sum()
            if best is None or loglik > best[0]:
                best = (loglik, ls, nz, pw, L, alpha, s2)
        if best is None:
            raise ValueError("the kernel matrix is not positive definite for any grid point")
        _, self.length_scale_, self.noise_, self.prior_weight_, self.L_, self.alpha_, self.signal_ = best
        self.X_, self.t_, self.prior_ = X, t, p
        self.best_ = float(t.max())
        return self

    def predict_distances(self, D: np.ndarray, return_std: bool = False, prior: np.ndarray | None = None):
        """Predictions (in normal-score units) from distances ``D`` (candidates x training points) and, if
        the fit had one, the candidates' ``prior`` scores."""
        K = np.exp(-np.asarray(D, float) / self.length_scale_)
        own = np.ones(len(K))
        if self.prior_weight_:
            if prior is None:
                raise ValueError("prior: this GP was fitted with prior scores; pass the candidates' too")
            prior = np.asarray(prior, float)
            K = K + self.prior_weight_ * np.outer(prior, self.prior_)
            own = own + self.prior_weight_ * prior ** 2
        mean = K @ self.alpha_
        if not return_std:
            return mean
        V = solve_triangular(self.L_, K.T, lower=True)
        var = self.signal_ * np.maximum(own - (V * V).sum(0), 1e-12)
        return mean, np.sqrt(var)

    def predict(self, X: np.ndarray, return_std: bool = False, prior: np.ndarray | None = None):
        """Predicted normal scores of ``X`` (higher ranks higher); with ``return_std`` their std."""
        if not hasattr(self, "alpha_"):
            raise RuntimeError("HammingGP: call fit first")
        return self.predict_distances(hamming(X, self.X_), return_std, prior)
