"""The unlike-task generator and the meta-transfer benchmark (benchmarks/unlike_tasks.py, meta_transfer.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from evonas.bench import bench_rows, group, replay
from evonas.spaces import NB201Space
from evonas.strategies import make_strategy
from evonas.trial import Objective

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.meta_transfer import search  # noqa: E402
from benchmarks.unlike_tasks import consensus, gp_sample, unlike_task  # noqa: E402
C10 = "cifar10_test200"


@pytest.fixture(scope="module")
def sources(nb201_table):
    return [nb201_table.column("cifar100_test200"), nb201_table.column("imagenet16_test200")]


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5])
def test_unlike_task_has_the_spearman_asked(nb201_table, sources, rho):
    task = unlike_task(nb201_table.column(C10), sources, nb201_table.archs, rho, seed=7)
    assert abs(spearmanr(task, consensus(sources))[0] - rho) <= 1e-3
    # a different draw is a different task with the same correlation
    other = unlike_task(nb201_table.column(C10), sources, nb201_table.archs, rho, seed=8)
    assert abs(spearmanr(other, consensus(sources))[0] - rho) <= 1e-3
    assert spearmanr(task, other)[0] < 0.9
    assert np.array_equal(task, unlike_task(nb201_table.column(C10), sources, nb201_table.archs, rho, seed=7))


def test_unlike_task_out_of_reach(nb201_table, sources):
    with pytest.raises(ValueError, match="^spearman: 0.999 is out of reach"):
        unlike_task(nb201_table.column(C10), sources, nb201_table.archs, 0.999, seed=0)


def test_gp_sample_is_smooth_in_the_edges(nb201_table):
    """Cells one edge apart correlate as the kernel says (exp(-1/3) = 0.72), cells far apart barely."""
    space = NB201Space()
    f = gp_sample(nb201_table.archs, seed=3, length_scale=3.0)
    value = dict(zip(nb201_table.archs, f))
    rng = np.random.default_rng(0)
    near, far = [], []
    for _ in range(2000):
        g = space.sample(rng)
        a = space.to_string(g)
        near.append((value[a], value[space.to_string(space.mutate(g, rng))]))
        far.append((value[a], value[space.to_string(space.sample(rng))]))
    r_near = pearsonr(*zip(*near))[0]
    r_far = pearsonr(*zip(*far))[0]
    assert r_near > 0.55 and abs(r_far) < 0.2


@pytest.mark.parametrize("algo", ["gp", "meta"])
def test_benchmark_loop_proposes_what_evonas_bench_does(table_path, nb201_table, algo, tmp_path):
    """The benchmark's ask/tell loop on table lookups gives the same queries as the Search loop."""
    params = {}
    if algo == "meta":
        from evonas.predictor import meta_train

        path = tmp_path / "p.pt"
        meta_train(table_path, "cifar100_test200,imagenet16_test200", random_state=0, steps=40, n_members=2,
                   hidden=(32,), embed=8).save(path)
        params = {"predictor": str(path)}
    rows = bench_rows(replay(table_path, C10, C10, [algo], 15, 1, params={algo: params}))
    bench_archs = [r.arch for r in group(rows)[algo][0]]
    row = {a: i for i, a in enumerate(nb201_table.archs)}
    strategy = make_strategy(algo, NB201Space(), [Objective("y")], 0, **params)
    _, archs = search(strategy, nb201_table.column(C10), row, 15, None)
    assert archs == bench_archs


def test_meta_transfer_benchmark_tiny(tmp_path, table_path):
    """benchmarks/meta_transfer.py --quick, tiny: every task group and algorithm, the section, the cache."""
    md, raw = tmp_path / "B.md", tmp_path / "res.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "meta_transfer.py"), "--quick", "--seeds", "2", "--budget", "12",
           "--predictors", "2", "--predictor-steps", "20", "--table", str(table_path), "--work", str(tmp_path / "w"),
           "--md", str(md), "--json", str(raw)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "<!-- BEGIN meta_transfer -->" in text and "must-show claims" in text
    assert "--quick --seeds 2 --budget 12 --predictors 2 --predictor-steps 20" in text
    res = json.loads(raw.read_text())
    assert {r["group"] for r in res["tasks"].values()} == {"leave one dataset out", "unlike", "hardware", "trade-off"}
    for r in res["tasks"].values():
        assert set(r["algos"]) == {"rea", "tpe", "gp", "replay", "meta"}
        assert all(len(a["hits"]) == (4 if r["group"] == "leave one dataset out" and name == "meta" else 2)
                   for name, a in r["algos"].items())
        assert len(r["per_predictor"]) == 2
    assert abs(res["tasks"]["unlike_0.3_0"]["spearman"] - 0.3) <= 1e-3
    assert res["tasks"]["lodo_cifar10"]["algos"]["replay"]["hits"][0] <= 2  # CIFAR-100's leaderboard
    assert "  trained predictor_cifar10_seed1.pt" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "w").rglob("predictor_*.pt")) == [
        "predictor_cifar10_seed0.pt", "predictor_cifar10_seed1.pt"]  # cached for the next run
    bad = subprocess.run(cmd[:2] + ["--predictors", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--predictors: must be >= 1" in bad.stderr
