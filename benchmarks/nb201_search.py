"""REA, REINFORCE and random search on NAS-Bench-201, side by side with a plain reference REA on the same seeds.

Two protocols on each dataset:
* NATS-Bench: search on ``{ds}_valid12``, report the ``{ds}_test200`` of the best-by-fitness cell at
  10/25/50/100/300 queries;
* direct: search on ``{ds}_test200`` and count the queries until a top-0.1% cell is evaluated.

Every evonas search runs through the ordinary ``Search`` loop on the ``simulated`` backend (``bench.replay``).
``reinforce`` is the RL baseline of the NAS-Bench-201 paper (a categorical policy per edge, Adam, an
exponential-moving-average baseline; ``evonas.strategies.reinforce``) with its defaults (lr 0.01, EMA 0.9).

The peer is a plain REA (population 10, sample 3, one-edge mutation, re-evaluating duplicates) written
with Python's ``random`` in a dozen lines, the reference of the issue's figures. Framework overhead is the
time per evaluation of evonas's loop minus that of the plain loop, measured on the same runs.

Run: python benchmarks/nb201_search.py [--seeds 30] [--table PATH]   (writes BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import BENCHMARKS_MD, machine, write_section  # noqa: E402

from evonas.bench import BenchRow, bench_rows, bench_stats, replay, top_set  # noqa: E402
from evonas.fitness.table import load_table  # noqa: E402
from evonas.spaces import NB201Space  # noqa: E402

DATASETS = ("cifar10", "cifar100", "imagenet16")
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nasbench201.csv"
SPACE = NB201Space()


def plain_rea(table, fitness: str, report: str, seed: int, budget: int, population: int = 10,
              sample: int = 3) -> list[BenchRow]:
    """Reference regularized evolution: no dedupe, no framework, Python's ``random``."""
    rng = random.Random(seed)
    fit, rep = table.column(fitness), table.column(report)
    n_ops = len(SPACE.ops)
    pop: list[tuple[list[int], float]] = []
    rows = []
    for q in range(1, budget + 1):
        if q <= population:
            genes = [rng.randrange(n_ops) for _ in range(6)]
        else:
            parent = max(rng.sample(pop, sample), key=lambda p: p[1])[0]
            genes = list(parent)
            e = rng.randrange(6)
            genes[e] = rng.choice([o for o in range(n_ops) if o != genes[e]])
        arch = SPACE.to_string(genes)
        row = table.row_of[arch]
        pop.append((genes, fit[row]))
        if len(pop) > population:
            pop.pop(0)
        rows.append(BenchRow("plain-rea", seed, q, arch, float(fit[row]), float(rep[row])))
    return rows


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run_dataset(table, table_path: Path, ds: str, seeds: int, budget_nats: int, budget_direct: int):
    results = {}
    for protocol, fitness, budget in (("nats", f"{ds}_valid12", budget_nats),
                                      ("direct", f"{ds}_test200", budget_direct)):
        report = f"{ds}_test200"
        rows, t_ours = timed(lambda: bench_rows(replay(table_path, fitness, report, ["rea"], budget, seeds)))
        random_rows, _ = timed(lambda: bench_rows(replay(table_path, fitness, report, ["random"], budget, seeds)))
        rl_rows, _ = timed(lambda: bench_rows(replay(table_path, fitness, report, ["reinforce"], budget, seeds)))
        plain, t_plain = timed(lambda: [r for s in range(seeds) for r in plain_rea(table, fitness, report, s, budget)])
        targets = top_set(table.archs, table.column(report), 0.001)
        stats = bench_stats(rows + rl_rows + random_rows + plain, targets, checkpoints=(10, 25, 50, 100, 300))
        results[protocol] = {"stats": stats, "evals": seeds * budget, "t_ours": t_ours, "t_plain": t_plain}
    return results


def fmt_q(stats: dict) -> str:
    med = stats["median_queries"]
    return f"{med:.0f}" if math.isfinite(med) else f"> {stats['budget']}"


