"""A ranking predictor meta-trained across tasks and adapted few-shot to a new one.

Model
-----
An ensemble of ``n_members`` MLPs. Each member maps an architecture encoding ``x`` to features
``phi(x)`` (the trunk, shared by all tasks) and scores it for task ``t`` with a linear head
``s_t(x) = phi(x) . w_t``. Meta-training (:meth:`MetaRankPredictor.fit` with ``tasks``) minimises a
pairwise logistic ranking loss (RankNet, pairs weighted towards the top of each task) on every training
task, with heads ``w_t = w0 + delta_t`` and ``delta_t`` penalised: ``w0`` is the head of "a task like the
training tasks", and the spread of the ``delta_t`` is the prior's width.

Few-shot adaptation
-------------------
A new task is represented by its own head -- a task embedding -- inferred from the observations by
Bayesian pairwise logistic regression on the frozen meta-learned features (plus the raw encoding, whose
weights have a tight zero-mean prior: a first-order correction for what the meta-features miss): the MAP
head under the prior ``N(trust * w0, sigma^2 I)`` and the Laplace posterior around it (its covariance
gives each prediction an uncertainty, added to the ensemble's spread). ``trust`` is how well the prior
alone orders the observations (a Kendall tau whose pairs weigh by how far apart their values are, shrunk
towards ``prior_trust`` while few pairs are known, clipped at 0): a prior that ranks the new task's
observations badly is pulled towards zero and the head is learned from the observations alone. The
``n(n-1)/2`` observed pairs count as ``pair_evidence * n`` comparisons, since they are far from
independent. Beside this head, a second one sees only the raw encoding (no meta-features); the two are
averaged by their Laplace evidence (``meta_weight_`` is the meta head's share), so that meta-features
which do not describe the new task at all give way to a plain linear model of it. Each is a few Newton
steps on a convex problem of ``embed + n_features`` dimensions: 20-50 ms for 25-100 observations, cheap
enough to redo after every evaluation of a search.

Why a head and not MAML/Reptile-style adaptation of the whole network: measured on NAS-Bench-201
leave-one-dataset-out (``benchmarks/meta_search.py``, BENCHMARKS.md), fine-tuning every weight on the
k <= 100 observations ranks the held-out dataset no better than the head (Kendall tau within +-0.01),
costs 10-80x more per adaptation (about 0.5 s against 7-46 ms for 10-100 observations, one thread), and
gives no posterior for the acquisition.

``adapt_method="finetune"`` instead fine-tunes every weight of each member from its meta-trained value on
the observations (proximal to the meta weights: Reptile/MAML-style adaptation of the whole predictor),
and ``"none"`` keeps the prior; both exist for comparison (see ``benchmarks/meta_search.py``).

Training the same model from scratch on a handful of observations is ``fit(X, y)`` without ``tasks``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from sklearn.base import BaseEstimator
from torch import nn
from torch.nn import functional as F

FORMAT = "evonas-meta-rank-predictor"
VERSION = 1
ADAPT_METHODS = ("head", "finetune", "none")


_BLAS = None


@contextlib.contextmanager
def single_thread():
    """Run torch and BLAS single-threaded inside the block (restored after): these models are tiny, and
    intra-op threads only contend with each other and with evaluation workers (5-10x slower on a busy
    2-core machine). Re-entrant."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _BLAS.limit(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


class NotFittedError(RuntimeError):
    """The predictor was used before :meth:`MetaRankPredictor.fit` or :meth:`MetaRankPredictor.load`."""


