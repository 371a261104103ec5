"""Failure isolation: a fitness that kills its worker, hangs, returns NaN, runs out of CUDA memory, fails
transiently or always; the search records each as `failed` with its reason and goes on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import evonas
from evonas.cli import main
from evonas.fitness import CallableFitness
from evonas.spaces import NB201Space
from evonas.store import STORE_NAME, SQLiteStore

SPACE = NB201Space()
FITNESS = Path(__file__).with_name("durable_fitness.py")


def fitness(name: str, **params) -> CallableFitness:
    return CallableFitness(f"{FITNESS}:{name}", params)


def culprit(arch: str) -> bool:
    return "avg_pool_3x3~0|+" in arch


def search(name: str, *, budget: int = 20, jobs: int = 2, store=None, **kw):
    params = kw.pop("params", {})
    return evonas.search(SPACE, fitness(name, **params), ["acc"], strategy="random", budget=budget, seed=3,
                         jobs=jobs, batch_size=4, store=store, **kw)


def test_a_fitness_that_kills_its_worker_fails_alone(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    result = search("kill_self", store=store)
    assert result.status == "finished" and len(result.trials) == 20
    bad = [t for t in result.trials if culprit(t.arch)]
    assert bad and all(not t.ok and t.error.startswith("worker died: evaluation process killed by signal SIGKILL")
                       for t in bad)
    assert all(t.ok for t in result.trials if not culprit(t.arch))
    assert {r["reason"] for r in store.rows() if r["status"] == "failed"} == {"worker_died"}


def test_a_fitness_that_exits_fails_with_its_exit_code():
    result = search("exit_hard", jobs=1, isolate=True)
    bad = [t for t in result.trials if culprit(t.arch)]
    assert bad and all("exited with code 3" in t.error for t in bad)
    assert all(t.ok for t in result.trials if not culprit(t.arch))


def test_a_hanging_evaluation_is_killed_at_the_time_limit(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    result = search("hang", budget=10, time_limit=1.0, store=store)
    bad = [t for t in result.trials if culprit(t.arch)]
    assert bad and len(result.trials) == 10
    for t in bad:
        assert t.error.startswith("timeout: evaluation exceeded the time limit of 1s") and t.elapsed_s >= 1.0
    assert all(t.ok for t in result.trials if not culprit(t.arch))
    assert {r["reason"] for r in store.rows() if r["status"] == "failed"} == {"timeout"}


def test_non_finite_metrics_fail_with_the_worst_fitness(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    result = search("bad_values", budget=30, jobs=1, store=store)
    nan = [t for t in result.trials if t.arch.startswith("|none~0|")]
    inf = [t for t in result.trials if t.arch.startswith("|skip_connect~0|")]
    assert nan and inf
    assert all(not t.ok and t.error == "metric 'acc' is nan" for t in nan)
    assert all(not t.ok and t.error == "metric 'acc' is inf" for t in inf)
    assert {r["reason"] for r in store.rows() if r["status"] == "failed"} == {"non_finite"}
    assert not result.best.arch.startswith(("|none~0|", "|skip_connect~0|"))
    assert result.objectives[0].value(nan[0]) == -math.inf  # worst fitness for the strategy


def test_cuda_out_of_memory_is_a_failed_evaluation(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    result = search("cuda_oom", budget=20, jobs=1, store=store)  # in-process: torch imported once
    oom = [t for t in result.trials if t.arch.startswith("|nor_conv_3x3~0|")]
    assert oom and all(t.error.startswith("out of memory: OutOfMemoryError: CUDA out of memory") for t in oom)
    assert {r["reason"] for r in store.rows() if r["status"] == "failed"} == {"out_of_memory"}
    assert len([t for t in result.trials if t.ok]) == 20 - len(oom)


def test_retries_recover_transient_failures(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    once = search("flaky_once", budget=8, params={"marker_dir": str(tmp_path / "a")})
    assert all(not t.ok and "transient" in t.error and t.attempts == 1 for t in once.trials)
    retried = search("flaky_once", budget=8, retries=1, params={"marker_dir": str(tmp_path / "b")})
    assert all(t.ok and t.attempts == 2 for t in retried.trials)


def test_too_many_consecutive_failures_stop_the_search():
    result = search("always_fails", budget=50, jobs=1, max_consecutive_failures=6)
    assert result.status == "aborted" and "6 consecutive failed evaluations" in result.message
    assert "RuntimeError: broken fitness" in result.message
    assert len(result.trials) == 8  # stopped after the batch (of 4) in which the sixth failure came


def test_a_dead_worker_without_isolation_is_recorded_and_the_search_goes_on():
    result = search("kill_self", isolate=False)
    assert result.status == "finished" and len(result.trials) == 20
    bad = [t for t in result.trials if culprit(t.arch)]
    assert bad and all(not t.ok and t.error.startswith("worker died: ") for t in bad)
    assert any(t.ok for t in result.trials)


def test_cli_isolates_a_single_worker_and_stops_on_failures(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[space]\nname = "nb201"\n[strategy]\nname = "random"\n[fitness]\nkind = "callable"\n'
                   f'function = "{FITNESS}:kill_self"\nobjectives = ["acc"]\n[search]\nbudget = 12\nseed = 3\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "a"), "--quiet"]) == 0  # jobs = 1, still isolated
    rows = (tmp_path / "a" / "history.csv").read_text()
    assert "worker died: evaluation process killed by signal SIGKILL" in rows
    cfg.write_text(cfg.read_text().replace("kill_self", "always_fails") + "max_consecutive_failures = 3\n")
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(tmp_path / "b"), "--quiet"]) == 1
    assert "3 consecutive failed evaluations" in capsys.readouterr().err
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["status"] == "aborted" and summary["evaluations"] == 3
    with SQLiteStore(tmp_path / "b" / STORE_NAME) as store:
        assert store.meta()["status"] == "aborted"


def test_isolation_options_are_validated():
    with pytest.raises(ValueError, match="time_limit"):
        search("work", time_limit=1.0, isolate=False)
    with pytest.raises(ValueError, match="isolate"):
        search("work", backend="threading", isolate=True)
