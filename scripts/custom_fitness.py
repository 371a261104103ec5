"""An example user fitness: any function ``(arch, ctx, **params) -> dict`` plugs into evonas.

This one is analytic (no training), to show the plumbing: it rewards depth and 3x3 convolutions on the
input-to-output paths of a DAG and penalises width. Real searches return accuracies (see
``evonas.fitness`` for the protocol, ``genomes/dag-custom.toml`` for the config that names it).
"""

from __future__ import annotations

import networkx as nx


def graph_score(arch, ctx, conv_weight: float = 1.0) -> dict[str, float]:
    """Score a DAG phenotype: ``arch.graph`` is a networkx.DiGraph with node attribute ``op``."""
    g = arch.graph
    depth = nx.dag_longest_path_length(g)
    convs = sum(1 for _, op in g.nodes(data="op") if op == "conv3x3-bn-relu")
    width = g.out_degree(g.graph["input"])
    return {"score": depth + conv_weight * convs - 0.5 * width, "depth": float(depth), "convs": float(convs)}
