"""The ``meta`` strategy: meta-warm-started evolution steered by an adapted predictor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evonas.bench import bench_rows, best_report_at, group, replay
from evonas.cli import main
from evonas.config import ConfigError, load_config
from evonas.api import run_config
from evonas.evaluator import Candidate, Evaluator
from evonas.fitness.table import TableFitness
from evonas.predictor import MetaRankPredictor, meta_train
from evonas.spaces import CellSpace, DAGSpace, NB201Space
from evonas.strategies import STRATEGIES, RegularizedEvolution, make_strategy
from evonas.strategies.meta import MetaEvolution
from evonas.trial import Objective, Trial
from tiny_configs import digits_toml, table_toml

REPO = Path(__file__).resolve().parents[1]
TINY = dict(steps=60, n_members=2, hidden=(32,), embed=8, batch_size=128)
C10 = "cifar10_test200"


@pytest.fixture(scope="module")
def predictor_file(tmp_path_factory, table_path):
    """The CIFAR-10 leave-one-out predictor (CIFAR-100 + ImageNet16-120), tiny."""
    path = tmp_path_factory.mktemp("meta") / "c10.pt"
    meta_train(table_path, "cifar100_test200,imagenet16_test200", random_state=0, **TINY).save(path)
    return path


@pytest.fixture(scope="module")
def inverted_file(tmp_path_factory, table_path):
    """A misleading prior: the other datasets' ranking upside down."""
    path = tmp_path_factory.mktemp("meta") / "inv.pt"
    meta_train(table_path, "min:cifar100_test200,min:imagenet16_test200", random_state=0, **TINY).save(path)
    return path


def run(table_path, predictor, budget, seed=0, metric=C10, **params):
    space = NB201Space()
    strategy = MetaEvolution(space, [Objective(metric)], seed, predictor=predictor, **params)
    evaluator = Evaluator(TableFitness(table_path, [metric]), space, seed=seed, required=[metric])
    trials = []
    for step in range(budget):
        genomes = strategy.ask(1)
        cands = [Candidate(step, space.to_string(g), space.canonical_hash(g)) for g in genomes]
        new = evaluator.evaluate(cands)
        strategy.tell(genomes, new)
        trials += new
    return strategy, trials


def test_registered():
    assert STRATEGIES["meta"] is MetaEvolution


def test_warm_start_beats_rea_on_the_same_seeds(table_path, predictor_file, nb201_table):
    rows = bench_rows(replay(table_path, C10, C10, ["meta", "rea"], 25, 4,
                             params={"meta": {"predictor": str(predictor_file)}}))
    runs = group(rows)
    meta = [best_report_at(runs["meta"][s], 25) for s in range(4)]
    rea = [best_report_at(runs["rea"][s], 25) for s in range(4)]
    assert all(m >= r for m, r in zip(meta, rea)), (meta, rea)
    assert min(meta) >= np.quantile(nb201_table.column(C10), 0.999)  # a top-0.1% cell within 25 queries
    # the first proposal is the prior's pick, a top-2% cell, on every seed
    first = [runs["meta"][s][0].fitness for s in range(4)]
    assert min(first) >= np.quantile(nb201_table.column(C10), 0.98)


def test_deterministic_and_deduplicated(table_path, predictor_file):
    a, ta = run(table_path, predictor_file, 20, seed=3)
    b, tb = run(table_path, predictor_file, 20, seed=3)
    assert [t.arch for t in ta] == [t.arch for t in tb]
    assert len({t.canonical_hash for t in ta}) == 20
    _, tc = run(table_path, predictor_file, 20, seed=4)
    assert [t.arch for t in tc] != [t.arch for t in ta]


def test_misleading_prior_falls_back_to_the_scratch_model(table_path, inverted_file, nb201_table):
    strategy, trials = run(table_path, inverted_file, 40, seed=0)
    values = np.array([t.metrics[C10] for t in trials])
    # the first pick is among the prior's favourites, i.e. among the worst cells; trust collapses within n_init
    assert values[0] < np.quantile(nb201_table.column(C10), 0.05)
    assert strategy.trace[strategy.n_init - 1]["trust"] < strategy.min_trust
    assert max(t["trust"] for t in strategy.trace[strategy.n_init:]) < 0.2
    # the task model and REA's offspring take over and still climb
    assert np.sum(values[:10] < np.quantile(nb201_table.column(C10), 0.05)) <= strategy.n_init - 1
    assert values.max() >= np.quantile(nb201_table.column(C10), 0.99)


