"""Zero-cost proxies computed on real networks at initialisation (imports torch).

Each proxy scores an untrained network built from a phenotype graph by :func:`evonas.models.build_model`
(NAS-Bench-201 skeleton for cell spaces: ``C = 16``, ``N = 5``):

* ``synflow`` (Tanaka et al. 2020; Abdelfattah et al. 2021): with every weight replaced by its absolute
  value, in float64 and BatchNorm in inference mode, ``R = sum(f(1))`` for an all-ones input;
  score ``sum |theta * dR/dtheta|`` over convolution and linear weights.
* ``logsynflow`` (FreeREA, Cavagnero et al. 2023): the same with ``|theta * log(|dR/dtheta| + 1)|``,
  which tames the gradient's explosion with depth.
* ``naswot`` (Mellor et al. 2021): ``log |det K|`` where ``K[i, j]`` counts the ReLUs on which inputs
  ``i`` and ``j`` of a batch agree (both active or both inactive).
* ``params``: parameters, millions. ``flops``: multiply-accumulates of one forward pass, millions
  (convolutions and linear layers).

Higher is better for ``synflow``, ``logsynflow`` and ``naswot``. Every random draw comes from a
``random_state``-seeded torch ``Generator``; the global RNGs are neither seeded nor used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import nn

from evonas.models import build_model

PROXIES = ("synflow", "logsynflow", "naswot", "params", "flops")


def _init_weights(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise conv/linear weights (Kaiming-normal, fan-in) and BN (1, 0) from ``generator``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                m.reset_running_stats()
    return model


def count_params(model: nn.Module) -> float:
    """Trainable parameters, millions."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Multiply-accumulates of a forward pass on one input of ``input_shape`` (C, H, W), millions."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m: nn.Linear, inp, out) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total / 1e6


def _synflow_grads(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(|weight|, gradient) of every conv/linear weight for ``R = sum(f(ones))`` of the |weights| network."""
    import copy

    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    out = net(torch.ones(1, *input_shape, dtype=torch.float64))
    out.sum().backward()
    pairs = []
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
            pairs.append((m.weight.detach(), m.weight.grad.detach()))
    return pairs


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """SynFlow score of ``model`` (not modified)."""
    return float(sum((w * g).abs().sum() for w, g in _synflow_grads(model, input_shape)))


def logsynflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """FreeREA's LogSynflow score of ``model`` (not modified)."""
    return float(sum((w * torch.log(g.abs() + 1)).abs().sum() for w, g in _synflow_grads(model, input_shape)))


def naswot(model: nn.Module, inputs: torch.Tensor) -> float:
    """NASWOT score: log-determinant of the ReLU-agreement kernel of ``inputs`` (a batch)."""
    n = inputs.shape[0]
    K = torch.zeros(n, n, dtype=torch.float64)

    def hook(m: nn.Module, inp, out) -> None:
        code = (out.detach().reshape(n, -1) > 0).double()
        K.add_(code @ code.T + (1 - code) @ (1 - code).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        was_training = model.training
        model.train()  # as at the start of training: batch statistics
        with torch.no_grad():
            model(inputs)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(K)
    return float(logdet) if sign > 0 else -math.inf


def compute_proxies(arch: Any, space: Any = "nb201", *, proxies: Sequence[str] = PROXIES, in_channels: int = 3,
                    num_classes: int = 10, input_size: int = 32, C: int = 16, N: int = 5, batch_size: int = 64,
                    inputs: torch.Tensor | None = None, random_state: int = 0) -> dict[str, float]:
    """Zero-cost proxies of one architecture (a string, genome or phenotype graph of ``space``).

    ``inputs``: the batch NASWOT sees (default ``batch_size`` standard-normal images drawn from
    ``random_state``); the network's weights are initialised from ``random_state`` too.
    """
    unknown = [p for p in proxies if p not in PROXIES]
    if unknown:
        raise ValueError(f"proxies: unknown {unknown}; known: {', '.join(PROXIES)}")
    from evonas.predictor.model import single_thread

    with single_thread():  # small networks: intra-op threads only contend (much slower on busy CPUs)
        return _compute(arch, space, proxies, in_channels, num_classes, input_size, C, N, batch_size, inputs,
                        random_state)


def _compute(arch, space, proxies, in_channels, num_classes, input_size, C, N, batch_size, inputs,
             random_state) -> dict[str, float]:
    if isinstance(arch, nx.DiGraph):
        graph = arch
    else:
        from evonas.spaces import make_space

        space = make_space(space) if isinstance(space, str) else space
        graph = space.to_graph(space.from_string(arch) if isinstance(arch, str) else arch)
    weight_seed, input_seed = np.random.SeedSequence(int(random_state)).generate_state(2)
    gen = torch.Generator().manual_seed(int(weight_seed))
    model = _init_weights(build_model(graph, in_channels=in_channels, num_classes=num_classes, C=C, N=N), gen)
    shape = (in_channels, input_size, input_size)
    out: dict[str, float] = {}
    if "params" in proxies:
        out["params"] = count_params(model)
    if "flops" in proxies:
        out["flops"] = count_flops(model, shape)
    if "synflow" in proxies or "logsynflow" in proxies:
        grads = _synflow_grads(model, shape)
        if "synflow" in proxies:
            out["synflow"] = float(sum((w * g).abs().sum() for w, g in grads))
        if "logsynflow" in proxies:
            out["logsynflow"] = float(sum((w * torch.log(g.abs() + 1)).abs().sum() for w, g in grads))
    if "naswot" in proxies:
        if inputs is None:  # the same batch for every architecture
            inputs = torch.randn(batch_size, *shape, generator=torch.Generator().manual_seed(int(input_seed)))
        out["naswot"] = naswot(model, inputs)
    return out


def proxy_table(archs: Sequence[Any], space: Any = "nb201", **kwargs: Any) -> dict[str, np.ndarray]:
    """:func:`compute_proxies` of many architectures, one array per proxy."""
    rows = [compute_proxies(a, space, **kwargs) for a in archs]
    names = list(rows[0]) if rows else list(kwargs.get("proxies", PROXIES))
    return {n: np.array([r[n] for r in rows], dtype=np.float64) for n in names}
