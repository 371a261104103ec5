"""Drawing an architecture's phenotype graph with networkx and matplotlib (no pyplot, any backend).

Cell graphs (``graph.graph["kind"] == "cell"``) carry their ops on edges: feature-map nodes are laid out
left to right and each edge is labelled with its op; ``none`` edges (zeros) are left out and nodes that no
longer reach the output are greyed. DAG graphs carry ops on nodes: nodes are boxes labelled with their op,
laid out in layers by longest path from the input.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import networkx as nx
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evonas.graphs import NOOP_OPS

#: colours for ops, in the order a space lists them (tab10 without grey and the red used for "best")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#393b79", "#637939", "#8c6d31", "#843c39")
IO_COLOUR = "#4d4d4d"
DEAD_COLOUR = "#c8c8c8"


def op_colours(ops: Sequence[str]) -> dict[str, str]:
    """A stable colour per op name (the space's op order; no-op ops grey)."""
    out, k = {}, 0
    for op in ops:
        if op in NOOP_OPS:
            out[op] = DEAD_COLOUR
        else:
            out[op] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


def _live_nodes(graph: nx.DiGraph, cut: set[tuple]) -> set:
    g = nx.DiGraph()
    g.add_nodes_from(graph)
    g.add_edges_from(e for e in graph.edges() if e not in cut)
    src, dst = graph.graph["input"], graph.graph["output"]
    return (nx.descendants(g, src) | {src}) & (nx.ancestors(g, dst) | {dst})


def _wrap(op: str, width: int = 9) -> str:
    """Break long op names at '-' or '_' so that they fit a node box."""
    if len(op) <= width:
        return op
    parts, line, out = op.replace("_", "_\0").replace("-", "-\0").split("\0"), "", []
    for p in parts:
        if line and len(line) + len(p) > width:
            out.append(line)
            line = ""
        line += p
    out.append(line)
    return "\n".join(s.rstrip("-") if s.endswith("-") else s for s in out)


def draw_architecture(graph: nx.DiGraph, ax: Axes, ops: Sequence[str] | None = None) -> None:
    """Draw ``graph`` (a space's :meth:`to_graph`) on ``ax``; ``ops`` fixes the colours (the space's op list)."""
    kind = graph.graph.get("kind") or ("cell" if any("op" in d for *_, d in graph.edges(data=True)) else "dag")
    if ops is None:
        attr = "op"
        found = [d.get(attr) for *_, d in graph.edges(data=True)] if kind == "cell" else \
            [d.get(attr) for _, d in graph.nodes(data=True) if d.get(attr) not in ("input", "output")]
        ops = sorted({str(o) for o in found if o is not None})
    colours = op_colours(ops)
    if kind == "cell":
        _draw_cell(graph, ax, colours)
    else:
        _draw_dag(graph, ax, colours)
    ax.set_axis_off()
    ax.margins(0.08)


def _draw_cell(graph: nx.DiGraph, ax: Axes, colours: dict[str, str]) -> None:
    src, dst = graph.graph["input"], graph.graph["output"]
    order = list(nx.topological_sort(graph))
    pos = {n: (float(i), 0.0) for i, n in enumerate(order)}
    index = {n: i for i, n in enumerate(order)}
    cut = {(u, v) for u, v, op in graph.edges(data="op") if op in NOOP_OPS}
    live = _live_nodes(graph, cut)
    labels = {n: "in" if n == src else "out" if n == dst else str(n) for n in graph}
    node_size = 900
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=node_size, edgecolors="black", linewidths=1.2,
                           node_color=[IO_COLOUR if n in (src, dst) else ("white" if n in live else "#eeeeee")
                                       for n in graph])
    for n in graph:  # white text on the dark input/output nodes
        ax.text(*pos[n], labels[n], ha="center", va="center", fontsize=11, fontweight="bold", zorder=5,
                color="white" if n in (src, dst) else "black")
    # long edges alternate above and below the row of nodes, higher the further they reach
    long_edges = sorted(((u, v) for u, v in graph.edges() if (u, v) not in cut and index[v] - index[u] > 1),
                        key=lambda e: (index[e[1]] - index[e[0]], index[e[0]]))
    side = {e: (1 if k % 2 == 0 else -1) for k, e in enumerate(long_edges)}

    def _rad(e: tuple) -> float:
        span = index[e[1]] - index[e[0]]
        return 0.0 if span == 1 else -side[e] * min(0.25 + 0.08 * span, 0.6)
    for u, v, op in graph.edges(data="op"):
        if (u, v) in cut:
            continue
        rad = _rad((u, v))
        style = f"arc3,rad={rad}"
        colour = colours.get(op, "black") if u in live and v in live else DEAD_COLOUR
        nx.draw_networkx_edges(graph, pos, edgelist=[(u, v)], ax=ax, node_size=node_size, width=2.2,
                               edge_color=colour, arrowstyle="-|>", arrowsize=16, connectionstyle=style)
        nx.draw_networkx_edge_labels(graph, pos, edge_labels={(u, v): str(op)}, ax=ax, font_size=9,
                                     font_color=colour if colour != DEAD_COLOUR else "#888888",
                                     connectionstyle=style, node_size=node_size, label_pos=0.5,
                                     bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colour, lw=0.8))
    n = len(order)
    ax.set_xlim(-0.5, n - 0.5)
    # an arc3 curve bulges by rad * span / 2 at its middle
    up = max([0.0] + [abs(_rad(e)) * (index[e[1]] - index[e[0]]) / 2 for e in long_edges if side[e] > 0])
    down = max([0.0] + [abs(_rad(e)) * (index[e[1]] - index[e[0]]) / 2 for e in long_edges if side[e] < 0])
    ax.set_ylim(-down - 0.35, up + 0.35)


