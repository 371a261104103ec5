"""Does a NAS-Bench-201 prior help a real-training search on another domain? (issue 4)

The embedded main job's search (``genomes/digits.toml``: NAS-Bench-201 cells trained briefly on
scikit-learn's 8x8 digits, fitness ``val_acc``) is run with ``rea`` and with ``meta`` on the same seeds,
with the same training and without the Reptile warm start (so that the strategy is the only difference).
``meta`` uses a predictor meta-trained on all three NAS-Bench-201 ``test200`` columns: a task whose table
nobody has, on the same cell space.

Reported: the test accuracy of the best-by-validation cell after q evaluations and the mean validation
accuracy of all evaluated cells (mean over seeds), seeds on which meta's best validation accuracy is
below REA's, wall seconds per search, and how well the prior alone ranks the cells the searches evaluated
(Kendall tau between the predictor's score and the digits validation accuracy).

    python benchmarks/meta_digits.py                 # 10 seeds x 40 evaluations per strategy (~10 min)
    python benchmarks/meta_digits.py --steps 30      # very short training: architectures differ more
    python benchmarks/meta_digits.py --seeds 2 --budget 8 --no-markdown   # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.markdown import machine, write_section  # noqa: E402
from evonas.api import run_config  # noqa: E402
from evonas.config import parse_config  # noqa: E402
from evonas.predictor import MetaRankPredictor, meta_train  # noqa: E402
from evonas.spaces import NB201Space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nasbench201.csv"
CONFIG = ROOT / "genomes" / "digits.toml"
TASKS = "cifar10_test200,cifar100_test200,imagenet16_test200"
ALGOS = ("rea", "meta")
DEFAULTS = {"seeds": 10, "budget": 40, "jobs": 2, "steps": 150}


def config(algo: str, seed: int, budget: int, jobs: int, predictor: Path, steps: int | None = None) -> dict:
    """``genomes/digits.toml`` without the warm start, with ``algo`` as the strategy (and ``steps``)."""
    data = tomllib.loads(CONFIG.read_text())
    data.pop("warm_start", None)
    if steps is not None:
        data["training"]["steps"] = steps
    if algo == "meta":
        data["strategy"] = {**data["strategy"], "name": "meta", "predictor": str(predictor)}
    data["search"].update(budget=budget, seed=seed, jobs=jobs)
    return data


def best_at(vals: list[float], tests: list[float], q: int) -> float:
    """Test accuracy of the best-by-validation cell among the first ``q`` evaluations."""
    i = int(np.argmax(vals[:q]))
    return tests[i]


def run(args, log=print) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pred_path = Path(args.predictor) if args.predictor else work / "predictor_nb201_all.pt"
    start = time.perf_counter()
    if not pred_path.exists():
        meta_train(args.table, TASKS, random_state=0).save(pred_path)
        log(f"  meta-trained the predictor in {time.perf_counter() - start:.0f}s")
    predictor = MetaRankPredictor.load(pred_path)
    space = NB201Space()
    res: dict = {"seeds": args.seeds, "budget": args.budget, "jobs": args.jobs, "steps": args.steps,
                 "runs": {a: [] for a in ALGOS}}
    for seed in range(args.seeds):
        for algo in ALGOS:
            out = work / f"{algo}_seed{seed}_steps{args.steps}"
            cfg = parse_config(config(algo, seed, args.budget, args.jobs, pred_path, args.steps), CONFIG)
            t0 = time.perf_counter()
            result = run_config(cfg, out, force=True)
            seconds = time.perf_counter() - t0
            trials = sorted((t for t in result.trials if t.ok), key=lambda t: t.step)
            archs = [t.arch for t in trials]
            res["runs"][algo].append({
                "seed": seed, "seconds": seconds, "archs": archs,
                "val": [float(t.metrics["val_acc"]) for t in trials],
                "test": [float(t.metrics["test_acc"]) for t in trials],
                "prior": [float(x) for x in predictor.predict(np.stack([space.encode(space.from_string(a))
                                                                        for a in archs]))]})
            r = res["runs"][algo][-1]
            log(f"  seed {seed} {algo}: best val {max(r['val']):.4f}, mean val {np.mean(r['val']):.4f} "
                f"({seconds:.0f}s)")
    res["elapsed_s"] = time.perf_counter() - start
    return res


def markdown(res: dict, command: str) -> str:
    b = res["budget"]
    qs = sorted({q for q in (5, 10, 20, 40, b) if q <= b})
    lines = [f"## A NAS-Bench-201 prior on a real-training search: digits, {res['steps']} steps (issue 4)", "",
             f"Command: `{command}` ({res['elapsed_s'] / 60:.0f} min on {machine()}, {res['jobs']} workers).",
             f"`genomes/digits.toml` (NAS-Bench-201 cells, C=8, N=1, {res['steps']} SGD steps on scikit-learn's "
             "digits, fitness `val_acc`) without the Reptile warm start; `meta` with a predictor meta-trained on "
             "the three NAS-Bench-201 `test200` columns (nothing of digits; default settings, seed 0), `rea` with "
             f"the config's settings (population 16, sample 4); {res['seeds']} seeds, {b} evaluations each, "
             "the same seeds for both.", "",
             "| algo | " + " | ".join(f"test acc. at q={q}" for q in qs)
             + " | mean val acc. of evaluated cells | s per search |",
             "| --- | " + " | ".join("---" for _ in qs) + " | --- | --- |"]
    for algo in ALGOS:
        runs = res["runs"][algo]
        at = [np.mean([best_at(r["val"], r["test"], q) for r in runs]) for q in qs]
        lines.append(f"| {algo} | " + " | ".join(f"{v:.4f}" for v in at)
                     + f" | {np.mean([np.mean(r['val']) for r in runs]):.4f} | "
                     f"{np.mean([r['seconds'] for r in runs]):.0f} |")
    behind = {q: sum(max(m["val"][:q]) < max(r["val"][:q]) for m, r in zip(res["runs"]["meta"], res["runs"]["rea"]))
              for q in qs}
    every = [(p, v) for algo in ALGOS for r in res["runs"][algo] for p, v in zip(r["prior"], r["val"])]
    tau = kendalltau([p for p, _ in every], [v for _, v in every])[0]
    lines += ["", "Seeds on which meta's best validation accuracy is below REA's: " + ", ".join(
        f"q={q}: {n}/{res['seeds']}" for q, n in behind.items()) + ". Kendall tau between the prior's score "
        f"and the digits validation accuracy over all {len(every)} evaluated cells: {tau:.3f}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--seeds", type=int, default=DEFAULTS["seeds"])
    ap.add_argument("--budget", type=int, default=DEFAULTS["budget"], help="evaluations per search")
    ap.add_argument("--jobs", type=int, default=DEFAULTS["jobs"], help="training workers")
    ap.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="training steps per network (config: 150)")
    ap.add_argument("--work", default="/tmp/evonas_meta_digits", help="predictor and run directories")
    ap.add_argument("--predictor", help="a predictor file to use (default: meta-train one on the table)")
    ap.add_argument("--md", default=None, help="the markdown file to update (default: BENCHMARKS.md)")
    ap.add_argument("--no-markdown", dest="markdown", action="store_false")
    args = ap.parse_args(argv)
    for key in ("seeds", "budget", "jobs", "steps"):
        if getattr(args, key) < 1:
            ap.error(f"--{key}: must be >= 1, got {getattr(args, key)}")
    command = " ".join(["python benchmarks/meta_digits.py", *(f"--{key} {getattr(args, key)}" for key, default
                                                             in DEFAULTS.items() if getattr(args, key) != default)])
    res = run(args)
    body = markdown(res, command)
    print(body)
    if args.markdown:
        name = "meta_digits" + ("" if args.steps == DEFAULTS["steps"] else f"_steps{args.steps}")
        write_section(name, body, *([Path(args.md)] if args.md else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
