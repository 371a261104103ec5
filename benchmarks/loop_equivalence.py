"""Same seeds, same picks: the benchmark rows of the old loop (``bench.run_bench``, before the seams
restructuring) against the new one (``bench.replay`` on the ``simulated`` backend).

Run each side with its own checkout on ``PYTHONPATH`` and compare the dumps:

    PYTHONPATH=OLD python benchmarks/loop_equivalence.py dump old.json --predictor P.pt
    PYTHONPATH=.   python benchmarks/loop_equivalence.py dump new.json --predictor P.pt
    python benchmarks/loop_equivalence.py compare old.json new.json

``dump`` covers REA, random and meta (``--predictor``, a file of ``evonas meta train-predictor``) on the
NATS-Bench protocol and direct search on CIFAR-10, a few seeds each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nasbench201.csv"
CASES = (("cifar10_valid12", "cifar10_test200", 100), ("cifar10_test200", "cifar10_test200", 300))


def rows(table, fitness, report, algo, budget, seeds, params):
    import evonas.bench as bench

    if hasattr(bench, "replay"):
        got = bench.bench_rows(bench.replay(table, fitness, report, [algo], budget, seeds, params=params))
    else:
        got = bench.run_bench(table, fitness, report, [algo], budget, seeds, params=params)
    return [[r.algo, r.seed, r.query, r.arch, r.fitness, r.report] for r in got]


def dump(args) -> None:
    import evonas

    out = {"evonas": evonas.__file__}
    params = {"meta": {"predictor": str(Path(args.predictor).resolve())}} if args.predictor else None
    for algo in args.algos.split(","):
        for fitness, report, budget in CASES:
            out[f"{algo}/{fitness}"] = rows(args.table, fitness, report, algo, budget, args.seeds, params)
    Path(args.out).write_text(json.dumps(out))
    print(f"{out['evonas']}: {len(out) - 1} cases -> {args.out}")


def compare(args) -> int:
    old, new = json.loads(Path(args.old).read_text()), json.loads(Path(args.new).read_text())
    bad = 0
    for case in sorted(set(old) - {"evonas"}):
        same = old[case] == new.get(case)
        bad += not same
        print(f"{case}: {len(old[case])} rows, {'identical' if same else 'DIFFERENT'}")
    print(f"old: {old['evonas']}\nnew: {new['evonas']}")
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--table", default=str(DEFAULT_TABLE))
    d.add_argument("--seeds", type=int, default=5)
    d.add_argument("--algos", default="rea,random,meta")
    d.add_argument("--predictor")
    c = sub.add_parser("compare")
    c.add_argument("old")
    c.add_argument("new")
    args = parser.parse_args(argv)
    if args.cmd == "dump":
        dump(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
