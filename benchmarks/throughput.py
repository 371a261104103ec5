"""Evaluation throughput through the backends, and the cost of the durable store.

* A fitness that costs ``--cost`` seconds of CPU (0.2 by default; a busy loop on ``time.process_time``)
  evaluated by the same seeded REA search (batch mode, 4 proposals per batch; and the asynchronous mode)
  through ``loky`` (local processes) and ``dask`` (a LocalCluster of worker processes), with 1 and 2
  workers, each evaluation isolated in its own forked process (the default), plus loky without isolation.
  Evaluations per second exclude starting the workers (reported apart); efficiency = evaluations/s x cost
  / workers (1.0 = no overhead).
* Store overhead: the same table-lookup search (no evaluation cost) with the in-memory store and with the
  SQLite store (WAL, a commit per completed evaluation and a checkpoint per batch); the difference per
  evaluation is what durability costs.

Run: python benchmarks/throughput.py [--cost 0.2] [--evals 24]   (writes its section of BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import machine, write_section  # noqa: E402

from evonas.evaluator import Candidate, Evaluator  # noqa: E402
from evonas.fitness import CallableFitness, TableFitness  # noqa: E402
from evonas.search import Search  # noqa: E402
from evonas.spaces import NB201Space  # noqa: E402
from evonas.store import MemoryStore, SQLiteStore  # noqa: E402
from evonas.strategies import make_strategy  # noqa: E402

SPACE = NB201Space()
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nasbench201.csv"


def _burn(cost: float) -> None:
    end = time.process_time() + cost
    x = 0
    while time.process_time() < end:
        x += 1


def burn(arch, ctx, cost: float = 0.2):
    """The benchmark fitness: ``cost`` seconds of CPU time, then a metric from the architecture."""
    _burn(cost)
    return {"acc": float(arch.string.count("conv"))}


def throughput(backend: str, jobs: int, cost: float, evals: int, *, isolate: bool = True, mode: str = "batch"):
    fitness = CallableFitness(f"{Path(__file__).resolve()}:burn", {"cost": cost})
    evaluator = Evaluator(fitness, SPACE, seed=0, jobs=jobs, backend=backend, required=["acc"], isolate=isolate)
    t0 = time.perf_counter()
    evaluator.open()
    warm = [Candidate(10_000 + i, SPACE.to_string(g), SPACE.canonical_hash(g))
            for i, g in enumerate(make_strategy("random", SPACE, ["acc"], 99).ask(jobs))]
    evaluator.evaluate(warm)  # workers started and the fitness loaded
    startup = time.perf_counter() - t0
    strategy = make_strategy("rea", SPACE, ["acc"], 0, population=8, sample=3)
    search = Search(SPACE, strategy, evaluator, ["acc"], budget=evals, batch_size=4, seed=0, mode=mode)
    t0 = time.perf_counter()
    result = search.run()  # closes the evaluator
    wall = time.perf_counter() - t0
    assert len(result.trials) == evals and all(t.ok for t in result.trials)
    rate = evals / wall
    return {"backend": backend, "jobs": jobs, "isolate": isolate, "mode": mode, "startup_s": startup,
            "wall_s": wall, "rate": rate, "efficiency": rate * cost / jobs}


def store_overhead(table: Path, evals: int, batch_size: int, repeats: int = 3) -> dict:
    fitness = TableFitness(table, ["cifar10_valid12"])

    def run(store) -> float:
        strategy = make_strategy("rea", SPACE, ["cifar10_valid12"], 0, population=10, sample=3)
        evaluator = Evaluator(fitness, SPACE, seed=0, required=["cifar10_valid12"])
        t0 = time.perf_counter()
        Search(SPACE, strategy, evaluator, ["cifar10_valid12"], budget=evals, batch_size=batch_size,
               store=store, seed=0).run()
        return time.perf_counter() - t0

    memory, sqlite = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            memory.append(run(MemoryStore()))
            store = SQLiteStore(Path(tmp) / f"run{i}-{batch_size}.db")
            sqlite.append(run(store))
            store.close()
    m, s = min(memory), min(sqlite)
    return {"batch_size": batch_size, "memory_ms": 1000 * m / evals, "sqlite_ms": 1000 * s / evals,
            "overhead_ms": 1000 * (s - m) / evals}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost", type=float, default=0.2, help="CPU seconds per evaluation")
    p.add_argument("--evals", type=int, default=24, help="evaluations per measurement")
    p.add_argument("--store-evals", dest="store_evals", type=int, default=500)
    p.add_argument("--table", default=str(DEFAULT_TABLE))
    p.add_argument("--no-write", dest="write", action="store_false", help="print only")
    args = p.parse_args(argv)
    start = time.perf_counter()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    _burn(1.0)
    share = 1.0 / (time.perf_counter() - t0)  # fraction of a core this process got just now
    rows = []
    for backend in ("loky", "dask"):
        for jobs in (1, 2):
            rows.append(throughput(backend, jobs, args.cost, args.evals))
            print(rows[-1], flush=True)
    rows.append(throughput("loky", 2, args.cost, args.evals, isolate=False))
    print(rows[-1], flush=True)
    rows.append(throughput("loky", 2, args.cost, args.evals, mode="async"))
    print(rows[-1], flush=True)
    rows.append(throughput("dask", 2, args.cost, args.evals, mode="async"))
    print(rows[-1], flush=True)
    stores = [store_overhead(Path(args.table), args.store_evals, b) for b in (1, 10)]
    for s in stores:
        print(s, flush=True)
    load1 = os.getloadavg()[0]
    elapsed = time.perf_counter() - start

    lines = ["## Throughput: backends and the durable store (issue 5)", "",
             f"Command: `python benchmarks/throughput.py --cost {args.cost:g} --evals {args.evals}` "
             f"({elapsed:.0f} s on {machine()}; load average {load0:.1f} at start, {load1:.1f} at the end; "
             f"a 1 s CPU burn in the main process got {share:.2f} of a core just before)."
             + (" With the cores shared with other jobs (load above 1 before the run), rates are lower bounds "
                "and 2 workers cannot show their speed-up." if load0 > 1.0 else ""), "",
             f"A fitness costing {args.cost:g} s of CPU; a seeded REA search of {args.evals} evaluations "
             f"(batches of 4; `async`: steady state). Ideal: 1 / cost = {1 / args.cost:.1f} eval/s per worker "
             "(efficiency 1.0). Startup (workers spawned, fitness loaded; for dask a "
             "LocalCluster of worker processes) is excluded from the rate and shown apart.", "",
             "| backend | workers | isolated | mode | eval/s | efficiency | startup (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['jobs']} | {'yes' if r['isolate'] else 'no'} | {r['mode']} | "
                     f"{r['rate']:.2f} | {r['efficiency']:.2f} | {r['startup_s']:.1f} |")
    lines += ["", f"Store overhead: the same search on the NAS-Bench-201 table ({args.store_evals} evaluations, "
              "lookups cost nothing), best of 3, in-memory store vs SQLite run store (WAL, synchronous=NORMAL: "
              "one commit per completed evaluation, one checkpoint with the strategy state per batch).", "",
              "| batch size | memory store (ms/eval) | SQLite store (ms/eval) | overhead (ms/eval) |",
              "| --- | --- | --- | --- |"]
    for s in stores:
        lines.append(f"| {s['batch_size']} | {s['memory_ms']:.3f} | {s['sqlite_ms']:.3f} | {s['overhead_ms']:.3f} |")
    body = "\n".join(lines)
    print(body)
    if args.write:
        print(f"-> {write_section('throughput', body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
