"""The ``evonas`` command line. Config and input errors exit with code 2 and one line on stderr."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from evonas import interrupts
from evonas._version import __version__
from evonas.config import ConfigError, RunConfig, load_config
from evonas.store import StoreError

EXIT_USAGE = 2
TRUST_HELP = ("import the plugin code (space, ops, fitness) the run directory names; without it, reading a run "
              "never runs code from it")


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


def _cmd_run(args: argparse.Namespace) -> int:
    from evonas.api import run_config
    from evonas.results import summary  # noqa: F401  (import errors surface before the run)

    cfg = load_config(args.config)
    overrides = {k: getattr(args, k) for k in ("budget", "seed", "jobs", "batch_size", "backend", "address",
                                                  "mode") if getattr(args, k, None) is not None}
    for key, value in overrides.items():
        if key in ("budget", "batch_size") and value < 1:
            raise ConfigError(f"command line: --{key.replace('_', '-')} = {value}: must be >= 1")
        if key == "jobs" and (value == 0 or value < -1):
            raise ConfigError(f"command line: --jobs = {value}: must be >= 1 (or -1 for all cores)")
    cfg.search.update(overrides)
    if overrides:
        from evonas.config import check_search

        check_search("command line", cfg.search)
    if args.table is not None:
        if cfg.fitness["kind"] != "table":
            raise ConfigError(f"command line: --table = {args.table!r}: config's fitness kind is "
                              f"{cfg.fitness['kind']!r}, not 'table'")
        cfg.fitness["table"] = str(Path(args.table).resolve())
    out = Path(args.out or cfg.search["out"] or Path("runs") / Path(args.config).stem)
    cfg.build_fitness()  # missing tables or columns fail before anything is written
    interrupts.stop_on_sigterm()  # SIGTERM (batch schedulers) stops gracefully, like Ctrl-C
    result = run_config(cfg, out, progress=not args.quiet, resume=args.resume, force=args.force)
    if result.status == "interrupted":
        print(f"evonas: interrupted after {len(result.trials)} evaluations; summary in {out / 'summary.json'}; "
              f"continue with: evonas run {args.config} --out {out} --resume", file=sys.stderr)
        return 130
    if result.status == "aborted":
        print(f"evonas: {result.message}; see {out / 'history.csv'}", file=sys.stderr)
        return 1
    best = result.best
    if best is None:
        print(f"no successful evaluation in {len(result.trials)}; see {out / 'history.csv'}", file=sys.stderr)
        return 1
    shown = {k: round(v, 4) for k, v in best.metrics.items()}
    print(f"best {best.arch}  {shown}  ({len(result.trials)} evaluations, {result.elapsed_s:.1f}s) -> {out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from evonas.bench import bench_rows, bench_stats, clock_stats, format_stats, replay, top_set, write_bench_csv
    from evonas.fitness.table import TableError, load_table
    from evonas.results import write_summary

    if args.budget < 1 or args.seeds < 1:
        raise UsageError(f"--budget = {args.budget}, --seeds = {args.seeds}: both must be >= 1")
    if args.jobs < 1 or args.batch_size < 1:
        raise UsageError(f"--jobs = {args.jobs}, --batch-size = {args.batch_size}: both must be >= 1")
    algos = [a for item in args.algo for a in item.split(",") if a]
    cost = _cost(args.cost)
    try:
        table = load_table(args.table)
        table.check_columns([args.fitness, args.report] + ([cost] if isinstance(cost, str) else []))
    except TableError as err:
        raise UsageError(f"--table = {args.table!r}: {err}") from None
    params = _bench_params(args, algos)
    start = time.perf_counter()
    try:
        runs = replay(args.table, args.fitness, args.report, algos, args.budget, args.seeds, space=args.space,
                      goal=args.goal, first_seed=args.first_seed, params=params, cost=cost, jobs=args.jobs,
                      mode=args.mode, batch_size=args.batch_size)
    except ValueError as err:
        raise UsageError(f"--algo = {','.join(algos)!r}: {err}") from None
    rows = bench_rows(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_bench_csv(out / "bench.csv", rows)
    targets = top_set(table.archs, table.column(args.report), args.top, args.goal)
    stats = bench_stats(rows, targets, goal=args.goal)
    clock = clock_stats(runs)
    label = f"top-{args.top * 100:g}%"
    print(format_stats(stats, args.report, label))
    unit = f"{cost} per query" if isinstance(cost, str) else f"{1.0 if cost is None else cost:g} s per query"
    print(f"simulated ({args.mode}, {args.jobs} virtual workers, {unit}): " +
          ", ".join(f"{a} {c['queries']:.0f} queries in {c['simulated_s']:.6g} s" for a, c in clock.items())
          + " (median per search)")
    write_summary(out / "summary.json", {
        "table": str(Path(args.table).resolve()), "fitness": args.fitness, "report": args.report,
        "goal": args.goal, "budget": args.budget, "seeds": args.seeds, "target": label,
        "mode": args.mode, "jobs": args.jobs, "batch_size": args.batch_size, "cost": cost,
        "elapsed_s": round(time.perf_counter() - start, 3),
        "algos": {a: {**s, "report_at": {str(q): v for q, v in s["report_at"].items()}, **clock[a]}
                  for a, s in stats.items()}})
    return 0


def _cost(text: str | None) -> str | float | None:
    """``--cost``: a table column, or seconds per query."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    if not value >= 0:
        raise UsageError(f"--cost = {text!r}: seconds must be >= 0")
    return value


