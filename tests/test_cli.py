"""The evonas command: run, bench, space enumerate/stats, exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evonas.cli import main

REPO = Path(__file__).resolve().parents[1]


def evonas(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "evonas.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_run_writes_history_and_summary(tmp_path):
    out = tmp_path / "run"
    start = time.perf_counter()
    proc = evonas("run", "genomes/nb201-cifar10.toml", "--budget", "50", "--seed", "1", "--out", out)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "eval" in proc.stderr  # the progress bar goes to stderr
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(50))
    assert {"arch", "canonical_hash", "cifar10_valid12", "cifar10_test200", "status"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 50 and summary["seed"] == 1
    assert 0 < summary["elapsed_s"] < wall  # the search's own time, within the process's
    best = max(rows, key=lambda r: float(r["cifar10_valid12"]))
    assert summary["best"]["arch"] == best["arch"]
    assert summary["best"]["fitness"] == pytest.approx(float(best["cifar10_valid12"]))
    assert summary["best"]["metrics"]["cifar10_test200"] == pytest.approx(float(best["cifar10_test200"]))


def test_run_with_a_user_table_path(tmp_path, small_table):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[space]\nname = "nb201"\n[fitness]\nkind = "table"\ntable = "x.csv"\n'
                   'objectives = ["acc", "min:latency"]\n[strategy]\nname = "nsga2"\npopulation = 8\n'
                   '[search]\nbudget = 40\nbatch_size = 8\n')
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--table", str(small_table), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pareto_front"] and summary["evaluations"] == 40
    # cells missing from the small table are failed evaluations, not a crash
    assert summary["failed"] > 0


def test_run_custom_callable_dag_config_in_parallel(tmp_path):
    out = tmp_path / "dag"
    proc = evonas("run", "genomes/dag-custom.toml", "--budget", "24", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)
    assert {"score", "depth", "convs"} <= set(rows[0])


@pytest.mark.parametrize("config, expected", [
    ('[space]\nname = "nb201"\nops = ["none", "conv9x9"]\n[fitness]\nkind = "table"\ntable = "t.csv"\n'
     'objectives = ["a"]\n', "[space] ops = ['none', 'conv9x9']: ops: unknown op 'conv9x9'"),
    ('[space]\nname = "nb201"\n[fitness]\nkind = "table"\ntable = "missing.csv"\nobjectives = ["a"]\n',
     "[fitness] table = 'missing.csv'"),
    ('[space]\nname = "nb201"\n[strategy]\nname = "rea"\npopulaton = 5\n[fitness]\nkind = "table"\n'
     'table = "t.csv"\nobjectives = ["a"]\n', "[strategy] populaton = 5: unknown key; did you mean 'population'?"),
])
def test_bad_configs_exit_2_with_one_line(tmp_path, config, expected):
    path = tmp_path / "bad.toml"
    path.write_text(config)
    proc = evonas("run", path, "--out", tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], proc.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bench_writes_rows_and_prints_statistics(tmp_path, table_path):
    out = tmp_path / "bench"
    proc = evonas("bench", "--table", table_path, "--fitness", "cifar10_valid12", "--report", "cifar10_test200",
                  "--algo", "rea,random", "--budget", "60", "--seeds", "3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert len(rows) == 2 * 3 * 60
    assert list(rows[0]) == ["algo", "seed", "query", "arch", "fitness", "report"]
    assert [int(r["query"]) for r in rows[:60]] == list(range(1, 61))
    assert "q=50" in proc.stdout and "rea" in proc.stdout and "random" in proc.stdout
    assert "queries to top-0.1%" in proc.stdout


def test_bench_unknown_column_exits_2(tmp_path, table_path):
    proc = evonas("bench", "--table", table_path, "--fitness", "cifar10_valid13", "--report", "cifar10_test200",
                  "--algo", "rea", "--out", tmp_path)
    assert proc.returncode == 2 and "no column 'cifar10_valid13'" in proc.stderr


def test_space_enumerate_nb201(tmp_path):
    out = tmp_path / "cells.csv"
    assert main(["space", "enumerate", str(REPO / "genomes" / "nb201-cifar10.toml"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["arch", "canonical_hash"]
    assert len(rows) == 15_625 and len({r["canonical_hash"] for r in rows}) == 6_466


def test_space_stats_prints_size_and_unique(capsys):
    assert main(["space", "stats", str(REPO / "genomes" / "nb201-cifar10.toml")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["size"] == 15_625 and stats["unique"] == 6_466 and stats["encoding_size"] == 30


def test_space_stats_refuses_a_huge_dag_space(capsys):
    assert main(["space", "stats", str(REPO / "genomes" / "dag-custom.toml")]) == 2
    assert "enumeration is limited" in capsys.readouterr().err


def test_version():
    proc = evonas("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("evonas ")
