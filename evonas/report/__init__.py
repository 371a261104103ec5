"""``evonas report DIR``: figures (PNG) and a self-contained ``report.html`` for a run or a bench directory.

A run directory holds ``history.csv`` and ``summary.json`` (written by ``evonas run``); a bench directory
holds ``bench.csv`` and ``summary.json`` (written by ``evonas bench``). Figures go to ``DIR/figures/`` and
are also embedded in ``DIR/report.html``, which needs no network and no other file to display.

Figures use :class:`matplotlib.figure.Figure` directly (no pyplot, no global backend change). matplotlib is
imported only when a page or figure is made: ``evonas.report.data`` (reading runs) stays light.
"""

from __future__ import annotations

from evonas.report.data import ReportError, best_so_far, load_bench, load_run, space_for

_PAGES = {"Report", "write_report", "run_report", "bench_report", "bench_table"}
_GRAPH = {"architecture_figure", "draw_architecture"}


def __getattr__(name: str):
    if name in _PAGES:
        from evonas.report import pages

        return getattr(pages, name)
    if name in _GRAPH:
        from evonas.report import graph

        return getattr(graph, name)
    raise AttributeError(f"module 'evonas.report' has no attribute {name!r}")


__all__ = ["Report", "ReportError", "write_report", "run_report", "bench_report", "bench_table",
           "architecture_figure", "draw_architecture", "load_run", "load_bench", "best_so_far", "space_for"]