def _bench_params(args: argparse.Namespace, algos: Sequence[str]) -> dict:
    """Strategy parameters from bench options: the file parameters strategies declare (``path_params``,
    e.g. ``--predictor`` of ``--algo meta``), resolved to absolute paths."""
    import inspect

    from evonas.strategies import strategy_class

    try:
        classes = {a: strategy_class(a) for a in algos}
    except ValueError as err:
        raise UsageError(f"--algo = {','.join(algos)!r}: {err}") from None
    params: dict[str, dict] = {}
    for name in _path_params():
        value = getattr(args, name, None)
        users = [a for a, cls in classes.items() if name in cls.path_params]
        if value is not None and not users:
            takers = sorted(a for a, cls in _strategy_classes().items() if name in cls.path_params)
            raise UsageError(f"--{name} = {value!r}: only --algo {' / '.join(takers)} uses it")
        for algo in users:
            default = inspect.signature(classes[algo].__init__).parameters[name].default
            if value is None:
                if default is None:
                    raise UsageError(f"--algo {algo}: needs --{name} FILE")
                continue
            if not Path(value).is_file():
                raise UsageError(f"--{name} = {value!r}: file not found")
            params.setdefault(algo, {})[name] = str(Path(value).resolve())
    return params


def _strategy_classes() -> dict:
    from evonas.strategies import STRATEGIES

    return STRATEGIES


def _path_params() -> list[str]:
    """Every file parameter a registered strategy declares (each becomes an ``evonas bench`` option)."""
    return sorted({p for cls in _strategy_classes().values() for p in cls.path_params})


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
        from evonas.atomic import atomic_open

        with atomic_open(out, "w", newline="") as fh:
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


