"""Grouped training (evonas.multitrain): each network of a group equals its solo training bit for bit on
CPU; on CUDA (skipped without one) streams, channels_last and compile run and learn."""

from __future__ import annotations

import math

import pytest
import torch

from evonas.data import load_dataset
from evonas.fitness import Fitness
from evonas.multitrain import GroupOptions, GroupTrainer, short_train_group
from evonas.spaces import NB201Space
from evonas.training import NonFiniteLoss, TrainSettings, build_for, device_arrays, short_train, train_steps

torch.set_num_threads(1)
ARCHS = ["|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
         "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
         "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|"]
SEEDS = [11, 12, 13]
SETTINGS = TrainSettings(C=4, N=1, steps=10, batch_size=32, augment="crop-flip", warmup=2)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _graphs():
    space = NB201Space()
    return [space.to_graph(space.from_string(a)) for a in ARCHS]


def _state(model):
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _without_time(metrics):
    return {k: v for k, v in metrics.items() if k != "train_time_s"}


@pytest.mark.parametrize("interleave", [False, True])
def test_grouped_training_equals_solo_training_bit_for_bit_on_cpu(interleave):
    data = load_dataset("digits")
    steps = [10, 7, 12]  # networks of one group may have different budgets
    solo = [short_train(g, data, SETTINGS, seed=s, steps=k) for g, s, k in zip(_graphs(), SEEDS, steps)]
    grouped = short_train_group(_graphs(), data, SETTINGS, seeds=SEEDS, steps=steps,
                                options=GroupOptions(interleave=interleave))
    for (m_solo, solo_metrics), (m_group, group_metrics) in zip(solo, grouped):
        assert _without_time(group_metrics) == _without_time(solo_metrics)
        a, b = _state(m_solo), _state(m_group)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["steps"] for _, m in grouped] == [10.0, 7.0, 12.0]
    assert len({m["val_loss"] for _, m in grouped}) == 3  # three different networks, not one copied


def test_a_diverging_network_fails_alone_and_the_others_are_unchanged():
    data = load_dataset("digits")
    x, y = device_arrays(data, "cpu")[:2]
    models = [build_for(g, data, SETTINGS, s) for g, s in zip(_graphs(), SEEDS)]
    with torch.no_grad():
        models[1].classifier.weight.fill_(float("nan"))
    trainer = GroupTrainer(models, x, y, SETTINGS, steps=10, seeds=SEEDS, device="cpu",
                           options=GroupOptions(interleave=True))
    trainer.run(3)
    assert trainer.active() == [0, 2] and isinstance(trainer.outcome(1), NonFiniteLoss)
    assert "at step 0" in str(trainer.outcome(1))
    trainer.run()
    assert trainer.active() == []
    for i in (0, 2):
        alone = build_for(_graphs()[i], data, SETTINGS, SEEDS[i])
        expected = train_steps(alone, x, y, SETTINGS, steps=10, seed=SEEDS[i], device="cpu")
        assert trainer.outcome(i) == expected
        assert all(torch.equal(p, q) for p, q in zip(alone.parameters(), models[i].parameters()))


def test_group_options_and_arguments_are_validated():
    with pytest.raises(ValueError, match="compile: 'fast'"):
        GroupOptions(compile="fast")
    data = load_dataset("digits")
    x, y = device_arrays(data, "cpu")[:2]
    with pytest.raises(ValueError, match="2 models need 2 steps and seeds"):
        GroupTrainer([build_for(g, data, SETTINGS, 0) for g in _graphs()[:2]], x, y, SETTINGS, steps=[1, 2, 3],
                     seeds=[0, 1], device="cpu")


def _cuda_group(options, steps=20):
    data = load_dataset("digits")
    settings = TrainSettings(C=8, N=1, steps=steps, batch_size=64)
    return short_train_group(_graphs(), data, settings, seeds=SEEDS, device="cuda:0", options=options)


@CUDA
def test_cuda_group_on_streams_learns_and_matches_the_sequential_group():
    streams = _cuda_group(GroupOptions())
    plain = _cuda_group(GroupOptions(streams=False, interleave=False))
    for (_, a), (_, b) in zip(streams, plain):
        assert math.isfinite(a["train_loss"]) and a["val_acc"] > 0.3
        # same kernels on the same inputs: equal up to the GPU's own non-deterministic kernels
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.05)