def test_confidence_zero_is_plain_rea(table_path, inverted_file):
    strategy, _ = run(table_path, inverted_file, 12, seed=1)
    state = strategy.state_dict()
    # a checkpoint where both models were wrong every time
    state["scores"] = {"prior": [-1.0] * strategy.window, "scratch": [-1.0] * strategy.window}
    strategy.load_state_dict(state)
    assert strategy.confidence == 0.0
    # REA continued from the same population, generator and seen set proposes exactly the same children
    rea = RegularizedEvolution(strategy.space, strategy.objectives, 0, population=strategy.population_size,
                               sample=strategy.sample_size)
    rea.load_state_dict(strategy.state_dict())
    assert [list(g) for g in strategy.ask(3)] == [list(g) for g in rea.ask(3)]


def test_prior_weight_follows_the_prequential_scores(table_path, inverted_file, predictor_file):
    """The prior's weight: a misleading prior that cannot adapt hands over to the scratch GP; a good one keeps
    the lead."""
    frozen = MetaRankPredictor.load(inverted_file).set_params(adapt_method="none")
    bad, _ = run(table_path, frozen, 20, seed=1)
    assert bad.trace[-1]["weight"] < 0.1 and bad.score("scratch") > bad.score("prior")
    good, _ = run(table_path, predictor_file, 20, seed=1)  # adapted as usual
    assert good.trace[-1]["weight"] > 0.5 and good.score("prior") > good.score("scratch")
    bad.scores = {"prior": [-1.0] * bad.window, "scratch": [1.0] * bad.window}
    assert bad.weight < 0.01
    bad.scores = {"prior": [1.0] * bad.window, "scratch": [-1.0] * bad.window}
    assert bad.weight > 0.99
    # at weight 0 the proposal is the task model's: the best expected improvement of the pool
    bad.scores = {"prior": [-1.0] * 1000, "scratch": [1.0] * 1000}
    bad.credit, bad.temperature, bad.explore = 0.0, 1e-3, 0
    rng_state = dict(bad.rng.bit_generator.state)
    genomes, _, scratch_acq = bad._pool(set(), 0.0, bad.confidence)
    best = bad.space.canonical_hash(genomes[int(np.argmax(scratch_acq))])
    bad.rng.bit_generator.state = rng_state  # the same offspring and explored rows again
    assert bad.space.canonical_hash(bad.ask(1)[0]) == best


def test_state_dict_resumes_exactly(table_path, predictor_file):
    space = NB201Space()
    metric = Objective(C10)
    evaluator = Evaluator(TableFitness(table_path, [C10]), space, seed=0, required=[C10])

    def step(strategy, k):
        genomes = strategy.ask(1)
        trials = evaluator.evaluate([Candidate(k, space.to_string(g), space.canonical_hash(g)) for g in genomes])
        strategy.tell(genomes, trials)
        return trials[0].arch

    a = MetaEvolution(space, [metric], 5, predictor=predictor_file)
    for k in range(14):
        step(a, k)
    b = MetaEvolution(space, [metric], 99, predictor=predictor_file)
    b.load_state_dict(a.state_dict())
    assert [step(a, k) for k in range(14, 24)] == [step(b, k) for k in range(14, 24)]


