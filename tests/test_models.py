"""Graph -> network builders: random graphs of every built-in space, names that encode (position, op)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from evonas.models import OPS, build_model, covering_graphs, register_op
from evonas.spaces import CellSpace, DAGSpace, NB201Space

torch.set_num_threads(1)
NAME = re.compile(r"^stages\.\d+\.\d+\.ops\.(e\d+_\d+|n\d+)__[\w\-]+\.")


def _forward_backward(model, in_channels=3, size=8, classes=10, batch=4):
    x = torch.randn(batch, in_channels, size, size)
    y = torch.randint(0, classes, (batch,))
    out = model(x)
    assert out.shape == (batch, classes)
    nn.functional.cross_entropy(out, y).backward()
    return out


@pytest.mark.parametrize("space", [NB201Space(), CellSpace(nodes=5), DAGSpace(max_nodes=6, max_edges=8)],
                         ids=["nb201", "cell5", "dag"])
def test_random_graphs_forward_and_backward(space):
    rng = np.random.default_rng(0)
    for _ in range(6):
        genome = space.sample(rng)
        graph = space.to_graph(genome)
        torch.manual_seed(0)
        model = build_model(graph, in_channels=3, num_classes=10, C=4, N=2)
        _forward_backward(model)
        for name, p in model.named_parameters():
            # everything built computes: every parameter receives a gradient
            assert p.grad is not None, (space.to_string(genome), name)
            assert p.grad.shape == p.shape
            if name.startswith("stages."):
                assert NAME.match(name), name


def test_cells_build_only_what_computes():
    space = NB201Space()
    # node 1 gets only a zero edge, so the 1->2 and 1->3 convs never see input and are not built
    graph = space.to_graph(space.from_string(
        "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"))
    model = build_model(graph, in_channels=1, num_classes=3, C=4, N=1)
    keys = set(model.stages[0][0].ops)
    assert keys == {"e0_2__nor_conv_3x3", "e0_3__skip_connect", "e2_3__avg_pool_3x3"}
    # a cell whose output is cut outputs zeros, yet the network still trains through stem and reductions
    dead = space.to_graph(space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    model = build_model(dead, in_channels=1, num_classes=3, C=4, N=1)
    assert len(model.stages[0][0].ops) == 0
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(model.stages[0][0](x), torch.zeros_like(x))
    _forward_backward(model, in_channels=1, classes=3, batch=2)


def test_names_have_one_shape_across_architectures():
    for space in (NB201Space(), DAGSpace(max_nodes=5, max_edges=6)):
        rng = np.random.default_rng(1)
        shapes: dict[str, tuple] = {}
        for _ in range(15):
            model = build_model(space.to_graph(space.sample(rng)), in_channels=1, num_classes=5, C=4, N=2)
            for name, value in model.state_dict().items():
                assert shapes.setdefault(name, tuple(value.shape)) == tuple(value.shape), name
        covering = set()
        for g in covering_graphs(space):
            covering |= set(build_model(g, in_channels=1, num_classes=5, C=4, N=2).state_dict())
        assert set(shapes) <= covering  # the covering graphs instantiate every (position, op) met


def test_skeletons():
    space = NB201Space()
    g = space.to_graph(space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"))
    model = build_model(g, in_channels=3, num_classes=10, C=16, N=5)
    assert [len(s) for s in model.stages] == [5, 5, 5]
    assert model.classifier.in_features == 64 and len(model.reductions) == 2
    x = torch.randn(2, 3, 32, 32)
    feats = model.reductions[1](model.reductions[0](model.stem(x)))
    assert feats.shape == (2, 64, 8, 8)
    # the parameter counts NAS-Bench-201 lists for CIFAR-10 (C=16, N=5), to the parameter
    assert sum(p.numel() for p in model.parameters()) == 1_531_546
    other = build_model(space.to_graph(space.from_string(
        "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|")),
        in_channels=3, num_classes=100, C=16, N=5)
    assert sum(p.numel() for p in other.parameters()) == 350_196  # its CIFAR-100 count
    dag = DAGSpace()
    dmodel = build_model(dag.to_graph(dag.sample(np.random.default_rng(3))), in_channels=3, num_classes=10,
                         C=8, N=3)
    assert [len(s) for s in dmodel.stages] == [3, 3, 3] and dmodel.classifier.in_features == 32
    _forward_backward(dmodel, size=32)


def test_register_op_extends_the_builders():
    name = "test_sep_conv_5x5"
    if name not in OPS:
        @register_op(name)
        def sep5(c):
            return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 5, padding=2, groups=c, bias=False), nn.BatchNorm2d(c))
    with pytest.raises(ValueError, match="already registered"):
        register_op(name, lambda c: nn.Identity())
    space = CellSpace(ops=["none", "skip_connect", name], nodes=3)
    graph = space.to_graph(space.from_string(f"|{name}~0|+|skip_connect~0|{name}~1|"))
    model = build_model(graph, in_channels=1, num_classes=2, C=4, N=1)
    assert any(f"__{name}." in k for k in model.state_dict())
    _forward_backward(model, in_channels=1, classes=2, batch=2)
    bad = CellSpace(ops=["none", "no_such_op"], nodes=2)
    with pytest.raises(KeyError, match="unknown op 'no_such_op'"):
        build_model(bad.to_graph([1]), in_channels=1, num_classes=2, C=4, N=1)


def test_ops_modules_from_a_file_load_once_and_fail_clearly(tmp_path):
    from evonas.training import import_ops_modules

    (tmp_path / "my_ops.py").write_text(
        "import torch.nn as nn\nfrom evonas.models import register_op\n"
        "register_op('test_file_identity', lambda c: nn.Identity())\n")
    import_ops_modules(["my_ops.py"], base_dir=tmp_path)
    assert "test_file_identity" in OPS
    import_ops_modules(["my_ops.py"], base_dir=tmp_path)  # a second import would raise "already registered"
    with pytest.raises(ValueError, match=r"^ops module 'gone.py': file .*gone.py not found$"):
        import_ops_modules(["gone.py"], base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^ops module 'no_such_pkg_xyz': cannot import 'no_such_pkg_xyz'"):
        import_ops_modules(["no_such_pkg_xyz"])
