"""Zero-cost proxies computed by evonas on real NAS-Bench-201 networks, checked against the table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from evonas.proxies import PROXIES, compute_proxies, count_flops, count_params, proxy_table
from evonas.spaces import NB201Space

CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
CONV1 = CONV3.replace("3x3", "1x1")
SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def test_proxies_of_known_cells(nb201_table):
    p3, p1, ps, pn = (compute_proxies(a, batch_size=16) for a in (CONV3, CONV1, SKIP, NONE))
    for p in (p3, p1, ps, pn):
        assert set(p) == set(PROXIES)
    # params: exactly NAS-Bench-201's count for cells without dead-end ops
    for arch, p in ((CONV3, p3), (CONV1, p1), (SKIP, ps)):
        assert p["params"] == pytest.approx(nb201_table.lookup(arch, ["cifar10_params_m"])["cifar10_params_m"],
                                            abs=1e-6)
    assert p3["params"] > p1["params"] > ps["params"] == pn["params"]
    assert p3["flops"] > p1["flops"] > ps["flops"] >= pn["flops"] > 0
    assert p3["synflow"] > p1["synflow"] > ps["synflow"]
    assert p3["naswot"] > pn["naswot"]
    # the cell that computes nothing: no signal reaches the classifier through the cells
    assert pn["synflow"] < 1e-3 * ps["synflow"]


def test_flops_of_a_plain_conv():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 4 * 4, 10))
    assert count_flops(net, (3, 4, 4)) == pytest.approx((8 * 16 * 27 + 10 * 128) / 1e6)
    assert count_params(net) == pytest.approx((8 * 27 + 128 * 10 + 10) / 1e6)


def test_seeded_and_graph_input():
    space = NB201Space()
    a = compute_proxies(CONV1, proxies=("synflow", "naswot"), batch_size=8, random_state=1)
    b = compute_proxies(space.to_graph(space.from_string(CONV1)), proxies=("synflow", "naswot"), batch_size=8,
                        random_state=1)
    c = compute_proxies(CONV1, proxies=("naswot",), batch_size=8, random_state=2)
    assert a == b
    assert c["naswot"] != a["naswot"]
    with pytest.raises(ValueError, match="unknown"):
        compute_proxies(CONV1, proxies=("jacov",))


def test_agree_with_the_table_on_a_few_cells(nb201_table):
    idx = np.random.default_rng(7).choice(len(nb201_table), 8, replace=False)
    archs = [nb201_table.archs[i] for i in idx]
    ours = proxy_table(archs, proxies=("synflow", "params"), num_classes=10)
    assert spearmanr(ours["synflow"], nb201_table.column("cifar10_synflow")[idx])[0] > 0.9
    assert spearmanr(ours["params"], nb201_table.column("cifar10_params_m")[idx])[0] > 0.7


@pytest.mark.slow
def test_spearman_with_the_table_on_a_sample(nb201_table):
    idx = np.random.default_rng(11).choice(len(nb201_table), 60, replace=False)
    ours = proxy_table([nb201_table.archs[i] for i in idx], num_classes=10)
    for name, col, low in (("synflow", "cifar10_synflow", 0.95), ("logsynflow", "cifar10_logsynflow", 0.9),
                           ("naswot", "cifar10_naswot", 0.8), ("params", "cifar10_params_m", 0.8)):
        theirs = nb201_table.column(col)[idx]
        m = np.isfinite(theirs) & np.isfinite(ours[name])
        assert spearmanr(ours[name][m], theirs[m])[0] > low, name
    acc = nb201_table.column("cifar10_test200")[idx]
    assert spearmanr(ours["synflow"], acc)[0] > 0.6


MIXED = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|"


@pytest.mark.parametrize("arch", [CONV3, SKIP, MIXED])
def test_flops_match_torchs_flop_counter(arch):
    """The table has no FLOPs column: torch's own counter (2 FLOPs per multiply-accumulate) is the reference."""
    from torch.utils.flop_counter import FlopCounterMode

    from evonas.models import build_model

    space = NB201Space()
    model = build_model(space.to_graph(space.from_string(arch)), in_channels=3, num_classes=10, C=8, N=2).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert count_flops(model, (3, 32, 32)) == pytest.approx(counter.get_total_flops() / 2e6, rel=1e-9)
