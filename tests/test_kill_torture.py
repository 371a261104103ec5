"""Kill torture: `evonas run` on a table config SIGKILLed at seeded random moments (also in the window between
creating run.db and recording the run, and while exporting history.csv / summary.json), then resumed with
`--resume` each time; every kill must resume to the uninterrupted result: the same trials, the same best and
the same history.csv. The full torture (24 kills) is slow; a fast variant (4 kills) runs by default."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from evonas.store import STORE_NAME, SQLiteStore
from tiny_configs import table_toml

REPO = Path(__file__).resolve().parents[1]
BUDGET = 300


def config(path: Path, table: Path) -> Path:
    path.write_text(table_toml(table, "cifar10_valid12", 'name = "rea"\npopulation = 10\nsample = 3', budget=BUDGET,
                               seed=4, report="cifar10_test200", search="batch_size = 5"))
    return path


#: runs `evonas run ...` and SIGKILLs itself at the N-th audit event EVENT whose first argument contains
#: NEEDLE: exact moments of the export phase (opening a temporary export, renaming it over the old file)
HARNESS = textwrap.dedent("""
    import os, runpy, signal, sys
    event, needle, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = [0]

    def hook(name, args):
        if name == event and args and needle in str(args[0]):
            seen[0] += 1
            if seen[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    sys.argv = ["evonas", *sys.argv[4:]]
    runpy.run_module("evonas.cli", run_name="__main__")
""")


def start(cfg: Path, out: Path, resume: bool, at: tuple[str, str, int] | None = None) -> subprocess.Popen:
    args = ["run", str(cfg), "--out", str(out), "--quiet"] + (["--resume"] if resume else [])
    head = [sys.executable, "-c", HARNESS, *map(str, at)] if at else [sys.executable, "-m", "evonas.cli"]
    return subprocess.Popen(head + args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the run and its process group; True when it was still running."""
    running = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, err = proc.communicate(timeout=60)
    assert running or proc.returncode in (0, -signal.SIGKILL), err  # ended by itself: it succeeded
    return running


def killed_itself(proc: subprocess.Popen) -> bool:
    """Wait for a run started with ``at``; True when it SIGKILLed itself there."""
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode == -signal.SIGKILL


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """Let the run go on for ``delay`` seconds (or until it ends), then SIGKILL it."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    return kill(proc)


def kill_when(proc: subprocess.Popen, path: Path) -> bool:
    """SIGKILL the run the moment ``path`` exists (busy polling: the window is milliseconds long)."""
    while proc.poll() is None and not os.path.exists(path):
        pass
    return kill(proc)


def completed(db: Path, conn: list) -> int:
    """Evaluations completed in the store another process writes (0 before it has a schema)."""
    import sqlite3

    if not conn:
        if not db.exists():
            return 0
        conn.append(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5))
    try:
        return conn[0].execute("SELECT COUNT(*) FROM evaluations WHERE status != 'running'").fetchone()[0]
    except sqlite3.Error:  # schema not created yet
        return 0


def kill_at_evaluation(proc: subprocess.Popen, db: Path, k: int) -> bool:
    """SIGKILL the run as soon as ``k`` evaluations are recorded (busy polling of its store)."""
    conn: list = []
    try:
        while proc.poll() is None and completed(db, conn) < k:
            pass
    finally:
        for c in conn:
            c.close()
    return kill(proc)


def history(out: Path) -> list[tuple]:
    """history.csv without timings; asserts that every row is whole."""
    with (out / "history.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows and all(len(r) == len(rows[0]) for r in rows), "history.csv cut mid-row"
    drop = rows[0].index("elapsed_s")
    return [tuple(v for i, v in enumerate(r) if i != drop) for r in rows]


def outcome(out: Path) -> tuple:
    with SQLiteStore(out / STORE_NAME) as store:
        trials = [(t.step, t.arch, t.status, tuple(sorted(t.metrics.items()))) for t in store.trials()]
    summary = json.loads((out / "summary.json").read_text())
    return trials, summary["best"], summary["status"], history(out)


def finish(cfg: Path, out: Path) -> tuple:
    proc = start(cfg, out, resume=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return outcome(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, table_path):
    base = tmp_path_factory.mktemp("torture")
    cfg = config(base / "kt.toml", table_path)
    began = time.monotonic()
    proc = start(cfg, base / "ref", resume=False)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = outcome(base / "ref")
    assert len(result[0]) == BUDGET and result[2] == "finished"
    return cfg, result, time.monotonic() - began


EXPORT_MOMENTS = [("open", ".history.csv.", 1), ("os.rename", ".history.csv.", 1),
                  ("open", ".summary.json.", 1), ("os.rename", ".summary.json.", 1)]


def torture(reference, tmp_path, *, created: int, random: int, export: int, seed: int) -> dict[str, int]:
    cfg, want, duration = reference
    rng = np.random.default_rng(seed)
    kills = {"created": 0, "in_creation_window": 0, "startup": 0, "search": 0, "export": 0}
    # the window between creating run.db and recording the run: a fresh directory each time
    for i in range(created):
        out = tmp_path / f"created{i}"
        kills["created"] += kill_when(start(cfg, out, resume=False), out / STORE_NAME)
        if (out / STORE_NAME).exists():
            with SQLiteStore(out / STORE_NAME) as store:
                kills["in_creation_window"] += "identity" not in store.meta()
        assert finish(cfg, out) == want
    # one run killed at random moments, resumed after each kill: while starting (random times), then
    # during the search (after a random number of recorded evaluations, increasing)
    out = tmp_path / "chain"
    n_startup = random // 3
    moments = sorted(int(k) for k in rng.choice(np.arange(1, BUDGET), random - n_startup, replace=False))
    for i in range(random):
        proc = start(cfg, out, resume=out.exists())  # a run killed before it wrote anything starts again
        if i < n_startup:
            kills["startup"] += kill_after(proc, float(rng.uniform(0.05, min(duration, 1.5))))
        else:
            kills["search"] += kill_at_evaluation(proc, out / STORE_NAME, moments[i - n_startup])
        if (out / "history.csv").exists():
            history(out)  # an export is whole or absent, never torn
    assert finish(cfg, out) == want
    # resumes of the finished run, killed while they export (opening a temporary file, renaming it)
    for i in range(export):
        event, needle, _ = EXPORT_MOMENTS[i % len(EXPORT_MOMENTS)]
        kills["export"] += killed_itself(start(cfg, out, resume=True, at=(event, needle, 1)))
        assert history(out) == want[3]  # the previous export or the new one: the same rows, whole
        assert finish(cfg, out) == want
        assert not list(out.glob(".*.tmp"))  # a temporary file a killed run left is removed by the next
    return kills


def test_kill_torture_fast(reference, tmp_path):
    kills = torture(reference, tmp_path, created=1, random=2, export=1, seed=0)
    assert kills["created"] + kills["startup"] + kills["search"] + kills["export"] >= 3, kills


@pytest.mark.slow
def test_kill_torture_24_kills(reference, tmp_path):
    kills = torture(reference, tmp_path, created=4, random=14, export=6, seed=1)
    print("kills:", kills)
    assert kills["created"] + kills["startup"] + kills["search"] + kills["export"] >= 20, kills
    assert kills["in_creation_window"] >= 1 and kills["search"] >= 6 and kills["export"] == 6, kills
