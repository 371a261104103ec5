"""The SQLite store: a real file, WAL, versioned schema, evaluations as they complete, exports, cache."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path

import pytest

import evonas
from evonas.cli import main
from evonas.evaluator import Evaluator
from evonas.fitness import TableFitness
from evonas.search import Search
from evonas.spaces import NB201Space
from evonas.store import SCHEMA_VERSION, STORE_NAME, Dispatch, MemoryStore, SQLiteStore, StoreError
from evonas.strategies import make_strategy
from evonas.trial import Trial

REPO = Path(__file__).resolve().parents[1]
SPACE = NB201Space()


def _trial(step, **kw):
    base = dict(step=step, arch=f"a{step}", canonical_hash=f"h{step}", metrics={"acc": float(step)}, seed=step,
                elapsed_s=0.5, worker="host:1")
    base.update(kw)
    return Trial(**base)


def test_schema_wal_and_roundtrip(tmp_path):
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.set_meta({"seed": 3, "config": {"search": {"budget": 10}}})
        store.set_meta({"status": "running"})
        store.checkpoint(0, {"strategy": {"x": [1, 2]}}, [Dispatch(0, (1, 2), "a0", "h0"),
                                                          Dispatch(1, (3, 4), "a1", "h1")], seeds=[11, 12])
        assert store.in_flight() == [0, 1] and store.trials() == []
        store.add_trials([_trial(1, metrics={"acc": math.nan}, status="failed", error="metric 'acc' is nan")])
        store.add_trials([_trial(0, attempts=2)])
    # a real file, reopened by a new connection (and by plain sqlite3)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with SQLiteStore(path) as store:
        assert store.meta() == {"seed": 3, "config": {"search": {"budget": 10}}, "status": "running"}
        t0, t1 = store.trials()
        assert (t0.step, t0.metrics, t0.attempts, t0.ok) == (0, {"acc": 0.0}, 2, True)
        assert t1.status == "failed" and math.isnan(t1.metrics["acc"]) and t1.error == "metric 'acc' is nan"
        assert store.in_flight() == []
        assert store.load_state() == (0, {"strategy": {"x": [1, 2]}})
        rows = {r["key"]: r for r in store.rows()}
        assert rows[1]["reason"] == "non_finite" and rows[0]["reason"] is None
        assert json.loads(rows[0]["genes"]) == [1, 2] and rows[0]["dispatched_at"] <= rows[0]["finished_at"]


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    newer = tmp_path / "newer.db"
    SQLiteStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than this evonas"):
        SQLiteStore(newer)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE x (y)")
    con.close()
    with pytest.raises(StoreError, match="no evonas schema version"):
        SQLiteStore(foreign)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not a usable evonas store"):
        SQLiteStore(junk)


def _table_search(table_path, store, *, seed=4, budget=40, batch_size=4):
    fitness = TableFitness(table_path, ["cifar10_valid12", "cifar10_test200"])
    strategy = make_strategy("rea", SPACE, ["cifar10_valid12"], seed, population=8, sample=3)
    evaluator = Evaluator(fitness, SPACE, seed=seed, required=["cifar10_valid12", "cifar10_test200"])
    return Search(SPACE, strategy, evaluator, ["cifar10_valid12"], budget=budget, batch_size=batch_size,
                  store=store, seed=seed)


def test_sqlite_search_matches_memory_search_and_checkpoints(tmp_path, table_path):
    memory = _table_search(table_path, MemoryStore()).run()
    store = SQLiteStore(tmp_path / "run.db")
    durable = _table_search(table_path, store).run()
    key = lambda r: [(t.step, t.arch, t.metrics, t.status, t.seed) for t in r.trials]  # noqa: E731
    assert key(durable) == key(memory) and len(durable.trials) == 40
    n, state = store.load_state()
    assert n == 40 and state["next_key"] == 40 and state["pending"] == []
    assert len(state["strategy"]["population"]) == 8 and "rng" in state["strategy"]
    assert store.in_flight() == []


def test_run_exports_history_and_summary_from_the_store(tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(REPO / "genomes/nb201-cifar10.toml"), "--budget", "30", "--seed", "2",
                 "--out", str(out), "--quiet"]) == 0
    with SQLiteStore(out / STORE_NAME) as store:
        trials, meta = store.trials(), store.meta()
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [(int(r["step"]), r["arch"], float(r["cifar10_valid12"]), int(r["seed"])) for r in rows] == \
        [(t.step, t.arch, t.metrics["cifar10_valid12"], t.seed) for t in trials]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["evaluations"] == 30 and summary["store"].endswith(STORE_NAME)
    best = max(trials, key=lambda t: t.metrics["cifar10_valid12"])
    assert summary["best"]["arch"] == best.arch
    assert meta["status"] == "finished" and meta["seed"] == 2 and meta["config"]["search"]["budget"] == 30
    assert "[space]" in meta["config_text"] and meta["identity"]


def test_cache_reuses_results_across_runs_sharing_a_store(tmp_path, table_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[space]\nname = "nb201"\n[strategy]\nname = "random"\n[fitness]\nkind = "table"\n'
                   f'table = "{table_path}"\nobjectives = ["cifar10_valid12"]\n'
                   f'[search]\nbudget = 60\nseed = 1\ncache = true\ncache_db = "shared-cache.db"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    with SQLiteStore(tmp_path / "shared-cache.db") as cache:
        assert cache.cache_size() == 60
    # same seed: every architecture is in the cache, nothing is evaluated again
    assert main(["run", str(cfg), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert b["cache_hits"] == 60
    with SQLiteStore(tmp_path / "b" / STORE_NAME) as store:
        assert all(t.cached and t.worker == "cache" for t in store.trials())
    a_rows = list(csv.DictReader((tmp_path / "a" / "history.csv").open()))
    b_rows = list(csv.DictReader((tmp_path / "b" / "history.csv").open()))
    assert [(r["arch"], r["cifar10_valid12"]) for r in a_rows] == [(r["arch"], r["cifar10_valid12"]) for r in b_rows]
    # another seed: hits exactly the architectures (canonical hashes) the first run evaluated
    assert main(["run", str(cfg), "--out", str(tmp_path / "c"), "--seed", "2", "--budget", "300", "--quiet"]) == 0
    c = json.loads((tmp_path / "c" / "summary.json").read_text())
    seen = {r["canonical_hash"] for r in a_rows}
    c_rows = list(csv.DictReader((tmp_path / "c" / "history.csv").open()))
    assert c["cache_hits"] == sum(r["canonical_hash"] in seen for r in c_rows) > 0


def test_cache_is_keyed_by_fitness_identity(tmp_path, table_path):
    def run(objective, out):
        cfg = tmp_path / f"{out}.toml"
        cfg.write_text(f'[space]\nname = "nb201"\n[strategy]\nname = "random"\n[fitness]\nkind = "table"\n'
                       f'table = "{table_path}"\nobjectives = ["{objective}"]\n'
                       f'[search]\nbudget = 20\nseed = 1\ncache = true\ncache_db = "shared.db"\n')
        assert main(["run", str(cfg), "--out", str(tmp_path / out), "--quiet"]) == 0
        return json.loads((tmp_path / out / "summary.json").read_text())

    assert run("cifar10_valid12", "x")["cache_hits"] == 0
    # a different objective of the same table fitness: cached rows lack the metric, so they are not used
    assert run("cifar100_valid12", "y")["cache_hits"] == 0
    assert run("cifar10_valid12", "z")["cache_hits"] == 20


def test_api_search_with_a_sqlite_store(tmp_path, table_path):
    store = SQLiteStore(tmp_path / "api.db")
    result = evonas.search(SPACE, TableFitness(table_path, ["cifar10_valid12"]), ["cifar10_valid12"],
                           budget=12, seed=0, store=store)
    assert [t.step for t in SQLiteStore(tmp_path / "api.db").trials()] == list(range(12))
    assert result.status == "finished"


def test_memory_store_implements_the_whole_contract():
    store = MemoryStore()
    trials = [Trial(step=k, arch=f"a{k}", canonical_hash=f"h{k % 2}", metrics={"acc": float(k)}, status="ok")
              for k in range(4)]
    store.add_trials(trials)
    assert store.trial(2) == trials[2] and store.trial(9) is None and store.path is None
    store.cache_put("fit", trials)
    assert store.cache_get("fit", "h1") == ({"acc": 1.0}, trials[1].elapsed_s)  # the first result is kept
    assert store.cache_get("other", "h1") is None
    assert store.discard_from(2) == 2 and [t.step for t in store.trials()] == [0, 1]