def render(all_results: dict, seeds: int, budget_nats: int, budget_direct: int, elapsed: float, cmd: str,
           load: tuple[float, float] = (math.nan, math.nan)) -> str:
    algos = ("rea", "plain-rea", "reinforce", "random")
    lines = [
        "## NAS-Bench-201: REA, REINFORCE and random search (issues 2, 12)",
        "",
        f"Command: `{cmd}` ({elapsed:.0f} s on {machine()}).",
        f"{seeds} seeds per algorithm (seeds 0..{seeds - 1}, the same for every algorithm). `rea`, `reinforce` and "
        "`random` are evonas (regularized evolution with population 10, sample 3, one-edge mutation and canonical-hash "
        "dedupe; REINFORCE, the RL baseline of the NAS-Bench-201 paper: a softmax policy per edge, Adam with lr 0.01, "
        "an exponential-moving-average reward baseline with momentum 0.9, one update per evaluation; random search "
        "without repeats), each search run through the ordinary `Search` loop on the `simulated` backend; "
        "`plain-rea` is the reference REA of the issue (same "
        "parameters, duplicates re-evaluated) run on the same seeds.",
        "",
        f"### Direct search on `test200` (budget {budget_direct}): queries until a top-0.1% cell is evaluated",
        "",
        "| dataset | " + " | ".join(f"{a}: median (found/seeds)" for a in algos) + " | ratio plain-rea / rea |",
        "| --- | " + " | ".join("---" for _ in algos) + " | --- |",
    ]
    for ds, res in all_results.items():
        st = res["direct"]["stats"]
        ratio = st["plain-rea"]["median_queries"] / st["rea"]["median_queries"]
        lines.append(f"| {ds} | " + " | ".join(f"{fmt_q(st[a])} ({st[a]['found']}/{st[a]['seeds']})" for a in algos)
                     + f" | {ratio:.2f}x |")
    lines += ["", "Reference points from the issue (plain REA, this table, 30 seeds): CIFAR-10 85, CIFAR-100 75, "
              "ImageNet16-120 96; random about 600.", "",
              f"### NATS-Bench protocol: search `valid12`, report `test200` of the pick (budget {budget_nats})", "",
              "Mean ± std over seeds of the `test200` accuracy (%) of the best-by-`valid12` cell after q queries.", "",
              "| dataset | algo | q=10 | q=25 | q=50 | q=100 | q=300 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for ds, res in all_results.items():
        st = res["nats"]["stats"]
        for a in algos:
            cells = " | ".join(f"{st[a]['report_at'][q][0]:.2f} ± {st[a]['report_at'][q][1]:.2f}"
                               for q in (10, 25, 50, 100, 300) if q in st[a]["report_at"])
            lines.append(f"| {ds} | {a} | {cells} |")
    lines += ["", "### Framework overhead per evaluation", "",
              "Wall time of the whole search divided by evaluations (table lookups, so this is all overhead: "
              "proposal, canonical hashing, dedupe, evaluation bookkeeping). Load average "
              f"{load[0]:.1f} at the start, {load[1]:.1f} at the end (2 cores): on a busy machine both columns "
              "grow and their ratio is noisy.", "",
              "| dataset / protocol | evonas REA µs/eval | plain REA µs/eval | ratio |", "| --- | --- | --- | --- |"]
    for ds, res in all_results.items():
        for protocol in ("nats", "direct"):
            r = res[protocol]
            ours, plain = 1e6 * r["t_ours"] / r["evals"], 1e6 * r["t_plain"] / r["evals"]
            lines.append(f"| {ds} / {protocol} | {ours:.0f} | {plain:.0f} | {ours / plain:.1f}x |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget-nats", type=int, default=300)
    parser.add_argument("--budget-direct", type=int, default=1500)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--md", default=str(BENCHMARKS_MD), help="markdown file to update")
    args = parser.parse_args(argv)
    table_path = Path(args.table)
    table = load_table(table_path)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    results = {}
    for ds in args.datasets.split(","):
        results[ds] = run_dataset(table, table_path, ds, args.seeds, args.budget_nats, args.budget_direct)
        st = results[ds]["direct"]["stats"]
        print(f"{ds}: median queries to top-0.1% -- " +
              ", ".join(f"{a} {fmt_q(st[a])}" for a in ("rea", "plain-rea", "reinforce", "random")), flush=True)
    cmd = " ".join(["python benchmarks/nb201_search.py", *(sys.argv[1:] if argv is None else argv)])
    body = render(results, args.seeds, args.budget_nats, args.budget_direct, time.perf_counter() - start, cmd,
                  (load_start, os.getloadavg()[0]))
    write_section("nb201_search", body, Path(args.md))
    print(f"wrote {args.md}")
    return results


if __name__ == "__main__":
    main()
