"""NAS-Bench-201-style cell space: a complete DAG over ``nodes`` feature maps, one op on each edge.

The genome lists the op index of each edge ``(i, j)``, ``i < j``, ordered by ``j`` then ``i``; for the
default 4 nodes that is the 6 edges of NAS-Bench-201 in the order of its ``arch`` strings
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import networkx as nx
import numpy as np

from evonas.genome import Genome, make_genome
from evonas.graphs import cell_expression, digest
from evonas.spaces.base import SearchSpace, register_space

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


# --- variation operators: small pure functions, registered on a DEAP toolbox by the strategies ----------
def mutate_one_edge(genome: Genome, rng: np.random.Generator, n_ops: int) -> Genome:
    """Change the op of one random edge to a different op."""
    child = make_genome(genome)
    edge = int(rng.integers(len(child)))
    child[edge] = (child[edge] + 1 + int(rng.integers(n_ops - 1))) % n_ops
    return child


def uniform_crossover(a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
    """Each edge's op comes from either parent with probability 1/2 (always a valid cell)."""
    swap = rng.random(len(a)) < 0.5
    c1 = make_genome(y if s else x for x, y, s in zip(a, b, swap))
    c2 = make_genome(x if s else y for x, y, s in zip(a, b, swap))
    return c1, c2


@register_space
class CellSpace(SearchSpace):
    """Cell with ``nodes`` feature maps (node 0 input, last node output) and one op per edge."""

    name = "cell"

    #: ``"nb201"``: NAS-Bench-201's equivalence (zero inputs counted); ``"function"``: zero inputs dropped
    HASH_MODES = ("nb201", "function")

    def __init__(self, ops: Sequence[str] = NB201_OPS, nodes: int = 4, hash: str = "nb201"):
        ops = tuple(str(o) for o in ops)
        if len(ops) < 2:
            raise ValueError(f"ops: need at least 2 operations, got {list(ops)}")
        if len(set(ops)) != len(ops):
            raise ValueError(f"ops: duplicate operation in {list(ops)}")
        bad = [o for o in ops if not o or any(c in o for c in "|+~")]
        if bad:
            raise ValueError(f"ops: names may not be empty or contain '|', '+' or '~': {bad}")
        if not 2 <= int(nodes) <= 8:
            raise ValueError(f"nodes: must be between 2 and 8, got {nodes}")
        if hash not in self.HASH_MODES:
            raise ValueError(f"hash: must be one of {list(self.HASH_MODES)}, got {hash!r}")
        self.ops = ops
        self.nodes = int(nodes)
        self.hash_mode = hash
        self.edges = [(i, j) for j in range(1, self.nodes) for i in range(j)]
        self._op_index = {o: k for k, o in enumerate(ops)}

    def describe(self) -> dict:
        return {"name": self.name, "ops": list(self.ops), "nodes": self.nodes, "hash": self.hash_mode}

    def sample(self, rng: np.random.Generator) -> Genome:
        return make_genome(rng.integers(len(self.ops), size=len(self.edges)))

    def mutate(self, genome: Genome, rng: np.random.Generator) -> Genome:
        return mutate_one_edge(genome, rng, len(self.ops))

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> tuple[Genome, Genome]:
        return uniform_crossover(a, b, rng)

    def is_valid(self, genome: Genome) -> bool:
        return len(genome) == len(self.edges) and all(0 <= int(g) < len(self.ops) for g in genome)

    def to_string(self, genome: Genome) -> str:
        parts, k = [], 0
        for j in range(1, self.nodes):
            parts.append("|" + "|".join(f"{self.ops[genome[k + i]]}~{i}" for i in range(j)) + "|")
            k += j
        return "+".join(parts)

    def from_string(self, text: str) -> Genome:
        nodes = text.strip().split("+")
        if len(nodes) != self.nodes - 1:
            raise ValueError(f"arch {text!r}: expected {self.nodes - 1} '+'-separated nodes, got {len(nodes)}")
        genes = []
        for j, node in enumerate(nodes, start=1):
            inputs = [p for p in node.strip("|").split("|")]
            if len(inputs) != j:
                raise ValueError(f"arch {text!r}: node {j} needs {j} inputs, got {len(inputs)}")
            for i, item in enumerate(inputs):
                op, _, src = item.partition("~")
                if src != str(i):
                    raise ValueError(f"arch {text!r}: node {j} input {item!r} should come from node {i}")
                if op not in self._op_index:
                    raise ValueError(f"arch {text!r}: unknown op {op!r} (space ops: {list(self.ops)})")
                genes.append(self._op_index[op])
        return make_genome(genes)

    def to_graph(self, genome: Genome) -> nx.DiGraph:
        g = nx.DiGraph(input=0, output=self.nodes - 1, kind="cell")
        for n in range(self.nodes):
            g.add_node(n, op="input" if n == 0 else "output" if n == self.nodes - 1 else "sum")
        for (i, j), gene in zip(self.edges, genome):
            g.add_edge(i, j, op=self.ops[gene])
        return g

    def hash_graph(self, graph: nx.DiGraph) -> str:
        """Equal output expressions (see :func:`evonas.graphs.cell_expression`); ``hash = "nb201"`` keeps
        NAS-Bench-201's zero placeholders, ``"function"`` drops them."""
        return digest(cell_expression(graph, keep_zeros=self.hash_mode == "nb201"))

    def encode(self, genome: Genome) -> np.ndarray:
        out = np.zeros((len(self.edges), len(self.ops)), dtype=np.float32)
        out[np.arange(len(self.edges)), list(genome)] = 1.0
        return out.ravel()

    def enumerate(self) -> Iterator[Genome]:
        for genes in itertools.product(range(len(self.ops)), repeat=len(self.edges)):
            yield make_genome(genes)

    def size(self) -> int:
        return len(self.ops) ** len(self.edges)


@register_space
class NB201Space(CellSpace):
    """The NAS-Bench-201 cell: 4 nodes, 6 edges, 5 ops by default (15,625 cells, 6,466 unique)."""

    name = "nb201"

    def __init__(self, ops: Sequence[str] = NB201_OPS, hash: str = "nb201"):
        unknown = [o for o in ops if o not in NB201_OPS]
        if unknown:
            raise ValueError(f"ops: unknown op {unknown[0]!r} (NAS-Bench-201 ops: {', '.join(NB201_OPS)}; "
                             "use space 'cell' for your own ops)")
        super().__init__(ops=ops, nodes=4, hash=hash)

    def describe(self) -> dict:
        return {"name": self.name, "ops": list(self.ops), "hash": self.hash_mode}
