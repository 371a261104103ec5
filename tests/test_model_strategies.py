"""Model-based and baseline strategies: ``gp`` (Bayesian optimisation), ``optuna``/``tpe``, ``replay``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.stats import spearmanr

from evonas.api import run_config
from evonas.cli import main
from evonas.config import ConfigError, load_config
from evonas.gp import HammingGP, hamming
from evonas.spaces import DAGSpace, NB201Space
from evonas.strategies import STRATEGIES, make_strategy
from evonas.strategies.bayesopt import GPSearch
from evonas.strategies.optuna import OptunaSearch, OptunaTPE
from evonas.strategies.replay import LeaderboardReplay
from evonas.trial import Objective, Trial
from tiny_configs import table_toml

C10 = "cifar10_test200"
SPACE = NB201Space()


@pytest.fixture(scope="module")
def values(nb201_table):
    return {a: v for a, v in zip(nb201_table.archs, nb201_table.column(C10))}


def step(strategy, values, k, n=1):
    genomes = strategy.ask(n)
    trials = [Trial(step=k + i, arch=SPACE.to_string(g), canonical_hash=SPACE.canonical_hash(g),
                    metrics={C10: float(values[SPACE.to_string(g)])}) for i, g in enumerate(genomes)]
    strategy.tell(genomes, trials)
    return [t.arch for t in trials]


def drive(strategy, values, n, start=0, batch=1):
    return [a for k in range(start, start + n, batch) for a in step(strategy, values, k, batch)]


def test_registered():
    assert STRATEGIES["gp"] is GPSearch and STRATEGIES["optuna"] is OptunaSearch
    assert STRATEGIES["tpe"] is OptunaTPE and STRATEGIES["replay"] is LeaderboardReplay


def test_hamming_gp_ranks_an_additive_function():
    rng = np.random.default_rng(0)
    genomes = [SPACE.sample(rng) for _ in range(140)]
    X = np.stack([SPACE.encode(g) for g in genomes])
    w = rng.normal(size=X.shape[1])
    y = X @ w
    gp = HammingGP().fit(X[:60], y[:60])
    assert spearmanr(gp.predict(X[60:]), y[60:])[0] > 0.8
    mean, std = gp.predict(X[:60], return_std=True)
    assert std.max() < gp.predict(X[60:], return_std=True)[1].mean()  # observed points are the surest
    assert np.allclose(hamming(X[:5], X[5:9]), [[sum(x != z for x, z in zip(a, b)) for b in genomes[5:9]] for a in genomes[:5]])
    with pytest.raises(ValueError, match="^length_scales:"):
        HammingGP(length_scales=[]).fit(X, y)


def test_gp_deterministic_deduplicated_and_better_than_random(values, nb201_table):
    runs = {seed: drive(GPSearch(SPACE, [Objective(C10)], seed), values, 40) for seed in (0, 0, 1)}
    again = drive(GPSearch(SPACE, [Objective(C10)], 0), values, 40)
    assert again == runs[0] and runs[1] != runs[0]
    assert len({SPACE.hash_string(a) for a in again}) == 40
    # 30 model-based queries after 10 random ones: a top-1% cell (random search: 33% chance in 40 draws)
    top1 = np.quantile(nb201_table.column(C10), 0.99)
    assert all(max(values[a] for a in r) >= top1 for r in runs.values())


@pytest.mark.parametrize("algo", ["gp", "tpe", "replay"])
def test_resume_from_state_dict_is_exact(algo, values, table_path):
    params = {"leaderboard": str(table_path), "column": "cifar100_test200"} if algo == "replay" else {}
    a = make_strategy(algo, SPACE, [Objective(C10)], 3, **params)
    drive(a, values, 14)
    b = make_strategy(algo, SPACE, [Objective(C10)], 99, **params)
    b.load_state_dict(a.state_dict())
    assert drive(a, values, 10, 14) == drive(b, values, 10, 14)


def test_tpe_resumes_with_proposals_in_flight(values):
    """A checkpoint taken between ask and tell (as the search loop takes it) continues exactly."""
    a = OptunaTPE(SPACE, [Objective(C10)], 5)
    drive(a, values, 12, batch=3)
    genomes = a.ask(3)
    b = OptunaTPE(SPACE, [Objective(C10)], 0)
    b.load_state_dict(a.state_dict())
    trials = [Trial(step=12 + i, arch=SPACE.to_string(g), canonical_hash=SPACE.canonical_hash(g),
                    metrics={C10: float(values[SPACE.to_string(g)])}) for i, g in enumerate(genomes)]
    for s in (a, b):
        s.tell(genomes, trials)
    assert drive(a, values, 9, 15, batch=3) == drive(b, values, 9, 15, batch=3)


def test_tpe_distinct_cells_and_minimised_objective(nb201_table):
    lat = {a: v for a, v in zip(nb201_table.archs, nb201_table.column("pi5_onnx_latency_ms"))}
    s = OptunaTPE(SPACE, [Objective("lat", "min")], 0)
    seen = []
    for k in range(40):
        g = s.ask(1)[0]
        arch = SPACE.to_string(g)
        seen.append(arch)
        s.tell([g], [Trial(step=k, arch=arch, canonical_hash=SPACE.canonical_hash(g), metrics={"lat": lat[arch]})])
    assert len({SPACE.hash_string(a) for a in seen}) == 40
    assert min(lat[a] for a in seen[20:]) < np.quantile(nb201_table.column("pi5_onnx_latency_ms"), 0.05)
    assert s.study.direction.name == "MINIMIZE"


def test_optuna_sampler_by_name_and_errors(values):
    s = make_strategy("optuna", SPACE, [Objective(C10)], 0, sampler="TPESampler",
                      sampler_args={"multivariate": True, "n_startup_trials": 5})
    assert s.sampler._multivariate and len(set(drive(s, values, 12))) == 12
    r = make_strategy("optuna", SPACE, [Objective(C10)], 0, sampler="RandomSampler")
    assert drive(r, values, 5) == drive(make_strategy("optuna", SPACE, [Objective(C10)], 0, sampler="RandomSampler"),
                                        values, 5)
    with pytest.raises(ValueError, match="^sampler: 'Nope' is not a sampler"):
        make_strategy("optuna", SPACE, [Objective(C10)], 0, sampler="Nope")
    with pytest.raises(ValueError, match="^sampler_args: .*bogus"):
        make_strategy("optuna", SPACE, [Objective(C10)], 0, sampler_args={"bogus": 1})
    with pytest.raises(ValueError, match="^sampler_args: 'seed'"):
        make_strategy("tpe", SPACE, [Objective(C10)], 0, sampler_args={"seed": 1})


def test_missing_optuna_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    with pytest.raises(ValueError, match=r"optuna is not installed: pip install 'evonas\[optuna\]'"):
        make_strategy("tpe", SPACE, [Objective(C10)], 0)


def test_replay_is_the_leaderboard_deduplicated(table_path, nb201_table, values):
    order = np.argsort(-nb201_table.column("cifar100_test200"), kind="stable")
    expected, hashes = [], set()
    for i in order:
        h = SPACE.hash_string(nb201_table.archs[i])
        if h not in hashes:
            hashes.add(h)
            expected.append(nb201_table.archs[i])
        if len(expected) == 15:
            break
    for seed in (0, 7):
        s = make_strategy("replay", SPACE, [Objective(C10)], seed, leaderboard=str(table_path),
                          column="cifar100_test200")
        assert drive(s, values, 15, batch=5) == expected
    with pytest.raises(ValueError, match="^leaderboard: .*no column 'nope'"):
        make_strategy("replay", SPACE, [Objective(C10)], 0, leaderboard=str(table_path), column="nope")
    with pytest.raises(ValueError, match="^replay: needs leaderboard"):
        make_strategy("replay", SPACE, [Objective(C10)], 0)


def test_gp_on_a_space_too_large_to_enumerate():
    space = DAGSpace(max_nodes=6)
    n_conv = lambda g: sum(op == "conv3x3-bn-relu" for _, op in space.to_graph(g).nodes(data="op"))  # noqa: E731
    s = GPSearch(space, [Objective("convs")], 0, n_init=6, pool=200, mutants=50)
    assert s.universe is None
    best = 0
    for k in range(20):
        g = s.ask(1)[0]
        best = max(best, n_conv(g))
        s.tell([g], [Trial(step=k, arch=space.to_string(g), canonical_hash=space.canonical_hash(g),
                           metrics={"convs": float(n_conv(g))})])
    assert best >= 4


def test_config_and_cli_names(table_path, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    for name, extra in (("optuna", 'sampler = "TPESampler"\nsampler_args = {multivariate = true}'),
                        ("tpe", ""), ("gp", "n_init = 4"),
                        ("replay", 'leaderboard = "t.csv"\ncolumn = "cifar100_test200"')):
        if name == "replay":
            (tmp_path / "t.csv").write_bytes(table_path.read_bytes())  # a path relative to the config
        cfg.write_text(table_toml(table_path, C10, f'name = "{name}"\n{extra}'))
        result = run_config(load_config(cfg), tmp_path / f"out-{name}")
        assert len(result.trials) == 12 and len({t.canonical_hash for t in result.trials}) == 12
    cfg.write_text(table_toml(table_path, C10, 'name = "optuna"\nsampler = "Nope"'))
    with pytest.raises(ConfigError, match=r"\[strategy\] sampler = 'Nope'"):
        run_config(load_config(cfg), tmp_path / "bad")
    common = ["bench", "--table", str(table_path), "--fitness", C10, "--report", C10, "--budget", "12",
              "--seeds", "2", "--out", str(tmp_path / "b")]
    assert main([*common, "--algo", "tpe,gp"]) == 0
    out = capsys.readouterr().out
    assert "tpe" in out and "gp" in out
