"""evonas report: figures and a self-contained page for run and bench directories, from real runs."""

from __future__ import annotations

import json
import math
import re
import sqlite3

import numpy as np
import pytest

from evonas.bench import best_report_at, read_bench_csv, top_set
from evonas.cli import main
from evonas.config import parse_config
from evonas.report import ReportError, write_report
from evonas.report.data import (anytime_curve, best_so_far, hypervolume_2d, hypervolume_curve, load_bench,
                                load_run, pareto_indices, top_trials)
from evonas.trial import Objective, Trial, pareto_front

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path_factory, name: str, doc: dict):
    from evonas.api import run_config

    out = tmp_path_factory.mktemp(name)
    cfg = parse_config(doc)
    run_config(cfg, out / "run")
    return out / "run"


def _table_doc(table, objectives, report, strategy, budget, batch_size=1):
    return {"space": {"name": "nb201"}, "strategy": strategy,
            "fitness": {"kind": "table", "table": str(table), "objectives": objectives, "report": report},
            "search": {"budget": budget, "seed": 0, "batch_size": batch_size}}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, table_path):
    return _run(tmp_path_factory, "single", _table_doc(
        table_path, ["cifar10_valid12"], ["cifar10_test200"], {"name": "rea", "population": 10, "sample": 3}, 120))


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory, table_path):
    return _run(tmp_path_factory, "pareto", _table_doc(
        table_path, [{"metric": "cifar10_valid12", "goal": "max"},
                     {"metric": "pi5_litert_latency_ms", "goal": "min"}],
        ["cifar10_test200"], {"name": "nsga2", "population": 12}, 96, batch_size=12))


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory, table_path):
    out = tmp_path_factory.mktemp("bench") / "bench"
    rc = main(["bench", "--table", str(table_path), "--fitness", "cifar10_test200", "--report", "cifar10_test200",
               "--algo", "rea,random", "--budget", "60", "--seeds", "4", "--out", str(out)])
    assert rc == 0
    return out


def _page_checks(html: str, n_figures: int) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("data:image/png;base64,") == n_figures
    # self-contained: no scripts, no remote resources
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html, re.I)
    assert "<link" not in html.lower()


# --- run pages ------------------------------------------------------------------------------------------
def test_run_report_writes_page_and_figures(single_run):
    report = write_report(single_run)
    assert report.kind == "run"
    assert set(report.figures) == {"best_architecture", "progress_evaluations", "progress_time", "distribution",
                                   "fitness_vs_report"}
    for path in report.figures.values():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, path
    html = report.html.read_text()
    _page_checks(html, len(report.figures))
    summary = json.loads((single_run / "summary.json").read_text())
    assert summary["best"]["arch"] in html
    assert "Top 10 architectures" in html
    assert "Pareto" not in html


def test_linked_figures_instead_of_inlined(single_run):
    report = write_report(single_run, embed=False)
    html = report.html.read_text()
    assert "base64" not in html
    for path in report.figures.values():
        assert f"src='figures/{path.name}'" in html


def test_pareto_run_has_front_and_hypervolume(pareto_run):
    report = write_report(pareto_run)
    assert "pareto" in report.figures
    html = report.html.read_text()
    _page_checks(html, len(report.figures))
    run = load_run(pareto_run)
    front = pareto_indices(run)
    summary = json.loads((pareto_run / "summary.json").read_text())
    # the same front as the core's pareto_front, one row per score vector
    assert {int(run.steps[i]) for i in front} == {t["step"] for t in summary["pareto_front"]}
    hv = hypervolume_curve(run)
    assert hv is not None and len(hv) == len(run)
    assert np.all(np.diff(hv) >= -1e-12) and 0 < hv[-1] <= 1.0


def test_top_trials_are_distinct_and_sorted(single_run):
    run = load_run(single_run)
    top = top_trials(run, 10)
    values = run.values(run.objectives[0])[top]
    assert len(top) == 10
    assert list(values) == sorted(values, reverse=True)
    assert len({run.hashes[i] for i in top}) == 10
    summary = json.loads((single_run / "summary.json").read_text())
    assert int(run.steps[top[0]]) == summary["best"]["step"]


