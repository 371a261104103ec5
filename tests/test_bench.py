"""Benchmark statistics and the table loader."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evonas.bench import BenchRow, bench_stats, best_report_at, queries_to_hit, read_bench_csv, run_bench, \
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
    data = run_bench(table_path, "cifar10_valid12", "cifar10_test200", ["random"], 20, 2)
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