def _cmd_report(args: argparse.Namespace) -> int:
    from evonas.plugins import code_from
    from evonas.report import ReportError, write_report

    try:
        with code_from(args.dir, trust=args.trust_code):  # a run directory is data: it runs no code
            report = write_report(args.dir, embed=not args.link)
    except ReportError as err:
        raise UsageError(str(err)) from None
    print(f"{report.html} ({len(report.figures)} figures in {report.html.parent / 'figures'})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from evonas.export import export
    from evonas.plugins import code_from
    from evonas.report import ReportError

    try:
        with code_from(args.dir, trust=args.trust_code):  # a run directory is data: it runs no code
            paths = export(args.dir, args.format, args.out, step=args.step, config=args.config,
                           in_channels=args.in_channels, num_classes=args.num_classes)
    except ReportError as err:
        raise UsageError(str(err)) from None
    print(" ".join(str(p) for p in paths))
    return 0


def _add_report_commands(sub) -> None:
    report = sub.add_parser("report", help="figures and a self-contained report.html for a run or bench directory")
    report.add_argument("dir", help="run directory (history.csv) or bench directory (bench.csv)")
    report.add_argument("--link", action="store_true", help="link the PNGs instead of embedding them")
    report.add_argument("--trust-code", dest="trust_code", action="store_true", help=TRUST_HELP)
    report.set_defaults(func=_cmd_report)
    exp = sub.add_parser("export", help="export the best architecture of a run (json, PyTorch or ONNX)")
    exp.add_argument("dir", help="run directory")
    exp.add_argument("--format", default="arch", choices=("arch", "torch", "onnx"),
                     help="arch: string + graph JSON; torch: module file + state dict; onnx: ONNX file")
    exp.add_argument("--out", help="output file (default: DIR/export/best_model.{json,py,onnx})")
    exp.add_argument("--step", type=int, help="export this evaluation instead of the best")
    exp.add_argument("--config", help="the run's genome config, when summary.json's path does not resolve")
    exp.add_argument("--in-channels", dest="in_channels", type=int, help="input channels (runs without training)")
    exp.add_argument("--num-classes", dest="num_classes", type=int, help="classes (runs without training)")
    exp.add_argument("--trust-code", dest="trust_code", action="store_true", help=TRUST_HELP)
    exp.set_defaults(func=_cmd_export)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (not the stream of the first call)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(level: str) -> None:
    """Messages of the ``evonas`` loggers at ``level`` and above go to stderr (set anew on each call)."""
    logger = logging.getLogger("evonas")
    for handler in [h for h in logger.handlers if getattr(h, "_evonas_cli", False)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler._evonas_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("evonas: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper(), logging.WARNING))
    logger.propagate = False


def _cmd_meta_train_init(args: argparse.Namespace) -> int:
    from evonas.fitness.train import meta_train_config

    cfg = load_config(args.config)
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps = {args.steps}: must be >= 1")
    init, elapsed = meta_train_config(cfg, steps=args.steps, seed=args.seed, progress=not args.quiet)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    init.save(out)
    info = init.info
    print(f"{out}: {len(init)} meta-parameter tensors, {info.get('meta_steps')} Reptile steps "
          f"(C={info.get('C')}, N={info.get('N')}, {info.get('num_classes')}-way head) in {elapsed:.1f}s")
    return 0


def _cmd_meta_train_predictor(args: argparse.Namespace) -> int:
    from evonas.fitness.table import TableError
    from evonas.predictor import meta_train

    params = {k: v for k, v in (("steps", args.steps), ("n_members", args.members)) if v is not None}
    for key, value in params.items():
        if value < 1:
            raise UsageError(f"--{'members' if key == 'n_members' else key} = {value}: must be >= 1")
    start = time.perf_counter()
    try:
        model = meta_train(args.table, args.tasks, space=args.space, random_state=args.seed, **params)
    except TableError as err:
        raise UsageError(f"--table = {args.table!r}: {err}") from None
    except ValueError as err:
        key = "--space" if "space" in str(err) else "--tasks"
        raise UsageError(f"{key} = {args.space if key == '--space' else args.tasks!r}: {err}") from None
    out = model.save(args.out)
    print(f"{out}: {model.n_members}-member ranking predictor meta-trained on {', '.join(model.tasks_)} "
          f"({', '.join(map(str, model.meta_['n_rows']))} rows) in {time.perf_counter() - start:.1f}s")
    return 0


def _add_meta_commands(sub) -> None:
    """``evonas meta ...``: meta-learning helpers; each is one ``add_parser`` on ``meta_sub``."""
    meta = sub.add_parser("meta", help="meta-learn from a config's data (warm-start initializer, ...)")
    meta_sub = meta.add_subparsers(dest="meta_command", required=True)
    init = meta_sub.add_parser("train-init", help="meta-train a Reptile weight initializer for a config's space")
    init.add_argument("config", help="genome config with [fitness] kind = \"train\" (and optionally [warm_start])")
    init.add_argument("--out", required=True, help="initializer file to write (torch.save)")
    init.add_argument("--steps", type=int, help="Reptile steps (default: [warm_start] meta_steps)")
    init.add_argument("--seed", type=int, help="default: [warm_start] seed, else [search] seed")
    init.add_argument("--quiet", action="store_true", help="no progress bar")
    init.set_defaults(func=_cmd_meta_train_init)
    pred = meta_sub.add_parser("train-predictor", help="meta-train a ranking predictor on a table's metric columns")
    pred.add_argument("--table", required=True, help="CSV with an arch column and metric columns")
    pred.add_argument("--tasks", required=True, help="columns, comma-separated; min:COL when lower is better")
    pred.add_argument("--out", required=True, help="predictor file to write")
    pred.add_argument("--space", default="nb201", help="space of the table's arch strings")
    pred.add_argument("--steps", type=int, help="optimiser steps per ensemble member (default 1000)")
    pred.add_argument("--members", type=int, help="ensemble size (default 5)")
    pred.add_argument("--seed", type=int, default=0)
    pred.set_defaults(func=_cmd_meta_train_predictor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evonas", description="Evolutionary neural architecture search.")
    parser.add_argument("--version", action="version", version=f"evonas {__version__}")
    parser.add_argument("--log-level", dest="log_level", default="warning", type=str.lower,
                        choices=("debug", "info", "warning", "error"), help="messages on stderr (default: warning)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the search a genome config describes")
    run.add_argument("config", help="genome config (TOML)")
    run.add_argument("--budget", type=int, help="number of evaluations")
    run.add_argument("--seed", type=int)
    run.add_argument("--jobs", type=int, help="parallel evaluation workers")
    run.add_argument("--batch-size", dest="batch_size", type=int, help="proposals per strategy update")
    run.add_argument("--backend", help="where evaluations run: loky (local processes, default), dask, ray, "
                                       "threading, simulated (virtual workers on a virtual clock)")
    run.add_argument("--address", help="scheduler of a running cluster (dask: tcp://host:8786; ray: host:port)")
    run.add_argument("--mode", choices=("batch", "async"),
                     help="batch (reproducible) or async (steady state: a child per free worker)")
    run.add_argument("--resume", action="store_true", help="continue the run stored in --out (after a crash "
                                                           "or Ctrl-C)")
    run.add_argument("--force", action="store_true", help="with --resume: accept a changed config; without: "
                                                          "replace the run in --out")
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
    bench.add_argument("--cost", help="virtual seconds per query: a table column (a training-time column) or a "
                                      "number (default 1)")
    bench.add_argument("--jobs", type=int, default=1, help="virtual workers of the simulated backend")
    bench.add_argument("--mode", choices=("batch", "async"), default="batch",
                       help="batch, or async (a new proposal whenever a virtual worker is free)")
    bench.add_argument("--batch-size", dest="batch_size", type=int, default=1, help="proposals per strategy update")
    for name in _path_params():
        bench.add_argument(f"--{name}", help=f"file for the strategies that take {name!r}")
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
    _add_report_commands(sub)
    _add_meta_commands(sub)
    return parser


def storage_error(err: BaseException) -> str:
    """One line for a storage failure, naming the file."""
    if isinstance(err, OSError) and err.filename:
        where = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
        return f"{where}: {err.strerror or err}"
    text = " ".join(str(err).split())
    return text if not isinstance(err, sqlite3.Error) or isinstance(err, StoreError) else f"SQLite: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UsageError) as err:
        print(f"evonas: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, StoreError, sqlite3.Error) as err:  # storage: full disk, read-only, corrupt store
        print(f"evonas: error: {storage_error(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("evonas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