@CUDA
@pytest.mark.slow
def test_cuda_group_compiled_learns():
    # the cudagraphs backend compiles in seconds; inductor modes are measured by benchmarks/gpu_throughput.py
    for _, metrics in _cuda_group(GroupOptions(compile="cudagraphs"), steps=30):
        assert math.isfinite(metrics["train_loss"]) and metrics["val_acc"] > 0.3


class _GroupRecorder(Fitness):
    """A fitness that evaluates groups and records them."""

    group = 3

    def __init__(self):
        self.calls: list[list[int]] = []

    def __call__(self, arch, ctx):
        raise AssertionError("a grouped fitness is not called one candidate at a time")

    def evaluate_group(self, archs, ctxs):
        self.calls.append([c.key for c in ctxs])
        return [{"score": float(c.key), "seed": float(c.seed)} for c in ctxs]


def test_evaluator_hands_a_grouped_fitness_its_candidates_in_groups():
    from evonas.evaluator import Candidate, Evaluator, evaluation_seed

    space = NB201Space()
    cands = [Candidate(k, ARCHS[k % 3], f"h{k}") for k in range(7)]
    cands[4] = Candidate(4, "not a cell", "h4")
    fitness = _GroupRecorder()
    trials = Evaluator(fitness, space, seed=9, required=["score"]).evaluate(cands)
    assert fitness.calls == [[0, 1, 2], [3, 5], [6]]  # the unparsable candidate fails alone
    assert [t.step for t in trials] == list(range(7)) and [t.ok for t in trials] == [True] * 4 + [False] + [True] * 2
    assert all(t.metrics["seed"] == float(evaluation_seed(9, t.step)) for t in trials if t.ok)
    fitness = _GroupRecorder()
    with Evaluator(fitness, space, seed=9, required=["score"], jobs=2, backend="threading") as ev:
        assert [(t.step, t.metrics) for t in ev.evaluate(cands)] == [(t.step, t.metrics) for t in trials]
    assert sorted(fitness.calls) == [[0, 1, 2], [3, 5], [6]]
    with pytest.raises(ValueError, match="isolate: a fitness that evaluates groups"):
        Evaluator(_GroupRecorder(), space, isolate=True)


def test_grouped_training_in_a_search_gives_the_same_trials():
    from dataclasses import replace

    import evonas
    from evonas.data import DataSpec
    from evonas.fitness.train import TrainingFitness

    settings = TrainSettings(C=4, N=1, steps=6, batch_size=32)

    def run(group):
        fitness = TrainingFitness(DataSpec("digits"), replace(settings, group=group))
        result = evonas.search(NB201Space(), fitness, ["val_acc"], report=["test_acc"], strategy="random",
                               budget=5, batch_size=5, seed=0, isolate=False)
        return sorted(result.trials, key=lambda t: t.step)

    def table(trials):
        return [(t.step, t.arch, t.seed, _without_time(t.metrics)) for t in trials]

    alone = run(1)
    in_twos = run(2)  # groups of 2, 2 and 1
    in_threes = run(3)  # groups of 3 and 2
    assert table(in_twos) == table(alone) and table(in_threes) == table(alone)
    # a group's members share its training wall time: the group path was taken
    assert in_twos[0].metrics["train_time_s"] == in_twos[1].metrics["train_time_s"] != in_twos[2].metrics["train_time_s"]
    assert len({t.metrics["train_time_s"] for t in alone}) == 5


def test_a_group_needs_isolate_false_in_a_config(tmp_path):
    from evonas.config import ConfigError, load_config
    from tiny_configs import digits_toml

    path = tmp_path / "group.toml"
    path.write_text(digits_toml('name = "random"', "C = 4\nN = 1\nsteps = 4\ngroup = 4", "budget = 4\njobs = 4"))
    with pytest.raises(ConfigError, match=r"\[training\] group = 4: a group trains in one worker process"):
        load_config(path).build_fitness()
    path.write_text(path.read_text() + "isolate = false\n")
    assert load_config(path).build_fitness().group == 4
