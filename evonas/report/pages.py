"""The report pages: figures written to ``DIR/figures/`` and embedded in ``DIR/report.html``."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evonas.atomic import write_text, write_with
from evonas.plugins import UntrustedCode
from evonas.report import html as H
from evonas.report.data import (BenchData, ReportError, RunData, generation_size, kind_of, load_bench,
                                load_run, pareto_indices, space_for, top_trials)
from evonas.report.graph import architecture_figure
from evonas.report.plots import (bench_anytime_figure, bench_final_figure, bench_hit_rate_figure,
                                 bench_queries_figure, bench_regret_figure, distribution_figure,
                                 fitness_vs_report_figure, pareto_figure, progress_figure)

log = logging.getLogger(__name__)

FIGURES_DIR = "figures"


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    kind: str
    html: Path
    figures: dict[str, Path] = field(default_factory=dict)


def write_report(directory: str | Path, *, embed: bool = True) -> Report:
    """Write ``DIR/report.html`` and ``DIR/figures/*.png`` for a run or bench directory.

    ``embed=False`` links the PNGs instead of inlining them (a smaller page that needs the folder).
    Raises :class:`ReportError` when ``directory`` holds neither a run nor a bench.
    """
    directory = Path(directory)
    kind = kind_of(directory)
    return run_report(directory, embed=embed) if kind == "run" else bench_report(directory, embed=embed)


def _save(fig: Figure | None, directory: Path, name: str, out: dict[str, Path]) -> None:
    if fig is None:
        return
    path = directory / FIGURES_DIR / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight", facecolor="white"))
    out[name] = path
    log.info("wrote %s", path)


# --- run -----------------------------------------------------------------------------------------------
def _metric_cols(run: RunData) -> list[str]:
    objs = [o.metric for o in run.objectives]
    return objs + [m for m in run.report_metrics if m not in objs]


def _trial_rows(run: RunData, indices: list[int]) -> list[list[Any]]:
    cols = _metric_cols(run)
    return [[rank, int(run.steps[i])] + [float(run.metrics[c][i]) if c in run.metrics else None for c in cols]
            + [f"<code>{H.esc(run.archs[i])}</code>"] for rank, i in enumerate(indices, start=1)]


def run_report(directory: str | Path, *, embed: bool = True) -> Report:
    """The report of a run directory (``history.csv`` + ``summary.json``)."""
    directory = Path(directory)
    run = load_run(directory)
    if not run.objectives:
        raise ReportError(f"{directory / 'summary.json'}: no objectives and no metric column in history.csv")
    s = run.summary
    figs: dict[str, Path] = {}
    n, n_ok = len(run), int(run.ok.sum())
    sections: list[tuple[str, str]] = []
    objs = run.objectives
    first = objs[0]

    # summary -------------------------------------------------------------------------------------------
    strategy = s.get("strategy") or {}
    space_desc = s.get("space") or {}
    facts = [
        ("config", f"<code>{H.esc(s['config'])}</code>" if s.get("config") else "&ndash;"),
        ("space", H.esc(", ".join(f"{k}={v}" for k, v in space_desc.items()) or "&ndash;")),
        ("strategy", H.esc(", ".join(f"{k}={v}" for k, v in strategy.items()) or "&ndash;")),
        ("objectives", H.esc(", ".join(f"{o.goal} {o.metric}" for o in objs))),
        ("reported metrics", H.esc(", ".join(run.report_metrics) or "none")),
        ("evaluations", f"{n} ({n - n_ok} failed, {len(set(run.hashes))} unique architectures)"),
        ("seed", H.esc(s.get("seed", "&ndash;"))),
        ("run time", f"{H.fmt(s.get('elapsed_s'))} s (evaluations alone: "
                     f"{H.fmt(float(run.time_s[-1]) if n else 0.0)} s"
                     f"{', from timestamps' if run.wall_clock else ' added up'})"),
    ]
    sections.append(("Summary", H.key_values(facts)))

    # best architecture ---------------------------------------------------------------------------------
    best = s.get("best")
    if best:
        try:
            space = space_for(s, best["arch"])
        except UntrustedCode as err:  # no figure of a plugin space unless --trust-code
            log.warning("no architecture figure: %s", err)
            space = None
        metrics = best.get("metrics", {})
        rows = [(k, H.fmt(v)) for k, v in metrics.items()]
        content = (f"<p>Best by {H.esc(first.metric)} ({'highest' if first.goal == 'max' else 'lowest'}), "
                   f"evaluation {best.get('step')}:<br><code>{H.esc(best['arch'])}</code></p>"
                   + H.key_values(rows))
        if space is not None:
            graph = space.to_graph(space.from_string(best["arch"]))
            _save(architecture_figure(graph, getattr(space, "ops", None)), directory, "best_architecture", figs)
            cell = graph.graph.get("kind") == "cell"
            content += H.figure(figs["best_architecture"],
                                "The best architecture. " + (
                                    "Circles are feature maps (node j sums its inputs), arrows carry the "
                                    "operation applied on the way; <code>none</code> edges (zeros) are left "
                                    "out and greyed parts do not reach the output." if cell else
                                    "Boxes are operations, arrows the data flow from input to output "
                                    "(nodes off every input-output path are already pruned)."), embed)
        else:
            content += "<p class='note'>The space could not be rebuilt here, so no drawing.</p>"
        sections.append(("Best architecture", content))
    else:
        sections.append(("Best architecture", "<p>No evaluation succeeded; see the failures below.</p>"))

    # progress ------------------------------------------------------------------------------------------
    if n_ok:
        _save(progress_figure(run, "evaluations"), directory, "progress_evaluations", figs)
        _save(progress_figure(run, "time"), directory, "progress_time", figs)
        pick_note = (f" The green panel{'s' if len(run.report_metrics) > 1 else ''} show"
                     f"{'' if len(run.report_metrics) > 1 else 's'} the reported metric of the current best-by-"
                     f"{H.esc(first.metric)} architecture: what you would get if you stopped there."
                     if run.report_metrics else "")
        content = H.figure(figs["progress_evaluations"],
                           "Red: the best value found so far (a step up is a new best); blue dots: every "
                           "evaluation. A curve still rising at the right edge means more budget would likely "
                           "help; a long flat tail means the search has converged." + pick_note, embed)
        time_note = ("Time from recorded timestamps." if run.wall_clock else
                     "No timestamps were recorded, so time is the evaluation times added up: with parallel "
                     "workers the wall time is shorter by about the number of workers.")
        content += H.figure(figs["progress_time"], "The same curves against time. " + time_note, embed)
        sections.append(("Progress", content))

        _save(distribution_figure(run), directory, "distribution", figs)
        size, what = generation_size(run)
        sections.append(("Fitness per generation", H.figure(
            figs["distribution"],
            f"Each box holds {size} consecutive evaluations"
            f"{' (one population)' if what.startswith('generation') else ''}: median line, quartile box, whiskers "
            "to 1.5 IQR, dots the evaluations. A population that improves moves up (down when minimising) and "
            "narrows as it converges; boxes that stay put and wide mean the search is still sampling broadly.",
            embed)))

    if len(objs) > 1 and n_ok:
        _save(pareto_figure(run), directory, "pareto", figs)
        front = pareto_indices(run)
        content = H.figure(figs["pareto"],
                           "Every evaluation (colour: when it was evaluated) on the first two objectives; red "
                           "circles are the Pareto front, the architectures no other one beats on every "
                           "objective at once. Pick from the front by the trade-off you need.", embed)
        content += f"<p>{len(front)} architectures on the front (by {H.esc(first.metric)}):</p>"
        cols = _metric_cols(run)
        content += H.table(["#", "evaluation", *cols, "architecture"], _trial_rows(run, front[:30]),
                           left=(len(cols) + 2,), raw=(len(cols) + 2,))
        if len(front) > 30:
            content += f"<p class='note'>{len(front) - 30} more in summary.json (pareto_front).</p>"
        sections.append(("Pareto front", content))

    if n_ok:
        fig = fitness_vs_report_figure(run)
        if fig is not None:
            _save(fig, directory, "fitness_vs_report", figs)
            sections.append(("Search signal against the reported metric", H.figure(
                figs["fitness_vs_report"],
                f"Each evaluation's {H.esc(first.metric)} (what the search optimised) against "
                f"{H.esc(run.report_metrics[0])} (what is reported). A tight rising cloud (rank correlation "
                "near 1) means optimising the first optimises the second; a loose one means the pick's "
                "reported value is partly luck.", embed)))

    # top 10 --------------------------------------------------------------------------------------------
    top = top_trials(run, 10)
    if top:
        cols = _metric_cols(run)
        sections.append((f"Top {len(top)} architectures", (
            f"<p>By {H.esc(first.metric)}, one row per distinct architecture (isomorphic cells count once; "
            "the earliest evaluation is shown).</p>"
            + H.table(["#", "evaluation", *cols, "architecture"], _trial_rows(run, top),
                      left=(len(cols) + 2,), raw=(len(cols) + 2,)))))

    # failures ------------------------------------------------------------------------------------------
    if n - n_ok:
        errors = Counter(e or "(no message)" for e, ok in zip(run.errors, run.ok) if not ok)
        rows = [[c, f"<code>{H.esc(e[:300])}</code>"] for e, c in errors.most_common(10)]
        sections.append((f"Failed evaluations ({n - n_ok})",
                         H.table(["count", "error"], rows, left=(1,), raw=(1,))))

    sections.append(("Files", _files_note(directory, ["history.csv", "summary.json"], figs)))
    title = f"evonas run report: {directory.resolve().name}"
    sub = (f"{n} evaluations of {H.esc(space_desc.get('name', 'a space'))} with "
           f"{H.esc(strategy.get('name', 'a strategy'))}; evonas {_version()}")
    page = directory / "report.html"
    write_text(page, H.page(title, sub, sections))
    log.info("wrote %s", page)
    return Report("run", page, figs)


def _files_note(directory: Path, data: list[str], figs: dict[str, Path]) -> str:
    items = "".join(f"<li><code>{H.esc(f)}</code></li>" for f in data if (directory / f).exists())
    items += "".join(f"<li><code>{FIGURES_DIR}/{H.esc(p.name)}</code></li>" for p in figs.values())
    return f"<p>In <code>{H.esc(directory.resolve())}</code>:</p><ul>{items}</ul>"


def _version() -> str:
    from evonas._version import __version__

    return __version__


# --- bench ---------------------------------------------------------------------------------------------
def _quartiles(values: np.ndarray, budget: int | None = None) -> tuple[float, float, float]:
    """Median and quartiles as the box plots draw them (linear interpolation); +inf (not found within
    ``budget``) counts as more than the budget, and a quantile above the budget comes back as +inf."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return math.nan, math.nan, math.nan
    if budget is not None:
        v = np.where(np.isinf(v), budget * 1.12, v)
    med, lo, hi = (float(x) for x in np.percentile(v, [50, 25, 75]))
    if budget is not None:
        med, lo, hi = (math.inf if x > budget else x for x in (med, lo, hi))
    return med, lo, hi


def _mq(values: np.ndarray, budget: int | None = None) -> str:
    med, lo, hi = _quartiles(values, budget)

    def one(x: float) -> str:
        return f"&gt;{budget}" if math.isinf(x) and budget else H.fmt(x)

    if math.isinf(lo):
        return one(med)
    return f"{one(med)} <span class='note'>[{one(lo)}&ndash;{one(hi)}]</span>"


def bench_table(bench: BenchData) -> str:
    """Per algorithm: the pick's report value at checkpoints and queries to a target, median [IQR]."""
    from evonas.bench import CHECKPOINTS

    budget = max(m.shape[1] for m in bench.curves.values())
    qs = sorted({q for q in CHECKPOINTS if q <= budget} | {budget})
    header = ["algorithm", "seeds"] + [f"{bench.report} @ {q}" for q in qs] + \
        [f"queries to {bench.target}", "found"]
    rows = []
    for algo, mat in bench.curves.items():
        row: list[Any] = [algo, mat.shape[0]]
        row += [_mq(mat[:, q - 1]) if q <= mat.shape[1] else "&ndash;" for q in qs]
        hits = bench.queries_to_target.get(algo)
        if hits is not None:
            row += [_mq(hits, mat.shape[1]), f"{int(np.isfinite(hits).sum())}/{len(hits)}"]
        else:
            row += ["&ndash;", "&ndash;"]
        rows.append(row)
    raw = tuple(range(2, len(header)))
    return H.table(header, rows, left=(0,), raw=raw)


def bench_report(directory: str | Path, *, embed: bool = True) -> Report:
    """The report of a bench directory (``bench.csv`` + ``summary.json``)."""
    directory = Path(directory)
    bench = load_bench(directory)
    s = bench.summary
    figs: dict[str, Path] = {}
    sections: list[tuple[str, str]] = []
    fitness = H.esc(s.get("fitness", "fitness"))
    report = H.esc(bench.report)
    facts = [
        ("table", f"<code>{H.esc(s.get('table', '?'))}</code>"),
        ("searched on", f"{H.esc(bench.goal)} {fitness}"),
        ("reported", report),
        ("algorithms", H.esc(", ".join(bench.curves))),
        ("budget, seeds", f"{H.esc(s.get('budget', '?'))} queries, {H.esc(s.get('seeds', '?'))} seeds each"),
        ("target", f"{H.esc(bench.target)} of the table by {report}"),
        ("table optimum", H.fmt(bench.optimum) if bench.optimum is not None else "table not found here"),
        ("run time", f"{H.fmt(s.get('elapsed_s'))} s"),
    ]
    sections.append(("Summary", H.key_values(facts)))
    sections.append(("Results", "<p>Median over seeds, interquartile range in brackets; "
                     "<code>&gt;N</code>: not found within the budget of N queries.</p>" + bench_table(bench)))

    _save(bench_anytime_figure(bench), directory, "bench_anytime", figs)
    content = H.figure(figs["bench_anytime"],
                       f"After q queries each search picks its best architecture by {fitness}; the curve is the "
                       f"{report} of that pick, the median over seeds with the band from the 25th to the 75th "
                       "percentile. Higher and further left is better; bands that do not overlap are a clear "
                       "difference.", embed)
    fig = bench_regret_figure(bench)
    if fig is not None:
        _save(fig, directory, "bench_regret", figs)
        content += H.figure(figs["bench_regret"],
                            "The same picks as a gap to the best value in the table, on a log scale, which "
                            "separates algorithms once the curves above flatten out near the optimum.", embed)
    sections.append(("Best so far against queries", content))

    if bench.queries_to_target:
        _save(bench_queries_figure(bench), directory, "bench_queries", figs)
        _save(bench_hit_rate_figure(bench), directory, "bench_hit_rate", figs)
        content = H.figure(figs["bench_queries"],
                           f"How many queries each seed needed before it first evaluated a {H.esc(bench.target)} "
                           "architecture. Crosses above the dashed budget line are seeds that never did; they "
                           "count as 'more than the budget' in the box, so a box above the line means most seeds "
                           "failed.", embed)
        content += H.figure(figs["bench_hit_rate"],
                            "The fraction of seeds that have found one after q queries (the box plot above "
                            "as a curve): read off the budget you need for the success rate you want.", embed)
        sections.append((f"Queries to a {bench.target} architecture", content))

    _save(bench_final_figure(bench), directory, "bench_final", figs)
    sections.append(("Final picks", H.figure(
        figs["bench_final"], f"The {report} of each seed's final pick: the spread a single run of each algorithm "
        "can give.", embed)))
    sections.append(("Files", _files_note(directory, ["bench.csv", "summary.json"], figs)))
    title = f"evonas bench report: {directory.resolve().name}"
    table_name = Path(str(s.get("table", ""))).name
    sub = f"{', '.join(H.esc(a) for a in bench.curves)} on {H.esc(table_name)}; evonas {_version()}"
    page = directory / "report.html"
    write_text(page, H.page(title, sub, sections))
    log.info("wrote %s", page)
    return Report("bench", page, figs)


__all__ = ["Report", "write_report", "run_report", "bench_report", "bench_table", "space_for"]
