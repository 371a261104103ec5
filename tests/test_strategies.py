"""Strategies: ask/tell contracts, aging, NSGA-II fronts, determinism, state round trip."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import evonas
from evonas.evaluator import Evaluator
from evonas.fitness import TableFitness
from evonas.genome import Genome, make_genome
from evonas.search import Search
from evonas.spaces import NB201Space
from evonas.strategies import NSGA2, RandomSearch, RegularizedEvolution, make_strategy
from evonas.trial import Objective, Trial

SPACE = NB201Space()


def run(strategy_name, table_path, budget=120, seed=0, objectives=("cifar10_valid12",), batch_size=1, **params):
    objectives = [Objective.parse(o) for o in objectives]
    strategy = make_strategy(strategy_name, SPACE, objectives, seed, **params)
    cols = [o.metric for o in objectives] + ["cifar10_test200"]
    ev = Evaluator(TableFitness(table_path, cols), SPACE, seed=seed, required=cols)
    return Search(SPACE, strategy, ev, objectives, budget=budget, batch_size=batch_size, seed=seed).run(), strategy


def trial(genome, value, step=0, ok=True):
    arch = SPACE.to_string(genome)
    return Trial(step, arch, SPACE.hash_string(arch), {"acc": value} if ok else {}, "ok" if ok else "failed")


def test_rea_population_ages_out_the_oldest():
    rea = RegularizedEvolution(SPACE, ["acc"], random_state=0, population=5, sample=2)
    first = rea.ask(5)
    rea.tell(first, [trial(g, 50.0 + i, i) for i, g in enumerate(first)])
    child = rea.ask(1)
    rea.tell(child, [trial(child[0], 10.0, 5)])
    assert len(rea.population) == 5
    assert list(rea.population[0]) == list(first[1])  # the oldest died, not the worst
    assert list(rea.population[-1]) == list(child[0])


def test_rea_child_mutates_the_tournament_winner():
    rea = RegularizedEvolution(SPACE, ["acc"], random_state=1, population=4, sample=4)
    first = rea.ask(4)
    rea.tell(first, [trial(g, v) for g, v in zip(first, [1.0, 2.0, 99.0, 3.0])])
    child = rea.ask(1)[0]
    diff = sum(a != b for a, b in zip(child, first[2]))
    assert diff == 1  # sample == population: the best always wins, one edge changes


def test_dedupe_never_proposes_a_seen_architecture(table_path):
    result, _ = run("rea", table_path, budget=300)
    hashes = [t.canonical_hash for t in result.trials]
    assert len(set(hashes)) == len(hashes)


def test_without_dedupe_duplicates_happen(table_path):
    result, _ = run("rea", table_path, budget=300, dedupe=False)
    hashes = [t.canonical_hash for t in result.trials]
    assert len(set(hashes)) < len(hashes)


def test_rea_beats_random_on_average(table_path):
    rea = [run("rea", table_path, budget=150, seed=s)[0].best.metrics["cifar10_valid12"] for s in range(6)]
    rnd = [run("random", table_path, budget=150, seed=s)[0].best.metrics["cifar10_valid12"] for s in range(6)]
    assert np.mean(rea) > np.mean(rnd)


def test_same_seed_same_trials_different_seed_different(table_path):
    a, _ = run("rea", table_path, seed=3)
    b, _ = run("rea", table_path, seed=3)
    c, _ = run("rea", table_path, seed=4)
    assert [t.arch for t in a.trials] == [t.arch for t in b.trials]
    assert [t.arch for t in a.trials] != [t.arch for t in c.trials]


def test_global_random_state_is_not_used(table_path):
    import random

    random.seed(1)
    np.random.seed(1)
    a, _ = run("nsga2", table_path, seed=2, objectives=("cifar10_valid12", "min:pi5_litert_latency_ms"),
               population=10, batch_size=10)
    random.seed(2)
    np.random.seed(2)
    b, _ = run("nsga2", table_path, seed=2, objectives=("cifar10_valid12", "min:pi5_litert_latency_ms"),
               population=10, batch_size=10)
    assert [t.arch for t in a.trials] == [t.arch for t in b.trials]


def test_nsga2_front_improves_hypervolume_over_random(table_path):
    objectives = ("cifar10_valid12", "min:pi5_litert_latency_ms")

    def hypervolume(result):
        # 2-D hypervolume against reference (accuracy 0, latency 20 ms)
        pts = sorted((t.metrics["pi5_litert_latency_ms"], t.metrics["cifar10_valid12"]) for t in result.pareto)
        hv, best_acc = 0.0, 0.0
        for i, (lat, acc) in enumerate(pts):
            nxt = pts[i + 1][0] if i + 1 < len(pts) else 20.0
            best_acc = max(best_acc, acc)
            hv += (nxt - lat) * best_acc
        return hv

    nsga = [hypervolume(run("nsga2", table_path, budget=200, seed=s, objectives=objectives, population=20,
                            batch_size=20)[0]) for s in range(3)]
    rnd = [hypervolume(run("random", table_path, budget=200, seed=s, objectives=objectives)[0]) for s in range(3)]
    assert np.mean(nsga) > np.mean(rnd)


def test_nsga2_front_is_non_dominated(table_path):
    result, strategy = run("nsga2", table_path, budget=100, objectives=("cifar10_valid12", "min:pi5_litert_latency_ms"),
                           population=10, batch_size=10)
    front = result.pareto
    assert front
    for a in front:
        for b in front:
            assert not (b.metrics["cifar10_valid12"] >= a.metrics["cifar10_valid12"]
                        and b.metrics["pi5_litert_latency_ms"] <= a.metrics["pi5_litert_latency_ms"]
                        and (b.metrics["cifar10_valid12"], b.metrics["pi5_litert_latency_ms"])
                        != (a.metrics["cifar10_valid12"], a.metrics["pi5_litert_latency_ms"]))
    assert len(strategy.population) == 10


def test_failed_individuals_get_the_worst_fitness_and_stay_out_of_nsga2():
    nsga = NSGA2(SPACE, ["acc", "min:lat"], random_state=0, population=4)
    genomes = nsga.ask(4)
    trials = [trial(g, 1.0, i, ok=(i != 0)) for i, g in enumerate(genomes)]
    for t in trials[1:]:
        t.metrics["lat"] = 1.0
    nsga.tell(genomes, trials)
    assert genomes[0].fitness.values == (-np.inf, np.inf)
    assert len(nsga.population) == 3


@pytest.mark.parametrize("name, params", [("random", {}), ("rea", {"population": 5, "sample": 2}),
                                          ("nsga2", {"population": 6})])
def test_state_dict_round_trip_continues_identically(name, params, table_path):
    objectives = [Objective("cifar10_valid12")]
    ev = Evaluator(TableFitness(table_path, ["cifar10_valid12"]), SPACE)

    def step(strategy, key):
        genomes = strategy.ask(3)
        from evonas.evaluator import Candidate

        trials = ev.evaluate([Candidate(key + i, SPACE.to_string(g), SPACE.canonical_hash(g))
                              for i, g in enumerate(genomes)])
        strategy.tell(genomes, trials)
        return [t.arch for t in trials]

    a = make_strategy(name, SPACE, objectives, 7, **params)
    for k in range(4):
        step(a, 3 * k)
    state = pickle.loads(pickle.dumps(a.state_dict()))
    b = make_strategy(name, SPACE, objectives, 999, **params)
    b.load_state_dict(state)
    for k in range(4, 8):
        assert step(a, 3 * k) == step(b, 3 * k)


def test_genomes_pickle_with_their_fitness():
    g = make_genome([1, 2, 3, 4, 0, 1])
    g.fitness.weights = (1.0, -1.0)
    g.fitness.values = (90.0, 3.0)
    h = pickle.loads(pickle.dumps(g))
    # DEAP 1.4 re-creates creator classes on unpickling (meta_create): same name and bases, new object
    assert type(h).__name__ == Genome.__name__ and isinstance(h, list) and list(h) == list(g)
    assert h.fitness.weights == (1.0, -1.0) and h.fitness.values == (90.0, 3.0)


def test_rea_validates_parameters():
    with pytest.raises(ValueError, match="sample"):
        RegularizedEvolution(SPACE, ["acc"], population=3, sample=5)
    with pytest.raises(ValueError, match="objective"):
        RandomSearch(SPACE, [])


def test_public_api_search_with_a_callable():
    def ones(arch, ctx):
        return {"skips": float(arch.string.count("skip_connect"))}

    result = evonas.search("nb201", ones, ["skips"], strategy="rea", budget=60, seed=0, population=10, sample=3)
    assert result.best.metrics["skips"] >= 4
