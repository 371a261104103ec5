"""The Reptile initializer: coverage of a space, save/load round trip, outer steps, meta-training, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evonas.config import ConfigError, load_config
from evonas.data import load_dataset
from evonas.evaluator import Candidate
from evonas.fitness.base import Architecture, EvalContext
from evonas.models import build_model
from evonas.spaces import DAGSpace, NB201Space
from evonas.fitness.train import TrainingFitness
from evonas.training import TrainSettings
from evonas.trial import Trial
from evonas.warmstart import Initializer, WarmStartSettings, meta_train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = TrainSettings(C=4, N=1, steps=6, batch_size=32)


@pytest.mark.parametrize("space", [NB201Space(), DAGSpace(max_nodes=5, max_edges=6)], ids=["nb201", "dag"])
def test_initializer_covers_every_architecture(space):
    init = Initializer.from_space(space, in_channels=1, num_classes=10, C=4, N=2, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        torch.manual_seed(1)
        model = build_model(space.to_graph(space.sample(rng)), in_channels=1, num_classes=10, C=4, N=2)
        fresh = {k: v.clone() for k, v in model.state_dict().items()}
        assert init.apply(model, match_norm=False) == 1.0
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                assert torch.equal(value, init.meta[name])
        # norm matching: conv kernels keep the meta-learned direction at the fresh init's norm
        model.load_state_dict(fresh)
        assert init.apply(model) == 1.0
        for name, value in model.state_dict().items():
            if value.dim() == 4:
                torch.testing.assert_close(value.norm(), fresh[name].norm())
                torch.testing.assert_close(value / value.norm(), init.meta[name] / init.meta[name].norm())
            elif value.is_floating_point():
                assert torch.equal(value, init.meta[name])
    # another width: nothing of the cells fits
    other = build_model(space.to_graph(space.sample(rng)), in_channels=1, num_classes=10, C=8, N=2)
    assert init.apply(other) < 0.5


def test_save_load_round_trip(tmp_path):
    init = Initializer.from_space(NB201Space(), in_channels=1, num_classes=5, C=4, N=1, seed=3,
                                  info={"note": "x"})
    init.updates = 7
    path = init.save(tmp_path / "init.pt")
    back = Initializer.load(path)
    assert set(back.meta) == set(init.meta) and back.updates == 7
    assert all(torch.equal(back.meta[k], init.meta[k]) for k in init.meta)
    assert back.info["C"] == 4 and back.info["N"] == 1 and back.info["note"] == "x"
    assert back.info["space"]["name"] == "nb201"
    # weights_only loading: a pickle that would run code is refused, and other files are named
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "evonas-init", "meta": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not an evonas initializer"):
        Initializer.load(tmp_path / "evil.pt")
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'evonas-init' format tag"):
        Initializer.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not found"):
        Initializer.load(tmp_path / "missing.pt")


def test_reptile_step_moves_only_the_names_an_architecture_used():
    space = NB201Space()
    init = Initializer.from_space(space, in_channels=1, num_classes=10, C=4, N=1, seed=0)
    before = {k: v.clone() for k, v in init.meta.items()}
    model = build_model(space.to_graph(space.from_string(
        "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")), in_channels=1, num_classes=10, C=4, N=1)
    init.apply(model, match_norm=False)
    trained = {k: v + 1.0 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    moved = init.update(trained, lr=0.25)
    assert moved == sum(v.is_floating_point() for v in trained.values())
    for k in init.meta:
        if k in trained:
            torch.testing.assert_close(init.meta[k], before[k] + 0.25)
        else:
            assert torch.equal(init.meta[k], before[k]), k
    assert any("nor_conv_3x3" in k for k in init.meta)  # untouched ops are still there


def test_meta_training_is_seeded_and_learns_something():
    space = NB201Space()
    data = load_dataset("digits").subset([0, 1, 2, 3, 4])
    warm = WarmStartSettings(meta_steps=4, inner_steps=3, ways=5)
    a = meta_train(space, [data], TINY, warm, seed=1)
    b = meta_train(space, [data], TINY, warm, seed=1)
    fresh = Initializer.from_space(space, in_channels=1, num_classes=5, C=4, N=1, seed=0)
    assert set(a.meta) == set(fresh.meta)
    assert all(torch.equal(a.meta[k], b.meta[k]) for k in a.meta)
    changed = [k for k in a.meta if not torch.equal(a.meta[k], fresh.meta[k])]
    assert any(k.startswith("stem.") for k in changed) and a.info["meta_steps"] == 4
    c = meta_train(space, [data], TINY, warm, seed=2)
    assert any(not torch.equal(a.meta[k], c.meta[k]) for k in a.meta)


def test_online_mode_nudges_the_initializer_after_each_batch():
    space = NB201Space()
    warm = WarmStartSettings(meta_steps=0, online=True, online_lr=0.5)
    fitness = TrainingFitness("digits", TINY, warm, space=space)
    cands = [Candidate(k, space.to_string(space.sample(np.random.default_rng(k))), "") for k in range(2)]
    fitness.before_batch(cands)
    first = fitness.init_path
    start = {k: v.clone() for k, v in fitness._init.meta.items()}
    trials = []
    for c in cands:
        result = fitness(Architecture(c.arch, space.to_graph(space.from_string(c.arch)), "nb201"),
                         EvalContext(seed=c.key, key=c.key))
        trials.append(Trial(step=c.key, arch=c.arch, canonical_hash="", metrics=result.metrics,
                            status=result.status))
    assert Path(fitness.workdir, "trained-0.pt").is_file()
    fitness.after_batch(cands, trials)
    assert fitness.init_path != first and not Path(first).exists() and Path(fitness.init_path).is_file()
    assert not list(Path(fitness.workdir).glob("trained-*.pt"))
    assert fitness._init.updates == 2
    assert not torch.equal(fitness._init.meta["stem.0.weight"], start["stem.0.weight"])
    # a worker sees exactly the snapshot the main process wrote
    snap = Initializer.load(fitness.init_path)
    assert all(torch.equal(snap.meta[k], fitness._init.meta[k]) for k in snap.meta)


def test_online_state_survives_a_crash_between_batch_and_checkpoint(tmp_path):
    """In a run directory, a checkpoint's state_dict references the initializer file of the trials told so
    far; a fresh fitness loading it (a resumed process) re-applies a batch whose trained weights the crashed
    process had already applied, and reaches the same initializer, without meta-training again."""
    space = NB201Space()
    warm = WarmStartSettings(meta_steps=1, inner_steps=2, online=True, online_lr=0.5)

    def batch(fitness, keys):
        cands = [Candidate(k, space.to_string(space.sample(np.random.default_rng(k))), "") for k in keys]
        fitness.before_batch(cands)
        trials = []
        for c in cands:
            r = fitness(Architecture(c.arch, space.to_graph(space.from_string(c.arch)), "nb201"),
                        EvalContext(seed=c.key, key=c.key))
            trials.append(Trial(step=c.key, arch=c.arch, canonical_hash="", metrics=r.metrics, status=r.status))
        return cands, trials

    a = TrainingFitness("digits", TINY, warm, space=space, log=False)
    a.use_run_dir(tmp_path)
    assert a.state_dict()["init"] == "init-0.pt"  # the first checkpoint already holds the meta-trained init
    a.after_batch(*batch(a, [0, 1]))
    saved = a.state_dict()  # checkpoint after batch 1: n_told = 2
    assert saved["init"] == "init-2.pt" and saved["seen"] == 2
    assert saved["obsolete"] == ["trained-0.pt", "trained-1.pt"]  # applied: deleted once a later one holds
    cands, trials = batch(a, [2, 3])
    a.after_batch(cands, trials)  # ... then the process dies before the next checkpoint
    expected = {k: v.clone() for k, v in a._init.meta.items()}
    assert (tmp_path / "warm_start" / "trained-2.pt").is_file()  # still needed by the saved checkpoint
    b = TrainingFitness("digits", TINY, warm, space=space, log=False)
    b.use_run_dir(tmp_path)
    b.load_state_dict(saved)
    b.after_batch(cands, trials)  # the resumed search: the whole batch was done, only the update is left
    assert b._init.updates == a._init.updates and b._init.info["meta_steps"] == 1
    assert all(torch.equal(b._init.meta[k], expected[k]) for k in expected)
    state = b.state_dict()
    assert state["init"] == "init-4.pt" and state["obsolete"] == ["trained-2.pt", "trained-3.pt"]
    assert sorted(p.name for p in (tmp_path / "warm_start").glob("init-*.pt")) == ["init-2.pt", "init-4.pt"]
    assert not (tmp_path / "warm_start" / "trained-0.pt").exists()  # covered by the loaded checkpoint


def _config(tmp_path, C=4, init_line=""):
    path = tmp_path / "meta.toml"
    path.write_text(f"""
