"""Crash-safe resume: real SIGKILLs of real processes, then `--resume`, compared with uninterrupted runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from evonas.cli import main
from evonas.evaluator import evaluation_seed
from evonas.store import STORE_NAME, SQLiteStore
from tiny_configs import digits_toml

REPO = Path(__file__).resolve().parents[1]
FITNESS = Path(__file__).with_name("durable_fitness.py")


# --- helpers --------------------------------------------------------------------------------------------
def history(out: Path) -> list[tuple]:
    """history.csv without timings: what must be identical between runs."""
    rows = list(csv.DictReader((out / "history.csv").open()))
    return [tuple(v for k, v in r.items() if k != "elapsed_s") for r in rows]


def best(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["best"]


def finished(db: Path) -> int:
    """Completed evaluations in a run store another process is writing (0 before it exists)."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'running'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def start(*args) -> subprocess.Popen:
    """`evonas run ...` in its own session (its workers are in its process group)."""
    return subprocess.Popen([sys.executable, "-m", "evonas.cli", "run", *map(str, args), "--quiet"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling a file another process writes


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run and every process it started (a crash of the machine, as far as the run can tell)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate(timeout=60)


def run_to_end(*args) -> subprocess.CompletedProcess:
    proc = start(*args)
    out, err = proc.communicate(timeout=300)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # nothing of the run may outlive it
    except ProcessLookupError:
        pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def write_config(path: Path, fitness: str, params: str = "", *, budget: int = 48, seed: int = 11, jobs: int = 2,
                 batch: int = 4, mode: str = "batch", strategy: str = 'name = "rea"\npopulation = 8\nsample = 3') -> Path:
    path.write_text(textwrap.dedent(f"""\
        [space]
        name = "nb201"
        [strategy]
        {strategy}
        [fitness]
        kind = "callable"
        function = "{FITNESS}:{fitness}"
        objectives = ["acc"]
        report = ["noise"]
        params = {{ {params} }}
        [search]
        budget = {budget}
        seed = {seed}
        jobs = {jobs}
        batch_size = {batch}
        mode = "{mode}"
        """))
    return path


# --- table fitness, killed at chosen points (in-process store hooks, real SIGKILL) --------------------------
KILLER = textwrap.dedent("""
    import os, signal, sys
    from evonas.evaluator import Evaluator
    from evonas.fitness import TableFitness
    from evonas.search import Search
    from evonas.spaces import NB201Space
    from evonas.store import SQLiteStore
    from evonas.strategies import make_strategy

    db, table, strategy, kill_trial, kill_checkpoint = sys.argv[1:6]
    kill_trial, kill_checkpoint = int(kill_trial), int(kill_checkpoint)

    class KillingStore(SQLiteStore):
        def add_trials(self, trials):
            super().add_trials(trials)
            if any(t.step == kill_trial for t in trials):
                os.kill(os.getpid(), signal.SIGKILL)  # mid-batch: later trials of the batch are lost

        def checkpoint(self, n, state, dispatches=(), seeds=()):
            super().checkpoint(n, state, dispatches, seeds)
            if any(d.key == kill_checkpoint for d in dispatches):
                os.kill(os.getpid(), signal.SIGKILL)  # right after asking: the whole batch is in flight

    space = NB201Space()
    params = {"rea": {"population": 8, "sample": 3}, "nsga2": {"population": 8}, "random": {}}[strategy]
    metrics = ["cifar10_valid12", "min:cifar10_test12"] if strategy == "nsga2" else ["cifar10_valid12"]
    columns = [m.split(":")[-1] for m in metrics]
    search = Search(space, make_strategy(strategy, space, metrics, 5, **params),
                    Evaluator(TableFitness(table, columns), space, seed=5, required=columns), metrics,
                    budget=60, batch_size=4, store=KillingStore(db), seed=5)
    result = search.run()
    print(result.status, len(result.trials))
""")


@pytest.mark.parametrize("strategy", ["rea", "nsga2", "random"])
def test_table_search_killed_twice_resumes_identically(tmp_path, table_path, strategy):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)

    def run(db, kill_trial=-1, kill_checkpoint=-1):
        return subprocess.run([sys.executable, str(script), str(db), str(table_path), strategy, str(kill_trial),
                               str(kill_checkpoint)], capture_output=True, text=True, cwd=REPO, timeout=120)

    assert run(tmp_path / "whole.db").returncode == 0
    rng = np.random.default_rng(len(strategy))
    kill_trial = int(rng.integers(5, 30))  # a trial in the middle of a batch
    kill_checkpoint = int(rng.integers(34, 56)) // 4 * 4  # the first key of a batch just asked
    killed = tmp_path / "killed.db"
    assert run(killed, kill_trial=kill_trial).returncode == -signal.SIGKILL
    assert run(killed, kill_checkpoint=kill_checkpoint).returncode == -signal.SIGKILL
    with SQLiteStore(killed) as store:  # the crash left that batch in flight
        assert store.in_flight() and len(store.trials()) < 60
    done = run(killed)
    assert done.returncode == 0 and done.stdout.split() == ["finished", "60"], done.stderr

    def rows(db):
        with SQLiteStore(db) as store:
            return [(t.step, t.arch, t.canonical_hash, t.metrics, t.status, t.seed) for t in store.trials()]

    assert rows(killed) == rows(tmp_path / "whole.db")


# --- the command line: SIGKILL at random moments, SIGINT ---------------------------------------------------
@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """An uninterrupted run of the callable config (real worker processes)."""
    tmp = tmp_path_factory.mktemp("baseline")
    cfg = write_config(tmp / "work.toml", "work", "cost = 0.02")
    proc = run_to_end(cfg, "--out", tmp / "out")
    assert proc.returncode == 0, proc.stderr
    return cfg, tmp / "out"


def test_cli_run_killed_twice_at_random_moments_resumes_identically(tmp_path, baseline):
    _, whole = baseline
    out = tmp_path / "out"
    db = out / STORE_NAME
    rng = np.random.default_rng(2024)
    # crash 1: the fitness kills the whole process group at a random evaluation (others are in flight)
    at = int(rng.integers(6, 20))
    cfg = write_config(tmp_path / "crash.toml", "crash_group", f'at = {at}, marker = "{tmp_path / "crashed"}", '
                                                               f'cost = 0.02')
    proc = start(cfg, "--out", out)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL and (tmp_path / "crashed").exists()
    first = finished(db)
    assert 0 < first < 48
    # crash 2: SIGKILL from outside once a random number of further evaluations completed
    target = first + int(rng.integers(4, 16))
    proc = start(cfg, "--out", out, "--resume")
    wait_for(lambda: finished(db) >= target or proc.poll() is not None, what=f"{target} evaluations")
    kill_group(proc)
    with SQLiteStore(db) as store:
        second, lost = len(store.trials()), store.in_flight()
    assert first <= second < 48, "the second kill came too late to test anything"
    # resume to the end
    proc = run_to_end(cfg, "--out", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert history(out) == history(whole)  # same evaluations, same order, same results
    assert best(out) == best(whole)
    with SQLiteStore(db) as store:
        trials = store.trials()
        meta = store.meta()
    assert [t.step for t in trials] == list(range(48))  # none lost, none duplicated
    assert all(t.ok for t in trials if t.step in lost)  # in flight at the kill: redone
    assert len(meta["resumes"]) == 2 and meta["status"] == "finished"


def test_sigint_stops_gracefully_and_the_run_resumes(tmp_path, baseline):
    cfg, whole = baseline
    out = tmp_path / "out"
    db = out / STORE_NAME
    slow = write_config(tmp_path / "slow.toml", "work", "cost = 0.02")
    proc = start(slow, "--out", out)
    wait_for(lambda: finished(db) >= 6 or proc.poll() is not None, what="6 evaluations")
    os.kill(proc.pid, signal.SIGINT)  # to the main process only, as `kill -INT`
    _, err = proc.communicate(timeout=120)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGINT arrived (machine too fast for this budget)")
    assert proc.returncode == 130, err
    assert "--resume" in err.strip().splitlines()[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    with SQLiteStore(db) as store:
        assert summary["evaluations"] == len(store.trials()) < 48
        assert store.meta()["status"] == "interrupted"
    assert len(history(out)) == summary["evaluations"]
    proc = run_to_end(slow, "--out", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert history(out) == history(whole) and best(out) == best(whole)


def test_async_mode_resume_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "async.toml", "crash_group", f'at = 13, marker = "{tmp_path / "crashed"}", '
                                                               f'cost = 0.01', budget=40, mode="async")
    proc = start(cfg, "--out", out)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    with SQLiteStore(out / STORE_NAME) as store:
        lost = store.in_flight()
    assert lost
    proc = run_to_end(cfg, "--out", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    with SQLiteStore(out / STORE_NAME) as store:
        trials = store.trials()
        assert store.in_flight() == []
    assert [t.step for t in trials] == list(range(40))
    assert all(t.ok and t.seed == evaluation_seed(11, t.step) for t in trials)
    assert len(history(out)) == 40


# --- run directories and config checks (in-process, table fitness) ------------------------------------------
def _table_config(path: Path, table_path, population: int = 8, budget: int = 20) -> Path:
    path.write_text(f'[space]\nname = "nb201"\n[strategy]\nname = "rea"\npopulation = {population}\nsample = 3\n'
                    f'[fitness]\nkind = "table"\ntable = "{table_path}"\nobjectives = ["cifar10_valid12"]\n'
                    f'[search]\nbudget = {budget}\nbatch_size = 4\nseed = 9\n')
    return path


def test_resume_refuses_a_changed_config_unless_forced(tmp_path, table_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_table_config(tmp_path / "a.toml", table_path)), "--out", str(out), "--quiet"]) == 0
    changed = _table_config(tmp_path / "b.toml", table_path, population=9)
    before = (out / STORE_NAME).read_bytes()
    capsys.readouterr()
    assert main(["run", str(changed), "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[strategy] population: 8 -> 9" in err[0] and "--force" in err[0], err
    assert str(changed) in err[0]
    assert (out / STORE_NAME).read_bytes() == before  # nothing written
    assert main(["run", str(changed), "--out", str(out), "--resume", "--force", "--budget", "24", "--quiet"]) == 0
    with SQLiteStore(out / STORE_NAME) as store:
        meta = store.meta()
        assert len(store.trials()) == 24
    assert meta["resumes"][-1]["forced"] and meta["config"]["strategy"]["population"] == 9


def test_resume_with_a_larger_budget_continues_the_run(tmp_path, table_path):
    cfg = _table_config(tmp_path / "a.toml", table_path)
    assert main(["run", str(cfg), "--out", str(tmp_path / "short"), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "short"), "--resume", "--budget", "40", "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "long"), "--budget", "40", "--quiet"]) == 0
    assert history(tmp_path / "short") == history(tmp_path / "long")


def test_run_directories_are_protected(tmp_path, table_path, capsys):
    cfg = _table_config(tmp_path / "a.toml", table_path)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(tmp_path / "none"), "--resume", "--quiet"]) == 2
    assert "no run to resume" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert "already holds a run (20 evaluations" in capsys.readouterr().err
    assert main(["run", str(cfg), "--out", str(out), "--budget", "8", "--force", "--quiet"]) == 0
    assert len(history(out)) == 8  # started over
    # a second process on the same directory is refused while the first holds it
    from evonas.config import ConfigError, load_config
    from evonas.rundir import open_run

    run = open_run(load_config(cfg), out, resume=True)
    try:
        with pytest.raises(ConfigError, match="in use by"):
            open_run(load_config(cfg), out, resume=True)
    finally:
        run.close()
    open_run(load_config(cfg), out, resume=True).close()


@pytest.mark.slow
def test_real_training_killed_twice_resumes_identically(tmp_path):
    """scripts/kill_resume_demo.py on genomes/digits.toml, small: real training SIGKILLed twice."""
    if not (REPO / "genomes" / "digits.toml").exists():
        pytest.skip("genomes/digits.toml not present")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "kill_resume_demo.py"), "--budget", "12",
                           "--steps", "30", "--meta-steps", "10", "--kill-seed", "3", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "demo.json").read_text())
    assert all(report["checks"].values()) and len(report["kills"]) == 2


