"""Phenotype graph -> PyTorch network.

Parameter names encode (position, op): an edge ``i -> j`` of cell ``c`` in stage ``s`` running op ``o`` lives
under ``stages.{s}.{c}.ops.e{i}_{j}__{o}``, a DAG node ``n`` under ``stages.{s}.{c}.ops.n{n}__{o}``; stem,
reductions and head have fixed names. For given builder settings (``C``, ``N``, input channels, classes) a
name therefore has the same tensor shape in every architecture, which is what lets a single dictionary of
meta-parameters (:mod:`evonas.warmstart`) initialise any architecture of a space.

* ``kind == "cell"`` graphs (``nb201``, ``cell``): the NAS-Bench-201 macro skeleton -- stem conv, three
  stages of ``N`` cells with ``C``, ``2C``, ``4C`` channels joined by residual reduction blocks, BN-ReLU,
  global average pooling, linear head. Edge ops in :data:`evonas.graphs.NOOP_OPS` are cut, and only what
  lies on an input-to-output path is built (a node whose inputs are all cut is zero, and zeros propagate,
  as NAS-Bench-201's cell equivalence assumes); a cell whose output is cut outputs zeros.
* ``kind == "dag"`` graphs (``dag``): a NAS-Bench-101-style stack -- stem conv, three stacks of ``N`` cells,
  each downsampling step a 2x2 max-pool followed by a 1x1 conv-BN-ReLU doubling the channels. Interior
  nodes apply their op to the sum of their inputs; the output node sums its inputs. (NAS-Bench-101
  concatenates the output's inputs and splits channels between them; summing keeps every node at the
  stage's width, so a (position, op) has one shape whatever the graph.)
"""

from __future__ import annotations

import networkx as nx
import torch
from torch import nn

from evonas.graphs import NOOP_OPS
from evonas.models.ops import ConvBNReLU, ReLUConvBN, make_op


def _slug(op: str) -> str:
    return str(op).replace(".", "_")


class ResidualReduction(nn.Module):
    """NAS-Bench-201's reduction block: a stride-2 ResNet basic block with an avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True),
                                        nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class PoolReduction(nn.Sequential):
    """NAS-Bench-101-style downsampling: 2x2 max-pool, then 1x1 conv-BN-ReLU to ``c_out`` channels."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.MaxPool2d(2, stride=2, ceil_mode=True), ConvBNReLU(c_in, c_out, 1))


class GraphCell(nn.Module):
    """One cell computed from a phenotype graph at constant width ``channels``.

    ``edge_ops``: ops live on edges (cell spaces); otherwise on nodes (DAG spaces).
    """

    def __init__(self, graph: nx.DiGraph, channels: int, edge_ops: bool):
        super().__init__()
        self.ops = nn.ModuleDict()
        src, dst = graph.graph["input"], graph.graph["output"]
        order = list(nx.topological_sort(graph))
        index = {node: k for k, node in enumerate(order)}
        # only what computes: nodes on an input-to-output path once zero edges (and zero node ops) are cut
        live_graph = nx.DiGraph()
        live_graph.add_nodes_from(order)
        live_graph.add_edges_from((u, v) for u, v, op in graph.edges(data="op") if op not in NOOP_OPS
                                  and graph.nodes[v].get("op") not in NOOP_OPS)
        live = (nx.descendants(live_graph, src) | {src}) & (nx.ancestors(live_graph, dst) | {dst})
        if dst not in live or src not in live:
            live = {src}
        # plan: for each live node after the input, (node index, [(pred index, op key or None)], node op key)
        self.plan: list[tuple[int, list[tuple[int, str | None]], str | None]] = []
        for node in order:
            if node == src or node not in live:
                continue
            inputs = []
            for pred in sorted(graph.predecessors(node), key=index.get):
                op = graph.edges[pred, node].get("op") if edge_ops else None
                if op in NOOP_OPS or pred not in live:
                    continue
                key = None
                if op is not None:
                    key = f"e{pred}_{node}__{_slug(op)}"
                    self.ops[key] = make_op(op, channels)
                inputs.append((index[pred], key))
            node_key = None
            node_op = graph.nodes[node].get("op")
            if not edge_ops and node != dst and node_op not in ("input", "output", "sum", None):
                node_key = f"n{node}__{_slug(node_op)}"
                self.ops[node_key] = make_op(node_op, channels)
            self.plan.append((index[node], inputs, node_key))
        self.n_nodes = len(order)
        self.input_index = index[src]
        self.output_index = index[dst]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list[torch.Tensor | None] = [None] * self.n_nodes
        values[self.input_index] = x
        for node, inputs, node_key in self.plan:
            acc = None
            for pred, key in inputs:
                v = values[pred]
                if key is not None:
                    v = self.ops[key](v)
                acc = v if acc is None else acc + v
            if acc is not None and node_key is not None:
                acc = self.ops[node_key](acc)
            values[node] = acc
        out = values[self.output_index]
        return torch.zeros_like(x) if out is None else out