def test_minimised_objective(table_path, predictor_file, nb201_table):
    """``min:`` objectives: the strategy ranks by the DEAP weight, and an accuracy prior is misleading."""
    space = NB201Space()
    obj = Objective("cifar10_params_m", "min")
    strategy = make_strategy("meta", space, [obj], 0, predictor=str(predictor_file))
    evaluator = Evaluator(TableFitness(table_path, ["cifar10_params_m"]), space, seed=0,
                          required=["cifar10_params_m"])
    values = []
    for k in range(30):
        g = strategy.ask(1)
        t = evaluator.evaluate([Candidate(k, space.to_string(g[0]), space.canonical_hash(g[0]))])
        strategy.tell(g, t)
        values.append(t[0].metrics["cifar10_params_m"])
    assert all(y <= 0 for y in strategy.obs_y[:5]) and strategy.obs_y[0] == -values[0]
    assert min(values) <= np.quantile(nb201_table.column("cifar10_params_m"), 0.01)


def test_large_space_uses_a_sampled_pool():
    """A space too large to enumerate: global picks come from random pools; predictor fitted on it."""
    space = DAGSpace(max_nodes=6)
    rng = np.random.default_rng(0)
    genomes = [space.sample(rng) for _ in range(300)]
    n_conv = lambda g: sum(op == "conv3x3-bn-relu" for _, op in space.to_graph(g).nodes(data="op"))  # noqa: E731
    X = np.stack([space.encode(g) for g in genomes])
    model = MetaRankPredictor(random_state=0, **TINY).fit(X, [n_conv(g) for g in genomes])
    model.meta_ = {"space": space.describe()}
    strategy = MetaEvolution(space, [Objective("convs")], 0, predictor=model, pool=200, mutants=50)
    assert strategy.universe is None
    best = 0
    for _ in range(20):
        g = strategy.ask(1)[0]
        value = n_conv(g)
        best = max(best, value)
        strategy.tell([g], [Trial(step=0, arch=space.to_string(g), canonical_hash=space.canonical_hash(g),
                                  metrics={"convs": float(value)})])
    assert best >= 4  # random search: 1% chance in 20 draws; the predictor learned "more convs"


def test_validation(predictor_file, tmp_path):
    space = NB201Space()
    obj = [Objective(C10)]
    with pytest.raises(ValueError, match="^predictor: required"):
        MetaEvolution(space, obj, 0)
    with pytest.raises(ValueError, match="^predictor: file not found"):
        MetaEvolution(space, obj, 0, predictor=tmp_path / "missing.pt")
    for key, value in (("n_init", 0), ("kappa", -1.0), ("window", 0), ("temperature", 0.0), ("min_trust", 2.0),
                       ("shortlist", 0)):
        with pytest.raises(ValueError, match=f"^{key}:"):
            MetaEvolution(space, obj, 0, predictor=predictor_file, **{key: value})
    with pytest.raises(ValueError, match="^predictor: .*trained on space"):
        MetaEvolution(CellSpace(nodes=3), obj, 0, predictor=predictor_file)


def test_config_resolves_the_predictor_path(table_path, predictor_file, tmp_path):
    (tmp_path / "preds").mkdir()
    (tmp_path / "preds" / "p.pt").write_bytes(predictor_file.read_bytes())
    cfg_path = tmp_path / "meta.toml"
    cfg_path.write_text(table_toml(table_path, C10, 'name = "meta"\npredictor = "preds/p.pt"\nn_init = 3'))
    result = run_config(load_config(cfg_path), tmp_path / "out")
    assert len(result.trials) == 12 and result.best.metrics[C10] > 93.0
    cfg_path.write_text(cfg_path.read_text().replace("preds/p.pt", "preds/nope.pt"))
    with pytest.raises(ConfigError, match=r"\[strategy\] predictor = .*file not found"):
        run_config(load_config(cfg_path), tmp_path / "out2")


