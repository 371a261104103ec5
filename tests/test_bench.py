"""Benchmark statistics and the table loader."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evonas.bench import BenchRow, bench_rows, bench_stats, best_report_at, queries_to_hit, read_bench_csv, replay, \
    top_set, write_bench_csv
from evonas.fitness.table import Table, TableError, load_table

REPO = Path(__file__).resolve().parents[1]


def rows(values, algo="a", seed=0):
    return [BenchRow(algo, seed, i + 1, f"x{i}", f, r) for i, (f, r) in enumerate(values)]


def test_top_set_of_the_nb201_table_is_16_cells(nb201_table):
    targets = top_set(nb201_table.archs, nb201_table.column("cifar10_test200"), 0.001)
    assert len(targets) == 16
    best = nb201_table.archs[int(np.argmax(nb201_table.column("cifar10_test200")))]
    assert best in targets
    assert max(nb201_table.column("cifar10_test200")) == pytest.approx(94.37, abs=0.01)


def test_known_optima_of_the_table(nb201_table):
    assert max(nb201_table.column("cifar100_test200")) == pytest.approx(73.51, abs=0.01)
    assert max(nb201_table.column("imagenet16_test200")) == pytest.approx(47.31, abs=0.01)


def test_best_report_follows_fitness_not_report():
    r = rows([(1.0, 50.0), (3.0, 40.0), (2.0, 99.0)])
    assert best_report_at(r, 1) == 50.0
    assert best_report_at(r, 3) == 40.0  # best by fitness, whatever its report
    assert best_report_at(r, 3, goal="min") == 50.0


def test_queries_to_hit_and_medians():
    assert queries_to_hit(rows([(0, 0)] * 5), {"x3"}) == 4
    assert queries_to_hit(rows([(0, 0)] * 2), {"x3"}) == math.inf
    data = rows([(0, 0)] * 10, seed=0) + rows([(0, 0)] * 10, seed=1) + rows([(0, 0)] * 10, seed=2)
    stats = bench_stats(data, {"x1", "x7"}, checkpoints=(5, 10, 50))
    assert stats["a"]["median_queries"] == 2 and stats["a"]["found"] == 3
    assert set(stats["a"]["report_at"]) == {5, 10}  # no checkpoint beyond the budget


def test_bench_csv_round_trip(tmp_path, table_path):
    data = bench_rows(replay(table_path, "cifar10_valid12", "cifar10_test200", ["random"], 20, 2))
    path = write_bench_csv(tmp_path / "b.csv", data)
    assert read_bench_csv(path) == data


def test_table_loader_errors_name_the_file(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("name,acc\nx,1\n")
    with pytest.raises(TableError, match=r"t.csv: no 'arch' column"):
        Table(bad)
    bad.write_text("arch,acc\nx,1,2\n")
    with pytest.raises(TableError, match="line 2 has 3 fields"):
        Table(bad)
    bad.write_text("")
    with pytest.raises(TableError, match="table is empty"):
        Table(bad)
    with pytest.raises(TableError, match="table file not found"):
        load_table(tmp_path / "none.csv")


def test_table_reads_blank_cells_as_nan(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arch,acc\na,\nb,2.5\n")
    table = Table(path)
    assert math.isnan(table.lookup("a", ["acc"])["acc"]) and table.lookup("b", ["acc"]) == {"acc": 2.5}
    assert table.lookup("c", ["acc"]) is None


def test_nb201_benchmark_script_quick(tmp_path, table_path):
    md = tmp_path / "B.md"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "nb201_search.py"), "--seeds", "3",
                           "--budget-nats", "30", "--budget-direct", "200", "--datasets", "cifar10",
                           "--table", str(table_path), "--md", str(md)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "<!-- BEGIN nb201_search -->" in text and "| cifar10 |" in text and "plain-rea" in text


def test_simulated_pool_completes_in_virtual_time_order():
    from types import SimpleNamespace

    from evonas.backends import SimulatedPool

    pool = SimulatedPool(3)
    futures = [pool.submit(lambda s: SimpleNamespace(elapsed_s=s), s) for s in (3.0, 1.0, 2.0)]
    order = [next(iter(pool.wait(futures))) for _ in range(3)]
    assert order == [futures[1], futures[2], futures[0]] and pool.clock == 3.0
    assert pool.wait(futures) == set()  # nothing left in flight


def test_replay_on_the_virtual_clock(table_path, nb201_table):
    cost = "cifar10_params_m"  # any column serves as seconds per lookup
    serial = replay(table_path, "cifar10_valid12", "cifar10_test200", ["rea"], 40, 1, cost=2.0)[0]
    assert serial.queries == 40 and serial.simulated_s == pytest.approx(80.0)
    a = replay(table_path, "cifar10_valid12", "cifar10_test200", ["rea"], 40, 2, cost=cost, jobs=4, mode="async")
    b = replay(table_path, "cifar10_valid12", "cifar10_test200", ["rea"], 40, 2, cost=cost, jobs=4, mode="async")
    assert [r.rows for r in a] == [r.rows for r in b] and [r.simulated_s for r in a] == [r.simulated_s for r in b]
    for run in a:  # 4 virtual workers: between a quarter of the serial time and the serial time
        costs = [nb201_table.lookup(r.arch, [cost])[cost] for r in run.rows]
        assert sum(costs) / 4 - 1e-9 <= run.simulated_s < sum(costs)
    batch = replay(table_path, "cifar10_valid12", "cifar10_test200", ["random"], 40, 1, cost=cost, jobs=4,
                   batch_size=4)[0]
    costs = [nb201_table.lookup(r.arch, [cost])[cost] for r in batch.rows]
    assert batch.simulated_s == pytest.approx(sum(max(costs[i:i + 4]) for i in range(0, 40, 4)))


def test_cli_bench_reports_queries_and_simulated_seconds(tmp_path, table_path, capsys):
    from evonas.cli import main

    args = ["bench", "--table", str(table_path), "--fitness", "cifar10_valid12", "--report", "cifar10_test200",
            "--algo", "rea,random", "--budget", "30", "--seeds", "2", "--out", str(tmp_path / "b")]
    assert main([*args, "--mode", "async", "--jobs", "3", "--cost", "2.5"]) == 0
    out = capsys.readouterr().out
    assert "simulated (async, 3 virtual workers, 2.5 s per query): rea 30 queries in 25 s" in out
    import json

    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["algos"]["rea"]["queries"] == 30 and summary["algos"]["rea"]["simulated_s"] == 25.0
    assert main([*args, "--cost", "no_such_column"]) == 2
    assert "no column 'no_such_column'" in capsys.readouterr().err


def test_config_with_a_cost_column_on_the_simulated_backend(table_path, nb201_table):
    from evonas.api import build_search
    from evonas.config import ConfigError, parse_config

    data = {"space": {"name": "nb201"}, "strategy": {"name": "rea"},
            "fitness": {"kind": "table", "table": str(table_path), "objectives": ["cifar10_valid12"],
                        "cost": "cifar10_params_m"},
            "search": {"budget": 12, "backend": "simulated", "isolate": False, "jobs": 3, "mode": "async"}}
    result = build_search(parse_config(data)).run()
    costs = [nb201_table.lookup(t.arch, ["cifar10_params_m"])["cifar10_params_m"] for t in result.trials]
    assert [t.elapsed_s for t in result.trials] == costs  # each lookup takes its cost
    assert sum(costs) / 3 - 1e-9 <= result.simulated_s < sum(costs)
    data["fitness"]["cost"] = "cifar10_params"
    with pytest.raises(ConfigError, match=r"\[fitness\] cost = 'cifar10_params': .*did you mean 'cifar10_params_m'"):
        build_search(parse_config(data))
