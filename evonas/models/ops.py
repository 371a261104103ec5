"""The operation registry: op name -> factory ``(channels) -> nn.Module`` mapping ``(B, C, H, W)`` to the same
shape.

Every built-in space's ops are here (NAS-Bench-201's edge ops, NAS-Bench-101's node ops) with a few extras.
Users add their own with :func:`register_op`::

    from evonas.models import register_op

    @register_op("sep_conv_5x5")
    def sep5(C):
        return nn.Sequential(nn.ReLU(), nn.Conv2d(C, C, 5, padding=2, groups=C, bias=False),
                             nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C))

A module that registers ops can be named in a genome config (``[training] ops_modules``) so that
evaluation workers import it too. Ops in :data:`evonas.graphs.NOOP_OPS` output zeros and are never built:
the builders cut those edges (NAS-Bench-201's ``none``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from evonas.graphs import NOOP_OPS

OpFactory = Callable[[int], nn.Module]

#: op name -> factory(channels) -> module keeping shape ``(B, C, H, W)``
OPS: dict[str, OpFactory] = {}


def register_op(name: str, factory: OpFactory | None = None, *, replace: bool = False):
    """Register ``factory`` under ``name`` (usable as a decorator). Re-registering needs ``replace=True``."""

    def add(fn: OpFactory) -> OpFactory:
        if not name or "." in name:
            raise ValueError(f"op name {name!r}: must be non-empty and contain no '.'")
        if name in OPS and OPS[name] is not fn and not replace:
            raise ValueError(f"op {name!r} is already registered (pass replace=True to override)")
        OPS[name] = fn
        return fn

    return add(factory) if factory is not None else add


def make_op(name: str, channels: int) -> nn.Module:
    """Instantiate op ``name`` for ``channels`` channels; ``KeyError`` naming the known ops if unknown."""
    try:
        factory = OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; registered ops: {', '.join(sorted(OPS))} "
                       "(add one with evonas.models.register_op)") from None
    return factory(int(channels))


class ReLUConvBN(nn.Sequential):
    """NAS-Bench-201's ReLU -> Conv -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        pad = dilation * (kernel - 1) // 2
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, dilation=dilation,
                                   groups=groups, bias=False),
                         nn.BatchNorm2d(c_out))


class ConvBNReLU(nn.Sequential):
    """NAS-Bench-101's Conv -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=False))


class SepConv(nn.Sequential):
    """DARTS' separable convolution (depthwise then pointwise), applied twice."""

    def __init__(self, c: int, kernel: int):
        pad = (kernel - 1) // 2
        super().__init__(nn.ReLU(), nn.Conv2d(c, c, kernel, padding=pad, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
                         nn.ReLU(), nn.Conv2d(c, c, kernel, padding=pad, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


def _identity(c: int) -> nn.Module:
    return nn.Identity()


for _name in ("skip_connect", "identity"):
    register_op(_name, _identity)
register_op("nor_conv_1x1", lambda c: ReLUConvBN(c, c, 1))
register_op("nor_conv_3x3", lambda c: ReLUConvBN(c, c, 3))
register_op("avg_pool_3x3", lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False))
register_op("max_pool_3x3", lambda c: nn.MaxPool2d(3, stride=1, padding=1))
register_op("conv3x3-bn-relu", lambda c: ConvBNReLU(c, c, 3))
register_op("conv1x1-bn-relu", lambda c: ConvBNReLU(c, c, 1))
register_op("maxpool3x3", lambda c: nn.MaxPool2d(3, stride=1, padding=1))
register_op("sep_conv_3x3", lambda c: SepConv(c, 3))
register_op("dil_conv_3x3", lambda c: ReLUConvBN(c, c, 3, dilation=2))

__all__ = ["OPS", "NOOP_OPS", "register_op", "make_op", "ReLUConvBN", "ConvBNReLU", "SepConv"]
