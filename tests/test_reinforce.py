"""REINFORCE (the NAS-Bench-201 RL baseline): policy learning, determinism, resume, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evonas
from evonas.cli import main
from evonas.spaces import DAGSpace, NB201Space
from evonas.strategies import STRATEGIES, make_strategy
from evonas.strategies.reinforce import Reinforce
from evonas.trial import Trial

SPACE = NB201Space()


def conv_count(arch, ctx):
    return {"acc": float(arch.string.count("nor_conv_3x3"))}


def test_registered_and_validated():
    assert STRATEGIES["reinforce"] is Reinforce
    with pytest.raises(ValueError, match="^space: reinforce needs a cell space"):
        make_strategy("reinforce", DAGSpace(), ["acc"], 0)
    for key, value in (("lr", 0.0), ("ema", 1.0)):
        with pytest.raises(ValueError, match=f"^{key}: must be"):
            make_strategy("reinforce", SPACE, ["acc"], 0, **{key: value})


def test_policy_learns_the_rewarded_op():
    strategy = make_strategy("reinforce", SPACE, ["acc"], 0, lr=0.1, dedupe=False)
    before = strategy.probabilities()[:, SPACE.ops.index("nor_conv_3x3")].mean()
    result = evonas.search(SPACE, conv_count, ["acc"], strategy=strategy, budget=150, seed=0)
    after = strategy.probabilities()[:, SPACE.ops.index("nor_conv_3x3")].mean()
    assert before == pytest.approx(0.2, abs=0.01) and after > 0.6
    values = [t.metrics["acc"] for t in result.trials]
    assert np.mean(values[-30:]) > np.mean(values[:30]) + 1.5  # later cells have more 3x3 convolutions
    assert strategy.baseline == pytest.approx(np.mean(values[-20:]), abs=1.5)  # the moving average follows


def test_minimised_objective_and_failures():
    strategy = make_strategy("reinforce", SPACE, ["min:acc"], 1, lr=0.1, dedupe=False)
    evonas.search(SPACE, conv_count, ["min:acc"], strategy=strategy, budget=100, seed=1)
    assert strategy.probabilities()[:, SPACE.ops.index("nor_conv_3x3")].mean() < 0.1
    logits = strategy.logits.copy()
    (g,) = strategy.ask(1)
    strategy.tell([g], [Trial(step=100, arch=SPACE.to_string(g), canonical_hash=SPACE.canonical_hash(g),
                              status="failed", error="boom")])
    assert np.array_equal(strategy.logits, logits)  # a failed evaluation teaches nothing


def test_deterministic_and_resumes_exactly():
    a = evonas.search(SPACE, conv_count, ["acc"], strategy="reinforce", budget=40, seed=3, batch_size=4)
    b = evonas.search(SPACE, conv_count, ["acc"], strategy="reinforce", budget=40, seed=3, batch_size=4)
    assert [t.arch for t in a.trials] == [t.arch for t in b.trials]
    first = make_strategy("reinforce", SPACE, ["acc"], 5)
    evonas.search(SPACE, conv_count, ["acc"], strategy=first, budget=20, seed=5)
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    second = make_strategy("reinforce", SPACE, ["acc"], 99)
    second.load_state_dict(state)
    assert [list(g) for g in second.ask(5)] == [list(g) for g in first.ask(5)]
    assert np.array_equal(second.logits, first.logits) and second.baseline == first.baseline


def test_cli_bench_algo_reinforce(tmp_path, table_path, capsys):
    rc = main(["bench", "--table", str(table_path), "--fitness", "cifar10_valid12", "--report", "cifar10_test200",
               "--algo", "reinforce,random", "--budget", "30", "--seeds", "2", "--out", str(tmp_path / "b")])
    assert rc == 0 and "reinforce" in capsys.readouterr().out
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["algos"]["reinforce"]["seeds"] == 2 and summary["algos"]["reinforce"]["budget"] == 30
