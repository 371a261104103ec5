"""Meta-warm-started evolution: regularized evolution steered by a meta-learned, few-shot-adapted predictor.

* **Initial population**: the predictor's top picks (by acquisition, mean + ``kappa`` * std) interleaved
  with random architectures; a pick is replaced by a random one as soon as the prior ranks the
  observations badly (its trust drops below ``min_trust``).
* **Each child**: up to ``candidates`` offspring are proposed exactly as REA proposes one (mutation of the
  best of ``sample`` random members), plus up to ``global_candidates`` of the best unseen architectures
  of the space by acquisition (as many as the lower of confidence and trust allow: jumps across the
  space only when the prior is trusted); the one with the best acquisition is evaluated.
* **After each batch** the predictor adapts to every observation so far (its trust in the prior is how
  well the prior ranks them, see :meth:`MetaRankPredictor.adapt`).
* **Fallback**: how many candidates are screened follows the *confidence*, the running out-of-sample
  concordance of the predictions made at ask time with what was then observed. At confidence 0 one
  offspring is proposed and evaluated unscreened: plain REA. A misleading prior therefore costs at most
  the few picks made before its trust collapses.

Ranking uses the first objective, like REA.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evonas.genome import Genome, make_genome
from evonas.strategies.base import (Strategy, check_min, check_sample, check_within, genome_state, genomes_from_state,
                                    register_strategy)
from evonas.strategies.rea import register_aging
from evonas.trial import Trial

#: loaded predictor files, by (resolved path, mtime)
_LOADED: dict[tuple[str, float], Any] = {}
#: enumerated spaces with their predictor features, by (id(predictor), space)
_UNIVERSE: dict[tuple[int, str], tuple[Any, dict]] = {}


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


@register_strategy
class MetaEvolution(Strategy):
    """REA whose initial population and offspring are chosen by a meta-learned predictor.

    ``predictor``: a predictor file (``evonas meta train-predictor``) or a fitted
    :class:`~evonas.predictor.MetaRankPredictor`. ``population``/``sample``: as in REA. ``picks``: fraction
    of the initial population taken from the predictor. ``candidates``/``global_candidates``: the most
    offspring / global picks screened per child (at full confidence). ``kappa``: weight of the
    uncertainty in the acquisition. ``min_trust``: below this trust in the prior, initial picks become
    random. ``window``: observations the confidence averages over. Spaces of at most ``max_enumerate``
    architectures are scored whole; larger ones through ``pool`` random samples per global pick.
    """

    name = "meta"
    path_params = ("predictor",)

    def __init__(self, space, objectives, random_state=None, predictor: Any = None, population: int = 10,
                 sample: int = 3, picks: float = 0.5, candidates: int = 50, global_candidates: int = 10,
                 kappa: float = 0.5, min_trust: float = 0.2, window: int = 20, max_enumerate: int = 50_000,
                 pool: int = 2000, **kwargs: Any):
        super().__init__(space, objectives, random_state, **kwargs)
        check_min("population", population, 1)
        check_sample(sample, population)
        check_within("picks", picks, 0, 1)
        check_within("min_trust", min_trust, 0, 1)
        for name, value, low in (("candidates", candidates, 1), ("global_candidates", global_candidates, 0),
                                 ("kappa", kappa, 0), ("window", window, 1), ("pool", pool, 1)):
            check_min(name, value, low)
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
        self.population_size = int(population)
        self.sample_size = int(sample)
        self.n_picks = int(round(picks * population))
        self.candidates = int(candidates)
        self.global_candidates = int(global_candidates)
        self.kappa = float(kappa)
        self.min_trust = float(min_trust)
        self.window = int(window)
        self.pool = int(pool)
        self.population: deque[Genome] = deque()
        register_aging(self.toolbox, self.population_size, self.sample_size, self.rng)  # REA's select, age
        self.n_asked = 0
        self.obs_genes: list[list[int]] = []
        self.obs_y: list[float] = []
        self.asked_pred: dict[str, float] = {}  # canonical hash -> predicted score when it was proposed
        self.scores: list[float] = []  # out-of-sample concordance of each observation's prediction
        self.n_adapted = 0
        self.trace: list[dict[str, float]] = []  # (n observations, trust, confidence) after each tell
        self._mean_all: np.ndarray | None = None  # adapted mean over the enumerated space (cache)
        with self._threads():
            self._universe = self._enumerate(int(max_enumerate))

    # --- the candidate universe -------------------------------------------------------------------------
    def _enumerate(self, limit: int) -> dict | None:
        size = self.space.size()
        if size is None or size > limit:
            return None
        key = (id(self.base), self.base.residual > 0, self.base.adapt_method == "finetune",
               repr(sorted(self.space.describe().items())))
        cached = _UNIVERSE.get(key)
        if cached is not None and cached[0] is self.base:
            return cached[1]
        genomes = list(self.space.enumerate())
        X = np.stack([self.space.encode(g) for g in genomes]).astype(np.float32)
        data = {"genes": np.asarray(genomes, dtype=np.int64), "X": X,
                "hash": [self.space.canonical_hash(g) for g in genomes],
                "row": {tuple(g): i for i, g in enumerate(genomes)},
                "feats": self.base.transform(X) if self.base.adapt_method != "finetune" else None}
        if len(_UNIVERSE) >= 4:
            _UNIVERSE.pop(next(iter(_UNIVERSE)))
        _UNIVERSE[key] = (self.base, data)
        return data

    def _features(self, genomes: Sequence[Genome]) -> list[np.ndarray]:
        u = self._universe
        if u is not None and u["feats"] is not None:
            rows = [u["row"][tuple(g)] for g in genomes]
            return [f[rows] for f in u["feats"]]
        return self.predictor.transform(np.stack([self.space.encode(g) for g in genomes]))

    def predict(self, genomes: Sequence[Genome], return_std: bool = False):
        """The adapted predictor's scores (and uncertainties) of ``genomes``."""
        return self.predictor.predict_features(self._features(genomes), return_std=return_std)

    def _acquisition(self, genomes: Sequence[Genome]) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self.predict(genomes, return_std=True)
        return mean + self.kappa * std, mean

    # --- trust and confidence ---------------------------------------------------------------------------
    @property
    def trust(self) -> float:
        """Trust in the meta-prior given the observations so far."""
        if self.predictor.trust_ is not None and self.predictor.n_adapted_ == len(self.obs_y):
            return float(self.predictor.trust_)
        if len(self.obs_y) < 2:
            return float(self.predictor.prior_trust)
        return self.predictor.trust(self._obs_X(), np.asarray(self.obs_y))

    @property
    def confidence(self) -> float:
        """How much the predictor steers: running out-of-sample concordance, shrunk to the trust early."""
        recent = self.scores[-self.window:]
        k = 2.0
        return float(max(0.0, (sum(recent) + k * self.trust) / (len(recent) + k)))

    def _obs_X(self) -> np.ndarray:
        return np.stack([self.space.encode(g) for g in self.obs_genes]).astype(np.float32)

    # --- proposals --------------------------------------------------------------------------------------
    def _global_best(self, k: int, pending: set[str]) -> list[Genome]:
        """Up to ``k`` unseen, non-pending architectures with the best acquisition (one per hash)."""
        if k <= 0:
            return []
        u = self._universe
        if u is not None and u["feats"] is not None:
            if self._mean_all is None:
                self._mean_all = self.predictor.predict_features(u["feats"])
            avail = np.fromiter((h not in self.seen and h not in pending for h in u["hash"]), bool, len(u["hash"]))
            mean = np.where(avail, self._mean_all, -np.inf)
            short = np.argsort(-mean, kind="stable")[: min(max(200, 4 * k), int(avail.sum()))]
            genomes = [make_genome(u["genes"][i]) for i in short]
        elif u is not None:
            genomes = [make_genome(g) for g in u["genes"]]
        else:
            genomes = [self.space.sample(self.rng) for _ in range(self.pool)]
        acq, _ = self._acquisition(genomes)
        out, taken = [], set()
        for i in np.argsort(-acq, kind="stable"):
            h = self.space.canonical_hash(genomes[i])
            if h in self.seen or h in pending or h in taken:
                continue
            taken.add(h)
            out.append(genomes[i])
            if len(out) == k:
                break
        return out

    def _mutant(self) -> Genome:
        return self.toolbox.mutate(self.toolbox.select(self.population))

    def _choose(self, pool: list[Genome], pending: set[str]) -> Genome:
        if len(pool) == 1:
            choice = pool[0]
            pred = float(self.predict([choice])[0])
        else:
            acq, mean = self._acquisition(pool)
            best = int(np.argmax(acq))
            choice, pred = pool[best], float(mean[best])
        h = self.space.canonical_hash(choice)
        pending.add(h)
        self.asked_pred[h] = pred
        return choice

    def _pick(self, pending: set[str]) -> Genome:
        picks = self._global_best(1, pending)
        if not picks:
            return self._choose([self.fresh(self.toolbox.individual, pending)], pending)
        return self._choose(picks, pending)

    def _child(self, pending: set[str]) -> Genome:
        c = self.confidence
        n_mut = 1 + int(round((self.candidates - 1) * c))
        n_glob = int(round(self.global_candidates * min(c, self.trust)))
        pool, hashes = [], set()
        tries = 0
        while len(pool) < n_mut and tries < n_mut * self.max_tries:
            tries += 1
            g = self._mutant()
            h = self.space.canonical_hash(g)
            if self.dedupe and (h in self.seen or h in pending or h in hashes):
                continue
            pool.append(g)
            hashes.add(h)
        for g in self._global_best(n_glob, pending | hashes):
            pool.append(g)
        if not pool:  # everything nearby was seen: a fresh random architecture
            pool = [self.fresh(self.toolbox.individual, set(pending))]
        return self._choose(pool, pending)

    def ask(self, n: int) -> list[Genome]:
        with self._threads():
            return self._ask(n)

    def _pick_slot(self, k: int) -> bool:
        """Whether initial proposal ``k`` is a pick: ``n_picks`` spread evenly, the first one a pick."""
        p, n = self.n_picks, self.population_size
        return math.ceil((k + 1) * p / n) > math.ceil(k * p / n)

    def _ask(self, n: int) -> list[Genome]:
        pending: set[str] = set()
        out = []
        for _ in range(n):
            k = self.n_asked
            if k < self.population_size or not self.population:
                if self._pick_slot(k) and self.trust >= self.min_trust:
                    out.append(self._pick(pending))
                else:
                    out.append(self._choose([self.fresh(self.toolbox.individual, pending)], pending))
            else:
                out.append(self._child(pending))
            self.n_asked += 1
        return out

    # --- learning ---------------------------------------------------------------------------------------
    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        with self._threads():
            self._learn(genomes, trials)

    def _learn(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        weight = self.weights[0]
        prev_pred = self.predict([make_genome(g) for g in self.obs_genes]) if self.obs_genes else None
        prev_y = np.asarray(self.obs_y)
        for genome, trial in zip(genomes, trials):
            self.toolbox.age(self.population, genome)
            pred = self.asked_pred.pop(trial.canonical_hash, None)
            value = genome.fitness.values[0] * weight if genome.fitness.valid else -np.inf
            if not trial.ok or not np.isfinite(value):
                continue
            if pred is not None and prev_pred is not None and len(prev_y):
                dy = np.sign(value - prev_y)
                mask = dy != 0
                if mask.any():
                    self.scores.append(float((dy[mask] * np.sign(pred - prev_pred[mask])).mean()))
            self.obs_genes.append([int(x) for x in genome])
            self.obs_y.append(float(value))
        self._maybe_adapt()
        self.trace.append({"n": len(self.obs_y), "trust": self.trust, "confidence": self.confidence})

    def _maybe_adapt(self, force: bool = False) -> None:
        n = len(self.obs_y)
        if n < 2 or n == self.n_adapted:
            return
        if force or n <= 50 or n - self.n_adapted >= max(1, n // 25):
            self.predictor.adapt(self._obs_X(), np.asarray(self.obs_y))
            self._mean_all = None
            self.n_adapted = n

    # --- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": genome_state(self.population), "n_asked": self.n_asked,
                "obs_genes": self.obs_genes, "obs_y": self.obs_y, "asked_pred": self.asked_pred,
                "scores": self.scores, "n_adapted": self.n_adapted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = deque(genomes_from_state(state["population"], self.weights))
        self.n_asked = int(state["n_asked"])
        self.obs_genes = [list(map(int, g)) for g in state["obs_genes"]]
        self.obs_y = [float(v) for v in state["obs_y"]]
        self.asked_pred = {str(k): float(v) for k, v in state["asked_pred"].items()}
        self.scores = [float(s) for s in state["scores"]]
        self.predictor.reset()
        self._mean_all = None
        self.n_adapted = int(state["n_adapted"])
        if self.n_adapted >= 2:  # the predictor as it was: adapted to the first n_adapted observations
            self.predictor.adapt(self._obs_X()[: self.n_adapted], np.asarray(self.obs_y[: self.n_adapted]))