def test_cli_bench_meta(table_path, predictor_file, tmp_path, capsys):
    common = ["bench", "--table", str(table_path), "--fitness", C10, "--report", C10, "--budget", "10",
              "--seeds", "2", "--out", str(tmp_path / "b")]
    assert main([*common, "--algo", "meta,rea", "--predictor", str(predictor_file)]) == 0
    out = capsys.readouterr().out
    assert "meta" in out and "rea" in out
    assert (tmp_path / "b" / "bench.csv").is_file()
    assert main([*common, "--algo", "meta"]) == 2
    assert "needs --predictor" in capsys.readouterr().err
    assert main([*common, "--algo", "rea", "--predictor", str(predictor_file)]) == 2
    assert "only --algo meta" in capsys.readouterr().err
    assert main([*common, "--algo", "meta", "--predictor", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_meta_search_benchmark_rejects_bad_arguments():
    script = str(REPO / "benchmarks" / "meta_search.py")
    for flag, value, message in (("--datasets", "mnist", "--datasets: unknown mnist"),
                                 ("--seeds", "0", "--seeds: must be >= 1, got 0")):
        bad = subprocess.run([sys.executable, script, flag, value], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr


@pytest.mark.slow  # ~40 s: two runs of the benchmark (the second from its cache)
def test_meta_search_benchmark_quick(tmp_path, table_path):
    """benchmarks/meta_search.py end to end on one held-out dataset: section, verdicts, raw results, cache."""
    md, raw = tmp_path / "B.md", tmp_path / "res.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "meta_search.py"), "--quick", "--datasets", "cifar10",
           "--seeds", "2", "--budget", "30", "--nats-budget", "12", "--table", str(table_path),
           "--work", str(tmp_path / "work"), "--md", str(md), "--json", str(raw)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "<!-- BEGIN meta_search -->" in text and "must-show claims" in text
    assert "| CIFAR-10 | top-0.1% |" in text
    res = json.loads(raw.read_text())
    direct = res["direct"]["cifar10"]
    assert len(direct["meta"]["top"]) == 2 and res["budget"] == 30
    # the warm start finds a top-0.1% CIFAR-10 cell no later than REA does on the same seeds
    assert np.median(direct["meta"]["top"]) <= np.median(direct["rea"]["top"])
    assert set(res["misleading"]["cifar10"]) == {"inverted", "shuffled", "small-nets"}
    # a second run redraws the tables from the cache, computing nothing again
    again = subprocess.run(cmd + ["--no-markdown"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "  trained predictor_" in proc.stdout and "  trained predictor_" not in again.stdout
    assert "  proxies on" in proc.stdout and "  proxies on" not in again.stdout
    body = proc.stdout[proc.stdout.index("## Meta-warm-started"):]
    assert again.stdout[again.stdout.index("## Meta-warm-started"):] == body  # same figures, same timings


def test_meta_strategy_steers_real_training(predictor_file, tmp_path):
    """The same search loop with real short training on digits: the table-trained prior picks the first cells."""
    shutil.copy(predictor_file, tmp_path / "p.pt")
    cfg_path = tmp_path / "digits-meta.toml"
    cfg_path.write_text(digits_toml('name = "meta"\npredictor = "p.pt"\nn_init = 4',
                                    "C = 4\nN = 1\nsteps = 8\nbatch_size = 32",
                                    "budget = 6\nseed = 0\njobs = 1\nbatch_size = 2\nisolate = false"))
    result = run_config(load_config(cfg_path), tmp_path / "out")
    assert len(result.trials) == 6 and all(t.ok for t in result.trials)
    assert all(0.0 <= t.metrics["val_acc"] <= 1.0 for t in result.trials)
    # the first proposal is the prior's top pick: the CIFAR-trained predictor's best-ranked cell
    space = NB201Space()
    first = space.from_string(result.trials[0].arch)
    strategy = MetaEvolution(space, [Objective("val_acc")], 0, predictor=predictor_file, n_init=4)
    assert space.canonical_hash(strategy.ask(1)[0]) == space.canonical_hash(first)


def test_meta_digits_benchmark_smoke(tmp_path, predictor_file):
    """benchmarks/meta_digits.py: both strategies train real networks on digits and the section is written."""
    md = tmp_path / "B.md"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "meta_digits.py"), "--seeds", "1",
                           "--budget", "4", "--steps", "10", "--predictor", str(predictor_file),
                           "--work", str(tmp_path / "w"), "--md", str(md)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "<!-- BEGIN meta_digits_steps10 -->" in text and "| rea | " in text and "| meta | " in text
    assert "--seeds 1 --budget 4 --steps 10" in text
    for algo in ("rea", "meta"):
        assert (tmp_path / "w" / f"{algo}_seed0_steps10" / "run.db").is_file()
