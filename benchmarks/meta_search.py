"""Meta-warm-started evolution on NAS-Bench-201, leave one dataset out (issue 4).

For each held-out dataset (cifar10, cifar100, imagenet16) a ranking predictor is meta-trained on the other
two datasets' ``test200`` columns (``evonas.predictor.meta_train``, default settings, seed 0), then:

1. **Search on ``test200``** (budget ``--budget``): queries until a top-0.1% cell and until the exact
   optimum is evaluated; ``random``, ``rea``, Optuna's ``tpe`` and ``meta`` on the same seeds.
2. **NATS-Bench protocol**: search ``valid12``, report ``test200`` of the best-by-``valid12`` cell after
   10/25/50/100 queries.
3. **Misleading priors**: ``meta`` with predictors meta-trained on the other datasets' *inverted*
   ranking (``min:test200``), on their values *shuffled* over the cells, and on *small nets*
   (``min:params_m``), searching ``test200`` on the same seeds as REA; and **other tasks on the same
   cells**: the CIFAR-10 predictor (trained on accuracy) minimizing Raspberry Pi 5 latency and energy.
4. **Predictor quality**: Kendall tau over all 15,625 cells of the held-out ``test200`` after k = 0, 10, 25,
   50, 100 uniformly random observations (``--repeats`` draws): the meta-trained predictor adapted by
   its Bayesian head (the default), adapted by fine-tuning every weight, not adapted, the same predictor
   trained from scratch on the k observations, and the table's zero-cost proxy columns.
5. **Zero-cost proxies computed by evonas** (``evonas.proxies``) on ``--proxy-cells`` random cells:
   Spearman with the table's precomputed columns and with ``test200``.

Optuna TPE is ``--algo tpe`` (``evonas.strategies.optuna``): the 6 edges as categorical parameters,
default settings; a proposal whose canonical hash was already evaluated is answered from the cache
without spending a query (the same dedupe evonas's strategies get), so every query is a distinct cell.
The published section predates it (TPE was then a class of this script, seeded once per search) and
predates the current ``meta`` (see the ``meta_transfer`` section).

    python benchmarks/meta_search.py                 # the full setting (about 65 min on 2 CPU cores)
    python benchmarks/meta_search.py --quick         # a smoke run: 3 seeds, small budgets

Intermediate results (predictors, search rows, tau and proxy studies, each with its compute seconds) are
cached in ``--work`` (default ``/tmp/evonas_meta_search``), so a rerun only redraws the tables; ``--fresh``
recomputes everything. Writes the ``meta_search`` section of BENCHMARKS.md (unless ``--no-markdown``) and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.markdown import claims, header, machine, publish, resolve_sizes  # noqa: E402
from evonas.bench import (BenchRow, bench_rows, best_report_at, group, queries_to_hit,  # noqa: E402
                          read_bench_csv, replay, top_set, write_bench_csv)
from evonas.fitness.table import load_table  # noqa: E402
from evonas.predictor import MetaRankPredictor, encode_table, meta_train  # noqa: E402
from evonas.predictor.model import single_thread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nasbench201.csv"
DATASETS = ("cifar10", "cifar100", "imagenet16")
LABEL = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16": "ImageNet16-120"}
ALGOS = ("random", "rea", "tpe", "meta")
CHECKPOINTS = (10, 25, 50, 100)
KS = (0, 10, 25, 50, 100)
MISLEADING = ("inverted", "shuffled", "small-nets")
#: tasks of another kind on the same cells, searched with the CIFAR-10 leave-one-out predictor (accuracy on
#: CIFAR-100 + ImageNet16-120): its prior points the wrong way (slow, power-hungry cells rank high)
FOREIGN = {"pi5_torchmobile_latency_ms": "Pi 5 latency, PyTorch Mobile (ms, min)",
           "pi5_onnx_energy_mj": "Pi 5 energy, ONNX Runtime (mJ, min)"}
ZC_COLUMNS = ("synflow", "logsynflow", "naswot", "nregions", "params_m")


# --- predictors ----------------------------------------------------------------------------------------
def predictor_path(work: Path, held: str, kind: str = "lodo") -> Path:
    return work / f"predictor_{kind}_{held}.pt"


def train_predictors(table: Path, work: Path, datasets, kinds, params: dict, fresh: bool, log) -> dict:
    """LODO predictors (``kind="lodo"``) and misleading ones (cached in ``work``); training seconds per file."""
    seconds = {}
    t = load_table(table)
    for held in datasets:
        others = [d for d in DATASETS if d != held]
        for kind in kinds:
            path = predictor_path(work, held, kind)
            clock = path.with_suffix(".seconds")
            if path.exists() and clock.exists() and not fresh:
                seconds[path.name] = float(clock.read_text())
                continue
            start = time.perf_counter()
            if kind == "lodo":
                model = meta_train(table, [f"{d}_test200" for d in others], random_state=0, **params)
            elif kind == "inverted":
                model = meta_train(table, [f"min:{d}_test200" for d in others], random_state=0, **params)
            elif kind == "small-nets":
                model = meta_train(table, [f"min:{d}_params_m" for d in others], random_state=0, **params)
            elif kind == "shuffled":
                X = encode_table(table)
                rng = np.random.default_rng(12345)
                ys = [t.column(f"{d}_test200")[rng.permutation(len(X))] for d in others]
                model = MetaRankPredictor(random_state=0, **params).fit(
                    np.concatenate([X] * len(others)), np.concatenate(ys),
                    np.repeat(np.arange(len(others)), len(X)))
                from evonas.spaces import NB201Space

                model.meta_ = {"space": NB201Space().describe(), "tasks": [f"shuffled:{d}" for d in others]}
            else:
                raise ValueError(kind)
            model.save(path)
            seconds[path.name] = time.perf_counter() - start
            clock.write_text(f"{seconds[path.name]!r}\n")
            log(f"  trained {path.name} in {seconds[path.name]:.0f}s")
    return seconds


# --- searches ------------------------------------------------------------------------------------------
def searches(table: Path, work: Path, fitness: str, report: str, algo: str, seeds: int, budget: int,
             predictor: Path | None, tag: str, fresh: bool, goal: str = "max") -> tuple[list[BenchRow], float]:
    """One algorithm's searches (cached in ``work``) and their wall seconds in total."""
    path = work / f"rows_{tag}.csv"
    clock = path.with_suffix(".seconds")
    if path.exists() and clock.exists() and not fresh:
        rows = read_bench_csv(path)
        if len({r.seed for r in rows}) == seeds and max(r.query for r in rows) == budget:
            return rows, float(clock.read_text())
    params = {"meta": {"predictor": str(predictor)}} if predictor else None
    start = time.perf_counter()
    rows = bench_rows(replay(table, fitness, report, [algo], budget, seeds, goal=goal, params=params))
    seconds = time.perf_counter() - start
    write_bench_csv(path, rows)
    clock.write_text(f"{seconds!r}\n")
    return rows, seconds


