"""Short training: determinism, failure as a result, config validation, a tiny end-to-end search."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evonas.config import ConfigError, load_config, parse_config
from evonas.data import DataSpec, load_dataset
from evonas.fitness.base import Architecture, EvalContext
from evonas.spaces import NB201Space
from evonas.fitness.train import TrainingFitness
from evonas.training import TrainSettings, _augment, build_for, select_device, short_train, worker_threads
from tiny_configs import digits_toml

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = TrainSettings(C=4, N=1, steps=12, batch_size=32, lr=0.05)
ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def _graph(arch=ARCH):
    space = NB201Space()
    return space.to_graph(space.from_string(arch))


def test_short_training_is_deterministic_for_a_seed_and_learns():
    data = load_dataset("digits")
    _, a = short_train(_graph(), data, TINY, seed=7)
    _, b = short_train(_graph(), data, TINY, seed=7)
    _, c = short_train(_graph(), data, TINY, seed=8)
    timing = {"train_time_s"}
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert a["val_acc"] != c["val_acc"] or a["val_loss"] != c["val_loss"]
    assert set(a) >= {"val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "train_time_s", "steps",
                      "params"}
    assert a["steps"] == 12 and a["train_time_s"] > 0
    assert a["val_acc"] > 0.3  # 10 classes: chance is 0.1
    # epochs budget: ceil(epochs * n_train / batch)
    assert TrainSettings(epochs=2, batch_size=64).total_steps(1000) == 32


def test_adamw_constant_schedule_and_augmentation_run():
    data = load_dataset("digits")
    settings = TrainSettings(C=4, N=1, steps=6, batch_size=16, optimizer="adamw", lr=1e-3, schedule="constant",
                             warmup=2, augment="crop-flip", label_smoothing=0.0)
    _, m = short_train(_graph(), data, settings, seed=1)
    assert np.isfinite(m["val_loss"])
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = _augment(x, "crop", torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # a crop of the reflect-padded image: the centre pixel comes from within one pixel of it
    assert any(torch.equal(out[0, :, 2:6, 2:6], x[0, :, 2 + dy:6 + dy, 2 + dx:6 + dx])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_nan_loss_is_a_failed_evaluation(tmp_path):
    path = tmp_path / "nan.npz"
    rng = np.random.default_rng(0)
    x = rng.random((60, 6, 6)).astype(np.float32)
    x[:, 2, 2] = np.nan  # in every split
    np.savez(path, x=x, y=np.arange(60) % 3)
    fitness = TrainingFitness(DataSpec("npz", path=str(path)), TINY)
    result = fitness(Architecture(ARCH, _graph(), "nb201"), EvalContext(seed=0, key=0))
    assert result.status == "failed" and "non-finite training loss" in result.error


def test_concurrent_builds_get_the_weights_of_solo_builds():
    """The threading backend builds networks in parallel threads: each must get its seed's weights."""
    from concurrent.futures import ThreadPoolExecutor

    space = NB201Space()
    rng = np.random.default_rng(0)
    graphs = [space.to_graph(space.sample(rng)) for _ in range(8)]
    data = load_dataset(DataSpec("digits"))
    settings = TrainSettings(C=4, N=1)

    def weights(i):
        return [p.detach().clone() for p in build_for(graphs[i], data, settings, seed=100 + i).parameters()]

    solo = [weights(i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(weights, range(8)))
    for a, b in zip(solo, together):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_threads_and_devices():
    assert worker_threads(3, jobs=8) == 3
    assert worker_threads(0, jobs=1) >= 1 and worker_threads(0, jobs=10_000) == 1
    assert select_device("cpu", 5) == "cpu"
    expected = f"cuda:{5 % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    assert select_device("auto", 5) == expected


def _config(tmp_path, extra="", warm="", search="budget = 4\nseed = 3\njobs = 1\nbatch_size = 2\nisolate = false"):
    path = tmp_path / "tiny.toml"
    path.write_text(digits_toml('name = "rea"\npopulation = 2\nsample = 1',
                                f"C = 4\nN = 1\nsteps = 8\nbatch_size = 32\n{extra}", search, extra=warm))
    return path


@pytest.mark.parametrize("section, line, key", [
    ("training", 'optimizer = "rmsprop"', "optimizer"),
    ("training", "epochs = -3", "epochs"),
    ("training", 'device = "tpu"', "device"),
    ("training", 'lr = "fast"', "lr"),
    ("training", "epocs = 3", "epocs"),
    ("training", "group = 0", "group"),
    ("data", 'name = "mnist"', "name"),
    ("data", 'name = "npz"\npath = "missing.npz"', "path"),
    ("data", "val_fraction = 1.5", "val_fraction"),
    ("warm_start", "outer_lr = 2.0", "outer_lr"),
    ("warm_start", 'init = "nope.pt"', "init"),
])
def test_config_errors_are_one_line_naming_file_key_value(tmp_path, section, line, key):
    path = _config(tmp_path)
    text = path.read_text()
    if f"[{section}]" in text:
        text = text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
        if section == "data":  # drop the original name line when replacing it
            text = text.replace('name = "digits"\n', "", 1) if line.startswith("name") else text
    else:
        text += f"\n[{section}]\n{line}\n"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        cfg = load_config(path)
        cfg.build_fitness()
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"[{section}] {key}" in msg, msg


def test_unknown_metric_and_unbuildable_op(tmp_path):
    path = _config(tmp_path)
    path.write_text(path.read_text().replace('report = ["test_acc"]', 'report = ["top5"]'))
    with pytest.raises(ConfigError, match=r"\[fitness\] objectives/report = 'top5'"):
        load_config(path).build_fitness()
    cfg = parse_config({"space": {"name": "cell", "ops": ["none", "mystery_op"], "nodes": 3},
                        "fitness": {"kind": "train", "objectives": ["val_acc"]}})
    with pytest.raises(ConfigError, match="no model for op 'mystery_op'"):
        cfg.build_fitness()


def test_digits_genome_is_valid():
    cfg = load_config(REPO / "genomes" / "digits.toml")
    fitness = cfg.build_fitness()
    assert isinstance(fitness, TrainingFitness)
    assert fitness.warm is not None and fitness.warm.online and fitness.settings.threads == 1
    assert cfg.objectives[0].metric == "val_acc" and "test_acc" in cfg.report


def _run(config, out, *args):
    return subprocess.run([sys.executable, "-m", "evonas.cli", "run", str(config), "--out", str(out), "--quiet",
                           *map(str, args)], capture_output=True, text=True, cwd=REPO)


def test_tiny_end_to_end_search_with_online_warm_start(tmp_path):
    warm = "[warm_start]\nmeta_steps = 3\ninner_steps = 2\nonline = true\nonline_lr = 0.5\nsave = \"online.pt\""
    config = _config(tmp_path, warm=warm)
    proc = _run(config, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert all(0 <= float(r["test_acc"]) <= 1 and float(r["warm_frac"]) == 1.0 for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best"]["metrics"]["val_acc"] == max(float(r["val_acc"]) for r in rows)
    from evonas.warmstart import Initializer

    init = Initializer.load(tmp_path / "online.pt")
    assert init.info["meta_steps"] == 3 and init.updates >= 3 + 4  # meta steps, then one per individual


@pytest.mark.slow
def test_results_do_not_depend_on_jobs(tmp_path):
    warm = "[warm_start]\nmeta_steps = 2\ninner_steps = 2\nonline = true"
    config = _config(tmp_path, warm=warm)
    metrics = []
    for jobs in (1, 2):
        out = tmp_path / f"run{jobs}"
        proc = _run(config, out, "--jobs", jobs)
        assert proc.returncode == 0, proc.stderr
        rows = list(csv.DictReader((out / "history.csv").open()))
        metrics.append([(r["arch"], r["val_acc"], r["val_loss"], r["test_acc"]) for r in rows])
    assert metrics[0] == metrics[1]


def test_python_api_search_with_training(tmp_path):
    import evonas

    space = evonas.NB201Space()
    fitness = evonas.TrainingFitness(evonas.DataSpec("digits", classes=(0, 1, 2)), TINY,
                                     evonas.WarmStartSettings(meta_steps=2, inner_steps=2), space=space)
    result = evonas.search(space, fitness, ["val_acc"], report=["test_acc"], strategy="random", budget=2, seed=0,
                           isolate=False)
    assert len(result.trials) == 2 and all(t.ok for t in result.trials)
    n_test = len(load_dataset(evonas.DataSpec("digits", classes=(0, 1, 2))).y_test)
    for t in result.trials:  # test accuracy of the 3-class test split: a fraction of its images, above chance
        acc = t.metrics["test_acc"]
        assert 1 / 3 < acc <= 1 and round(acc * n_test) == pytest.approx(acc * n_test)
    assert result.best.metrics["warm_frac"] == 1.0


def test_gpu_throughput_benchmark_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_throughput.py", "--tiny", "--configs", "1x1,1x2,2x1",
                           "--inline", "--device", "cpu", "--markdown-to", str(tmp_path / "B.md"), "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["device"].startswith("cpu") and res["gpu"] is None and res["torch"] == torch.__version__
    runs = {r["config"]: r for r in res["runs"]}
    assert list(runs) == ["1x1", "1x2", "2x1"] and not any("error" in r for r in runs.values())
    for config, r in runs.items():
        assert r["cells"] == r["workers"] * r["group"] and len(r["archs"]) == r["cells"]
        assert r["images"] == r["cells"] * res["settings"]["timed_steps"] * res["settings"]["batch"]
        assert r["images_per_s"] > 0 and r["first_step_s"] > 0 and r["failed"] == 0
        assert r["s_per_cell_epoch"] == pytest.approx(50_000 / r["images_per_s"])
        assert r["s_per_epoch_each"] == pytest.approx(r["s_per_cell_epoch"] * r["cells"])
        assert "gpu_util_mean" not in r and "peak_mem_mib_per_worker" not in r  # CPU: no GPU figures
    assert runs["1x1"]["vs_solo"] == 1.0 and runs["1x2"]["archs"] == runs["2x1"]["archs"]  # same cells
    assert res["best"]["config"] in runs and "s per cell-epoch" in proc.stdout.splitlines()[-1]
    section = (tmp_path / "B.md").read_text()
    assert "<!-- BEGIN gpu_throughput -->" in section and "Device: **cpu (CPU)**" in section
    assert section.count("\n| 1x2 | 2 | ") == 1 and f"Best: **{res['best']['config']}**" in section
    bad = subprocess.run([sys.executable, "benchmarks/gpu_throughput.py", "--tiny", "--configs", "2y1"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert bad.returncode != 0 and "'2y1' is not WORKERSxGROUP" in bad.stderr