# --- real training with the online warm start: the initializer's updates are part of the checkpoint ----------
ONLINE = digits_toml('name = "rea"\npopulation = 4\nsample = 2', "C = 4\nN = 1\nsteps = 30\nbatch_size = 32",
                     "budget = 10\nseed = 3\njobs = 2\nbatch_size = 2\nisolate = false",
                     extra="[warm_start]\nmeta_steps = 3\ninner_steps = 3\nonline = true\nonline_lr = 0.3")


def untimed_history(out: Path) -> list[tuple]:
    rows = list(csv.DictReader((out / "history.csv").open()))
    return [tuple(v for k, v in r.items() if k not in ("elapsed_s", "train_time_s")) for r in rows]


def test_online_warm_start_killed_twice_resumes_identically(tmp_path):
    """The online initializer's state after each told batch is checkpointed in the run directory: a run
    SIGKILLed twice (with 2 workers, while one evaluation of a batch is recorded and its partner still
    trains; with 1 in-process worker, around the end of a batch, when its trained weights may not yet be
    applied or checkpointed) resumes without meta-training again and makes exactly the uninterrupted run's
    evaluations; --jobs 1 and 2 agree."""
    cfg = tmp_path / "online.toml"
    cfg.write_text(ONLINE)
    whole, out = tmp_path / "whole", tmp_path / "out"
    proc = run_to_end(cfg, "--out", whole, "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    db = out / STORE_NAME
    counts = []
    for at, extra in ((3, ()), (6, ("--resume", "--jobs", "1"))):
        proc = start(cfg, "--out", out, *extra)
        wait_for(lambda: finished(db) >= at or proc.poll() is not None, what=f"{at} evaluations")
        kill_group(proc)
        with SQLiteStore(db) as store:
            counts.append(len(store.trials()))
        assert at <= counts[-1] < 10, f"kill {len(counts)} came too late to test anything"
        assert list((out / "warm_start").glob("init-*.pt"))
    proc = run_to_end(cfg, "--out", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    # the checkpoint held the initializer: the resumed run continued it instead of meta-training again
    assert "warm start resumed from" in proc.stderr and "meta-training" not in proc.stderr, proc.stderr
    assert untimed_history(out) == untimed_history(whole), counts
    untimed = lambda b: {**b, "metrics": {k: v for k, v in b["metrics"].items() if k != "train_time_s"}}  # noqa: E731
    assert untimed(best(out)) == untimed(best(whole))
    assert len(list((out / "warm_start").glob("init-*.pt"))) <= 2  # old snapshots pruned