def hit_stats(rows: list[BenchRow], targets: set[str]) -> list[float]:
    """Queries to a target per seed (seed order)."""
    runs = group(rows)
    algo = next(iter(runs))
    return [queries_to_hit(runs[algo][s], targets) for s in sorted(runs[algo])]


def median_text(hits: list[float], budget: int) -> str:
    med = float(np.median(hits))
    found = sum(math.isfinite(h) for h in hits)
    return (f"{med:g}" if math.isfinite(med) else f"> {budget}") + f" ({found}/{len(hits)})"


def paired(meta: list[float], rea: list[float]) -> str:
    wins = sum(m < r for m, r in zip(meta, rea))
    ties = sum(m == r for m, r in zip(meta, rea))
    return f"{wins}/{ties}/{len(meta) - wins - ties}"


def one_query_late(rows: list[BenchRow], rea_rows: list[BenchRow], n: int = 10) -> int:
    """Seeds whose queries 2..n are REA's queries 1..n-1 (one pick first, then REA's own initial draws)."""
    ours, rea = next(iter(group(rows).values())), next(iter(group(rea_rows).values()))
    return sum([r.arch for r in ours[s][1:n]] == [r.arch for r in rea[s][: n - 1]] for s in ours if s in rea)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def seed_best_at(rows: list[BenchRow], q: int, goal: str = "max") -> list[float]:
    """Report value of the best-by-fitness cell within the first ``q`` queries, per seed (seed order)."""
    runs = group(rows)
    algo = next(iter(runs))
    return [float(best_report_at(runs[algo][s], q, goal)) for s in sorted(runs[algo])]


