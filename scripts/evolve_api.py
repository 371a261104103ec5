"""Evolution through the Python API: a NAS-Bench-201 table fitness and a custom callable, side by side.

Run: python scripts/evolve_api.py [--table PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import evonas

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nasbench201.csv"


def few_params(arch: evonas.Architecture, ctx: evonas.EvalContext) -> dict[str, float]:
    """A custom fitness: count parameter-free edges (a user callable can be anything picklable)."""
    ops = [op for _, _, op in arch.graph.edges(data="op")]
    return {"free_edges": float(sum(op in ("skip_connect", "avg_pool_3x3") for op in ops))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args()

    space = evonas.NB201Space()
    table = evonas.TableFitness(args.table, ["cifar10_valid12", "cifar10_test200"])
    result = evonas.search(space, table, ["cifar10_valid12"], report=["cifar10_test200"], strategy="rea",
                           budget=args.budget, seed=0, population=10, sample=3)
    print(f"REA on the table: best {result.best.arch} test200={result.best.metrics['cifar10_test200']:.2f}")

    result = evonas.search(space, few_params, ["free_edges"], strategy="random", budget=50, seed=0, jobs=2,
                           batch_size=10)
    print(f"random search on a custom callable: best {result.best.arch} {result.best.metrics}")


if __name__ == "__main__":
    main()
