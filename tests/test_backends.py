"""Scale-out: a real Dask LocalCluster (worker processes) started by evonas or by the test, through the
same search as the local loky backend; joblib registration; Ray when installed."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pytest

import evonas
from evonas.backends import BACKENDS, BackendError, DaskPool, joblib_backend, open_pool
from evonas.cli import main
from evonas.fitness import CallableFitness
from evonas.spaces import NB201Space

distributed = pytest.importorskip("distributed")

SPACE = NB201Space()
FITNESS = Path(__file__).with_name("durable_fitness.py")
WORK = CallableFitness(f"{FITNESS}:work", {"cost": 0.005})


def key(result):
    return [(t.step, t.arch, t.canonical_hash, t.metrics, t.status, t.seed) for t in result.trials]


@pytest.fixture(scope="module")
def cluster():
    """A running Dask scheduler with two single-threaded worker processes, on loopback."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as lc, Client(lc) as client:
        yield lc.scheduler_address, client


def test_dask_local_cluster_gives_the_local_backend_history():
    kwargs = dict(strategy="rea", budget=24, seed=8, jobs=2, batch_size=4, population=8, sample=3)
    local = evonas.search(SPACE, WORK, ["acc"], backend="loky", **kwargs)
    dask = evonas.search(SPACE, WORK, ["acc"], backend="dask", **kwargs)  # evonas starts its LocalCluster
    assert key(dask) == key(local) and len(dask.trials) == 24
    assert len({t.worker for t in dask.trials}) == 2  # both worker processes evaluated
    assert not {t.worker for t in dask.trials} & {t.worker for t in local.trials}


def test_cli_on_a_running_scheduler_matches_local(tmp_path, cluster):
    address, client = cluster
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[space]\nname = "nb201"\n[strategy]\nname = "rea"\npopulation = 8\nsample = 3\n'
                   f'[fitness]\nkind = "callable"\nfunction = "{FITNESS}:work"\nobjectives = ["acc"]\n'
                   f'params = {{ cost = 0.005 }}\n[search]\nbudget = 20\nseed = 4\njobs = 2\nbatch_size = 4\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "local"), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "dask"), "--backend", "dask", "--address", address,
                 "--quiet"]) == 0

    def rows(out):
        return [(r["arch"], r["acc"], r["status"], r["seed"]) for r in csv.DictReader((out / "history.csv").open())]

    assert rows(tmp_path / "dask") == rows(tmp_path / "local")
    workers = {r["worker"] for r in evonas.store.SQLiteStore(tmp_path / "dask" / "run.db").rows()}
    assert len(workers) == 2 and all(w.split(":")[-1] != str(os.getpid()) for w in workers)


def test_a_worker_killing_fitness_on_the_cluster_leaves_the_cluster_intact(cluster):
    address, client = cluster
    result = evonas.search(SPACE, CallableFitness(f"{FITNESS}:kill_self"), ["acc"], strategy="random", budget=16,
                           seed=3, jobs=2, batch_size=4, backend="dask", address=address)
    bad = [t for t in result.trials if "avg_pool_3x3~0|+" in t.arch]
    assert bad and all(t.error.startswith("worker died: evaluation process killed by signal SIGKILL") for t in bad)
    assert all(t.ok for t in result.trials if t not in bad)
    assert len(client.nthreads()) == 2  # the isolated evaluation died, not the Dask worker


def test_async_mode_on_the_cluster_evaluates_the_whole_budget_once(cluster):
    address, _ = cluster
    result = evonas.search(SPACE, WORK, ["acc"], strategy="rea", budget=16, seed=1, jobs=2, backend="dask",
                           address=address, mode="async", population=6, sample=2)
    assert [t.step for t in result.trials] == list(range(16)) and all(t.ok for t in result.trials)


def test_joblib_runs_on_the_cluster(cluster):
    from joblib import Parallel, delayed

    address, client = cluster
    with joblib_backend("dask", address=address):
        pids = set(Parallel()(delayed(os.getpid)() for _ in range(8)))
    worker_pids = set(client.run(os.getpid).values())
    assert pids <= worker_pids and os.getpid() not in pids


def test_unreachable_scheduler_and_unknown_backend():
    with pytest.raises(BackendError, match="cannot connect"):
        DaskPool(2, "tcp://127.0.0.1:9", timeout=1)
    with pytest.raises(BackendError, match="unknown backend"):
        open_pool("spark", 2)
    assert set(BACKENDS) == {"loky", "dask", "ray", "threading", "simulated"}


def test_ray_backend_matches_local():
    pytest.importorskip("ray")
    kwargs = dict(strategy="rea", budget=12, seed=8, jobs=2, batch_size=4, population=6, sample=2)
    local = evonas.search(SPACE, WORK, ["acc"], backend="loky", **kwargs)
    ray = evonas.search(SPACE, WORK, ["acc"], backend="ray", **kwargs)
    assert key(ray) == key(local)