def report_at(rows: list[BenchRow], q: int, goal: str = "max") -> tuple[float, float]:
    vals = np.array(seed_best_at(rows, q, goal))
    return float(np.nanmean(vals)), float(np.nanstd(vals))


# --- predictor quality ---------------------------------------------------------------------------------
def tau_study(table: Path, work: Path, held: str, repeats: int, ks, fresh: bool, log) -> dict:
    path = work / f"tau_{held}_{repeats}_{'-'.join(map(str, ks))}.json"
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    start = time.perf_counter()
    t = load_table(table)
    X = encode_table(table)
    y = t.column(f"{held}_test200")
    base = MetaRankPredictor.load(predictor_path(work, held))
    params = base.get_params()
    out: dict = {"head": {}, "finetune": {}, "none": {}, "scratch": {}, "zero_cost": {}, "fit_seconds": {}}
    for col in ZC_COLUMNS:
        name = f"{held}_{col}"
        if name in t.columns:
            v = t.column(name)
            m = np.isfinite(v)
            out["zero_cost"][col] = float(kendalltau(v[m], y[m])[0])
    prior_tau = float(kendalltau(base.predict(X), y)[0])
    for k in ks:
        for method in ("head", "finetune", "none", "scratch"):
            out[method][str(k)] = []
            out["fit_seconds"].setdefault(method, {})[str(k)] = []
        for r in range(repeats):
            if k == 0:
                for method in ("head", "finetune", "none"):
                    out[method]["0"].append(prior_tau)
                continue
            obs = np.random.default_rng([r, DATASETS.index(held)]).permutation(len(X))[:k]
            with single_thread():
                for method in ("head", "finetune", "none"):
                    model = base if method == "head" else MetaRankPredictor.load(predictor_path(work, held))
                    model.set_params(adapt_method=method)
                    t0 = time.perf_counter()
                    model.adapt(X[obs], y[obs])
                    out["fit_seconds"][method][str(k)].append(time.perf_counter() - t0)
                    out[method][str(k)].append(float(kendalltau(model.predict(X), y)[0]))
                base.set_params(adapt_method="head").reset()
                t0 = time.perf_counter()
                scratch = MetaRankPredictor(**{**params, "random_state": r}).fit(X[obs], y[obs])
                out["fit_seconds"]["scratch"][str(k)].append(time.perf_counter() - t0)
                out["scratch"][str(k)].append(float(kendalltau(scratch.predict(X), y)[0]))
        log(f"  tau {held} k={k}: " + ", ".join(f"{m} {np.mean(v[str(k)]):.3f}" for m, v in out.items()
                                                 if m in ("head", "finetune", "none", "scratch") and v.get(str(k))))
    out["seconds"] = time.perf_counter() - start
    path.write_text(json.dumps(out))
    return out


TORCH_FLOPS = "torch FlopCounterMode / 2"