[space]
name = "nb201"
[fitness]
kind = "train"
objectives = ["val_acc"]
[data]
name = "digits"
classes = [0, 1, 2, 3, 4]
[training]
C = {C}
N = 1
steps = 5
[warm_start]
meta_steps = 3
inner_steps = 2
{init_line}
""")
    return path


def test_cli_train_init_then_a_config_that_loads_it(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "init.pt"
    proc = subprocess.run([sys.executable, "-m", "evonas.cli", "meta", "train-init", str(config), "--out", str(out),
                           "--steps", "2", "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "2 Reptile steps" in proc.stdout and "5-way head" in proc.stdout
    init = Initializer.load(out)
    assert init.info["meta_steps"] == 2 and init.info["num_classes"] == 5 and init.info["data"] == "digits"
    cfg = load_config(_config(tmp_path, init_line=f'init = "{out.name}"'))
    fitness = cfg.build_fitness()
    assert fitness.warm.init == str(out)
    fitness.before_batch([])
    assert fitness._init.info["meta_steps"] == 2
    with pytest.raises(ConfigError, match=r"\[warm_start\] init = .*trained with C=4, but \[training\] C = 8"):
        load_config(_config(tmp_path, C=8, init_line=f'init = "{out.name}"')).build_fitness()
    bad = subprocess.run([sys.executable, "-m", "evonas.cli", "meta", "train-init",
                          str(REPO / "genomes" / "nb201-cifar10.toml"), "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "kind" in bad.stderr and bad.stderr.count("\n") == 1


def test_tasks_from_several_datasets(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "rgb.npz"
    np.savez(path, x=rng.integers(0, 256, size=(80, 10, 10, 3), dtype=np.uint8), y=np.arange(80) % 4)
    config = _config(tmp_path, init_line=f'datasets = [{{name = "npz", path = "{path.name}"}}]')
    cfg = load_config(config)
    warm = cfg.extra["warm_start"]
    assert len(warm.datasets) == 1 and warm.datasets[0].path == str(path)
    from evonas.warmstart import task_datasets

    data = task_datasets(warm, cfg.extra["data"])
    assert [d.in_channels for d in data] == [1, 3]
    init = meta_train(NB201Space(), data, TINY, replace_steps(warm, 6), seed=0, ways=4)
    # the stem and head keep the first dataset's shapes; 3-channel tasks train only what fits
    assert init.meta["stem.0.weight"].shape[1] == 1 and init.meta["classifier.weight"].shape[0] == 4
    bad = _config(tmp_path, init_line='datasets = [{name = "npz"}]')
    with pytest.raises(ConfigError, match=r"\[warm_start.datasets\] path = ''"):
        load_config(bad)


def replace_steps(warm, steps):
    from dataclasses import replace

    return replace(warm, meta_steps=steps, inner_steps=2)
