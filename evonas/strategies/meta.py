"""Meta-guided search (``meta``): a meta-learned prior, used only as far as it predicts this task.

Two models score every candidate:

* the **prior**: the meta-learned :class:`~evonas.predictor.MetaRankPredictor`, its task head adapted to
  every observation so far (trust in the prior = how well it orders them); acquisition mean + ``kappa`` std;
* the **task model**: a :class:`~evonas.gp.HammingGP` on this task's observations, whose kernel carries the
  meta-prior's score as a linear term weighted by the marginal likelihood (0 when the data do not support
  it: the prior counts only as far as it earns it); acquisition expected improvement.

Their *prequential* scores decide the rest: after each evaluation, each model's prediction of the new
architecture, made before it was evaluated, is compared with the observations so far (concordance of
the pairs it forms with them); a model's score is the mean over the last ``window`` observations, backed
by ``credit`` pseudo-observations of its starting score (the prior: its trust; the task model: 0, so the
prior's head start decays with evidence as in piBO). The **weight** of the prior in the acquisition is a
logistic function of the score difference (``temperature``); the mixed acquisition is ``w`` times the
prior's plus ``1 - w`` times the task model's, each as normal scores of its ranks in the pool. The
**confidence** (the better score, in [0, 1]) sets the **pool**: always REA's offspring (mutations of the
best of ``sample`` random members of the ``population`` most recent observations; 1 + (``candidates`` - 1)
x confidence of them), plus global candidates (the ``shortlist`` x confidence best unseen architectures
by each model's mean and ``explore`` x confidence random ones). At confidence 0 this is one unscreened
REA child: plain regularized evolution, the floor. The first proposals (fewer than ``n_init``
observations) are the prior's picks while its trust is at least ``min_trust``, random ones otherwise.

Why this, measured (median queries to a top-0.1% cell, 10 seeds, searches of at most 300 queries, the
CIFAR-10 leave-one-out predictor; tuning tasks only: unlike tasks drawn with task seed 1000 by
``benchmarks/unlike_tasks.py``, Spearman rho with the prior's sources, GP length scale 3 unless said;
Pi 5 PyTorch Mobile latency, minimised; CIFAR-10 accuracy minus ONNX latency, normal scores)::

    task                     REA   gp (no prior)  previous meta  head alone  head/GP mix  this
    rho 0                    126   45.5           39             45.5        45.5         51.5
    rho 0.3                  128   34             45.5           26          29.5         22
    rho 0.5                  65.5  39             21.5           28.5        33.5         31
    rho 0.3, length scale 1  216.5 >300 (0/10)    187            >300        223          65
    Pi 5 latency             67.5  25             20             16          16.5         19
    accuracy - latency       177   99             18             12.5        11.5         11

("previous meta": REA offspring screened by the head, the strategy before issue 10; "head alone" and
"head/GP mix": the models' best over the whole space, without REA offspring.) Searching the whole space
by a model fails where the task is rough (length scale 1: neighbours correlate 0.37) and no model
predicts it: the GP and the head then propose near-random cells, while REA's offspring keep climbing.
Offspring alone under-use a good model. Keeping REA's offspring in the pool and opening it to global
candidates only as far as a model predicts well gets both; the prequential weight lets the GP take over
from a prior that misleads (the adapted head, which also learns from the observations, stays in the mix
when it predicts as well). On CIFAR-10 itself every variant with the prior finds a top-0.1% cell at query
1. Full results on held-out tasks: ``benchmarks/meta_transfer.py`` (BENCHMARKS.md).

Ranking uses the first objective, like REA.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from evonas.genome import Genome, make_genome
from evonas.gp import expected_improvement, normal_scores
from evonas.strategies.base import (Strategy, check_min, check_sample, check_within, genome_state, genomes_from_state,
                                    register_strategy)
from evonas.strategies.bayesopt import ObservedGP
from evonas.strategies.rea import register_aging
from evonas.strategies.universe import sampled, universe
from evonas.trial import Trial

#: loaded predictor files, by (resolved path, mtime)
_LOADED: dict[tuple[str, float], Any] = {}
#: each predictor's features of an enumerated space, by (id(predictor), space)
_UNIVERSE: dict[tuple[int, str], tuple[Any, list]] = {}


def load_predictor(path: str | Path):
    """A :class:`MetaRankPredictor` from a file, loaded once per process (reloaded when it changes)."""
    from evonas.predictor import MetaRankPredictor

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ValueError(f"predictor: file not found: {path}")
    key = (str(p), p.stat().st_mtime)
    if key not in _LOADED:
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        try:
            _LOADED[key] = MetaRankPredictor.load(p)
        except ValueError as err:
            raise ValueError(f"predictor: {err}") from None
    return _LOADED[key]


class _Rows:
    """Universe rows as a lazy sequence of genomes (only the chosen one is built)."""

    def __init__(self, u, rows: np.ndarray):
        self.u, self.rows = u, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Genome:
        return self.u.genome(self.rows[i])


@register_strategy
class MetaEvolution(Strategy):
    """Model-based search mixing a meta-learned prior with a model of this task alone (module docstring).

    ``predictor``: a predictor file (``evonas meta train-predictor``) or a fitted
    :class:`~evonas.predictor.MetaRankPredictor`. ``n_init``: observations before the task model joins.
    ``kappa``: weight of the prior's uncertainty in its acquisition. ``min_trust``: below it the first
    proposals are random. ``window``, ``credit``, ``temperature``: the prequential scores and the prior's
    weight. ``population``, ``sample``, ``candidates``: REA's offspring in the pool. ``shortlist``,
    ``explore``: global candidates (at full confidence) of a space of at most ``max_enumerate``
    architectures; larger spaces take ``mutants`` mutations of the best observations and ``pool`` random
    samples instead. ``prior_term``: give the task model the prior's score as a kernel term.
    """

    name = "meta"
    path_params = ("predictor",)

    def __init__(self, space, objectives, random_state=None, predictor: Any = None, n_init: int = 5,
                 kappa: float = 0.5, min_trust: float = 0.2, window: int = 20, credit: float = 3.0,
                 temperature: float = 0.1, shortlist: int = 300, explore: int = 200, mutants: int = 200,
                 pool: int = 1000, max_enumerate: int = 50_000, prior_term: bool = True, population: int = 10,
                 sample: int = 3, candidates: int = 50, **kwargs: Any):
        super().__init__(space, objectives, random_state, **kwargs)
        check_within("min_trust", min_trust, 0, 1)
        check_min("population", population, 1)
        check_sample(sample, population)
        check_min("candidates", candidates, 1)
        for name, value, low in (("n_init", n_init, 1), ("kappa", kappa, 0), ("window", window, 1),
                                 ("credit", credit, 0), ("shortlist", shortlist, 1), ("explore", explore, 0),
                                 ("mutants", mutants, 0), ("pool", pool, 1)):
            check_min(name, value, low)
        if not temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        if predictor is None:
            raise ValueError("predictor: required (a file from `evonas meta train-predictor`)")
        from evonas.predictor import MetaRankPredictor, check_space
        from evonas.predictor.model import single_thread

        self._threads = single_thread
        if isinstance(predictor, (str, Path)):
            self.predictor_path = str(predictor)
            base = load_predictor(predictor)
        elif isinstance(predictor, MetaRankPredictor):
            self.predictor_path = None
            base = predictor
        else:
            raise ValueError(f"predictor: expected a file path or a MetaRankPredictor, got {type(predictor).__name__}")
        if not hasattr(base, "members_"):
            raise ValueError("predictor: not fitted")
        try:
            check_space(base, space)
        except ValueError as err:
            raise ValueError(f"predictor: {err}") from None
        self.base = base
        self.predictor = copy.copy(base)  # shares the meta-trained weights; adaptation state is its own
        self.predictor.reset()
        self.n_init = int(n_init)
        self.kappa = float(kappa)
        self.min_trust = float(min_trust)
        self.window = int(window)
        self.credit = float(credit)
        self.temperature = float(temperature)
        self.shortlist, self.explore = int(shortlist), int(explore)
        self.mutants, self.pool = int(mutants), int(pool)
        self.universe = universe(space, int(max_enumerate))
        self.prior_term = bool(prior_term)
        self.population_size, self.sample_size, self.candidates = int(population), int(sample), int(candidates)
        self.population: deque[Genome] = deque()
        register_aging(self.toolbox, self.population_size, self.sample_size, self.rng)  # REA's select, age
        self.obs_genes: list[list[int]] = []
        self.obs_y: list[float] = []
        self.asked: dict[str, list[float | None]] = {}  # hash -> [prior's, scratch's] prediction when asked
        self.scores: dict[str, list[float]] = {"prior": [], "scratch": []}  # prequential concordances
        self.n_adapted = 0
        self.n_asked = 0
        self.trace: list[dict[str, float]] = []  # (n observations, trust, prior weight) after each tell
        self._mean_all: np.ndarray | None = None  # the adapted prior's mean over the universe (cache)
        self._trust: tuple[int, float] = (-1, 0.0)  # (observations, trust) cache
        with self._threads():
            self._feats = self._universe_features()
            self._prior_all, self._prior_scale = self._standardised_prior()
        self.scratch = self._task_model()

    # --- the prior's features of the enumerated space ---------------------------------------------------
    def _universe_features(self) -> list[np.ndarray] | None:
        if self.universe is None or self.base.adapt_method == "finetune":
            return None
        key = (id(self.base), repr(sorted(self.space.describe().items())))
        cached = _UNIVERSE.get(key)
        if cached is None or cached[0] is not self.base:
            if len(_UNIVERSE) >= 4:
                _UNIVERSE.pop(next(iter(_UNIVERSE)))
            cached = _UNIVERSE[key] = (self.base, self.base.transform(self.universe.X))
        return cached[1]

    def _standardised_prior(self) -> tuple[np.ndarray | None, tuple[float, float]]:
        """The meta-prior's (unadapted) score of every universe row, standardised, and the (mean, std) used
        (from 1000 samples of a space too large to enumerate)."""
        if self._feats is not None:
            raw = self.base.predict_features(self._feats, prior=True)
        else:
            rng = np.random.default_rng(0)
            X = np.stack([self.space.encode(self.space.sample(rng)) for _ in range(1000)])
            raw = self.base.predict(X, prior=True)
        scale = (float(raw.mean()), float(raw.std()) or 1.0)
        return ((raw - scale[0]) / scale[1] if self._feats is not None else None), scale

    def _prior_scores(self, genomes: Sequence[Genome]) -> np.ndarray:
        """The standardised meta-prior score of ``genomes`` (the task model's prior term)."""
        if self._prior_all is not None:
            return self._prior_all[[self.universe.row[tuple(int(x) for x in g)] for g in genomes]]
        X = np.stack([self.space.encode(g) for g in genomes])
        return (self.base.predict(X, prior=True) - self._prior_scale[0]) / self._prior_scale[1]

    def _task_model(self) -> ObservedGP:
        """The model of this task alone: a Hamming GP, with the meta-prior's score as a linear kernel term
        whose weight the marginal likelihood picks (``prior_term``)."""
        if not self.prior_term:
            return ObservedGP(self.space, self.universe)
        return ObservedGP(self.space, self.universe, prior=self._prior_scores, prior_rows=self._prior_all)

    def _prior_rows(self, rows: np.ndarray, return_std: bool = False):
        return self.predictor.predict_features([f[rows] for f in self._feats], return_std=return_std)

    def predict(self, genomes: Sequence[Genome], return_std: bool = False):
        """The adapted prior's scores (and uncertainties) of ``genomes``."""
        if self._feats is not None:
            return self._prior_rows(np.array([self.universe.row[tuple(int(x) for x in g)] for g in genomes]),
                                    return_std)
        return self.predictor.predict_features(
            self.predictor.transform(np.stack([self.space.encode(g) for g in genomes])), return_std=return_std)

    # --- how far the prior is trusted -------------------------------------------------------------------
    @property
    def trust(self) -> float:
        """Trust in the meta-prior given the observations so far (how well the prior alone orders them)."""
        if self.predictor.trust_ is not None and self.predictor.n_adapted_ == len(self.obs_y):
            return float(self.predictor.trust_)
        if len(self.obs_y) < 2:
            return float(self.predictor.prior_trust)
        if self._trust[0] != len(self.obs_y):  # cached per observation count
            self._trust = (len(self.obs_y), self.predictor.trust(self._obs_X(), np.asarray(self.obs_y)))
        return self._trust[1]

    def score(self, model: str) -> float:
        """A model's recent prequential concordance, backed by ``credit`` pseudo-observations of its
        initial score (the prior: its trust; the scratch model: 0)."""
        recent = self.scores[model][-self.window:]
        start = self.trust if model == "prior" else 0.0
        return float((sum(recent) + self.credit * start) / (len(recent) + self.credit))

    @property
    def weight(self) -> float:
        """The prior's weight in the acquisition: 1 until the scratch model joins, then a logistic function
        of how much better the prior has predicted the recent observations than the scratch model."""
        if len(self.obs_y) < self.n_init or not self.scratch.ready:
            return 1.0
        return float(expit((self.score("prior") - self.score("scratch")) / self.temperature))

    def _obs_X(self) -> np.ndarray:
        return np.stack(self.scratch.X)  # the task model holds every observation's encoding, in order

    # --- proposals --------------------------------------------------------------------------------------
    def _offspring(self, k: int, taken) -> list[Genome]:
        """Up to ``k`` distinct unseen REA children: each mutates the best of ``sample`` random members of
        the ``population`` most recent observations."""
        out, hashes = [], set()
        pop = self.population
        if not pop:
            return out
        for _ in range(k * self.max_tries):
            child = self.toolbox.mutate(self.toolbox.select(pop))
            h = self.space.canonical_hash(child)
            if h not in hashes and not taken(h):
                hashes.add(h)
                out.append(child)
                if len(out) == k:
                    break
        return out

    def _pool(self, pending: set[str], w: float, conf: float):
        """Candidates (REA offspring, and global ones as far as ``conf`` allows) with the prior's acquisition,
        the task model's (or ``None`` when ``w == 1``)."""
        use_scratch = w < 1.0
        taken = lambda h: h in self.seen or h in pending  # noqa: E731
        children = self._offspring(1 + int(round((self.candidates - 1) * conf)), taken) if len(self.obs_y) else []
        n_short, n_explore = int(round(self.shortlist * conf)), int(round(self.explore * conf))
        if not self.obs_y:  # the first proposal: the prior's pick
            n_short = self.shortlist
        u = self.universe
        if u is not None:
            free = u.free([*self.seen, *pending])
            rows = np.flatnonzero(free)
            pick = [np.array([u.row[tuple(int(x) for x in g)] for g in children], dtype=np.int64)]
            if n_short and len(rows):
                if self._feats is not None:
                    if self._mean_all is None:
                        self._mean_all = self.predictor.predict_features(self._feats)
                    pick.append(rows[np.argsort(-self._mean_all[rows], kind="stable")[:n_short]])
                else:
                    pick.append(self.rng.choice(rows, min(len(rows), n_short), replace=False))
                if use_scratch:
                    pick.append(rows[np.argsort(-self.scratch.predict_rows(rows), kind="stable")[:n_short]])
            keep = np.unique(np.concatenate(pick))
            if n_explore and len(rows):
                rest = np.setdiff1d(rows, keep)
                if len(rest):
                    keep = np.concatenate([keep, self.rng.choice(rest, min(n_explore, len(rest)), replace=False)])
            if not len(keep):
                return [], None, None
            genomes = _Rows(u, keep)
            if self._feats is not None:
                mean, std = self._prior_rows(keep, return_std=True)
            else:
                mean, std = self.predict([u.genome(i) for i in keep], return_std=True)
            sg = self.scratch.predict_rows(keep, return_std=True) if use_scratch else None
        else:
            order = np.argsort(-np.asarray(self.obs_y), kind="stable")[:10]
            parents = [make_genome(self.obs_genes[i]) for i in order]
            hashes = {self.space.canonical_hash(g) for g in children}
            genomes = children + sampled(self.space, self.rng, parents, self.toolbox.mutate,
                                         int(round(self.mutants * conf)), max(1, int(round(self.pool * conf))),
                                         lambda h: taken(h) or h in hashes)
            if not genomes:
                return [], None, None
            mean, std = self.predict(genomes, return_std=True)
            sg = self.scratch.predict(genomes, return_std=True) if use_scratch else None
        scratch_acq = expected_improvement(sg[0], sg[1], self.scratch.gp.best_) if sg is not None else None
        return genomes, mean + self.kappa * std, scratch_acq

    @property
    def confidence(self) -> float:
        """How far the search leaves REA's offspring for the models' global picks: the better model's
        prequential score, clipped to [0, 1] (the prior's trust before the task model joins)."""
        if len(self.obs_y) < self.n_init or not self.scratch.ready:
            return float(min(1.0, max(0.0, self.trust)))
        return float(min(1.0, max(0.0, self.score("prior"), self.score("scratch"))))

    def _propose(self, pending: set[str]) -> Genome:
        n = len(self.obs_y)
        if n < self.n_init and self.trust < self.min_trust:
            return self._remember(self.fresh(self.toolbox.individual, pending), pending)
        w = self.weight
        genomes, prior_acq, scratch_acq = self._pool(pending, w, self.confidence if n >= self.n_init else 1.0)
        if not len(genomes):  # everything was seen
            return self._remember(self.fresh(self.toolbox.individual, pending), pending)
        score = normal_scores(prior_acq)
        if scratch_acq is not None:
            score = w * score + (1.0 - w) * normal_scores(scratch_acq)
        return self._remember(genomes[int(np.argmax(score))], pending)

    def _remember(self, genome: Genome, pending: set[str]) -> Genome:
        """Record both models' predictions of a proposal (scored against its result in :meth:`tell`)."""
        h = self.space.canonical_hash(genome)
        pending.add(h)
        scratch = float(self.scratch.predict([genome])[0]) if self.scratch.ready else None
        self.asked[h] = [float(self.predict([genome])[0]), scratch]
        return genome

    def ask(self, n: int) -> list[Genome]:
        with self._threads():
            pending: set[str] = set()
            out = []
            for _ in range(n):
                out.append(self._propose(pending))
                self.n_asked += 1
            return out

    # --- learning ---------------------------------------------------------------------------------------
    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        with self._threads():
            self._learn(genomes, trials)

    def _learn(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        weight = self.weights[0]
        prev = [make_genome(g) for g in self.obs_genes]
        prev_y = np.asarray(self.obs_y)
        prev_pred = {"prior": self.predict(prev) if prev else None,
                     "scratch": self.scratch.predict_observed() if prev and self.scratch.ready else None}
        for genome, trial in zip(genomes, trials):
            asked = self.asked.pop(trial.canonical_hash, None)
            value = genome.fitness.values[0] * weight if genome.fitness.valid else -np.inf
            if not trial.ok or not np.isfinite(value):
                continue
            if asked is not None and len(prev_y):
                dy = np.sign(value - prev_y)
                mask = dy != 0
                for model, pred in zip(("prior", "scratch"), asked):
                    if mask.any() and pred is not None and prev_pred[model] is not None:
                        agree = dy[mask] * np.sign(pred - prev_pred[model][mask])
                        self.scores[model].append(float(agree.mean()))
            self.obs_genes.append([int(x) for x in genome])
            self.obs_y.append(float(value))
            self.scratch.add(genome, value)
            self.toolbox.age(self.population, genome)
        self._maybe_adapt()
        self.trace.append({"n": len(self.obs_y), "trust": self.trust, "weight": self.weight,
                           "confidence": self.confidence})

    def _maybe_adapt(self) -> None:
        n = len(self.obs_y)
        if n < 2 or n == self.n_adapted:
            return
        if n <= 50 or n - self.n_adapted >= max(1, n // 25):
            self.predictor.adapt(self._obs_X(), np.asarray(self.obs_y))
            self._mean_all = None
            self.n_adapted = n

    # --- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": genome_state(self.population), "n_asked": self.n_asked, "obs_genes": self.obs_genes, "obs_y": self.obs_y,
                "asked": self.asked, "scores": self.scores, "n_adapted": self.n_adapted,
                "scratch": self.scratch.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_asked = int(state["n_asked"])
        self.population = deque(genomes_from_state(state["population"], self.weights))
        self.obs_genes = [list(map(int, g)) for g in state["obs_genes"]]
        self.obs_y = [float(v) for v in state["obs_y"]]
        self.asked = {str(k): [None if p is None else float(p) for p in v] for k, v in state["asked"].items()}
        self.scores = {k: [float(s) for s in v] for k, v in state["scores"].items()}
        self._trust = (-1, 0.0)
        self.scratch = self._task_model()
        self.scratch.restore([make_genome(g) for g in self.obs_genes], self.obs_y, state["scratch"])
        self.predictor.reset()
        self._mean_all = None
        self.n_adapted = int(state["n_adapted"])
        if self.n_adapted >= 2:  # the predictor as it was: adapted to the first n_adapted observations
            with self._threads():
                self.predictor.adapt(self._obs_X()[: self.n_adapted], np.asarray(self.obs_y[: self.n_adapted]))