def torch_flop_counter_macs(arch: str) -> float:
    """Multiply-accumulates (millions) of the proxies' network for ``arch`` by torch's own FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from evonas.models import build_model
    from evonas.spaces import NB201Space

    space = NB201Space()
    model = build_model(space.to_graph(space.from_string(arch)), in_channels=3, num_classes=10, C=16, N=5).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops() / 2e6  # it counts a multiply-accumulate as 2 FLOPs


def proxy_study(table: Path, work: Path, n_cells: int, fresh: bool, log) -> dict:
    path = work / f"proxies_{n_cells}.json"
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    from evonas.proxies import proxy_table

    t = load_table(table)
    idx = np.random.default_rng(2024).choice(len(t.archs), n_cells, replace=False)
    start = time.perf_counter()
    ours = proxy_table([t.archs[i] for i in idx], num_classes=10)
    seconds = time.perf_counter() - start
    pairs = {"synflow": "cifar10_synflow", "logsynflow": "cifar10_logsynflow", "naswot": "cifar10_naswot",
             "params": "cifar10_params_m", "flops": TORCH_FLOPS}
    torch_macs = np.array([torch_flop_counter_macs(t.archs[i]) for i in idx])
    out = {"cells": n_cells, "seconds": seconds, "rows": {},
           "flops_max_rel_diff": float(np.max(np.abs(ours["flops"] - torch_macs) / torch_macs))}
    for name, col in pairs.items():
        theirs = torch_macs if col == TORCH_FLOPS else t.column(col)[idx]
        acc = t.column("cifar10_test200")[idx]
        m = np.isfinite(theirs) & np.isfinite(ours[name])
        out["rows"][name] = {"column": col, "n": int(m.sum()),
                             "spearman_table": float(spearmanr(ours[name][m], theirs[m])[0]),
                             "spearman_test200_ours": float(spearmanr(ours[name][m], acc[m])[0]),
                             "spearman_test200_table": float(spearmanr(theirs[m], acc[m])[0])}
    log(f"  proxies on {n_cells} cells in {seconds:.0f}s")
    path.write_text(json.dumps(out))
    return out


# --- the run -------------------------------------------------------------------------------------------
def run(args, log=print) -> dict:
    table = Path(args.table)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = load_table(table)
    pred_params = {"steps": 150, "n_members": 3} if args.quick else {}
    if args.quick:
        work = work / "quick"
        work.mkdir(exist_ok=True)
    log("training predictors")
    train_seconds = train_predictors(table, work, args.datasets, ("lodo", *MISLEADING), pred_params, args.fresh, log)
    res: dict = {"seeds": args.seeds, "repeats": args.repeats, "members": pred_params.get("n_members", 5),
                 "budget": args.budget, "nats_budget": args.nats_budget, "direct": {}, "nats": {}, "misleading": {},
                 "tau": {}, "train_seconds": train_seconds}
    compute = sum(train_seconds.values())  # seconds of computation behind the results, cached or not

    def summary(rows: list[BenchRow], top: set[str], opt: set[str], goal: str = "max") -> dict:
        qs = [q for q in CHECKPOINTS if q <= args.budget]
        return {"top": hit_stats(rows, top), "opt": hit_stats(rows, opt),
                "at": {str(q): report_at(rows, q, goal) for q in qs},
                "seed_at": {str(q): seed_best_at(rows, q, goal) for q in qs}}

    for held in args.datasets:
        col, val = f"{held}_test200", f"{held}_valid12"
        top = top_set(t.archs, t.column(col), 0.001)
        opt = top_set(t.archs, t.column(col), 1e-9)
        d = res["direct"][held] = {}
        n = res["nats"][held] = {}
        for algo in ALGOS:
            pred = predictor_path(work, held) if algo == "meta" else None
            rows, seconds = searches(table, work, col, col, algo, args.seeds, args.budget, pred,
                                     f"direct_{held}_{algo}", args.fresh)
            d[algo] = {**summary(rows, top, opt), "seconds": seconds / args.seeds}
            if algo == "rea":
                rea_rows = rows
            rows, nats_seconds = searches(table, work, val, col, algo, args.seeds, args.nats_budget, pred,
                                          f"nats_{held}_{algo}", args.fresh)
            n[algo] = {str(q): report_at(rows, q) for q in CHECKPOINTS if q <= args.nats_budget}
            compute += seconds + nats_seconds
            log(f"  {held} {algo}: top-0.1% {median_text(d[algo]['top'], args.budget)}, optimum "
                f"{median_text(d[algo]['opt'], args.budget)} ({seconds + nats_seconds:.0f}s)")
        m = res["misleading"][held] = {}
        for kind in MISLEADING:
            rows, seconds = searches(table, work, col, col, "meta", args.seeds, args.budget,
                                     predictor_path(work, held, kind), f"direct_{held}_meta-{kind}", args.fresh)
            m[kind] = {**summary(rows, top, opt), "one_late": one_query_late(rows, rea_rows)}
            compute += seconds
            log(f"  {held} meta-{kind}: top-0.1% {median_text(m[kind]['top'], args.budget)} ({seconds:.0f}s)")
        res["tau"][held] = tau_study(table, work, held, args.repeats, KS, args.fresh, log)
        compute += res["tau"][held].get("seconds", 0.0)
    if "cifar10" in args.datasets:
        res["foreign"] = {}
        for col in FOREIGN:
            top = top_set(t.archs, t.column(col), 0.001, "min")
            opt = top_set(t.archs, t.column(col), 1e-9, "min")
            f = res["foreign"][col] = {}
            for algo in ("random", "rea", "meta"):
                pred = predictor_path(work, "cifar10") if algo == "meta" else None
                rows, seconds = searches(table, work, col, col, algo, args.seeds, args.budget, pred,
                                         f"foreign_{col}_{algo}", args.fresh, goal="min")
                f[algo] = summary(rows, top, opt, "min")
                compute += seconds
                log(f"  {col} {algo}: top-0.1% {median_text(f[algo]['top'], args.budget)}, optimum "
                    f"{median_text(f[algo]['opt'], args.budget)} ({seconds:.0f}s)")
    res["proxies"] = proxy_study(table, work, args.proxy_cells, args.fresh, log)
    res["elapsed_s"] = compute + res["proxies"]["seconds"]
    return res


def verdicts(res: dict) -> list[tuple[str, bool, str]]:
    """The issue's must-show checks: (claim, holds, measured); a failed check names each shortfall."""
    out = []
    b = res["budget"]

    def slower(ours: dict, rea: dict) -> list[str]:
        return [f"{name} {median_text(ours[key], b)} vs REA {median_text(rea[key], b)}"
                for key, name in (("top", "top-0.1%"), ("opt", "optimum"))
                if np.median(ours[key]) > np.median(rea[key])]

    def behind(at_ours: dict, at_rea: dict, goal: str = "max") -> list[str]:
        sign = 1 if goal == "max" else -1
        return [f"q={q}: {mean:.4f} vs REA {at_rea[q][0]:.4f}" for q, (mean, _) in at_ours.items()
                if sign * mean < sign * at_rea[q][0]]

    if "cifar10" in res["direct"]:
        c10 = res["direct"]["cifar10"]["meta"]
        out.append(("CIFAR-10, meta-trained on CIFAR-100 + ImageNet16-120: median queries to a top-0.1% cell <= 5",
                    float(np.median(c10["top"])) <= 5, median_text(c10["top"], b)))
    for held in res["direct"]:
        h = res["direct"][held]["meta"]["opt"]
        out.append((f"{LABEL[held]}: median queries to the exact optimum <= 25", float(np.median(h)) <= 25,
                    median_text(h, b)))
    for held in res["direct"]:
        d, n = res["direct"][held], res["nats"][held]
        worse = slower(d["meta"], d["rea"]) + [f"NATS {w}" for w in behind(n["meta"], n["rea"])]
        out.append((f"{LABEL[held]}: meta not worse than REA (median queries to top-0.1% and to the optimum; "
                    f"NATS-protocol test200 at q={', '.join(n['meta'])})", not worse, "; ".join(worse) or "holds"))
    # misleading priors and foreign tasks: (label, [(where, ours, rea, goal)])
    groups = [(f"{kind} prior", [(LABEL[h], res["misleading"][h][kind], res["direct"][h]["rea"], "max")
                                 for h in res["direct"]]) for kind in MISLEADING]
    groups += [(f"{FOREIGN[col]}, CIFAR-10 prior", [("", f["meta"], f["rea"], "min")])
               for col, f in res.get("foreign", {}).items()]
    for label, cases in groups:
        worse = [f"{where}: {w}".lstrip(": ") for where, ours, rea, _ in cases for w in slower(ours, rea)]
        found = "; ".join(f"{where} {median_text(ours['top'], b)} vs {median_text(rea['top'], b)}".strip()
                          for where, ours, rea, _ in cases)
        out.append((f"{label}: median queries to top-0.1% and to the optimum not above REA's", not worse,
                    "; ".join(worse) or f"holds (top-0.1%: {found})"))
        qs = ", ".join(cases[0][1]["at"])
        worse = [f"{where} {w}".strip() for where, ours, rea, goal in cases
                 for w in behind(ours["at"], rea["at"], goal)]
        out.append((f"{label}: mean best so far at q={qs} not below REA's", not worse, "; ".join(worse) or "holds"))
    for held in res["direct"]:
        tau = res["tau"][held]
        best_zc, name = max((v, k) for k, v in tau["zero_cost"].items())
        ours = float(np.mean(tau["head"]["25"]))
        out.append((f"{LABEL[held]}: Kendall tau after 25 observations above the best zero-cost proxy",
                    ours > best_zc, f"{ours:.3f} vs {best_zc:.3f} ({name})"))
    return out


