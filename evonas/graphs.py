"""Architecture graphs: pruning what does not compute, and canonical hashing.

Conventions shared by every search space (and by the model builders):

* a phenotype is a ``networkx.DiGraph`` whose ``graph["input"]`` and ``graph["output"]`` name the input
  and output nodes;
* nodes carry an ``op`` attribute (``"input"``, ``"output"``, ``"sum"`` for a cell's summing node, or an
  operation name for a DAG node);
* edges may carry an ``op`` attribute (a cell's edge operation); an edge without one is a plain connection.

Two canonical forms are offered:

* :func:`canonical_form` -- label-isomorphism of the pruned graph (no-op edges cut, nodes off every
  input-to-output path removed); the NAS-Bench-101 notion, used for DAG spaces.
* :func:`cell_expression` -- the cell's output written as an expression with commutative sums and
  identity edges contracted, so relabelled (isomorphic) cells, dead nodes and moved identities compare
  equal. With ``keep_zeros=True`` each cut input stays as a ``#`` term: that is NAS-Bench-201's own
  ``to_unique_str(consider_zero=True)``, which yields its published 6,466 unique cells out of 15,625.
  The ``#`` count depends on where the cut edges sit, so that rule keeps apart a few pairs of cells that
  are isomorphic once zero edges are removed; ``keep_zeros=False`` merges them (5,390 classes).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable

import networkx as nx

#: edge operations that output zeros, i.e. cut the edge
NOOP_OPS: frozenset[str] = frozenset({"none", "zero", "zeroize"})
#: edge operations that pass their input through unchanged
IDENTITY_OPS: frozenset[str] = frozenset({"skip_connect", "identity"})
#: above this many orderings to try, ties are broken by refined colours alone (not guaranteed canonical)
MAX_ORDERINGS = 40_320


def to_node_labelled(graph: nx.DiGraph, noop: Iterable[str] = NOOP_OPS) -> nx.DiGraph:
    """Turn edge operations into nodes and drop edges whose op is a no-op.

    An edge ``u -> v`` with ``op`` becomes ``u -> (u, v) -> v`` where the new node carries the op, so a
    cell (ops on edges) and a DAG (ops on nodes) are hashed by one procedure.
    """
    noop = frozenset(noop)
    out = nx.DiGraph(input=graph.graph["input"], output=graph.graph["output"])
    for node, data in graph.nodes(data=True):
        out.add_node(node, op=str(data.get("op", "")))
    for u, v, data in graph.edges(data=True):
        op = data.get("op")
        if op is None:
            out.add_edge(u, v)
        elif op not in noop:
            mid = ("edge", u, v)
            out.add_node(mid, op=str(op))
            out.add_edge(u, mid)
            out.add_edge(mid, v)
    return out


def prune(graph: nx.DiGraph, noop: Iterable[str] = NOOP_OPS) -> nx.DiGraph:
    """Node-labelled graph of what computes: nodes on some input-to-output path.

    No-op edges are cut first. When the output is unreachable the cell computes nothing and the result
    holds only the input and output nodes (all such cells are equivalent).
    """
    g = to_node_labelled(graph, noop)
    src, dst = g.graph["input"], g.graph["output"]
    live = (nx.descendants(g, src) | {src}) & (nx.ancestors(g, dst) | {dst})
    if dst not in live or src not in live:
        empty = nx.DiGraph(input=src, output=dst)
        empty.add_node(src, op=g.nodes[src]["op"])
        empty.add_node(dst, op=g.nodes[dst]["op"])
        return empty
    return g.subgraph(live).copy()


def _refined_colours(g: nx.DiGraph) -> dict:
    """Colour refinement (1-WL on in- and out-neighbours) seeded with op and input/output role."""
    src, dst = g.graph["input"], g.graph["output"]
    colour = {n: (g.nodes[n]["op"], n == src, n == dst) for n in g}
    n_classes = len(set(colour.values()))
    while True:
        signature = {
            n: (
                colour[n],
                tuple(sorted(colour[p] for p in g.predecessors(n))),
                tuple(sorted(colour[s] for s in g.successors(n))),
            )
            for n in g
        }
        ranks = {sig: i for i, sig in enumerate(sorted(set(signature.values()), key=repr))}
        colour = {n: ranks[signature[n]] for n in g}
        if len(ranks) == n_classes:
            return colour
        n_classes = len(ranks)


def canonical_form(graph: nx.DiGraph, noop: Iterable[str] = NOOP_OPS, *, pruned: bool = False) -> str:
    """A string equal for two graphs exactly when their pruned forms are label-isomorphic.

    Nodes are ordered by refined colour; the orderings of nodes whose colours tie are tried exhaustively
    and the smallest encoding wins. Graphs with more than :data:`MAX_ORDERINGS` tied orderings (far beyond
    NAS-Bench cell and DAG sizes) fall back to the colour order alone.
    """
    g = graph if pruned else prune(graph, noop)
    colour = _refined_colours(g)
    classes: dict[int, list] = {}
    for node, c in colour.items():
        classes.setdefault(c, []).append(node)
    groups = [classes[c] for c in sorted(classes)]
    n_orderings = math.prod(math.factorial(len(grp)) for grp in groups)
    if n_orderings > MAX_ORDERINGS:
        choices = [[sorted(grp, key=repr)] for grp in groups]
    else:
        choices = [list(itertools.permutations(grp)) for grp in groups]
    labels = "|".join(str(g.nodes[n]["op"]) for grp in groups for n in grp)
    best = None
    for combo in itertools.product(*choices):
        order = [n for grp in combo for n in grp]
        pos = {n: i for i, n in enumerate(order)}
        edges = tuple(sorted((pos[u], pos[v]) for u, v in g.edges()))
        if best is None or edges < best:
            best = edges
    return labels + "#" + ",".join(f"{u}>{v}" for u, v in best or ())


def canonical_hash(graph: nx.DiGraph, noop: Iterable[str] = NOOP_OPS) -> str:
    """Short hex digest of :func:`canonical_form`; isomorphic architectures share it."""
    return digest(canonical_form(graph, noop))


def digest(form: str) -> str:
    """16-hex-digit SHA-256 digest of a canonical form."""
    return hashlib.sha256(form.encode()).hexdigest()[:16]


def cell_expression(graph: nx.DiGraph, noop: Iterable[str] = NOOP_OPS,
                    identity: Iterable[str] = IDENTITY_OPS, keep_zeros: bool = True) -> str:
    """Canonical expression of a cell's output (ops on edges, summing nodes).

    Each node is the sorted ``+``-join of its incoming terms: ``#`` for a zero edge or a zero input,
    the input's own expression for an identity edge, ``(input)@op`` otherwise. With ``keep_zeros=False``
    the ``#`` terms are dropped and a node with no other term is ``#``.
    """
    noop, identity = frozenset(noop), frozenset(identity)
    src, dst = graph.graph["input"], graph.graph["output"]
    expr: dict = {}
    for node in nx.topological_sort(graph):
        if node == src:
            expr[node] = "0"
            continue
        terms = []
        for pred in graph.predecessors(node):
            op = graph.edges[pred, node].get("op")
            inner = expr[pred]
            if op in noop or inner == "#":
                terms.append("#")
            elif op is None or op in identity:
                terms.append(inner)
            else:
                terms.append(f"({inner})@{op}")
        if not keep_zeros:
            terms = [t for t in terms if t != "#"]
        expr[node] = "+".join(sorted(terms)) if terms else "#"
    return expr[dst]
