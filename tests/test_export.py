"""evonas export: the found architecture as JSON, as a PyTorch module with its trained weights, as ONNX."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import networkx as nx
import pytest

from evonas.cli import main
from evonas.config import parse_config
from evonas.export import ExportError, check_onnx, choose, export, read_arch, weights_path
from tiny_configs import digits_toml

TRAIN_TOML = digits_toml('name = "rea"\npopulation = 3\nsample = 2', "C = 4\nN = 1\nsteps = 30\nthreads = 1",
                         "budget = 4\nseed = 3\njobs = 1")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A small real-training search on scikit-learn's digits (no warm start): a few seconds on CPU."""
    from evonas.api import run_config
    from evonas.config import load_config

    base = tmp_path_factory.mktemp("digits")
    config = base / "digits.toml"
    config.write_text(TRAIN_TOML)
    run_config(load_config(config), base / "run")
    return base / "run"


@pytest.fixture(scope="module")
def table_run(tmp_path_factory, table_path):
    from evonas.api import run_config

    out = tmp_path_factory.mktemp("table") / "run"
    doc = {"space": {"name": "nb201"}, "strategy": {"name": "random"},
           "fitness": {"kind": "table", "table": str(table_path), "objectives": ["cifar10_valid12"],
                       "report": ["cifar10_test200"]},
           "search": {"budget": 30, "seed": 0}}
    run_config(parse_config(doc), out)
    return out


def _summary(run):
    return json.loads((run / "summary.json").read_text())


# --- arch ----------------------------------------------------------------------------------------------
def test_arch_export_round_trips_the_graph(table_run):
    from evonas.spaces import NB201Space

    [path] = export(table_run, "arch")
    assert path == table_run / "export" / "best_model.json"
    arch, graph, doc = read_arch(path)
    best = _summary(table_run)["best"]
    assert arch == best["arch"] and doc["step"] == best["step"]
    assert doc["metrics"]["cifar10_test200"] == best["metrics"]["cifar10_test200"]
    space = NB201Space()
    expected = space.to_graph(space.from_string(arch))
    assert graph.graph == expected.graph
    assert nx.utils.graphs_equal(graph, expected)
    assert sorted(graph.edges(data="op")) == sorted(expected.edges(data="op"))
    assert space.hash_graph(graph) == doc["canonical_hash"] == best["canonical_hash"]


def test_arch_export_of_another_step_and_errors(table_run, tmp_path):
    [path] = export(table_run, "arch", tmp_path / "s3.json", step=3)
    assert json.loads(path.read_text())["step"] == 3
    with pytest.raises(ExportError, match="no evaluation with step 99"):
        export(table_run, "arch", step=99)
    with pytest.raises(ExportError, match="expected one of"):
        export(table_run, "keras")
    assert main(["export", str(tmp_path)]) == 2  # not a run directory


def test_bench_directories_are_refused(tmp_path, table_path):
    assert main(["bench", "--table", str(table_path), "--fitness", "cifar10_test200", "--report",
                 "cifar10_test200", "--algo", "random", "--budget", "5", "--seeds", "1",
                 "--out", str(tmp_path / "b")]) == 0
    with pytest.raises(ExportError, match="bench directory"):
        export(tmp_path / "b")


def test_table_run_exports_the_untrained_network(table_run, tmp_path):
    import torch

    files = export(table_run, "torch", tmp_path / "net.py", num_classes=7, program=False)
    assert [p.suffix for p in files][:2] == [".py", ".pt"]
    state = torch.load(files[1], weights_only=True)
    assert state["classifier.weight"].shape == (7, 64)  # C=16: the last stage has 4C channels


# --- torch, from a real training run --------------------------------------------------------------------
def test_training_run_keeps_only_the_best_weights(digits_run):
    best = _summary(digits_run)["best"]
    kept = sorted(p.name for p in (digits_run / "weights").iterdir())
    assert kept == [f"step-{best['step']}.pt"]


def test_torch_export_reloads_in_a_fresh_process_with_the_recorded_accuracy(digits_run, tmp_path):
    best = _summary(digits_run)["best"]
    assert main(["export", str(digits_run), "--format", "torch", "--out", str(tmp_path / "found.py")]) == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"found.py", "found.pt"}
    script = textwrap.dedent(f"""
        import json, sys
        import torch
        sys.path.insert(0, {str(tmp_path)!r})
        import found
        model = found.load_model()
        acc = found.accuracy(model)
        out = {{"acc": acc, "arch": found.ARCH}}
        from pathlib import Path
        pt2 = Path({str(tmp_path / 'found.pt2')!r})
        if pt2.exists():  # the torch.export program: plain torch, no evonas
            program = torch.export.load(str(pt2)).module()
            x = torch.randn(3, *found.INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                out["pt2_diff"] = float((program(x) - model(x)).abs().max())
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["arch"] == best["arch"]
    assert result["acc"]["test_acc"] == best["metrics"]["test_acc"]  # the same weights, the same number
    assert result["acc"]["val_acc"] == best["metrics"]["val_acc"]
    if "pt2_diff" in result:
        assert result["pt2_diff"] < 1e-5


def test_export_retrains_when_the_run_kept_no_weights(digits_run, tmp_path):
    """Evaluations other than the best have no kept weights: retraining with the recorded seed and budget
    reproduces them exactly on CPU."""
    from evonas.export import network

    history = (digits_run / "history.csv").read_text().splitlines()
    best_step = _summary(digits_run)["best"]["step"]
    step = next(int(line.split(",")[0]) for line in history[1:]
                if int(line.split(",")[0]) != best_step and ",ok," in line)
    assert not weights_path(digits_run, step).exists()
    chosen = choose(digits_run, step)
    net = network(chosen)
    assert net.trained == "retrained"
    assert net.reproduced["test_acc"] == chosen.metrics["test_acc"]
    assert net.reproduced["val_acc"] == chosen.metrics["val_acc"]


def test_config_from_the_store_when_the_recorded_path_is_gone(digits_run, tmp_path):
    """summary.json names the config relative to where the run started; from elsewhere the export falls back
    to the config snapshot in run.db, and without one it asks for --config."""
    import shutil

    from evonas.export import network

    copy = tmp_path / "moved"
    shutil.copytree(digits_run, copy, ignore=shutil.ignore_patterns("weights", "export"))
    summary = _summary(copy)
    summary["config"] = "nowhere/digits.toml"
    (copy / "summary.json").write_text(json.dumps(summary))
    if (copy / "run.db").exists():
        chosen = choose(copy)
        net = network(chosen)
        assert net.trained == "retrained" and net.reproduced["test_acc"] == chosen.metrics["test_acc"]
        (copy / "run.db").unlink()
    with pytest.raises(ExportError, match="--config"):
        export(copy, "torch")


# --- onnx ----------------------------------------------------------------------------------------------
def test_onnx_export_passes_the_checker_and_matches_torch(digits_run, tmp_path):
    onnx = pytest.importorskip("onnx")
    import torch

    [path] = export(digits_run, "onnx", tmp_path / "found.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["arch"] == _summary(digits_run)["best"]["arch"]
    # round trip: the reference evaluator agrees with the exported weights, and not with other weights
    chosen = choose(digits_run)
    from evonas.export import network

    net = network(chosen)
    x = torch.randn(4, *net.input_shape, generator=torch.Generator().manual_seed(2))
    assert check_onnx(path, net.model, x) < 1e-4
    with torch.no_grad():
        for p in net.model.parameters():
            p.add_(0.5)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_onnx(path, net.model, x)