class GraphNetwork(nn.Module):
    """Stem, three stages of ``N`` :class:`GraphCell` with ``C``, ``2C``, ``4C`` channels, head."""

    def __init__(self, graph: nx.DiGraph, *, in_channels: int, num_classes: int, C: int = 16, N: int = 5,
                 stages: int = 3):
        super().__init__()
        kind = graph.graph.get("kind", "cell")
        if kind not in ("cell", "dag"):
            raise ValueError(f"graph kind {kind!r}: the builders handle 'cell' and 'dag' graphs")
        if C < 1 or N < 1 or stages < 1:
            raise ValueError(f"C={C}, N={N}, stages={stages}: all must be >= 1")
        self.kind = kind
        edge_ops = kind == "cell"
        widths = [C * 2 ** s for s in range(stages)]
        if edge_ops:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        else:
            self.stem = ConvBNReLU(in_channels, C, 3)
        reduction = ResidualReduction if edge_ops else PoolReduction
        self.reductions = nn.ModuleList(reduction(widths[s - 1], widths[s]) for s in range(1, stages))
        self.stages = nn.ModuleList(
            nn.ModuleList(GraphCell(graph, w, edge_ops) for _ in range(N)) for w in widths)
        self.lastact = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU()) if edge_ops else nn.Identity()
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for s, cells in enumerate(self.stages):
            if s > 0:
                x = self.reductions[s - 1](x)
            for cell in cells:
                x = cell(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build_model(graph: nx.DiGraph, *, in_channels: int, num_classes: int, C: int = 16, N: int = 5,
                stages: int = 3) -> GraphNetwork:
    """The network of a phenotype graph (see the module docstring for the skeletons)."""
    return GraphNetwork(graph, in_channels=in_channels, num_classes=num_classes, C=C, N=N, stages=stages)


def covering_graphs(space) -> list[nx.DiGraph]:
    """Graphs that together instantiate every (position, op) the built-in ``space`` can: for each op, the
    cell with that op on every edge (cell spaces) or the chain whose interior nodes all run it (DAGs).
    Other spaces: an empty list (the initializer then learns names as it meets them)."""
    from evonas.spaces.cell import CellSpace
    from evonas.spaces.dag import DAGSpace

    graphs = []
    if isinstance(space, CellSpace):
        for k, op in enumerate(space.ops):
            if op not in NOOP_OPS:
                graphs.append(space.to_graph([k] * len(space.edges)))
    elif isinstance(space, DAGSpace):
        n = space.max_nodes
        for op in space.ops:
            g = nx.DiGraph(input=0, output=n - 1, kind="dag")
            for node in range(n):
                g.add_node(node, op="input" if node == 0 else "output" if node == n - 1 else op)
            g.add_edges_from((i, i + 1) for i in range(n - 1))
            graphs.append(g)
    return graphs
