"""NAS-Bench-101-style DAG space: up to ``max_nodes`` nodes (input, output and labelled interior nodes)
joined by at most ``max_edges`` forward edges, with an input-to-output path.

The genome is ``[op of node 1, ..., op of node N-2] + [upper-triangle adjacency bits, row by row]``.
The phenotype drops dead nodes (those on no input-to-output path).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import networkx as nx
import numpy as np

from evonas.genome import Genome, make_genome
from evonas.spaces.base import SearchSpace, register_space

NB101_OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
#: spaces with more raw encodings than this are not enumerated
MAX_ENUMERATION = 2_000_000


def _split(genome: Genome, n_interior: int) -> tuple[list[int], list[int]]:
    return list(genome[:n_interior]), list(genome[n_interior:])


# --- variation operators: small pure functions, registered on a DEAP toolbox by the strategies ----------
def mutate_op_or_edge(genome: Genome, rng: np.random.Generator, n_ops: int, n_interior: int) -> Genome:
    """Change one interior node's op, or flip one edge bit (the caller checks validity)."""
    child = make_genome(genome)
    if n_interior and (rng.random() < 0.5):
        node = int(rng.integers(n_interior))
        child[node] = (child[node] + 1 + int(rng.integers(n_ops - 1))) % n_ops
    else:
        bit = n_interior + int(rng.integers(len(child) - n_interior))
        child[bit] = 1 - child[bit]
    return child


