"""Canonical hashing: isomorphic graphs hash equal, different computations differ."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from evonas.graphs import canonical_form, canonical_hash, cell_expression, prune
from evonas.spaces import DAGSpace, NB201Space

NB = NB201Space()


def cell(text: str) -> nx.DiGraph:
    return NB.to_graph(NB.from_string(text))


def test_nb201_unique_count_is_the_benchmarks_own():
    hashes = {NB.canonical_hash(g) for g in NB.enumerate()}
    assert NB.size() == 15_625
    assert len(hashes) == 6_466


def test_function_mode_merges_zero_placements_and_counts_5390():
    space = NB201Space(hash="function")
    assert len({space.canonical_hash(g) for g in space.enumerate()}) == 5_390


def test_swapping_the_two_intermediate_nodes_keeps_the_function_hash():
    # node 1 = conv3(x), node 2 = pool(x); output = conv1(n1) + n2
    a = "|nor_conv_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    # relabelled: node 1 = pool(x), node 2 = conv3(x); output = n1 + conv1(n2), 1->2 edge kept
    b = "|avg_pool_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|skip_connect~1|nor_conv_1x1~2|"
    # ... not a relabelling (1->2 is live), so they differ in both modes
    fn = NB201Space(hash="function")
    assert NB.hash_string(a) != NB.hash_string(b) and fn.hash_string(a) != fn.hash_string(b)
    c = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|"
    d = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|skip_connect~1|nor_conv_1x1~2|"
    assert fn.hash_string(c) == fn.hash_string(d)


def test_nb201_rule_keeps_apart_a_pair_that_is_isomorphic_without_zero_edges():
    # documented quirk of NAS-Bench-201's count: the cut edge 1->2 sits on a different node's sum
    a = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|nor_conv_1x1~2|"
    assert NB.hash_string(a) != NB.hash_string(b)
    assert NB201Space(hash="function").hash_string(a) == NB201Space(hash="function").hash_string(b)


def test_dead_node_does_not_change_the_hash():
    # node 2 is never used by the output: its ops do not compute
    a = "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|nor_conv_3x3~1|none~2|"
    b = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|none~2|"
    assert NB.hash_string(a) == NB.hash_string(b)


def test_different_ops_give_different_hashes():
    a = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    b = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    assert NB.hash_string(a) != NB.hash_string(b)


def test_cells_whose_output_is_cut_all_hash_equal():
    a = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"
    b = "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|"
    assert cell_expression(cell(a)) == cell_expression(cell(b))


def test_cell_expression_is_invariant_to_node_relabelling():
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = cell(NB.to_string(NB.sample(rng)))
        perm = {0: 0, 1: 2, 2: 1, 3: 3}
        # relabelling is only a valid cell order when no edge runs 1 -> 2; cut it to compare
        g.edges[1, 2]["op"] = "none"
        h = nx.relabel_nodes(g, perm)
        h.graph.update(input=0, output=3)
        assert cell_expression(g) == cell_expression(h)


def test_canonical_form_is_invariant_under_random_relabelling_of_dags():
    space = DAGSpace()
    rng = np.random.default_rng(2)
    for _ in range(100):
        g = space.to_graph(space.sample(rng))
        interior = [n for n in g if n not in (g.graph["input"], g.graph["output"])]
        shuffled = list(rng.permutation(interior))
        mapping = {n: f"v{shuffled[i]}" for i, n in enumerate(interior)}
        h = nx.relabel_nodes(g, mapping)
        h.graph.update(g.graph)
        assert canonical_hash(g) == canonical_hash(h)


def test_canonical_form_separates_non_isomorphic_dags():
    def dag(edges, ops):
        g = nx.DiGraph(input=0, output=3)
        g.add_node(0, op="input")
        g.add_node(3, op="output")
        for n, op in ops.items():
            g.add_node(n, op=op)
        g.add_edges_from(edges)
        return g

    chain = dag([(0, 1), (1, 2), (2, 3)], {1: "conv", 2: "pool"})
    chain_swapped = dag([(0, 1), (1, 2), (2, 3)], {1: "pool", 2: "conv"})
    parallel = dag([(0, 1), (0, 2), (1, 3), (2, 3)], {1: "conv", 2: "pool"})
    forms = {canonical_form(chain), canonical_form(chain_swapped), canonical_form(parallel)}
    assert len(forms) == 3


def test_prune_drops_nodes_off_the_input_output_path():
    g = nx.DiGraph(input=0, output=3)
    g.add_nodes_from([(0, {"op": "input"}), (1, {"op": "a"}), (2, {"op": "b"}), (3, {"op": "output"})])
    g.add_edges_from([(0, 1), (1, 3), (0, 2)])  # node 2 leads nowhere
    assert set(prune(g)) == {0, 1, 3}


@pytest.mark.parametrize("text", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
])
def test_hash_is_stable_across_processes(text):
    # the digest is a pure function of the canonical form (no Python hash randomisation)
    import subprocess
    import sys

    code = f"from evonas.spaces import NB201Space; print(NB201Space().hash_string({text!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert out == NB.hash_string(text)
