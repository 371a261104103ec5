"""Optuna samplers as evonas strategies: ``optuna`` (any sampler by name) and ``tpe`` (TPESampler).

Each gene is one categorical parameter (``g0``, ``g1``, ...) whose choices are its allele indices, so any
space with a fixed number of genes works (a cell space: one parameter per edge, its ops the choices).
A proposal whose canonical hash was already evaluated is answered from the evaluated value without
spending a query (the dedupe evonas's other strategies get), so every query is a distinct architecture.
Optuna is an optional extra: ``pip install evonas[optuna]``.

Resume: the state holds every told (genes, value) pair and the rng; :meth:`load_state_dict` replays them
into a fresh study (``study.add_trial``), and the sampler's own random state is re-seeded from the
strategy's rng at every ask, so a resumed search proposes what the uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evonas.genome import Genome, make_genome
from evonas.strategies.base import Strategy, register_strategy
from evonas.trial import Trial


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ValueError("optuna is not installed: pip install 'evonas[optuna]' (needed by strategy "
                         "'optuna'/'tpe')") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@register_strategy
class OptunaSearch(Strategy):
    """An Optuna sampler over the genes. ``sampler``: a class name of ``optuna.samplers`` (e.g.
    ``"TPESampler"``, ``"RandomSampler"``, ``"QMCSampler"``); ``sampler_args``: its keyword arguments
    (``seed`` is set from ``random_state``). ``max_tries``: proposals of known architectures answered
    from the cache before a random unseen one is taken instead."""

    name = "optuna"

    def __init__(self, space, objectives, random_state=None, sampler: str = "TPESampler",
                 sampler_args: dict[str, Any] | None = None, max_tries: int = 1000, **kwargs: Any):
        super().__init__(space, objectives, random_state, max_tries=max_tries, **kwargs)
        optuna = _optuna()
        self.sampler_name = str(sampler)
        cls = getattr(optuna.samplers, self.sampler_name, None)
        if not (isinstance(cls, type) and issubclass(cls, optuna.samplers.BaseSampler)):
            raise ValueError(f"sampler: {sampler!r} is not a sampler of optuna.samplers")
        if sampler_args is not None and not isinstance(sampler_args, dict):
            raise ValueError(f"sampler_args: expected a table of keyword arguments, got {sampler_args!r}")
        self.sampler_args = dict(sampler_args or {})
        if "seed" in self.sampler_args:
            raise ValueError("sampler_args: 'seed' is set from the search's seed")
        try:
            self.sampler = cls(seed=random_state, **self.sampler_args)
        except TypeError as err:
            raise ValueError(f"sampler_args: {err}") from None
        genes = space.sample(self.rng)
        self.choices = self._choices(len(genes))
        self.direction = "maximize" if self.weights[0] > 0 else "minimize"
        self.study = optuna.create_study(direction=self.direction, sampler=self.sampler)
        self.known: dict[str, float] = {}  # canonical hash -> value of an evaluated architecture
        self.open: dict[str, list] = {}  # canonical hash -> optuna trials waiting for its value
        self.told: list[tuple[list[int], float]] = []  # every (genes, value) given to the study, in order

    def _choices(self, n_genes: int) -> list[list[int]]:
        """Allele indices of each gene (a cell space: its ops; else the values seen in 200 samples)."""
        ops = getattr(self.space, "ops", None)
        if ops is not None:
            return [list(range(len(ops)))] * n_genes
        import numpy as np

        rng = np.random.default_rng(0)
        seen = [sorted({int(self.space.sample(rng)[i]) for _ in range(200)}) for i in range(n_genes)]
        return seen

    def _reseed(self) -> None:
        """Tie the sampler's randomness to the strategy's rng (so a resumed search continues exactly)."""
        seed = int(self.rng.integers(2 ** 31 - 2))
        for k, obj in enumerate((self.sampler, getattr(self.sampler, "_random_sampler", None))):
            lazy = getattr(obj, "_rng", None)
            if lazy is not None and hasattr(lazy, "rng"):
                lazy.rng.seed(seed + k)

    def _suggest(self):
        self._reseed()
        trial = self.study.ask()
        genes = [trial.suggest_categorical(f"g{i}", c) for i, c in enumerate(self.choices)]
        return trial, make_genome(genes)

    def _tell(self, trial, genes: Sequence[int], value: float) -> None:
        self.study.tell(trial, value)
        self.told.append(([int(x) for x in genes], float(value)))

    def ask(self, n: int) -> list[Genome]:
        out = []
        for _ in range(n):
            for _ in range(self.max_tries):
                trial, genome = self._suggest()
                if not self.space.is_valid(genome):
                    self._tell(trial, genome, self._worst)
                    continue
                h = self.space.canonical_hash(genome)
                if h in self.known:  # already evaluated (or an isomorphic architecture was): no query spent
                    self._tell(trial, genome, self.known[h])
                    continue
                if h in self.open:  # proposed in this batch: told when its value arrives
                    self.open[h].append((trial, list(genome)))
                    continue
                self.open[h] = [(trial, list(genome))]
                out.append(genome)
                break
            else:  # the sampler keeps proposing known architectures: a fresh random one
                genome = self.fresh(self.toolbox.individual, set(self.open))
                self.open.setdefault(self.space.canonical_hash(genome), [])
                out.append(genome)
        return out

    @property
    def _worst(self) -> float:
        return -1e9 if self.weights[0] > 0 else 1e9

    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        for genome, trial in zip(genomes, trials):
            value = genome.fitness.values[0]
            value = value if math.isfinite(value) else self._worst
            self.known[trial.canonical_hash] = value
            for t, genes in self.open.pop(trial.canonical_hash, []):
                if t is None:  # asked before a resume: added to the study as a finished trial
                    self._add(genes, value)
                else:
                    self._tell(t, genes, value)

    def _add(self, genes: Sequence[int], value: float) -> None:
        optuna = _optuna()
        dists = {f"g{i}": optuna.distributions.CategoricalDistribution(c) for i, c in enumerate(self.choices)}
        self.study.add_trial(optuna.trial.create_trial(
            params={f"g{i}": int(x) for i, x in enumerate(genes)}, distributions=dists, value=float(value)))
        self.told.append(([int(x) for x in genes], float(value)))

    # --- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "known": dict(self.known), "told": [[g, v] for g, v in self.told],
                "open": {h: [genes for _, genes in waiting] for h, waiting in self.open.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        optuna = _optuna()
        super().load_state_dict(state)
        self.known = {str(k): float(v) for k, v in state["known"].items()}
        self.open = {str(h): [(None, list(map(int, g))) for g in waiting]
                     for h, waiting in state.get("open", {}).items()}
        self.study = optuna.create_study(direction=self.direction, sampler=self.sampler)
        self.told = []
        for genes, value in state["told"]:
            self._add(genes, value)


@register_strategy
class OptunaTPE(OptunaSearch):
    """Optuna's TPESampler with its default settings (``--algo tpe``)."""

    name = "tpe"

    def __init__(self, space, objectives, random_state=None, sampler_args: dict[str, Any] | None = None,
                 **kwargs: Any):
        super().__init__(space, objectives, random_state, sampler="TPESampler", sampler_args=sampler_args,
                         **kwargs)
