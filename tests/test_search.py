"""The search loop and the evaluator: seeds, parallel equivalence, failures, results files."""

from __future__ import annotations

import math

import numpy as np
import pytest

import evonas
from evonas.evaluator import Candidate, Evaluator, evaluation_seed
from evonas.fitness import EvalResult, TableFitness, as_result
from evonas.results import metric_names, summary, write_history
from evonas.spaces import NB201Space
from evonas.trial import Objective, Trial, best_trial, pareto_front

SPACE = NB201Space()


def noisy(arch, ctx):
    """Depends on the evaluation seed only: equal results prove seeds do not depend on workers."""
    rng = np.random.default_rng(ctx.seed)
    return {"acc": arch.string.count("conv") + rng.normal(), "seed": float(ctx.seed % 1000)}


def flaky(arch, ctx):
    if "avg_pool_3x3~0" in arch.string:
        raise RuntimeError("boom")
    if "none~0|+" in arch.string:
        return {"acc": math.nan}
    return {"acc": 1.0}


def test_parallel_results_are_identical_to_serial():
    kwargs = dict(strategy="rea", budget=40, seed=5, batch_size=8, population=8, sample=3)
    serial = evonas.search(SPACE, noisy, ["acc"], jobs=1, **kwargs)
    parallel = evonas.search(SPACE, noisy, ["acc"], jobs=2, **kwargs)
    assert [(t.arch, t.metrics) for t in serial.trials] == [(t.arch, t.metrics) for t in parallel.trials]
    assert len({t.worker for t in parallel.trials}) >= 2  # really ran in two processes


def test_evaluation_seed_depends_on_run_seed_and_key_only():
    assert evaluation_seed(1, 5) == evaluation_seed(1, 5)
    assert len({evaluation_seed(1, k) for k in range(100)}) == 100
    assert evaluation_seed(1, 5) != evaluation_seed(2, 5)


def test_failures_are_recorded_and_the_search_goes_on():
    result = evonas.search(SPACE, flaky, ["acc"], strategy="random", budget=80, seed=0)
    failed = [t for t in result.trials if not t.ok]
    assert failed and len(result.trials) == 80
    assert any("RuntimeError: boom" in t.error for t in failed)
    assert any("is nan" in t.error for t in failed)
    assert result.best.ok and result.best.metrics["acc"] == 1.0


def test_as_result_normalises_and_validates():
    assert as_result({"a": 1}).metrics == {"a": 1.0}
    assert as_result({"a": 1, "status": "failed", "error": "x"}).status == "failed"
    assert as_result({"b": 1}, required=["a"]).error == "metric 'a' missing from fitness result"
    assert as_result(3.0).status == "failed"
    assert as_result(EvalResult({"a": math.inf}), required=["a"]).status == "failed"


def test_table_fitness_reports_missing_archs_as_failed(small_table):
    fitness = TableFitness(small_table, ["acc"])
    ev = Evaluator(fitness, SPACE, seed=0, required=["acc"])
    archs = [SPACE.to_string(g) for g in list(SPACE.enumerate())[:3]]
    trials = ev.evaluate([Candidate(i, a, SPACE.hash_string(a)) for i, a in enumerate(archs)])
    assert trials[0].ok and trials[1].status == "failed" and "not in table" in trials[1].error


def test_min_objective_and_pareto_helpers():
    t = [Trial(i, f"a{i}", f"h{i}", {"acc": acc, "lat": lat}) for i, (acc, lat) in
         enumerate([(90, 5), (80, 1), (85, 6), (90, 5)])]
    assert best_trial(t, Objective("lat", "min")).step == 1
    assert best_trial(t, Objective("acc")).step == 0  # ties keep the earliest
    front = pareto_front(t, [Objective("acc"), Objective("lat", "min")])
    assert [x.step for x in front] == [0, 1]


def test_history_rows_follow_steps(tmp_path, table_path):
    result = evonas.search(SPACE, TableFitness(table_path, ["cifar10_valid12", "cifar10_test200"]),
                           ["cifar10_valid12"], report=["cifar10_test200"], budget=30, seed=0, batch_size=4)
    names = metric_names(result)
    assert names[:2] == ["cifar10_valid12", "cifar10_test200"]
    path = write_history(tmp_path / "h.csv", list(reversed(result.trials)), names)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("step,arch,canonical_hash,cifar10_valid12,cifar10_test200,status")
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(30))
    s = summary(result)
    assert s["best"]["arch"] == result.best.arch and s["evaluations"] == 30


def test_batch_size_changes_nothing_for_random_search(table_path):
    fit = TableFitness(table_path, ["cifar10_valid12"])
    a = evonas.search(SPACE, fit, ["cifar10_valid12"], strategy="random", budget=30, seed=2, batch_size=1)
    b = evonas.search(SPACE, fit, ["cifar10_valid12"], strategy="random", budget=30, seed=2, batch_size=7)
    assert [t.arch for t in a.trials] == [t.arch for t in b.trials]


def test_search_validates_budget():
    with pytest.raises(ValueError, match="budget"):
        evonas.search(SPACE, noisy, ["acc"], budget=0)


class Counting(evonas.fitness.Fitness):
    """A fitness overriding some hooks of the contract; the loop calls them in the main process."""

    def __init__(self):
        self.batches, self.told = 0, 0

    def __call__(self, arch, ctx):
        return noisy(arch, ctx)

    def before_batch(self, candidates=()):
        self.batches += 1

    def after_batch(self, candidates, trials):
        self.told += len(trials)

    def state_dict(self):
        return {"told": self.told}


def test_fitness_hooks_are_called_and_plain_callables_are_wrapped():
    fitness = Counting()
    evaluator = Evaluator(fitness, SPACE, seed=3)
    strategy = evonas.make_strategy("random", SPACE, ["acc"], 3)
    search = evonas.Search(SPACE, strategy, evaluator, ["acc"], budget=12, batch_size=4, seed=3)
    result = search.run()
    assert fitness.batches == 3 and fitness.told == 12 and search.state_dict()["fitness"] == {"told": 12}
    wrapped = Evaluator(noisy, SPACE).fitness
    assert isinstance(wrapped, evonas.fitness.FunctionFitness) and wrapped.state_dict() == {}
    assert [t.metrics for t in result.trials] == [t.metrics for t in evonas.search(
        SPACE, noisy, ["acc"], strategy="random", budget=12, batch_size=4, seed=3).trials]

    class Duck:  # hooks without the base class would never be called: refused with the reason
        inline = True

        def __call__(self, arch, ctx):
            return {"acc": 1.0}

    with pytest.raises(TypeError, match="defines inline but is not an evonas.fitness.Fitness"):
        Evaluator(Duck(), SPACE)
