"""Torch kernels of the PIC parameter ops: MLPs over Fourier features, evaluated at
quadrature points, every fold in one batched pass (`cirkit_ir.ir.pic_ops`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional

from cirkit_ir.backends.torch.kernels import register_parameter_node
from cirkit_ir.backends.torch.parameters import Shape, TorchParameterNode, _set_plain
from cirkit_ir.ir.pic_ops import PICInnerNetOp, PICInputNetOp


def grid_index(nip: int, num_dim: int, device: torch.device) -> Tensor:
    """(nip^num_dim, num_dim): the point indices of every grid node, the last fastest."""
    axes = torch.meshgrid(*[torch.arange(nip, device=device)] * num_dim, indexing="ij")
    return torch.stack(axes, -1).reshape(-1, num_dim)


def fourier_mlp(grid: Tensor, coeff: Tensor, layers: Sequence[Tensor]) -> Tensor:
    """The nets at `grid` (F, G, d): [cos, sin](2 pi grid B) through (weight, bias) pairs,
    tanh between them, no activation after the last: (F, G, out)."""
    projected = 2 * math.pi * torch.bmm(grid, coeff)
    x = torch.cat([projected.cos(), projected.sin()], -1)
    last = len(layers) - 2
    for i in range(0, len(layers), 2):
        weight, bias = layers[i], layers[i + 1]
        x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        if i < last:
            x = torch.tanh(x)
    return x


@register_parameter_node(PICInputNetOp)
class TorchPICInputNet(TorchParameterNode):
    """(F, K) points -> (F, K, *features) parameters of the input units."""

    def __init__(self, input_shapes: Sequence[Shape], shape: Shape, num_layers: int) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, num_layers=num_layers)

    def forward(self, points: Tensor, coeff: Tensor, *layers: Tensor) -> Tensor:
        return fourier_mlp(points.unsqueeze(-1), coeff, layers).reshape(self.shape)


@register_parameter_node(PICInnerNetOp)
class TorchPICInnerNet(TorchParameterNode):
    """(F, K) points and weights -> (F, K^(d - n), K^n) row-normalized sum weights."""

    def __init__(
        self, input_shapes: Sequence[Shape], shape: Shape, num_normalized: int, num_layers: int
    ) -> None:
        super().__init__(input_shapes, shape)
        _set_plain(self, num_normalized=num_normalized, num_layers=num_layers)

    def forward(self, points: Tensor, weights: Tensor, coeff: Tensor, *layers: Tensor) -> Tensor:
        nip, num_dim = points.shape[1], coeff.shape[1]
        index = grid_index(nip, num_dim, points.device)
        f = functional.softplus(fourier_mlp(points[:, index], coeff, layers)).squeeze(-1)
        # libcirkit's floor: a row of underflowed softplus values still normalizes.
        f = f.reshape(self.shape) + math.sqrt(torch.finfo(f.dtype).tiny)
        integrated = grid_index(nip, self.num_normalized, points.device)
        w = weights[:, integrated].prod(-1).unsqueeze(1)  # (F, 1, K^n)
        weighted = f * w
        return weighted / weighted.sum(-1, keepdim=True)