class _Member(nn.Module):
    """MLP trunk ``x -> phi(x)`` and per-task heads ``w0 + delta_t``; initialised from ``generator``."""

    def __init__(self, n_features: int, hidden: Sequence[int], embed: int, n_tasks: int,
                 generator: torch.Generator):
        super().__init__()
        dims = [n_features, *hidden, embed]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            lin = nn.utils.skip_init(nn.Linear, a, b)
            bound = 1.0 / math.sqrt(a)
            with torch.no_grad(), single_thread():
                lin.weight.copy_((torch.rand(b, a, generator=generator) * 2 - 1) * bound)
                lin.bias.copy_((torch.rand(b, generator=generator) * 2 - 1) * bound)
            layers.append(lin)
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.trunk = nn.Sequential(*layers)
        self.w0 = nn.Parameter(torch.randn(embed, generator=generator) / math.sqrt(embed))
        self.delta = nn.Parameter(torch.zeros(n_tasks, embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def pairwise_loss(scores: torch.Tensor, y: torch.Tensor, q: torch.Tensor, top_weight: float) -> torch.Tensor:
    """RankNet loss over all ordered pairs ``y_i > y_j`` of a batch, pair weight ``exp(top_weight *
    max(q_i, q_j))`` where ``q`` is the items' quantile within their task (1 = best)."""
    diff = scores[:, None] - scores[None, :]
    better = (y[:, None] > y[None, :]).to(scores.dtype)
    weight = torch.exp(top_weight * torch.maximum(q[:, None], q[None, :])) * better
    return (F.softplus(-diff) * weight).sum() / weight.sum().clamp_min(1e-12)


def quantiles(y: np.ndarray) -> np.ndarray:
    """Mid-rank of each value divided by ``n`` (ties share a quantile): 1 = best."""
    from scipy.stats import rankdata

    return (rankdata(y) - 0.5) / len(y)


def concordance(pred: np.ndarray, y: np.ndarray, weighted: bool = False) -> tuple[float, int]:
    """Kendall-style ``(concordant - discordant) / pairs`` over pairs with distinct ``y``, and that count.

    ``weighted``: each pair counts ``|y_i - y_j|`` (ordering near-ties right or wrong matters little).
    """
    pred, y = np.asarray(pred, float), np.asarray(y, float)
    dy = y[:, None] - y[None, :]
    dp = np.sign(pred[:, None] - pred[None, :])
    upper = np.triu(np.ones_like(dy, dtype=bool), 1) & (dy != 0)
    n = int(upper.sum())
    if n == 0:
        return 0.0, 0
    w = np.abs(dy[upper]) if weighted else np.ones(n)
    return float((np.sign(dy[upper]) * dp[upper] * w).sum() / w.sum()), n


class MetaRankPredictor(BaseEstimator):
    """Ranking predictor with uncertainty, meta-trained on several tasks and adapted to a new one.

    Parameters
    ----------
    hidden : widths of the trunk's hidden layers.
    embed : width of the trunk's output (the head's dimension).
    n_members : ensemble size (the spread of members is part of the uncertainty).
    steps : optimiser steps per member in :meth:`fit` (one batch from every task per step).
    batch_size : items per task per step (all pairs among them enter the loss).
    lr, weight_decay : Adam settings.
    task_reg : penalty on each task's head deviating from the shared head ``w0``.
    top_weight : pairs are weighted by ``exp(top_weight * quantile of the better item)``.
    prior_scale : prior std of a new task's head, relative to the RMS entry of ``w0`` (plus the spread of
        the training heads).
    prior_trust : trust in the prior before any pair has been observed; ``trust_pairs`` pseudo-pairs back
        it when observed pairs are few.
    adapt_method : ``"head"`` (Bayesian head on the meta-features), ``"finetune"`` or ``"none"``.
    adapt_steps, adapt_lr : fine-tuning steps and learning rate (``adapt_method="finetune"``).
    max_pairs : cap on observed pairs used by :meth:`adapt` (a random subset beyond it).
    residual : the head also sees the raw encoding, with weights whose prior is ``N(0, (residual *
        score std)^2)``: the adaptation can correct what the meta-features miss (0: features only).
    pair_evidence : the ``n(n-1)/2`` pairs of ``n`` observations are far from independent; together they
        count as ``pair_evidence * n`` comparisons in :meth:`adapt` (``None``: each pair counts once).
    fallback : :meth:`adapt` also fits a head on the raw encoding alone (weights' prior std: ``fallback *``
        score std) and averages it with the meta head by their Laplace evidence, so that meta-features that
        do not describe the new task give way to a plain linear model of it (0: meta head only).
    random_state : int seed or ``None``; all randomness (init, batches, pair subsets) derives from it.
    """

    def __init__(self, hidden: Sequence[int] = (128, 128), embed: int = 32, n_members: int = 5,
                 steps: int = 1000, batch_size: int = 256, lr: float = 2e-3, weight_decay: float = 1e-5,
                 task_reg: float = 1e-2, top_weight: float = 2.0, prior_scale: float = 0.5,
                 prior_trust: float = 0.5, trust_pairs: int = 3, adapt_method: str = "head",
                 adapt_steps: int = 100, adapt_lr: float = 1e-3, max_pairs: int = 2000, residual: float = 0.2,
                 pair_evidence: float | None = 1.0, fallback: float = 1.0, random_state: int | None = None):
        self.hidden = hidden
        self.embed = embed
        self.n_members = n_members
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.task_reg = task_reg
        self.top_weight = top_weight
        self.prior_scale = prior_scale
        self.prior_trust = prior_trust
        self.trust_pairs = trust_pairs
        self.adapt_method = adapt_method
        self.adapt_steps = adapt_steps
        self.adapt_lr = adapt_lr
        self.max_pairs = max_pairs
        self.residual = residual
        self.pair_evidence = pair_evidence
        self.fallback = fallback
        self.random_state = random_state

    # --- validation -------------------------------------------------------------------------------------
    def _validate_params(self) -> None:
        def need(cond: bool, key: str, reason: str) -> None:
            if not cond:
                raise ValueError(f"{key}: {reason}, got {getattr(self, key)!r}")

        def integer(key: str, low: int) -> None:
            v = getattr(self, key)
            need(isinstance(v, Integral) and not isinstance(v, bool) and v >= low, key,
                 f"must be an integer >= {low}")

        def real(key: str, low: float, high: float = math.inf, low_open: bool = False) -> None:
            v = getattr(self, key)
            ok = isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and v <= high
            ok = ok and (v > low if low_open else v >= low)
            need(ok, key, f"must be a number in {'(' if low_open else '['}{low}, {high}]")

        hidden = self.hidden
        need(isinstance(hidden, (list, tuple)) and all(isinstance(h, Integral) and not isinstance(h, bool)
                                                       and h >= 1 for h in hidden),
             "hidden", "must be a sequence of positive integers")
        for key, low in (("embed", 1), ("n_members", 1), ("steps", 0), ("batch_size", 2), ("trust_pairs", 0),
                         ("adapt_steps", 0), ("max_pairs", 1)):
            integer(key, low)
        real("lr", 0.0, low_open=True)
        real("adapt_lr", 0.0, low_open=True)
        real("weight_decay", 0.0)
        real("task_reg", 0.0)
        real("top_weight", 0.0, 20.0)
        real("prior_scale", 0.0, low_open=True)
        real("prior_trust", 0.0, 1.0)
        real("residual", 0.0)
        real("fallback", 0.0)
        if self.pair_evidence is not None:
            real("pair_evidence", 0.0, low_open=True)
        need(self.adapt_method in ADAPT_METHODS, "adapt_method", f"must be one of {ADAPT_METHODS}")
        rs = self.random_state
        need(rs is None or isinstance(rs, Integral) and not isinstance(rs, bool) and rs >= 0, "random_state",
             "must be None or a non-negative integer")

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted: call fit() or load() first")

    def _check_X(self, X: Any, name: str = "X") -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape {X.shape}")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(f"{name}: has {X.shape[1]} features, the predictor was fitted with "
                             f"{self.n_features_in_}")
        if not np.isfinite(X).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        return X

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != n:
            raise ValueError(f"y: has {len(y)} values for {n} samples")
        if not np.isfinite(y).all():
            raise ValueError("y: contains NaN or infinite values")
        return y

    # --- meta-training ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, tasks: Any = None) -> "MetaRankPredictor":
        """Train on ``(X, y)``; ``tasks`` labels each row's task (one task when ``None``).

        Higher ``y`` is better; only the order of ``y`` within a task matters.
        """
        self._validate_params()
        if hasattr(self, "n_features_in_"):
            del self.n_features_in_
        X = self._check_X(X)
        y = self._check_y(y, len(X))
        labels = np.zeros(len(X), dtype=int) if tasks is None else np.asarray(tasks)
        if len(labels) != len(X):
            raise ValueError(f"tasks: has {len(labels)} labels for {len(X)} samples")
        names, codes = np.unique(labels, return_inverse=True)
        groups = [np.flatnonzero(codes == t) for t in range(len(names))]
        for name, idx in zip(names, groups):
            if len(idx) < 2:
                raise ValueError(f"tasks: task {name!r} has {len(idx)} sample(s), need at least 2")
        self.n_features_in_ = X.shape[1]
        self.tasks_ = [str(n) for n in names]
        with single_thread():
            self._train(X, y, groups)
        self.reset()
        return self

    def _train(self, X: np.ndarray, y: np.ndarray, groups: list[np.ndarray]) -> None:
        q = np.zeros(len(X))
        for idx in groups:
            q[idx] = quantiles(y[idx])
        Xt, yt, qt = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(q)
        seeds = np.random.SeedSequence(self.random_state).spawn(self.n_members)
        self.members_ = []
        for seq in seeds:
            rng = np.random.default_rng(seq)
            gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
            member = _Member(X.shape[1], self.hidden, self.embed, len(groups), gen)
            opt = torch.optim.Adam(member.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            member.train()
            for _ in range(self.steps):
                loss = torch.zeros((), dtype=torch.float64)
                for t, idx in enumerate(groups):
                    batch = idx if len(idx) <= self.batch_size else rng.choice(idx, self.batch_size, replace=False)
                    b = torch.from_numpy(np.asarray(batch))
                    head = member.w0 + member.delta[t]
                    scores = (member(Xt[b]) @ head).double()
                    loss = loss + pairwise_loss(scores, yt[b], qt[b], self.top_weight)
                loss = loss / len(groups) + self.task_reg * member.delta.pow(2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            member.eval()
            self.members_.append(member)
        self._set_prior(Xt)

    def _set_prior(self, X_ref: torch.Tensor) -> None:
        """Prior head mean/variance and each member's score scale (on up to 4096 reference rows)."""
        self.w0_, self.spread_, self.scale_ = [], [], []
        ref = X_ref[: 4096]
        for m in self.members_:
            w0 = m.w0.detach().double().numpy().copy()
            heads = (m.w0 + m.delta).detach().double().numpy()
            self.w0_.append(w0)
            self.spread_.append(float(((heads - w0) ** 2).mean()))
            with torch.no_grad(), single_thread():
                s = m(ref).double().numpy() @ w0
            self.scale_.append(float(s.std()) if len(s) > 1 and s.std() > 0 else 1.0)

    def _prior_mean(self, k: int, trust: float = 1.0) -> np.ndarray:
        """Member ``k``'s prior head: ``trust * w0`` on the meta-features, 0 on the raw encoding."""
        w = trust * self.w0_[k]
        return np.concatenate([w, np.zeros(self.n_features_in_)]) if self.residual > 0 else w

    def _prior_var(self, k: int) -> np.ndarray:
        """Member ``k``'s prior variance of each head weight."""
        var = np.full(self.embed, self.prior_scale ** 2 * float((self.w0_[k] ** 2).mean()) + self.spread_[k])
        if self.residual > 0:
            var = np.concatenate([var, np.full(self.n_features_in_, (self.residual * self.scale_[k]) ** 2)])
        return var

    def _features(self, members: Sequence[nn.Module], X: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad(), single_thread():
            feats = [m(torch.from_numpy(X)).double().numpy() for m in members]
        if self.residual > 0:
            feats = [np.concatenate([f, X.astype(np.float64)], axis=1) for f in feats]
        return feats

    # --- features and prediction ------------------------------------------------------------------------
    def transform(self, X: Any) -> list[np.ndarray]:
        """Each member's head inputs for ``X``: meta-learned features (``embed`` columns), followed by the
        raw encoding when ``residual > 0``."""
        self._check_fitted()
        X = self._check_X(X)
        return self._features(self.adapted_members_ or self.members_, X)

    def predict(self, X: Any, return_std: bool = False, prior: bool = False):
        """Scores of ``X`` (higher ranks higher); with ``return_std`` also their uncertainty.

        After :meth:`adapt` the scores are the adapted task's; ``prior=True`` gives the meta-prior's.
        """
        self._check_fitted()
        X = self._check_X(X)
        feats = self._features(self.members_, X) if prior else self.transform(X)
        return self.predict_features(feats, return_std=return_std, prior=prior)

    def predict_features(self, feats: Sequence[np.ndarray], return_std: bool = False, prior: bool = False):
        """:meth:`predict` from :meth:`transform`'s output (lets a search cache the features)."""
        self._check_fitted()
        use_prior = prior or self.heads_ is None
        means, variances = [], []
        for k, phi in enumerate(feats):
            if use_prior:
                mean = phi @ self._prior_mean(k)
                var = (phi ** 2) @ self._prior_var(k) if return_std else None
            else:  # mixture over the member's adapted heads (see adapt)
                parts = [(p, phi @ w, None if cov is None or not return_std else
                          ((phi @ cov) * phi).sum(1)) for p, w, cov in self.heads_[k]]
                mean = sum(p * mu for p, mu, _ in parts)
                if return_std:  # a fine-tuned head has no posterior: the ensemble's spread only
                    var = sum(p * ((0.0 if v is None else v) + mu ** 2) for p, mu, v in parts) - mean ** 2
            means.append(mean / self.scale_[k])
            if return_std:
                variances.append(np.maximum(var, 0.0) / self.scale_[k] ** 2)
        mean = np.mean(means, axis=0)
        if not return_std:
            return mean
        between = np.var(means, axis=0) if len(means) > 1 else np.zeros_like(mean)
        return mean, np.sqrt(between + np.mean(variances, axis=0))

    # --- few-shot adaptation ----------------------------------------------------------------------------
    def reset(self) -> "MetaRankPredictor":
        """Forget any adaptation: predictions are the meta-prior's again."""
        self.heads_ = None
        self.meta_weight_ = None
        self.adapted_members_ = None
        self.trust_ = None
        self.n_adapted_ = 0
        return self

    def trust(self, X: Any, y: Any) -> float:
        """How far the prior is trusted given observations: how well it orders them (pairs weighted by
        how far apart their values are, so near-ties barely count), shrunk towards ``prior_trust`` by
        ``trust_pairs`` pseudo-pairs and clipped at 0."""
        self._check_fitted()
        X = self._check_X(X)
        y = self._check_y(y, len(X))
        tau, n = concordance(self.predict(X, prior=True), y, weighted=True) if len(y) > 1 else (0.0, 0)
        k = self.trust_pairs
        return max(0.0, (n * tau + k * self.prior_trust) / (n + k)) if n + k > 0 else self.prior_trust

    def adapt(self, X: Any, y: Any, trust: float | None = None) -> "MetaRankPredictor":
        """Infer the new task from observations ``(X, y)`` (higher ``y`` better), starting from the prior.

        Each call starts again from the meta-trained state, so pass every observation of the task so far.
        ``trust`` overrides :meth:`trust` (1: the prior as meta-trained, 0: ignore the prior's head).
        """
        with single_thread():
            return self._adapt(X, y, trust)

    def _adapt(self, X: Any, y: Any, trust: float | None) -> "MetaRankPredictor":
        self._check_fitted()
        self._validate_params()
        X = self._check_X(X)
        y = self._check_y(y, len(X))
        if trust is not None and not (isinstance(trust, Real) and 0.0 <= trust <= 1.0):
            raise ValueError(f"trust: must be a number in [0, 1], got {trust!r}")
        self.reset()
        self.trust_ = float(self.trust(X, y) if trust is None else trust)
        self.n_adapted_ = len(y)
        if self.adapt_method == "none" or len(y) < 2:
            return self
        i, j = np.nonzero(y[:, None] > y[None, :])
        if len(i) == 0:
            return self
        if len(i) > self.max_pairs:
            rng = np.random.default_rng([self.random_state or 0, len(y)])
            pick = rng.choice(len(i), self.max_pairs, replace=False)
            i, j = i[pick], j[pick]
        if self.adapt_method == "head":
            # n observations make n(n-1)/2 pairs, far from independent: together they count as
            # pair_evidence * n comparisons (None: each pair counts once)
            weight = 1.0 if self.pair_evidence is None else min(1.0, self.pair_evidence * len(y) / len(i))
            self.heads_, probs = [], []
            for k, phi in enumerate(self._features(self.members_, X)):
                D = phi[i] - phi[j]
                w, cov, evidence = _map_head(D, self._prior_mean(k, self.trust_), 1.0 / self._prior_var(k), weight)
                heads = [(w, cov, evidence)]
                if self.fallback > 0 and self.residual > 0:
                    # the alternative: the meta-features say nothing about this task, a linear model of the
                    # raw encoding does; the two are averaged by their (Laplace) evidence
                    var = np.concatenate([np.full(self.embed, 1e-6 * self.spread_[k] + 1e-12),
                                          np.full(self.n_features_in_, (self.fallback * self.scale_[k]) ** 2)])
                    heads.append(_map_head(D, np.zeros(len(var)), 1.0 / var, weight))
                ev = np.array([h[2] for h in heads])
                p = np.exp(ev - ev.max())
                p /= p.sum()
                self.heads_.append([(float(pk), hw, hc) for pk, (hw, hc, _) in zip(p, heads)])
                probs.append(float(p[0]))
            self.meta_weight_ = float(np.mean(probs))
        else:
            self._finetune(X, i, j)
        return self

    def _finetune(self, X: np.ndarray, i: np.ndarray, j: np.ndarray) -> None:
        """Fine-tune all weights of each member on the observed pairs, proximal to the meta weights."""
        Xt = torch.from_numpy(X)
        ii, jj = torch.from_numpy(i), torch.from_numpy(j)
        self.adapted_members_, self.heads_ = [], []
        for k, base in enumerate(self.members_):
            member = copy.deepcopy(base)
            anchor = [p.detach().clone() for p in member.trunk.parameters()]
            mean = torch.from_numpy(self._prior_mean(k, self.trust_))
            prec = torch.from_numpy(1.0 / self._prior_var(k))
            head = mean.clone().requires_grad_(True)
            opt = torch.optim.Adam(list(member.trunk.parameters()) + [head], lr=self.adapt_lr)
            for _ in range(self.adapt_steps):
                phi = member(Xt).double()
                if self.residual > 0:
                    phi = torch.cat([phi, Xt.double()], dim=1)
                s = phi @ head
                loss = F.softplus(-(s[ii] - s[jj])).sum()
                loss = loss + 0.5 * (prec * (head - mean) ** 2).sum()
                loss = loss + 0.5 * sum(((p - a) ** 2).sum() for p, a in zip(member.trunk.parameters(), anchor)) \
                    / self.weight_decay_anchor
                opt.zero_grad()
                (loss / len(ii)).backward()
                opt.step()
            member.eval()
            self.adapted_members_.append(member)
            self.heads_.append([(1.0, head.detach().numpy().copy(), None)])

    #: prior variance of each trunk weight around its meta-trained value when fine-tuning
    weight_decay_anchor = 1e-2

    # --- persistence ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the meta-trained predictor (not its adaptation) to one file."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}
        payload = {
            "format": FORMAT, "version": VERSION, "params": params,
            "n_features": int(self.n_features_in_), "tasks": list(self.tasks_),
            "members": [m.state_dict() for m in self.members_],
            "w0": [torch.from_numpy(w) for w in self.w0_], "spread": list(self.spread_),
            "scale": list(self.scale_), "meta": dict(getattr(self, "meta_", {}) or {}),
        }
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MetaRankPredictor":
        """Read a file written by :meth:`save`; raises ``ValueError`` naming what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: predictor file not found")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is a bad input
            raise ValueError(f"{path}: not a predictor file ({type(err).__name__}: {err})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not an evonas predictor file")
        if payload.get("version") != VERSION:
            raise ValueError(f"{path}: predictor file version {payload.get('version')!r}, expected {VERSION}")
        params = dict(payload["params"])
        params["hidden"] = tuple(params["hidden"])
        model = cls(**params)
        model._validate_params()
        n_tasks = len(payload["tasks"])
        model.members_ = []
        for state in payload["members"]:
            member = _Member(payload["n_features"], model.hidden, model.embed, n_tasks, torch.Generator())
            member.load_state_dict(state)
            member.eval()
            model.members_.append(member)
        model.n_features_in_ = int(payload["n_features"])
        model.tasks_ = list(payload["tasks"])
        model.w0_ = [w.double().numpy().copy() for w in payload["w0"]]
        model.spread_ = [float(s) for s in payload["spread"]]
        model.scale_ = [float(s) for s in payload["scale"]]
        model.meta_ = dict(payload.get("meta", {}))
        model.reset()
        return model


def _map_head(D: np.ndarray, mean: np.ndarray, precision: np.ndarray, weight: float = 1.0,
              iters: int = 20) -> tuple[np.ndarray, np.ndarray, float]:
    """MAP, Laplace covariance and Laplace log-evidence of ``w`` for pairs ``D_p = phi_better - phi_worse`` under
    ``weight * sum_p softplus(-D_p w) + sum_i precision_i / 2 * (w_i - mean_i)^2`` (convex; damped Newton)."""
    w = mean.copy()
    prior_hess = np.diag(precision)

    def objective(v: np.ndarray) -> float:
        return float(weight * np.logaddexp(0.0, -(D @ v)).sum() + 0.5 * (precision * (v - mean) ** 2).sum())

    f = objective(w)
    for _ in range(iters):
        p = expit(-(D @ w))  # d softplus(-z) / d(-z)
        grad = -weight * (D.T @ p) + precision * (w - mean)
        hess = weight * (D.T * (p * (1 - p))) @ D + prior_hess
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-4:
            cand = w - t * step
            fc = objective(cand)
            if fc <= f + 1e-12:
                break
            t *= 0.5
        else:
            break
        w, f_old, f = cand, f, fc
        if f_old - f < 1e-9 * max(1.0, abs(f)):
            break
    p = expit(-(D @ w))
    hess = weight * (D.T * (p * (1 - p))) @ D + prior_hess
    # Laplace log-evidence: -f(w) + log N(w; prior) normaliser - 1/2 log det H (up to a shared constant)
    _, logdet = np.linalg.slogdet(hess)
    evidence = -f + 0.5 * float(np.log(precision).sum()) - 0.5 * logdet
    return w, np.linalg.inv(hess), evidence
