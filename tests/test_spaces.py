"""Search spaces: strings round-trip, variation never yields an invalid graph (property-tested)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evonas.spaces import CellSpace, DAGSpace, NB201Space, make_space

SPACES = [NB201Space(), CellSpace(nodes=5, ops=["none", "skip_connect", "conv"]), DAGSpace(),
          DAGSpace(ops=["a", "b"], max_nodes=5, max_edges=6)]
IDS = ["nb201", "cell5", "dag7", "dag5"]


def graph_is_valid(space, genome) -> bool:
    g = space.to_graph(genome)
    src, dst = g.graph["input"], g.graph["output"]
    if not nx.is_directed_acyclic_graph(g):
        return False
    if isinstance(space, DAGSpace):
        return nx.has_path(g, src, dst) and g.number_of_edges() <= space.max_edges and all(
            nx.has_path(g, src, n) and nx.has_path(g, n, dst) for n in g)
    return all(d["op"] in space.ops for _, _, d in g.edges(data=True))


@pytest.mark.parametrize("space", SPACES, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 60))
def test_random_walks_of_mutation_and_crossover_stay_valid(space, seed, steps):
    rng = np.random.default_rng(seed)
    pool = [space.sample(rng) for _ in range(4)]
    for _ in range(steps):
        if rng.random() < 0.5:
            i = int(rng.integers(len(pool)))
            child = space.mutate(pool[i], rng)
            assert list(child) != list(pool[i])
            pool[i] = child
        else:
            i, j = rng.choice(len(pool), size=2, replace=False)
            pool[i], pool[j] = space.crossover(pool[i], pool[j], rng)
        for g in pool:
            assert space.is_valid(g)
            assert graph_is_valid(space, g)


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_string_round_trip_and_encoding_length(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        g = space.sample(rng)
        assert space.from_string(space.to_string(g)) == g
        vec = space.encode(g)
        assert vec.dtype == np.float32 and vec.shape == (space.encoding_size,)


@pytest.mark.parametrize("space", SPACES, ids=IDS)
def test_variation_is_pure(space):
    rng = np.random.default_rng(3)
    a, b = space.sample(rng), space.sample(rng)
    a0, b0 = list(a), list(b)
    space.mutate(a, rng)
    space.crossover(a, b, rng)
    assert list(a) == a0 and list(b) == b0


def test_nb201_strings_match_the_table(nb201_table):
    space = NB201Space()
    archs = set(nb201_table.archs)
    assert {space.to_string(g) for g in space.enumerate()} == archs


def test_nb201_graph_has_six_labelled_edges():
    space = NB201Space()
    g = space.to_graph(space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"))
    assert g.number_of_edges() == 6 and g.graph["input"] == 0 and g.graph["output"] == 3
    assert g.edges[1, 2]["op"] == "avg_pool_3x3" and g.nodes[3]["op"] == "output"


def test_restricted_op_list_samples_only_those_ops():
    space = NB201Space(ops=["skip_connect", "nor_conv_3x3"])
    rng = np.random.default_rng(0)
    text = space.to_string(space.sample(rng))
    assert "none" not in text and "avg_pool" not in text
    assert space.size() == 2 ** 6


@pytest.mark.parametrize("text, message", [
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
    ("|none~0|+|none~0|none~1|", "expected 3"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "should come from node 0"),
])
def test_bad_nb201_strings_are_rejected_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        NB201Space().from_string(text)


def test_dag_strings_and_pruning():
    space = DAGSpace()
    g = space.from_string("conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu|0>1,1>6,0>2")
    graph = space.to_graph(g)
    assert set(graph) == {0, 1, 6}  # node 2 has no path to the output
    assert graph.nodes[1]["op"] == "conv3x3-bn-relu"
    with pytest.raises(ValueError, match="no input-to-output path"):
        space.from_string("conv3x3-bn-relu,conv1x1-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu|0>1")


def test_dag_enumeration_is_guarded_and_small_spaces_enumerate():
    with pytest.raises(NotImplementedError, match="enumeration is limited"):
        next(iter(DAGSpace().enumerate()))
    small = DAGSpace(ops=["a", "b"], max_nodes=4, max_edges=4)
    genomes = list(small.enumerate())
    assert genomes and all(small.is_valid(g) for g in genomes)
    assert len({tuple(g) for g in genomes}) == len(genomes)


def test_make_space_by_name_and_by_path():
    assert make_space("nb201") == NB201Space()
    assert isinstance(make_space("evonas.spaces.dag:DAGSpace", max_nodes=5, max_edges=6), DAGSpace)
    with pytest.raises(ValueError):
        make_space("nb201", ops=["only_one"])
