"""Bayesian optimisation with a Gaussian process on the architecture encoding (``gp``): no prior needed.

After ``n_init`` random architectures, each proposal maximises the expected improvement (or the upper
confidence bound ``mean + kappa * std``) of a :class:`~evonas.gp.HammingGP` fitted to every observation so
far. Candidates: every unseen architecture of a space of at most ``max_enumerate`` members (the
``shortlist`` best by posterior mean and ``explore`` random others get a posterior std), else
``mutants`` mutations of the best observations and ``pool`` random samples. A batch takes the best
distinct candidates. Ranking uses the first objective, like REA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evonas.genome import Genome, make_genome
from evonas.gp import HammingGP, expected_improvement, hamming
from evonas.strategies.base import Strategy, check_min, register_strategy
from evonas.strategies.universe import Universe, sampled, universe
from evonas.trial import Trial

ACQUISITIONS = ("ei", "ucb")


class ObservedGP:
    """A :class:`HammingGP` over a search's observations, with the distances to an enumerated universe
    cached column by column (one new column per observation).

    ``prior``: optional prior scores for the GP's linear prior term (see :meth:`HammingGP.fit`), a function
    of a list of genomes; ``prior_rows``: the same for every row of the universe.
    """

    def __init__(self, space, u: Universe | None, refit_every: int = 5,
                 prior: Callable[[Sequence[Genome]], np.ndarray] | None = None,
                 prior_rows: np.ndarray | None = None):
        self.space = space
        self.u = u
        self.refit_every = int(refit_every)
        self.prior = prior
        self.prior_rows = prior_rows
        self.gp = HammingGP()
        self.X: list[np.ndarray] = []
        self.y: list[float] = []
        self.p: list[float] = []
        self._D: np.ndarray | None = None  # distances universe -> observation, one column per observation
        self.n_fit = 0
        self.n_grid = 0  # observations at the last hyperparameter search

    def add(self, genome: Genome, value: float) -> None:
        x = self.space.encode(genome).astype(np.float32)
        self.X.append(x)
        self.y.append(float(value))
        if self.prior is not None:
            self.p.append(float(self.prior([genome])[0]))
        if self.u is not None:
            n = len(self.y)
            if self._D is None or self._D.shape[1] < n:  # grow by doubling
                grown = np.empty((len(self.u.X), max(64, 2 * n)), dtype=np.float32)
                if self._D is not None:
                    grown[:, : n - 1] = self._D[:, : n - 1]
                self._D = grown
            self._D[:, n - 1] = hamming(self.u.X, x[None, :])[:, 0]

    @property
    def ready(self) -> bool:
        return len(self.y) >= 2

    def _fit(self, keep: bool) -> None:
        self.gp.fit(np.stack(self.X), np.asarray(self.y), keep_hyperparameters=keep,
                    prior=np.asarray(self.p) if self.prior is not None else None)
        self.n_fit = len(self.y)

    def fit(self) -> None:
        n = len(self.y)
        if n == self.n_fit or n < 2:
            return
        grid = n <= 30 or n - self.n_grid >= self.refit_every
        self._fit(keep=not grid)
        if grid:
            self.n_grid = n

    def predict_rows(self, rows: np.ndarray, return_std: bool = False):
        """Posterior (normal-score units) of universe rows."""
        self.fit()
        D = self._D[rows, : len(self.y)] if len(rows) else np.zeros((0, len(self.y)))
        prior = self.prior_rows[rows] if self.prior_rows is not None else None
        return self.gp.predict_distances(D, return_std, prior)

    def predict_observed(self) -> np.ndarray:
        """Posterior means of the observations themselves."""
        self.fit()
        prior = np.asarray(self.p) if self.prior is not None else None
        return self.gp.predict(np.stack(self.X), False, prior)

    def predict(self, genomes: Sequence[Genome], return_std: bool = False):
        self.fit()
        prior = self.prior(genomes) if self.prior is not None else None
        return self.gp.predict(np.stack([self.space.encode(g) for g in genomes]), return_std, prior)

    def state(self) -> dict[str, Any]:
        return {"n_grid": self.n_grid, "length_scale": getattr(self.gp, "length_scale_", None),
                "noise": getattr(self.gp, "noise_", None), "prior_weight": getattr(self.gp, "prior_weight_", 0.0)}

    def restore(self, genomes: Sequence[Genome], values: Sequence[float], state: dict[str, Any]) -> None:
        """Rebuild from the observations and the hyperparameters in use (as :meth:`state` recorded them)."""
        for g, v in zip(genomes, values):
            self.add(g, v)
        self.n_grid = int(state["n_grid"])
        if state["length_scale"] is not None and len(self.y) >= 2:
            self.gp.length_scale_, self.gp.noise_ = float(state["length_scale"]), float(state["noise"])
            self.gp.prior_weight_ = float(state.get("prior_weight", 0.0))
            self._fit(keep=True)


def acquire(model: ObservedGP, u: Universe | None, free: np.ndarray | None, genomes: list[Genome] | None,
            acquisition: str, kappa: float, shortlist: int, explore: int, rng: np.random.Generator):
    """(candidate genomes, their acquisition, their posterior mean) from an enumerated universe's ``free``
    rows or from the given ``genomes``."""
    if u is not None:
        rows = np.flatnonzero(free)
        mean_all = model.predict_rows(rows)
        keep = np.argsort(-mean_all, kind="stable")[:shortlist]
        rest = np.setdiff1d(np.arange(len(rows)), keep)
        if len(rest) and explore:
            keep = np.concatenate([keep, rng.choice(rest, min(explore, len(rest)), replace=False)])
        rows = rows[keep]
        mean, std = model.predict_rows(rows, return_std=True)
        genomes = [u.genome(i) for i in rows]
    else:
        mean, std = model.predict(genomes, return_std=True)
    if acquisition == "ei":
        acq = expected_improvement(mean, std, model.gp.best_)
    else:
        acq = mean + kappa * std
    return genomes, acq, mean


@register_strategy
class GPSearch(Strategy):
    """Bayesian optimisation with an exponential-Hamming GP (see the module docstring).

    ``n_init``: random architectures first. ``acquisition``: ``"ei"`` or ``"ucb"`` (``kappa``: its std
    weight). ``refit_every``: observations between searches of the kernel's hyperparameters (after 30).
    """

    name = "gp"

    def __init__(self, space, objectives, random_state=None, n_init: int = 10, acquisition: str = "ei",
                 kappa: float = 2.0, refit_every: int = 5, shortlist: int = 500, explore: int = 200,
                 mutants: int = 200, pool: int = 1000, max_enumerate: int = 50_000, **kwargs: Any):
        super().__init__(space, objectives, random_state, **kwargs)
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition: must be one of {', '.join(ACQUISITIONS)}, got {acquisition!r}")
        for name, value, low in (("n_init", n_init, 1), ("kappa", kappa, 0), ("refit_every", refit_every, 1),
                                 ("shortlist", shortlist, 1), ("explore", explore, 0), ("mutants", mutants, 0),
                                 ("pool", pool, 1)):
            check_min(name, value, low)
        self.n_init = int(n_init)
        self.acquisition = acquisition
        self.kappa = float(kappa)
        self.shortlist, self.explore = int(shortlist), int(explore)
        self.mutants, self.pool = int(mutants), int(pool)
        self.universe = universe(space, int(max_enumerate))
        self.model = ObservedGP(space, self.universe, refit_every)
        self.obs_genes: list[list[int]] = []
        self.obs_y: list[float] = []
        self.n_asked = 0

    def parents(self, k: int = 10) -> list[Genome]:
        """The ``k`` best observations (for mutants in spaces too large to enumerate)."""
        order = np.argsort(-np.asarray(self.obs_y), kind="stable")[:k]
        return [make_genome(self.obs_genes[i]) for i in order]

    def candidates(self, pending: set[str]):
        """``(free rows mask, None)`` for an enumerated space, else ``(None, genomes)``."""
        taken = lambda h: h in self.seen or h in pending  # noqa: E731
        if self.universe is not None:
            return self.universe.free([*self.seen, *pending]), None
        return None, sampled(self.space, self.rng, self.parents(), self.toolbox.mutate, self.mutants, self.pool,
                             taken)

    def ask(self, n: int) -> list[Genome]:
        pending: set[str] = set()
        out: list[Genome] = []
        while len(out) < n:
            if self.n_asked < self.n_init or not self.model.ready:
                out.append(self.fresh(self.toolbox.individual, pending))
                self.n_asked += 1
                continue
            free, genomes = self.candidates(pending)
            if (free is not None and not free.any()) or (genomes is not None and not genomes):
                out.append(self.fresh(self.toolbox.individual, pending))
                self.n_asked += 1
                continue
            genomes, acq, _ = acquire(self.model, self.universe, free, genomes, self.acquisition, self.kappa,
                                      self.shortlist, self.explore, self.rng)
            for i in np.argsort(-acq, kind="stable"):
                h = self.space.canonical_hash(genomes[i])
                if h in pending:
                    continue
                pending.add(h)
                out.append(genomes[i])
                self.n_asked += 1
                if len(out) == n:
                    break
        return out

    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        for genome, trial in zip(genomes, trials):
            value = genome.fitness.values[0] * self.weights[0]
            if trial.ok and np.isfinite(value):
                self.obs_genes.append([int(x) for x in genome])
                self.obs_y.append(float(value))
                self.model.add(genome, value)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "obs_genes": self.obs_genes, "obs_y": self.obs_y, "n_asked": self.n_asked,
                "model": self.model.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.obs_genes = [list(map(int, g)) for g in state["obs_genes"]]
        self.obs_y = [float(v) for v in state["obs_y"]]
        self.n_asked = int(state["n_asked"])
        self.model = ObservedGP(self.space, self.universe, self.model.refit_every)
        self.model.restore([make_genome(g) for g in self.obs_genes], self.obs_y, state["model"])
