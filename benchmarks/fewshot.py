"""Few-shot architecture search on held-out classes: Reptile initializer vs PyTorch's default init.

Digits x 4 rotations = 40 classes; meta-test digits 2, 3, 4, 5, 7 (20 classes, never seen in meta-training
in any rotation), meta-train digits 0, 1, 6, 8, 9. The space-wide Reptile initializer is meta-trained once
(:func:`evonas.fitness.fewshot.meta_train`); then, for the same random NAS-Bench-201 cells and the same
episodes, both inits are scored:

* ``fewshot_acc``: mean query accuracy over the fitness episodes (5-way 1-shot, ``steps`` adaptation steps),
* the long-budget reference: ``long_steps`` (10x) adaptation steps on other episodes (other seeds),
* ``spearman_long``: Spearman across cells between the two (each init against its own long budget;
  ``spearman_vs_reptile_long``: against the Reptile init's long budget, one reference for both).

Then searches on the few-shot fitness (REA and random search, and ``meta`` when ``--predictor`` names a
NAS-Bench-201 predictor file) with the Reptile init, several seeds: the found cell's long-budget accuracy
against the median random cell's.

    python benchmarks/fewshot.py --quick --json out.json     # ~10 min on 2 CPU cores
    python benchmarks/fewshot.py --json out.json             # the full setting

``--json`` writes ``{"reptile": {"fewshot_acc", "spearman_long", ...}, "default": {...}, "settings": {...}}``.
Writes the ``fewshot`` section of BENCHMARKS.md (unless ``--no-markdown``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.markdown import machine, run_or_render, save_result, training_parser  # noqa: E402
from evonas.data import load_dataset  # noqa: E402
from evonas.fitness import fewshot as F  # noqa: E402
from evonas.spaces import NB201Space  # noqa: E402
from evonas.warmstart import Initializer  # noqa: E402

SETTINGS = {
    "quick": dict(cells=50, meta_steps=300, episodes=20, long_episodes=10, long_factor=10, search_budget=30,
                  search_seeds=3, population=8, sample=3),
    "full": dict(cells=100, meta_steps=1000, episodes=40, long_episodes=20, long_factor=10, search_budget=60,
                 search_seeds=5, population=12, sample=4),
}
INITS = ("reptile", "default")


def fewshot_settings(p: dict) -> F.FewShotSettings:
    """The benchmark's few-shot task: the :class:`FewShotSettings` defaults (5-way 1-shot, 10 steps)."""
    fs = F.FewShotSettings(meta_steps=p["meta_steps"], episodes=p["episodes"], long_episodes=p["long_episodes"])
    return replace(fs, long_steps=fs.steps * p["long_factor"])


def computes(space, arch: str) -> bool:
    """Whether a cell's output depends on its input (cells whose every path is cut output zeros)."""
    from evonas.models import build_model

    model = build_model(space.to_graph(space.from_string(arch)), in_channels=1, num_classes=2, C=1, N=1)
    return bool(model.stages[0][0].plan)  # empty: the output is cut off from the input