def anytime_cells(ours: dict, rea: dict | None, goal: str, fmt: str) -> str:
    """Table cells: mean best so far at each checkpoint, with the seeds behind ``rea`` in brackets."""
    cells = []
    for q in map(str, CHECKPOINTS):
        if q not in ours["at"]:
            cells.append("")
            continue
        text = format(ours["at"][q][0], fmt)
        if rea is not None:
            sign = 1 if goal == "max" else -1
            text += f" ({sum(sign * x < sign * r for x, r in zip(ours['seed_at'][q], rea['seed_at'][q]))})"
        cells.append(text)
    return " | ".join(cells)


def markdown(res: dict, command: str) -> str:
    b, nb = res["budget"], res["nats_budget"]
    train = "-".join(f"{f(res['train_seconds'].values()):.0f}" for f in (min, max)) if res["train_seconds"] else "?"
    lines = [
        "## Meta-warm-started evolution on NAS-Bench-201, leave one dataset out (issue 4)", "",
        f"Command: `{command}` ({duration(res['elapsed_s'])} of computation on {machine()}).",
        f"For each held-out dataset the predictor (`evonas.predictor.MetaRankPredictor`, {res['members']}-member "
        f"ensemble, default settings, seed 0) is meta-trained on the *other two* datasets' `test200` only; nothing of "
        f"the held-out dataset is seen before the search. {res['seeds']} seeds per algorithm (seeds "
        f"0..{res['seeds'] - 1}, the same for every algorithm). `rea`: evonas REA (population 10, sample 3, "
        "dedupe); `tpe`: Optuna TPESampler over 6 categorical edges, a proposal of an already-evaluated cell "
        "answered from the cache without a query; `random`: without repeats; `meta`: `--algo meta` with the "
        f"held-out dataset's predictor, default parameters. Meta-training one predictor took {train} s (CPU, "
        "2 x 15,625 cells); it is done once per source table and reused for every search.", "",
        f"### Direct search on `test200` (budget {b}): median queries to a top-0.1% cell / to the exact optimum",
        "", "(found/seeds) in brackets; `> B`: not found by most seeds within the budget. Last column: seeds where "
        "meta needed fewer / as many / more queries than REA to the same target. Last row per dataset: wall "
        f"seconds of one whole {b}-query search (table lookups; the search's own cost).", "",
        *header("dataset", "target", *ALGOS, "meta vs rea (w/t/l)")]
    for held in res["direct"]:
        d = res["direct"][held]
        for key, name in (("top", "top-0.1%"), ("opt", "optimum")):
            lines.append(f"| {LABEL[held]} | {name} | " + " | ".join(median_text(d[a][key], b) for a in ALGOS)
                         + f" | {paired(d['meta'][key], d['rea'][key])} |")
        lines.append(f"| {LABEL[held]} | s per search | " + " | ".join(f"{d[a]['seconds']:.2f}" for a in ALGOS)
                     + " | |")
    lines += ["", f"### NATS-Bench protocol: search `valid12`, report `test200` (budget {nb})", "",
              "Mean ± std over seeds of the `test200` accuracy (%) of the best-by-`valid12` cell after q queries.", "",
              *header("dataset", "algo", *(f"q={q}" for q in CHECKPOINTS))]
    for held in res["direct"]:
        for algo in ALGOS:
            at = res["nats"][held][algo]
            lines.append(f"| {LABEL[held]} | {algo} | " + " | ".join(
                f"{at[str(q)][0]:.2f} ± {at[str(q)][1]:.2f}" if str(q) in at else "" for q in CHECKPOINTS) + " |")
    lines += ["", f"### Misleading priors (search `test200`, budget {b}, same seeds as REA)", "",
              "`inverted`: meta-trained on the other datasets' `min:test200` (the ranking upside down); "
              "`shuffled`: on their `test200` values permuted over the cells (no structure); `small-nets`: on "
              "`min:params_m` (a different proxy: prefers tiny cells). Median queries to the targets; best "
              "`test200` (%) so far at q queries, mean over seeds, and in brackets the seeds on which it is "
              "below REA's at the same q.", "",
              *header("dataset", "prior", "top-0.1%", "optimum", *(f"q={q}" for q in CHECKPOINTS))]
    for held in res["direct"]:
        d, m = res["direct"][held], res["misleading"][held]
        for kind in ("(rea)", "(meta, LODO prior)", *MISLEADING):
            mk = d["rea"] if kind == "(rea)" else d["meta"] if kind.startswith("(meta") else m[kind]
            cells = anytime_cells(mk, None if kind == "(rea)" else d["rea"], "max", ".2f")
            lines.append(f"| {LABEL[held]} | {kind} | {median_text(mk['top'], b)} | {median_text(mk['opt'], b)}"
                         f" | {cells} |")
    late = "; ".join(f"{kind}: " + "/".join(str(res["misleading"][h][kind]["one_late"]) for h in res["direct"])
                     for kind in MISLEADING)
    lines += ["", "A misleading prior costs the first query: the initial population's first member is the "
              "prior's top pick, and once one random cell beats it the trust falls below `min_trust`, so the "
              "remaining initial members are random draws (on the same seed, REA's first draws) and the "
              "children are screened only as far as the predictor keeps ranking them right (its confidence). "
              f"Seeds (of {res['seeds']}; " + "/".join(LABEL[h] for h in res["direct"]) + ") whose queries 2-10 "
              f"are exactly REA's queries 1-9: {late}. The best of the first 10 queries is then REA's best of "
              "9, behind REA's best of 10 on the seeds where REA's 10th draw was its best. A shuffled prior's "
              "picks are as good as random draws, so its trust falls later and its path leaves REA's sooner."]
    if res.get("foreign"):
        lines += ["", f"### Other tasks on the same cells: a prior that points the wrong way (budget {b})", "",
                  "`meta` uses the CIFAR-10 leave-one-out predictor (meta-trained on CIFAR-100 and ImageNet16-120 "
                  "accuracy) to *minimize* a Raspberry Pi 5 cost column of the table: the prior ranks accurate, "
                  "hence large and slow, cells first. Median queries to a top-0.1% / the optimal cell; best value "
                  "so far at q queries, mean over seeds (in brackets: seeds on which meta is behind REA).", "",
                  *header("task", "algo", "top-0.1%", "optimum", *(f"q={q}" for q in CHECKPOINTS))]
        for col, f in res["foreign"].items():
            for algo in ("random", "rea", "meta"):
                cells = anytime_cells(f[algo], f["rea"] if algo == "meta" else None, "min", ".4g")
                lines.append(f"| {FOREIGN[col]} | {algo} | {median_text(f[algo]['top'], b)} | "
                             f"{median_text(f[algo]['opt'], b)} | {cells} |")
    lines += ["", "### Predictor quality on the held-out dataset: Kendall tau over all 15,625 cells", "",
              f"After k uniformly random observations of the held-out `test200` (mean over {res['repeats']} "
              "draws). `head`: meta-trained, adapted by the Bayesian task head (the default); `finetune`: "
              "meta-trained, every weight fine-tuned on the k observations (MAML/Reptile-style adaptation); "
              "`none`: meta-trained, not adapted; `scratch`: the same predictor trained on the k observations "
              "only. Zero-cost: the table's proxy columns for that dataset (constant in k).", "",
              *header("dataset", "predictor", *(f"k={k}" for k in KS))]
    for held in res["direct"]:
        tau = res["tau"][held]
        for method in ("head", "finetune", "none", "scratch"):
            lines.append(f"| {LABEL[held]} | {method} | " + " | ".join(
                f"{np.mean(tau[method][str(k)]):.3f}" if tau[method].get(str(k)) else "–" for k in KS) + " |")
        lines.append(f"| {LABEL[held]} | zero-cost | " + ", ".join(
            f"{name} {v:.3f}" for name, v in sorted(tau["zero_cost"].items(), key=lambda kv: -kv[1]))
            + " | | | | |")
    fit = [res["tau"][h]["fit_seconds"] for h in res["direct"] if "fit_seconds" in res["tau"][h]]
    if fit:
        def cost(method: str, k: int) -> str:
            sec = float(np.mean([x for f in fit for x in f[method][str(k)]]))
            return f"{sec * 1000:.0f} ms" if sec < 1 else f"{sec:.1f} s"

        lines += ["", "Seconds per adaptation (mean over datasets and draws, one thread): " + "; ".join(
            f"k={k}: head {cost('head', k)}, finetune {cost('finetune', k)}, scratch fit {cost('scratch', k)}"
            for k in KS if k)]
    p = res["proxies"]
    lines += ["", f"### Zero-cost proxies computed by evonas (`evonas.proxies`) on {p['cells']} random cells", "",
              f"CIFAR-10 head (10 classes), C=16, N=5, weights from seed 0, NASWOT on 64 N(0,1) images; "
              f"{p['seconds'] / p['cells']:.2f} s per cell. Spearman of ours with the reference (the table's "
              "column) and of each with `cifar10_test200`. Our params count only ops on an input-to-output path "
              "(NAS-Bench-201 also counts ops of dead-end edges). The table has no FLOPs column: our "
              "multiply-accumulates are checked against torch's own counter (`torch.utils.flop_counter`) on "
              "the same networks: "
              + ("equal on every cell." if p.get("flops_max_rel_diff") == 0 else
                 f"largest relative difference {p.get('flops_max_rel_diff', float('nan')):.1e}."), "",
              *header("proxy", "reference", "Spearman ours vs reference", "ours vs test200", "reference vs test200")]
    for name, r in p["rows"].items():
        lines.append(f"| {name} | `{r['column']}` | {r['spearman_table']:.3f} | {r['spearman_test200_ours']:.3f} | "
                     f"{r['spearman_test200_table']:.3f} |")
    lines += claims(verdicts(res))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE))
    ap.add_argument("--seeds", type=int, help="seeds per algorithm (30; --quick: 3)")
    ap.add_argument("--budget", type=int, help="queries per direct test200 search (300; --quick: 60)")
    ap.add_argument("--nats-budget", dest="nats_budget", type=int, help="queries per NATS search (100; --quick: 25)")
    ap.add_argument("--repeats", type=int, help="observation draws per k in the tau study (5; --quick: 1)")
    ap.add_argument("--proxy-cells", dest="proxy_cells", type=int, help="cells for the proxy study (200; --quick: 6)")
    ap.add_argument("--work", default="/tmp/evonas_meta_search", help="cache of predictors and search rows")
    ap.add_argument("--fresh", action="store_true", help="recompute everything, ignoring the cache in --work")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 seeds, small budgets, small predictors")
    ap.add_argument("--datasets", type=lambda v: v.split(","), default=list(DATASETS),
                    help="held-out datasets, comma-separated (default: all three)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--md", default=None, help="the markdown file to update (default: BENCHMARKS.md)")
    ap.add_argument("--no-markdown", dest="markdown", action="store_false")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        ap.error(f"--datasets: unknown {', '.join(unknown)} (choose from {', '.join(DATASETS)})")
    defaults = {"seeds": (30, 3), "budget": (300, 60), "nats_budget": (100, 25), "repeats": (5, 1),
                "proxy_cells": (200, 6)}
    given = resolve_sizes(ap, args, defaults)
    command = " ".join(["python benchmarks/meta_search.py", *(["--quick"] if args.quick else []), *given,
                        *([f"--datasets {','.join(args.datasets)}"] if list(args.datasets) != list(DATASETS) else [])])
    res = run(args)
    publish("meta_search", markdown(res, command), res, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