def uniform_gene_crossover(a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
    """Each gene from either parent with probability 1/2 (the caller checks validity)."""
    swap = rng.random(len(a)) < 0.5
    return (make_genome(y if s else x for x, y, s in zip(a, b, swap)),
            make_genome(x if s else y for x, y, s in zip(a, b, swap)))


@register_space
class DAGSpace(SearchSpace):
    """DAG with node ops; valid when it has at most ``max_edges`` edges and an input-to-output path."""

    name = "dag"

    def __init__(self, ops: Sequence[str] = NB101_OPS, max_nodes: int = 7, max_edges: int = 9,
                 max_tries: int = 1000):
        ops = tuple(str(o) for o in ops)
        if len(ops) < 1 or len(set(ops)) != len(ops):
            raise ValueError(f"ops: need distinct operations, got {list(ops)}")
        bad = [o for o in ops if not o or any(c in o for c in ",|>") or o in ("input", "output")]
        if bad:
            raise ValueError(f"ops: names may not be empty, 'input'/'output', or contain ',', '|', '>': {bad}")
        if not 2 <= int(max_nodes) <= 12:
            raise ValueError(f"max_nodes: must be between 2 and 12, got {max_nodes}")
        n_pairs = int(max_nodes) * (int(max_nodes) - 1) // 2
        if not 1 <= int(max_edges) <= n_pairs:
            raise ValueError(f"max_edges: must be between 1 and {n_pairs} for {max_nodes} nodes, got {max_edges}")
        self.ops = ops
        self.max_nodes = int(max_nodes)
        self.max_edges = int(max_edges)
        self.max_tries = int(max_tries)
        self.n_interior = self.max_nodes - 2
        self.pairs = [(i, j) for i in range(self.max_nodes) for j in range(i + 1, self.max_nodes)]
        self._op_index = {o: k for k, o in enumerate(ops)}

    def describe(self) -> dict:
        return {"name": self.name, "ops": list(self.ops), "max_nodes": self.max_nodes,
                "max_edges": self.max_edges}

    # --- validity ---------------------------------------------------------------------------------------
    def _adjacency_graph(self, genome: Genome) -> nx.DiGraph:
        _, bits = _split(genome, self.n_interior)
        g = nx.DiGraph()
        g.add_nodes_from(range(self.max_nodes))
        g.add_edges_from(p for p, b in zip(self.pairs, bits) if b)
        return g

    def is_valid(self, genome: Genome) -> bool:
        if len(genome) != self.n_interior + len(self.pairs):
            return False
        ops, bits = _split(genome, self.n_interior)
        if any(not 0 <= o < len(self.ops) for o in ops) or any(b not in (0, 1) for b in bits):
            return False
        if sum(bits) > self.max_edges:
            return False
        return nx.has_path(self._adjacency_graph(genome), 0, self.max_nodes - 1)

    # --- sampling and variation -------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Genome:
        for _ in range(self.max_tries):
            ops = rng.integers(len(self.ops), size=self.n_interior)
            # edge density chosen so that the edge limit is usually met
            p = min(0.5, self.max_edges / len(self.pairs))
            bits = (rng.random(len(self.pairs)) < p).astype(int)
            genome = make_genome([*ops, *bits])
            if self.is_valid(genome):
                return genome
        # a direct input->output edge is always valid
        bits = [1 if pair == (0, self.max_nodes - 1) else 0 for pair in self.pairs]
        return make_genome([*rng.integers(len(self.ops), size=self.n_interior), *bits])

    def mutate(self, genome: Genome, rng: np.random.Generator) -> Genome:
        for _ in range(self.max_tries):
            child = mutate_op_or_edge(genome, rng, len(self.ops), self.n_interior)
            if self.is_valid(child):
                return child
        raise RuntimeError(f"no valid mutation of {self.to_string(genome)!r} in {self.max_tries} tries")

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
        for _ in range(self.max_tries // 10):
            c1, c2 = uniform_gene_crossover(a, b, rng)
            if self.is_valid(c1) and self.is_valid(c2):
                return c1, c2
        return make_genome(a), make_genome(b)

    # --- representations --------------------------------------------------------------------------------
    def to_string(self, genome: Genome) -> str:
        ops, bits = _split(genome, self.n_interior)
        edges = ",".join(f"{i}>{j}" for (i, j), b in zip(self.pairs, bits) if b)
        return ",".join(self.ops[o] for o in ops) + "|" + edges

    def from_string(self, text: str) -> Genome:
        ops_part, sep, edge_part = text.strip().partition("|")
        if not sep:
            raise ValueError(f"arch {text!r}: expected 'op,op,...|i>j,...'")
        names = [o for o in ops_part.split(",") if o] if ops_part else []
        if len(names) != self.n_interior:
            raise ValueError(f"arch {text!r}: expected {self.n_interior} interior ops, got {len(names)}")
        unknown = [o for o in names if o not in self._op_index]
        if unknown:
            raise ValueError(f"arch {text!r}: unknown op {unknown[0]!r} (space ops: {list(self.ops)})")
        bits = [0] * len(self.pairs)
        index = {p: k for k, p in enumerate(self.pairs)}
        for item in filter(None, edge_part.split(",")):
            try:
                i, j = (int(x) for x in item.split(">"))
                bits[index[(i, j)]] = 1
            except (ValueError, KeyError):
                raise ValueError(f"arch {text!r}: bad edge {item!r} (want i>j with i<j<{self.max_nodes})") from None
        genome = make_genome([self._op_index[o] for o in names] + bits)
        if not self.is_valid(genome):
            raise ValueError(f"arch {text!r}: more than {self.max_edges} edges or no input-to-output path")
        return genome

    def to_graph(self, genome: Genome) -> nx.DiGraph:
        ops, _ = _split(genome, self.n_interior)
        adj = self._adjacency_graph(genome)
        out_node = self.max_nodes - 1
        live = (nx.descendants(adj, 0) | {0}) & (nx.ancestors(adj, out_node) | {out_node})
        g = nx.DiGraph(input=0, output=out_node, kind="dag")
        for n in sorted(live):
            g.add_node(n, op="input" if n == 0 else "output" if n == out_node else self.ops[ops[n - 1]])
        g.add_edges_from((u, v) for u, v in adj.edges() if u in live and v in live)
        return g

    def encode(self, genome: Genome) -> np.ndarray:
        ops, bits = _split(genome, self.n_interior)
        onehot = np.zeros((self.n_interior, len(self.ops)), dtype=np.float32)
        onehot[np.arange(self.n_interior), ops] = 1.0
        return np.concatenate([onehot.ravel(), np.asarray(bits, dtype=np.float32)])

    def raw_size(self) -> int:
        """Number of encodings, valid or not."""
        return len(self.ops) ** self.n_interior * 2 ** len(self.pairs)

    def enumerate(self) -> Iterator[Genome]:
        if self.raw_size() > MAX_ENUMERATION:
            raise NotImplementedError(
                f"space 'dag' with max_nodes={self.max_nodes} has {self.raw_size():,} encodings; "
                f"enumeration is limited to {MAX_ENUMERATION:,} (use max_nodes <= 5)")
        for bits in itertools.product((0, 1), repeat=len(self.pairs)):
            if sum(bits) > self.max_edges:
                continue
            probe = make_genome([0] * self.n_interior + list(bits))
            if not self.is_valid(probe):
                continue
            for ops in itertools.product(range(len(self.ops)), repeat=self.n_interior):
                yield make_genome([*ops, *bits])
