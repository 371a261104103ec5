"""The ``evonas`` command line. Config and input errors exit with code 2 and one line on stderr."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from evonas import __version__
from evonas.config import ConfigError, RunConfig, load_config

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


def _cmd_run(args: argparse.Namespace) -> int:
    from evonas.api import run_config
    from evonas.results import summary  # noqa: F401  (import errors surface before the run)

    cfg = load_config(args.config)
    overrides = {k: getattr(args, k) for k in ("budget", "seed", "jobs", "batch_size", "backend")
                 if getattr(args, k) is not None}
    for key, value in overrides.items():
        if key in ("budget", "batch_size") and value < 1:
            raise ConfigError(f"command line: --{key.replace('_', '-')} = {value}: must be >= 1")
    cfg.search.update(overrides)
    if args.table is not None:
        if cfg.fitness["kind"] != "table":
            raise ConfigError(f"command line: --table = {args.table!r}: config's fitness kind is "
                              f"{cfg.fitness['kind']!r}, not 'table'")
        cfg.fitness["table"] = str(Path(args.table).resolve())
    out = Path(args.out or cfg.search["out"] or Path("runs") / Path(args.config).stem)
    cfg.build_fitness()  # missing tables or columns fail before anything is written
    result = run_config(cfg, out, progress=not args.quiet)
    best = result.best
    if best is None:
        print(f"no successful evaluation in {len(result.trials)}; see {out / 'history.csv'}", file=sys.stderr)
        return 1
    shown = {k: round(v, 4) for k, v in best.metrics.items()}
    print(f"best {best.arch}  {shown}  ({len(result.trials)} evaluations, {result.elapsed_s:.1f}s) -> {out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from evonas.bench import bench_stats, format_stats, run_bench, top_set, write_bench_csv
    from evonas.fitness.table import TableError, load_table
    from evonas.results import write_summary

    if args.budget < 1 or args.seeds < 1:
        raise UsageError(f"--budget = {args.budget}, --seeds = {args.seeds}: both must be >= 1")
    algos = [a for item in args.algo for a in item.split(",") if a]
    try:
        table = load_table(args.table)
        table.check_columns([args.fitness, args.report])
    except TableError as err:
        raise UsageError(f"--table = {args.table!r}: {err}") from None
    start = time.perf_counter()
    try:
        rows = run_bench(args.table, args.fitness, args.report, algos, args.budget, args.seeds,
                         space=args.space, goal=args.goal, first_seed=args.first_seed)
    except ValueError as err:
        raise UsageError(f"--algo = {','.join(algos)!r}: {err}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_bench_csv(out / "bench.csv", rows)
    targets = top_set(table.archs, table.column(args.report), args.top, args.goal)
    stats = bench_stats(rows, targets, goal=args.goal)
    label = f"top-{args.top * 100:g}%"
    print(format_stats(stats, args.report, label))
    write_summary(out / "summary.json", {
        "table": str(Path(args.table).resolve()), "fitness": args.fitness, "report": args.report,
        "goal": args.goal, "budget": args.budget, "seeds": args.seeds, "target": label,
        "elapsed_s": round(time.perf_counter() - start, 3),
        "algos": {a: {**s, "report_at": {str(q): v for q, v in s["report_at"].items()}}
                  for a, s in stats.items()}})
    return 0


def _space_config(path: str):
    cfg = load_config(path)
    return cfg, cfg.build_space()


def _cmd_space_enumerate(args: argparse.Namespace) -> int:
    cfg, space = _space_config(args.config)
    try:
        genomes = space.enumerate()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        n, hashes = 0, set()
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["arch", "canonical_hash"])
            for g in genomes:
                h = space.canonical_hash(g)
                writer.writerow([space.to_string(g), h])
                hashes.add(h)
                n += 1
    except NotImplementedError as err:
        raise ConfigError(f"{cfg.where()}: [space] name = {space.name!r}: {err}") from None
    print(f"{n} architectures, {len(hashes)} unique up to isomorphism -> {out}")
    return 0


def _cmd_space_stats(args: argparse.Namespace) -> int:
    cfg, space = _space_config(args.config)
    try:
        hashes = [space.canonical_hash(g) for g in space.enumerate()]
    except NotImplementedError as err:
        raise ConfigError(f"{cfg.where()}: [space] name = {space.name!r}: {err}") from None
    print(json.dumps({"space": space.describe(), "size": len(hashes), "unique": len(set(hashes)),
                      "encoding_size": space.encoding_size}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evonas", description="Evolutionary neural architecture search.")
    parser.add_argument("--version", action="version", version=f"evonas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the search a genome config describes")
    run.add_argument("config", help="genome config (TOML)")
    run.add_argument("--budget", type=int, help="number of evaluations")
    run.add_argument("--seed", type=int)
    run.add_argument("--jobs", type=int, help="parallel evaluation workers")
    run.add_argument("--batch-size", dest="batch_size", type=int, help="proposals per strategy update")
    run.add_argument("--backend", help="joblib backend (loky, threading, dask, ray)")
    run.add_argument("--out", help="run directory (default: runs/CONFIG_STEM)")
    run.add_argument("--table", help="table CSV replacing the config's [fitness] table")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    bench = sub.add_parser("bench", help="benchmark strategies on a NAS-Bench table over many seeds")
    bench.add_argument("--table", required=True, help="CSV with an arch column and metric columns")
    bench.add_argument("--fitness", required=True, help="column searched on")
    bench.add_argument("--report", required=True, help="column reported for the pick")
    bench.add_argument("--algo", action="append", required=True, help="strategy name(s), comma-separated")
    bench.add_argument("--budget", type=int, default=300)
    bench.add_argument("--seeds", type=int, default=30)
    bench.add_argument("--first-seed", dest="first_seed", type=int, default=0)
    bench.add_argument("--space", default="nb201", help="space of the table's arch strings")
    bench.add_argument("--goal", choices=("max", "min"), default="max")
    bench.add_argument("--top", type=float, default=0.001, help="target fraction of the table (0.001: top-0.1%%)")
    bench.add_argument("--out", default="bench", help="output directory")
    bench.set_defaults(func=_cmd_bench)

    space = sub.add_parser("space", help="inspect a config's search space")
    space_sub = space.add_subparsers(dest="space_command", required=True)
    enum = space_sub.add_parser("enumerate", help="write every architecture with its canonical hash")
    enum.add_argument("config")
    enum.add_argument("--out", required=True, help="CSV with columns arch,canonical_hash")
    enum.set_defaults(func=_cmd_space_enumerate)
    stats = space_sub.add_parser("stats", help="print the size and the unique count")
    stats.add_argument("config")
    stats.set_defaults(func=_cmd_space_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UsageError) as err:
        print(f"evonas: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("evonas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