def random_cells(space, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    cells: list[str] = []
    seen = set()
    while len(cells) < n:
        a = space.to_string(space.sample(rng))
        h = space.hash_string(a)
        if h not in seen and computes(space, a):
            seen.add(h)
            cells.append(a)
    return cells


def _score_cell(arch: str, init, fs: F.FewShotSettings, data_name: str) -> tuple[list[float], list[float]]:
    import torch

    torch.set_num_threads(1)
    space = NB201Space()
    task = F._task_cached(load_dataset(data_name), fs)
    graph = space.to_graph(space.from_string(arch))
    short = F.score(graph, init, task, F._episodes_cached(task, fs, "val"), fs, steps=fs.steps)
    long = F.score(graph, init, task, F._episodes_cached(task, fs, "long"), fs, steps=fs.long_steps)
    return short.tolist(), long.tolist()


def _rho(a, b) -> float:
    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def run_search(strategy: str, init, fs: F.FewShotSettings, p: dict, seed: int, jobs: int,
               predictor: str | None) -> dict:
    """One search on the few-shot fitness (Reptile init, no long budget inside): the best cell found."""
    from evonas.api import search

    fitness = F.FewShotFitness("digits", replace(fs, long_steps=0), space=NB201Space(), seed=seed, log=False)
    fitness._init = init
    params = {"population": p["population"], "sample": p["sample"]} if strategy in ("rea", "meta") else {}
    if strategy == "meta":
        params["predictor"] = predictor
    res = search("nb201", fitness, ["fewshot_acc"], strategy=strategy, budget=p["search_budget"], seed=seed,
                 jobs=jobs, batch_size=2, isolate=False, **params)
    best = res.best
    return {"arch": best.arch, "fewshot_acc": best.metrics["fewshot_acc"]}


def run(mode: str, jobs: int, seed: int, predictor: str | None, log=print) -> dict:
    import torch

    torch.set_num_threads(1)
    p = SETTINGS[mode]
    fs = fewshot_settings(p)
    space = NB201Space()
    data = load_dataset("digits")
    task = F.FewShotTask.from_dataset(data, fs)
    t0 = time.perf_counter()
    inits = {"reptile": F.meta_train(space, task, fs, seed=seed),
             "default": Initializer.from_space(space, in_channels=task.in_channels, num_classes=fs.ways, C=fs.C,
                                               N=fs.N, seed=seed)}
    meta_s = time.perf_counter() - t0
    held = set(fs.test_classes)
    leaked = [c for c in inits["reptile"].info["classes_seen"] if task.train.labels[c] in held]
    log(f"meta-trained {fs.meta_steps} Reptile steps in {meta_s:.1f}s; held-out classes seen: {leaked}")
    cells = random_cells(space, p["cells"], seed)
    t1 = time.perf_counter()
    jobs_ = [(kind, a) for kind in INITS for a in cells]
    out = Parallel(n_jobs=jobs)(delayed(_score_cell)(a, inits[kind], fs, "digits") for kind, a in jobs_)
    score_s = time.perf_counter() - t1
    short = {k: np.array([np.mean(s) for (kind, _), (s, _) in zip(jobs_, out) if kind == k]) for k in INITS}
    long = {k: np.array([np.mean(lg) for (kind, _), (_, lg) in zip(jobs_, out) if kind == k]) for k in INITS}
    ep_std = {k: float(np.mean([np.std(s) for (kind, _), (s, _) in zip(jobs_, out) if kind == k])) for k in INITS}
    res: dict = {}
    for k in INITS:
        res[k] = {"fewshot_acc": float(short[k].mean()), "spearman_long": _rho(short[k], long[k]),
                  "spearman_vs_reptile_long": _rho(short[k], long["reptile"]),
                  "fewshot_std_episodes": ep_std[k], "fewshot_acc_cells_std": float(short[k].std()),
                  "long_acc": float(long[k].mean()), "long_acc_median": float(np.median(long[k]))}
    # searches with the Reptile init
    t2 = time.perf_counter()
    strategies = ["rea", "random"] + (["meta"] if predictor else [])
    searches: dict = {}
    found = []
    for strat in strategies:
        for s in range(p["search_seeds"]):
            best = run_search(strat, inits["reptile"], fs, p, seed + s, jobs, predictor)
            found.append((strat, s, best))
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # the searches' workers; joblib then starts afresh
    found_long = Parallel(n_jobs=jobs)(delayed(_score_cell)(b["arch"], inits["reptile"], fs, "digits")
                                       for _, _, b in found)
    median = float(np.median(long["reptile"]))
    for (strat, s, best), (_, lg) in zip(found, found_long):
        best["long_acc"] = float(np.mean(lg))
        best["margin_over_median"] = best["long_acc"] - median
        best["percentile_among_random"] = float((long["reptile"] < best["long_acc"]).mean())
        searches.setdefault(strat, []).append(best)
    search_s = time.perf_counter() - t2
    res["reptile"]["search"] = {
        strat: {"margin_mean": float(np.mean([b["margin_over_median"] for b in rows])),
                "margin_std": float(np.std([b["margin_over_median"] for b in rows])),
                "long_acc_mean": float(np.mean([b["long_acc"] for b in rows])),
                "percentile_mean": float(np.mean([b["percentile_among_random"] for b in rows])),
                "runs": rows} for strat, rows in searches.items()}
    res["reptile"]["search_median_cell_long_acc"] = median
    res["reptile"]["best_random_cell_long_acc"] = float(long["reptile"].max())
    res["settings"] = {"mode": mode, "seed": seed, **p, "fewshot": {k: (list(v) if isinstance(v, tuple) else v)
                                                                    for k, v in asdict(fs).items()},
                       "data": "digits", "held_out_seen_in_meta_training": leaked, "meta_s": round(meta_s, 1),
                       "score_s": round(score_s, 1), "search_s": round(search_s, 1),
                       "per_cell": [{"arch": a, **{f"{k}.short": float(short[k][i]) for k in INITS},
                                     **{f"{k}.long": float(long[k][i]) for k in INITS}} for i, a in enumerate(cells)]}
    return res


def markdown(res: dict, command: str) -> str:
    s, fs = res["settings"], res["settings"]["fewshot"]
    r, d = res["reptile"], res["default"]
    rows = "\n".join(
        f"| {name} | {x['fewshot_acc']:.4f} (cells std {x['fewshot_acc_cells_std']:.3f}, episodes std "
        f"{x['fewshot_std_episodes']:.3f}) | {x['long_acc']:.4f} | {x['spearman_long']:.3f} | "
        f"{x['spearman_vs_reptile_long']:.3f} |"
        for name, x in (("Reptile init", r), ("default init (PyTorch)", d)))
    srows = "\n".join(
        f"| {strat} | {len(v['runs'])} | {v['long_acc_mean']:.4f} | {v['margin_mean']:+.4f} +- {v['margin_std']:.4f} | "
        f"{v['percentile_mean']:.2f} |" for strat, v in r["search"].items())
    gain = r["fewshot_acc"] - d["fewshot_acc"]
    acc_ok = "holds" if gain >= 0.05 else "does **not** hold"
    own = "higher" if r["spearman_long"] > d["spearman_long"] else "**lower**"
    common = "higher" if r["spearman_vs_reptile_long"] > d["spearman_vs_reptile_long"] else "**lower**"
    verdict = (f"the accuracy must-show (>= 5 points) {acc_ok}. Ranking: against one reference for both inits "
               f"(the Reptile init's long budget, the accuracy a deployed search gets) the Reptile fitness ranks "
               f"{common} ({r['spearman_vs_reptile_long']:.3f} vs {d['spearman_vs_reptile_long']:.3f}); against "
               f"each init's own long budget it ranks {own} ({r['spearman_long']:.3f} vs {d['spearman_long']:.3f}: "
               f"the default init's 10-step fitness predicts its own 100-step accuracy well, but that target is "
               f"{(r['long_acc'] - d['long_acc']) * 100:.1f} points worse and ranks cells differently).")
    return f"""## Few-shot: Reptile initializer vs default init on held-out classes

Digits x {fs['rotations']} rotations; meta-test digits {fs['test_classes']} ({len(fs['test_classes']) * fs['rotations']}
classes, never in meta-training in any rotation: held-out classes seen in meta-training:
{s['held_out_seen_in_meta_training'] or 'none'}), meta-train the other digits. {fs['ways']}-way {fs['shots']}-shot,
{fs['queries']} queries per class; adaptation: fresh zero head, {fs['steps']} SGD steps (lr {fs['lr']}, momentum
{fs['momentum']}) on the support set, BN statistics of the support set. Reptile: {fs['meta_steps']} meta-steps,
a random cell each, {fs['meta_inner_steps']} inner steps on {fs['meta_shots']}-shot meta-train tasks, eps
{1.0 if fs['algorithm'] == 'reptile' and not fs['meta_lr'] else fs['meta_lr']} annealed to 0
({s['meta_s']}s). {s['cells']} random distinct cells that compute (cells whose every path is cut are left
out), the same {fs['episodes']} fitness episodes for every cell and both inits; long-budget reference:
{fs['long_steps']} steps on {fs['long_episodes']} other episodes.

| init | fewshot_acc ({fs['steps']} steps) | long-budget acc ({fs['long_steps']} steps) | Spearman vs own long | Spearman vs Reptile's long |
| --- | --- | --- | --- | --- |
{rows}

Reptile minus default: {gain * 100:+.1f} points of mean query accuracy; {verdict}

Searches on the few-shot fitness with the Reptile init ({s['search_budget']} evaluations, {s['search_seeds']}
seeds each): the best cell's long-budget accuracy against the median random cell's
({r['search_median_cell_long_acc']:.4f}; best of the {s['cells']}: {r['best_random_cell_long_acc']:.4f}).

| strategy | runs | found cell's long acc (mean) | margin over median (mean +- std over seeds) | percentile among the random cells |
| --- | --- | --- | --- | --- |
{srows}

Wall seconds: scoring {s['score_s']}s, searches {s['search_s']}s (on a shared machine, see the timing note
in the README section).

Reproduce: `{command}`{PREDICTOR_RECIPE if "--predictor" in command else ""}
Machine: {machine()}
"""


#: how the PRED.pt of the published section was made
PREDICTOR_RECIPE = ("\nPRED.pt: `evonas meta train-predictor --table ../shared/data/nasbench201.csv --tasks "
                    "cifar10_test200,cifar100_test200,imagenet16_test200 --steps 300 --members 3 --out PRED.pt`")


def main(argv=None) -> int:
    parser = training_parser(__doc__, "50 cells, 300 meta-steps (about 10 minutes)")
    parser.add_argument("--predictor", help="NAS-Bench-201 predictor file (evonas meta train-predictor): adds meta")
    args = parser.parse_args(argv)
    res = run_or_render(args, lambda mode: run(mode, args.jobs, args.seed, args.predictor),
                        settings=lambda res: res["settings"])
    summary = {k: {kk: vv for kk, vv in v.items() if kk not in ("per_cell", "search")} for k, v in res.items()}
    print(json.dumps(summary, indent=2))
    save_result(args, res, "fewshot", markdown, " --predictor PRED.pt" if args.predictor else "")
    return 0

if __name__ == "__main__":
    sys.exit(main())
