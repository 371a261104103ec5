"""The report's figures, built on :class:`matplotlib.figure.Figure` (no pyplot state, any backend)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evonas.report.data import (BenchData, RunData, best_so_far, generation_size, hypervolume_curve,
                                pareto_indices)
from evonas.trial import Objective

BEST = "#d62728"
POINTS = "#1f77b4"
REPORT = "#2ca02c"
ALGO_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")
DPI = 110


def _num(value: float) -> str:
    """4 significant digits; large values with thousands separators instead of exponents."""
    return f"{value:,.0f}" if abs(value) >= 1e4 and math.isfinite(value) else f"{value:.4g}"


def _label(objective: Objective) -> str:
    return f"{objective.metric} ({'higher' if objective.goal == 'max' else 'lower'} is better)"


def _focus(ax, values: np.ndarray, goal: str, best: np.ndarray) -> None:
    """Y limits that show the best-so-far curve in detail: the worst few percent of evaluations (often
    broken architectures far below the rest) fall off the axis, and the caption says how many."""
    v = values[np.isfinite(values)]
    if len(v) < 5:
        return
    b = best[np.isfinite(best)]
    lo, hi = (np.quantile(v, 0.05, method="lower"), max(v.max(), b.max() if len(b) else v.max())) \
        if goal == "max" else (min(v.min(), b.min() if len(b) else v.min()), np.quantile(v, 0.95, method="higher"))
    pad = 0.06 * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - pad, hi + pad)
    hidden = int(((v < lo - pad) | (v > hi + pad)).sum())
    if hidden:
        ax.set_title(f"{hidden} evaluation{'s' if hidden > 1 else ''} off the scale "
                     f"({'below' if goal == 'max' else 'above'})", loc="right", fontsize=8, color="#666666")


def progress_figure(run: RunData, x: str = "evaluations") -> Figure:
    """Best-so-far of each objective (and the report metrics of the first objective's pick) against
    evaluations (``x="evaluations"``) or time (``x="time"``)."""
    objectives = run.objectives
    reports = run.report_metrics[:3]
    hv = hypervolume_curve(run)
    rows = len(objectives) + len(reports) + (hv is not None)
    fig = Figure(figsize=(8.5, 2.6 * rows + 0.6), dpi=DPI, layout="constrained")
    all_axes = list(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
    axes = all_axes[1:] if hv is not None else all_axes
    xs = np.arange(1, len(run) + 1) if x == "evaluations" else run.time_s
    if hv is not None:
        ax = all_axes[0]
        ax.step(xs, hv, where="post", color="#6a3d9a", lw=2)
        ax.annotate(f"{hv[-1]:.3f}", xy=(xs[-1], hv[-1]), xytext=(-2, -4), textcoords="offset points",
                    color="#6a3d9a", fontsize=9, ha="right", va="top")
        ax.set_ylim(min(0.0, np.nanmin(hv)), 1.02)
        ax.set_ylabel("hypervolume")
        ax.set_title("Pareto-front hypervolume of both objectives (each scaled to [0, 1] by the run's "
                     "worst and best)", fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    first_pick = None
    for ax, obj in zip(axes, objectives):
        v = run.values(obj)
        best, where = best_so_far(v, obj.goal)
        if first_pick is None:
            first_pick = where
        ax.scatter(xs, v, s=9, color=POINTS, alpha=0.35, lw=0, label="each evaluation")
        ax.step(xs, best, where="post", color=BEST, lw=2, label="best so far")
        if np.isfinite(best).any():
            i = int(where[-1])
            ax.scatter([xs[i]], [v[i]], s=60, facecolor="none", edgecolor=BEST, lw=1.5, zorder=5)
            ax.annotate(_num(v[i]), xy=(xs[i], v[i]), xytext=(6, -4 if obj.goal == "max" else 4),
                        textcoords="offset points", color=BEST, fontsize=9,
                        va="top" if obj.goal == "max" else "bottom")
        _focus(ax, v, obj.goal, best)
        ax.set_ylabel(obj.metric)
        ax.set_title(_label(obj), fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if obj.goal == "max" else "upper right", fontsize=8, framealpha=0.9)
    for ax, metric in zip(axes[len(objectives):], reports):
        values = run.metrics[metric].copy()
        values[~run.ok] = np.nan
        pick = np.where(first_pick >= 0, values[np.maximum(first_pick, 0)], np.nan)
        ax.scatter(xs, values, s=9, color=REPORT, alpha=0.25, lw=0, label="each evaluation")
        ax.step(xs, pick, where="post", color="#006400", lw=2,
                label=f"of the best-{objectives[0].metric} pick")
        if np.isfinite(pick).any():
            ax.annotate(_num(pick[-1]), xy=(xs[-1], pick[-1]), xytext=(-2, -4), textcoords="offset points",
                        color="#006400", fontsize=9, ha="right", va="top")
        _focus(ax, values, "max", pick)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: reported for the current pick (not searched on)", fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    if x == "evaluations":
        all_axes[-1].set_xlabel("evaluations")
        all_axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        all_axes[-1].set_xlim(left=0)
        all_axes[-1].set_xlabel("wall time since the start (s)" if run.wall_clock else
                            "time (s): evaluation times added up (no timestamps recorded)")
    fig.suptitle(f"Best so far against {'evaluations' if x == 'evaluations' else 'time'}", fontsize=12)
    return fig


def distribution_figure(run: RunData) -> Figure:
    """Box plot of each objective per generation (a window of consecutive evaluations)."""
    objectives = run.objectives[:2]
    size, what = generation_size(run)
    n_windows = max(1, math.ceil(len(run) / size))
    fig = Figure(figsize=(max(8.5, 0.32 * n_windows + 3), 2.9 * len(objectives) + 0.6), dpi=DPI,
                 layout="constrained")
    axes = fig.subplots(len(objectives), 1, sharex=True, squeeze=False)[:, 0]
    rng = np.random.default_rng(0)  # jitter only
    for ax, obj in zip(axes, objectives):
        v = run.values(obj)
        groups = [v[k * size:(k + 1) * size] for k in range(n_windows)]
        finite = [g[np.isfinite(g)] for g in groups]
        positions = np.arange(1, n_windows + 1)
        ax.boxplot([g if len(g) else [np.nan] for g in finite], positions=positions, widths=0.6,
                   showfliers=False, patch_artist=True, medianprops=dict(color="black", lw=1.5),
                   boxprops=dict(facecolor="#c6dbef", edgecolor="#4a6fa5"),
                   whiskerprops=dict(color="#4a6fa5"), capprops=dict(color="#4a6fa5"))
        for p, g in zip(positions, finite):
            ax.scatter(p + rng.uniform(-0.22, 0.22, len(g)), g, s=6, color=POINTS, alpha=0.35, lw=0, zorder=3)
        best, _ = best_so_far(v, obj.goal)
        ends = [best[min((k + 1) * size, len(run)) - 1] for k in range(n_windows)]
        ax.plot(positions, ends, color=BEST, lw=1.5, marker="o", ms=3, label="best so far", zorder=4)
        failed = [int((~np.isfinite(g)).sum()) for g in groups]
        if any(failed):
            ax.annotate(f"{sum(failed)} failed evaluation(s) not shown", xy=(0.01, 0.98),
                        xycoords="axes fraction", va="top", fontsize=8, color="#666666")
        _focus(ax, v, obj.goal, best)
        ax.set_ylabel(obj.metric)
        ax.set_title(_label(obj), fontsize=10, loc="left")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(loc="lower right" if obj.goal == "max" else "upper right", fontsize=8)
    step = max(1, n_windows // 15)
    axes[-1].set_xticks(positions[::step], [str(p) for p in positions[::step]])
    axes[-1].set_xlabel(what)
    fig.suptitle("Fitness distribution per generation", fontsize=12)
    return fig


def pareto_figure(run: RunData) -> Figure:
    """All evaluations on the first two objectives, the non-dominated front highlighted."""
    a, b = run.objectives[:2]
    va, vb = run.values(a), run.values(b)
    front = pareto_indices(run)
    fig = Figure(figsize=(8.5, 5.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    step = np.arange(1, len(run) + 1)
    sc = ax.scatter(vb, va, c=step, cmap="viridis", s=14, alpha=0.6, lw=0, label="each evaluation")
    fig.colorbar(sc, ax=ax, label="evaluation", pad=0.01)
    fb, fa = vb[front], va[front]
    order = np.argsort(fb)
    ax.step(fb[order], fa[order], where="post" if (a.goal == "max") == (b.goal == "min") else "pre",
            color=BEST, lw=1.5, alpha=0.8)
    ax.scatter(fb, fa, s=48, facecolor="none", edgecolor=BEST, lw=1.6, zorder=5,
               label=f"Pareto front ({len(front)} architectures)")
    ax.set_xlabel(_label(b))
    ax.set_ylabel(_label(a))
    if b.goal == "min" and np.nanmin(vb) > 0 and np.nanmax(vb) / np.nanmin(vb) > 30:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if (a.goal == "max" and b.goal == "max") else
              "lower right" if a.goal == "max" else "upper left", fontsize=9)
    extra = f" (first two of {len(run.objectives)} objectives)" if len(run.objectives) > 2 else ""
    better = ("up" if a.goal == "max" else "down") + " and " + ("right" if b.goal == "max" else "left")
    ax.set_title(f"Pareto front{extra}: better is {better}", fontsize=11, loc="left")
    return fig


def fitness_vs_report_figure(run: RunData) -> Figure | None:
    """The search signal against the first report metric, with rank correlation: how well the metric
    searched on predicts the one reported."""
    if not run.report_metrics:
        return None
    obj, metric = run.objectives[0], run.report_metrics[0]
    x, y = run.values(obj), run.metrics[metric].copy()
    y[~run.ok] = np.nan
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return None
    from scipy.stats import kendalltau, spearmanr

    rho = spearmanr(x[keep], y[keep]).statistic
    tau = kendalltau(x[keep], y[keep]).statistic
    fig = Figure(figsize=(7.0, 5.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(x[keep], y[keep], s=12, alpha=0.45, lw=0, color=POINTS, label="each evaluation")
    best = run.summary.get("best") or {}
    if best.get("step") is not None:
        i = int(np.searchsorted(run.steps, best["step"]))
        if i < len(run) and run.steps[i] == best["step"] and keep[i]:
            ax.scatter([x[i]], [y[i]], s=90, marker="*", color=BEST, zorder=5, label="best (the pick)")
    xk, yk = x[keep], y[keep]
    hidden = 0
    if keep.sum() >= 20:  # zoom on where the good architectures are; say how many points fall outside
        xlo, xhi = np.quantile(xk, 0.05, method="lower"), np.quantile(xk, 0.95, method="higher")
        ylo, yhi = np.quantile(yk, 0.05, method="lower"), np.quantile(yk, 0.95, method="higher")
        xlo, xhi = (xlo, xk.max()) if obj.goal == "max" else (xk.min(), xhi)
        ylo, yhi = ylo, yk.max()
        px, py = 0.05 * (xhi - xlo or 1.0), 0.05 * (yhi - ylo or 1.0)
        ax.set_xlim(xlo - px, xhi + px)
        ax.set_ylim(ylo - py, yhi + py)
        hidden = int(((xk < xlo - px) | (xk > xhi + px) | (yk < ylo - py) | (yk > yhi + py)).sum())
    note = f"Spearman {rho:.2f}, Kendall tau {tau:.2f} over all {int(keep.sum())} evaluations"
    if hidden:
        note += f"\n{hidden} of them outside the axes (the worst)"
    ax.text(0.02, 0.98, note, transform=ax.transAxes, va="top", fontsize=9,
            bbox=dict(boxstyle="round", fc="white", ec="#cccccc"))
    ax.set_xlabel(f"{obj.metric} (searched on)")
    ax.set_ylabel(f"{metric} (reported)")
    ax.set_title("Search signal against the reported metric", fontsize=11, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return fig


# --- bench ---------------------------------------------------------------------------------------------
def _algo_colour(k: int) -> str:
    return ALGO_COLOURS[k % len(ALGO_COLOURS)]


def bench_anytime_figure(bench: BenchData) -> Figure:
    """Median best-by-fitness report value against queries, interquartile band over seeds."""
    fig = Figure(figsize=(8.5, 5.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    lows = []
    for k, (algo, mat) in enumerate(bench.curves.items()):
        q = np.arange(1, mat.shape[1] + 1)
        med = np.nanmedian(mat, axis=0)
        lo, hi = np.nanpercentile(mat, 25, axis=0), np.nanpercentile(mat, 75, axis=0)
        c = _algo_colour(k)
        ax.fill_between(q, lo, hi, color=c, alpha=0.2, lw=0, step="post")
        ax.step(q, med, where="post", color=c, lw=2, label=f"{algo} (median of {mat.shape[0]} seeds, IQR band)")
        lows.append(np.nanpercentile(mat[:, min(9, mat.shape[1] - 1)], 25))
    if bench.optimum is not None:
        ax.axhline(bench.optimum, color="black", ls="--", lw=1, label=f"table optimum {bench.optimum:.4g}")
    _same_start_note(ax, bench)
    ax.set_xscale("log")
    ax.set_xlabel("queries (evaluations), log scale")
    ax.set_ylabel(bench.report)
    if bench.goal == "max" and lows:
        top = bench.optimum if bench.optimum is not None else max(np.nanmax(m) for m in bench.curves.values())
        low = min(lows)
        ax.set_ylim(low - 0.05 * (top - low), top + 0.08 * (top - low))
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right" if bench.goal == "max" else "upper right", fontsize=9)
    ax.set_title(f"{bench.report} of the best-by-{bench.summary.get('fitness', 'fitness')} pick so far",
                 fontsize=11, loc="left")
    return fig


def _same_start_note(ax, bench: BenchData) -> None:
    """A legend line when all algorithms made the same first queries (e.g. REA's initial population is a
    random sample with the same seed), where their curves coincide and only the top one shows."""
    mats = list(bench.curves.values())
    if len(mats) < 2:
        return
    n = min(m.shape[1] for m in mats)
    same = 0
    while same < n and all(m.shape[0] == mats[0].shape[0] and np.array_equal(m[:, same], mats[0][:, same],
                                                                              equal_nan=True) for m in mats[1:]):
        same += 1
    if same:
        ax.plot([], [], " ", label=f"(identical for the first {same} queries: same initial samples)")


def bench_regret_figure(bench: BenchData) -> Figure | None:
    """Gap to the table's optimum (log scale), median and IQR over seeds: shows late differences that the
    anytime plot flattens."""
    if bench.optimum is None:
        return None
    fig = Figure(figsize=(8.5, 5.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    floor = None
    for k, (algo, mat) in enumerate(bench.curves.items()):
        gap = (bench.optimum - mat) if bench.goal == "max" else (mat - bench.optimum)
        gap = np.maximum(gap, 0.0)
        positive = gap[gap > 0]
        f = positive.min() / 2 if len(positive) else 1e-3
        floor = f if floor is None else min(floor, f)
    for k, (algo, mat) in enumerate(bench.curves.items()):
        gap = np.maximum((bench.optimum - mat) if bench.goal == "max" else (mat - bench.optimum), 0.0)
        gap = np.where(gap > 0, gap, floor)  # optimum found: drawn on the floor line
        q = np.arange(1, mat.shape[1] + 1)
        c = _algo_colour(k)
        ax.fill_between(q, np.nanpercentile(gap, 25, axis=0), np.nanpercentile(gap, 75, axis=0), color=c,
                        alpha=0.2, lw=0, step="post")
        ax.step(q, np.nanmedian(gap, axis=0), where="post", color=c, lw=2, label=algo)
        hit = (mat == bench.optimum).any(axis=1).sum()
        ax.plot([], [], " ", label=f"  {hit}/{mat.shape[0]} seeds reached the optimum")
    _same_start_note(ax, bench)
    ax.axhline(floor, color="#888888", lw=0.8, ls=":")
    ax.annotate("optimum reached", xy=(0.01, floor), xycoords=("axes fraction", "data"), va="bottom",
                fontsize=8, color="#666666")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("queries (evaluations), log scale")
    ax.set_ylabel(f"{bench.report}: gap to the table optimum")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=9)
    ax.set_title(f"Regret: optimum {bench.optimum:.4g} minus the pick's {bench.report} (median, IQR band)",
                 fontsize=10, loc="left")
    return fig


def bench_queries_figure(bench: BenchData) -> Figure:
    """Box plot of the queries until a target (top-0.1%) architecture was first evaluated; seeds that
    never reached one are drawn above the budget line and count in the box as 'more than the budget'."""
    algos = list(bench.queries_to_target)
    budget = max(m.shape[1] for m in bench.curves.values())
    censored_at = budget * 1.12
    fig = Figure(figsize=(max(5.5, 1.8 * len(algos) + 2.5), 5.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    data = []
    for algo in algos:
        q = bench.queries_to_target[algo]
        data.append(np.where(np.isfinite(q), q, censored_at))
    ax.boxplot(data, positions=range(1, len(algos) + 1), widths=0.55, showfliers=False, patch_artist=True,
               medianprops=dict(color="black", lw=2), boxprops=dict(facecolor="#fde0c5", edgecolor="#b36b00"),
               whiskerprops=dict(color="#b36b00"), capprops=dict(color="#b36b00"))
    none_labelled = False
    for k, (algo, d) in enumerate(zip(algos, data), start=1):
        q = bench.queries_to_target[algo]
        found = np.isfinite(q)
        jitter = rng.uniform(-0.15, 0.15, len(d))
        ax.scatter(k + jitter[found], d[found], s=22, color=_algo_colour(k - 1), alpha=0.8, zorder=4,
                   label="seed that found one" if k == 1 else None)
        ax.scatter(k + jitter[~found], d[~found], s=30, marker="x", color="#555555", zorder=4,
                   label=None if none_labelled or found.all() else "seed that found none")
        none_labelled = none_labelled or not found.all()
    ax.axhline(budget, color="black", ls="--", lw=1)
    ax.axhspan(budget, censored_at * 1.08, color="#888888", alpha=0.1, lw=0)
    ax.annotate("not found within the budget", xy=(0.01, censored_at * 1.04), xycoords=("axes fraction", "data"),
                va="center", fontsize=8, color="#555555")
    ax.annotate(f"budget {budget}", xy=(0.99, budget), xycoords=("axes fraction", "data"), ha="right",
                va="bottom", fontsize=8)
    labels = []
    for algo in algos:
        q = bench.queries_to_target[algo]
        med = np.median(np.where(np.isfinite(q), q, np.inf))
        labels.append(f"{algo}\n{int(np.isfinite(q).sum())}/{len(q)} found\nmedian "
                      + (f"{med:.0f}" if math.isfinite(med) else f"> {budget}"))
    ax.set_xticks(range(1, len(algos) + 1), labels)
    ax.set_ylim(0, censored_at * 1.08)
    ax.set_ylabel("queries until the first target architecture")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="center right", fontsize=8)
    ax.set_title(f"Queries to a {bench.target} architecture of {bench.report}", fontsize=11, loc="left")
    return fig


def bench_hit_rate_figure(bench: BenchData) -> Figure:
    """Fraction of seeds that have evaluated a target architecture after q queries."""
    fig = Figure(figsize=(8.5, 4.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for k, (algo, q) in enumerate(bench.queries_to_target.items()):
        budget = bench.curves[algo].shape[1]
        grid = np.arange(1, budget + 1)
        frac = (q[:, None] <= grid[None, :]).mean(axis=0)
        ax.step(grid, frac, where="post", color=_algo_colour(k), lw=2,
                label=f"{algo}: {frac[-1]:.0%} after {budget}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("queries (evaluations)")
    ax.set_ylabel("fraction of seeds")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title(f"Seeds that have found a {bench.target} architecture", fontsize=11, loc="left")
    return fig


def bench_final_figure(bench: BenchData) -> Figure:
    """The pick's report value at the end of the budget, one point per seed."""
    algos = list(bench.curves)
    fig = Figure(figsize=(max(5.5, 1.8 * len(algos) + 2.5), 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(1)
    finals = [m[:, -1][np.isfinite(m[:, -1])] for m in bench.curves.values()]
    ax.boxplot([f if len(f) else [np.nan] for f in finals], positions=range(1, len(algos) + 1), widths=0.55,
               showfliers=False, patch_artist=True, medianprops=dict(color="black", lw=2),
               boxprops=dict(facecolor="#d9f0d3", edgecolor="#1b7837"), whiskerprops=dict(color="#1b7837"),
               capprops=dict(color="#1b7837"))
    for k, f in enumerate(finals, start=1):
        ax.scatter(k + rng.uniform(-0.15, 0.15, len(f)), f, s=22, color=_algo_colour(k - 1), alpha=0.8, zorder=4)
    if bench.optimum is not None:
        ax.axhline(bench.optimum, color="black", ls="--", lw=1, label=f"table optimum {bench.optimum:.4g}")
        ax.legend(loc="best", fontsize=8)
    budgets = [m.shape[1] for m in bench.curves.values()]
    ax.set_xticks(range(1, len(algos) + 1), [f"{a}\nafter {b} queries" for a, b in zip(algos, budgets)])
    ax.set_ylabel(bench.report)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"Final pick's {bench.report}, one point per seed", fontsize=11, loc="left")
    return fig