def test_report_of_a_run_with_failures(tmp_path):
    """A callable fitness that fails on some cells: failures are counted and shown, curves skip them."""
    fitness = tmp_path / "flaky.py"
    fitness.write_text(
        "def score(arch, ctx):\n"
        "    convs = arch.string.count('conv')\n"
        "    if 'avg_pool_3x3~0' in arch.string:\n"
        "        raise RuntimeError('pool at the input')\n"
        "    return {'score': float(convs), 'params': float(convs * 2)}\n")
    doc = {"space": {"name": "nb201"}, "strategy": {"name": "random"},
           "fitness": {"kind": "callable", "function": f"{fitness}:score", "objectives": ["min:score"],
                       "report": ["params"]},
           "search": {"budget": 40, "seed": 1}}
    from evonas.api import run_config

    run_config(parse_config(doc, tmp_path / "flaky.toml"), tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert 0 < int((~run.ok).sum()) < len(run)
    best, where = best_so_far(run.values(Objective("score", "min")), "min")
    assert np.nanmin(run.values(Objective("score", "min"))) == best[-1]
    report = write_report(tmp_path / "run")
    html = report.html.read_text()
    assert f"Failed evaluations ({int((~run.ok).sum())})" in html
    assert "pool at the input" in html


def test_report_when_every_evaluation_failed(tmp_path):
    fitness = tmp_path / "broken.py"
    fitness.write_text("def score(arch, ctx):\n    raise ValueError('no data')\n")
    doc = {"space": {"name": "nb201"}, "strategy": {"name": "random"},
           "fitness": {"kind": "callable", "function": f"{fitness}:score", "objectives": ["score"]},
           "search": {"budget": 5, "seed": 0}}
    from evonas.api import run_config

    run_config(parse_config(doc, tmp_path / "b.toml"), tmp_path / "run")
    report = write_report(tmp_path / "run")
    assert report.figures == {}
    html = report.html.read_text()
    assert "No evaluation succeeded" in html and "Failed evaluations (5)" in html


def test_wall_time_from_the_store_timestamps(single_run, tmp_path):
    """Times come from run.db's dispatched_at/finished_at when present, else from summed elapsed_s."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(single_run, copy)
    (copy / "run.db").unlink(missing_ok=True)
    plain = load_run(copy)
    assert not plain.wall_clock
    elapsed = np.array([float(line.rsplit(",", 1)[1]) for line in
                        (copy / "history.csv").read_text().splitlines()[1:]])
    assert np.allclose(plain.time_s, np.cumsum(elapsed))
    conn = sqlite3.connect(copy / "run.db")
    conn.execute("CREATE TABLE evaluations (key INTEGER PRIMARY KEY, dispatched_at REAL, finished_at REAL)")
    conn.executemany("INSERT INTO evaluations VALUES (?,?,?)",
                     [(k, 1000.0 + 2 * k, 1000.0 + 2 * k + 1.5) for k in range(len(plain))])
    conn.commit()
    conn.close()
    timed = load_run(copy)
    assert timed.wall_clock
    assert timed.time_s[0] == pytest.approx(1.5) and timed.time_s[-1] == pytest.approx(2 * (len(plain) - 1) + 1.5)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ReportError, match="neither history.csv"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_cli_report_and_log_level(single_run, capsys):
    assert main(["--log-level", "info", "report", str(single_run)]) == 0
    out = capsys.readouterr()
    assert "report.html" in out.out and "5 figures" in out.out
    assert "wrote" in out.err  # info messages on stderr


def test_version(capsys):
    from evonas import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"evonas {__version__}"


# --- bench pages ----------------------------------------------------------------------------------------
def test_bench_report_writes_page_and_figures(bench_dir):
    report = write_report(bench_dir)
    assert report.kind == "bench"
    assert set(report.figures) == {"bench_anytime", "bench_regret", "bench_queries", "bench_hit_rate",
                                   "bench_final"}
    for path in report.figures.values():
        assert path.read_bytes().startswith(PNG)
    html = report.html.read_text()
    _page_checks(html, 5)
    assert "cifar10_test200 @ 60" in html and "queries to top-0.1%" in html


def test_bench_curves_match_the_core_statistics(bench_dir, table_path):
    bench = load_bench(bench_dir)
    rows = read_bench_csv(bench_dir / "bench.csv")
    assert set(bench.curves) == {"rea", "random"}
    for algo, mat in bench.curves.items():
        assert mat.shape == (4, 60)
        for k, seed in enumerate(bench.seeds[algo]):
            runs = [r for r in rows if r.algo == algo and r.seed == seed]
            for q in (1, 7, 30, 60):
                assert mat[k, q - 1] == best_report_at(runs, q)
    # queries to target: recomputed from the table, equal to what the bench recorded
    from evonas.fitness.table import load_table

    table = load_table(table_path)
    targets = top_set(table.archs, table.column("cifar10_test200"), 0.001)
    for algo in bench.curves:
        expect = [next((float(r.query) for r in rows if r.algo == algo and r.seed == s and r.arch in targets),
                       math.inf) for s in bench.seeds[algo]]
        assert list(bench.queries_to_target[algo]) == expect
    assert bench.optimum == pytest.approx(94.3733)


def test_bench_table_reports_medians_of_final_picks(bench_dir):
    from evonas.report import bench_table

    bench = load_bench(bench_dir)
    html = bench_table(bench)
    for algo, mat in bench.curves.items():
        med = float(np.median(mat[:, -1]))
        assert f"{med:.4g}" in html


# --- pure functions -------------------------------------------------------------------------------------
def test_best_so_far_skips_failures_and_keeps_the_first_of_ties():
    v = np.array([np.nan, 3.0, 1.0, 3.0, 5.0, np.nan])
    best, where = best_so_far(v, "max")
    assert np.isnan(best[0]) and where[0] == -1
    assert list(best[1:]) == [3.0, 3.0, 3.0, 5.0, 5.0]
    assert list(where) == [-1, 1, 1, 1, 4, 4]
    best, where = best_so_far(v, "min")
    assert list(best[1:]) == [3.0, 1.0, 1.0, 1.0, 1.0] and where[3] == 2


def test_anytime_curve_reports_the_pick_not_the_best_report():
    fitness = np.array([1.0, 2.0, 1.5, 3.0])
    report = np.array([90.0, 80.0, 99.0, 85.0])
    assert list(anytime_curve(fitness, report)) == [90.0, 80.0, 80.0, 85.0]


def test_hypervolume_2d_by_hand():
    # staircase of (1,3), (2,2), (3,1) above (0,0): 3 + 2 + 1 = 6 unit squares
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0]])
    assert hypervolume_2d(pts) == pytest.approx(6.0)
    assert hypervolume_2d(pts[:1]) == pytest.approx(3.0)


def test_pareto_indices_agree_with_the_core_on_random_scores():
    from evonas.report.data import RunData

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=60).round(1), rng.normal(size=60).round(1)
    objs = [Objective("a", "max"), Objective("b", "min")]
    run = RunData(directory=None, summary={"objectives": [{"metric": "a", "goal": "max"},
                                                          {"metric": "b", "goal": "min"}]},
                  steps=np.arange(60), archs=[str(i) for i in range(60)], hashes=[str(i) for i in range(60)],
                  ok=np.ones(60, bool), seeds=[0] * 60, metrics={"a": a, "b": b}, time_s=np.arange(60.0),
                  wall_clock=False)
    trials = [Trial(i, str(i), str(i), {"a": float(a[i]), "b": float(b[i])}) for i in range(60)]
    assert {int(i) for i in pareto_indices(run)} == {t.step for t in pareto_front(trials, objs)}


def test_architecture_drawings_label_every_live_op():
    from matplotlib.figure import Figure

    from evonas.report.graph import draw_architecture
    from evonas.spaces import DAGSpace, NB201Space

    nb = NB201Space()
    arch = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    ax = Figure().add_subplot()
    draw_architecture(nb.to_graph(nb.from_string(arch)), ax, nb.ops)
    texts = [t.get_text() for t in ax.texts]
    assert sorted(t for t in texts if t in nb.ops) == sorted(["nor_conv_3x3", "avg_pool_3x3", "skip_connect",
                                                              "nor_conv_1x1"])
    assert "none" not in texts and {"in", "out", "1", "2"} <= set(texts)
    dag = DAGSpace()
    s = "conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu|0>1,0>2,1>3,2>3,3>6,0>6"
    ax = Figure().add_subplot()
    g = dag.to_graph(dag.from_string(s))
    draw_architecture(g, ax, dag.ops)
    def norm(text: str) -> str:
        return text.replace("\n", "").replace("-", "")

    labels = [norm(t.get_text()) for t in ax.texts]
    assert sorted(labels) == sorted(["input", "output"] + [norm(g.nodes[n]["op"]) for n in g if n not in (0, 6)])