def _draw_dag(graph: nx.DiGraph, ax: Axes, colours: dict[str, str]) -> None:
    src, dst = graph.graph["input"], graph.graph["output"]
    layer: dict = {}
    for n in nx.topological_sort(graph):
        preds = list(graph.predecessors(n))
        layer[n] = 1 + max((layer[p] for p in preds), default=-1)
    if dst in layer:  # the output on its own, last layer
        layer[dst] = max(layer.values()) if sum(1 for v in layer.values() if v == layer[dst]) == 1 else \
            max(layer.values()) + 1
    by_layer: dict[int, list] = {}
    for n in sorted(graph, key=lambda n: (layer[n], n)):
        by_layer.setdefault(layer[n], []).append(n)
    pos = {}
    for x, nodes in by_layer.items():
        for k, n in enumerate(nodes):
            pos[n] = (float(x) * 1.6, (len(nodes) - 1) / 2.0 - k)
    labels = {n: "input" if n == src else "output" if n == dst else _wrap(str(graph.nodes[n].get("op", "")))
              for n in graph}
    fill = [IO_COLOUR if n in (src, dst) else colours.get(str(graph.nodes[n].get("op")), "#999999")
            for n in graph]
    node_size = 3600
    for u, v in graph.edges():
        style = f"arc3,rad={_clear_rad(pos, u, v)}"
        nx.draw_networkx_edges(graph, pos, edgelist=[(u, v)], ax=ax, node_size=node_size, node_shape="s",
                               width=1.6, edge_color="#333333", arrowstyle="-|>", arrowsize=14,
                               connectionstyle=style)
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=node_size, node_shape="s", node_color=fill,
                           edgecolors="black", linewidths=1.0, alpha=0.9)
    nx.draw_networkx_labels(graph, pos, labels, ax=ax, font_size=7.5, font_color="white", font_weight="bold")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()] + [_bulge(pos, u, v) for u, v in graph.edges()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")


def _curve(p0: tuple, p2: tuple, rad: float, n: int = 25) -> list[tuple[float, float]]:
    """Points of matplotlib's ``arc3`` curve between two points (equal-aspect axes)."""
    (x0, y0), (x2, y2) = p0, p2
    cx, cy = (x0 + x2) / 2 + rad * (y2 - y0), (y0 + y2) / 2 - rad * (x2 - x0)
    return [((1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t * t * x2,
             (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t * t * y2) for t in (k / (n - 1) for k in range(n))]


def _clear_rad(pos: dict, u, v, clearance: float = 0.55) -> float:
    """The smallest arc bend (0 first) for which the edge u->v passes no other node box."""
    others = [p for n, p in pos.items() if n not in (u, v)]
    for rad in (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6):
        pts = _curve(pos[u], pos[v], rad)[2:-2]
        if all(max(abs(x - ox), abs(y - oy)) > clearance for x, y in pts for ox, oy in others):
            return rad
    return 0.6


def _bulge(pos: dict, u, v) -> float:
    """The y coordinate furthest from the nodes' row that the edge u->v reaches."""
    pts = _curve(pos[u], pos[v], _clear_rad(pos, u, v))
    return max((p[1] for p in pts), key=abs)


def architecture_figure(graph: nx.DiGraph, ops: Sequence[str] | None = None, title: str = "") -> Figure:
    """A standalone figure of one architecture."""
    kind = graph.graph.get("kind", "dag")
    n = graph.number_of_nodes()
    if kind == "cell":
        size = (max(6.0, 2.0 * n), max(3.2, 1.0 * n))
    else:
        layers = nx.dag_longest_path_length(graph) + 1 if n else 1
        size = (max(6.0, 2.0 * layers), max(3.5, 1.2 * max(1, n - layers + 1) + 1.5))
    fig = Figure(figsize=size, dpi=110, layout="constrained")
    ax = fig.add_subplot()
    draw_architecture(graph, ax, ops)
    if title:
        ax.set_title(textwrap.fill(title, width=int(size[0] * 12)), fontsize=9, loc="left")
    return fig
