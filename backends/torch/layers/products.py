"""Product layers: products of linear values, their log scales added (see `semirings`)."""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch.kernels import register_layer
from cirkit_ir.backends.torch.layers.base import TorchLayer
from cirkit_ir.backends.torch.layers.sums import _shift_sum, outer
from cirkit_ir.ir import ops


@register_layer(ops.HadamardOp)
class TorchHadamardLayer(TorchLayer):
    """y[k] = prod_h x_h[k]."""

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        s = self.semiring
        e, shift = s.split(x, 2)
        return s.finish(e.prod(1), _shift_sum(shift))


@register_layer(ops.KroneckerOp)
class TorchKroneckerLayer(TorchLayer):
    """All products of one unit per input, K**H units, the first input's index slowest.

    In the packed form every input's largest value is exactly 1, so the products' largest is
    too: the result is already normalized, and its scale is the sum of the inputs'."""

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        if not self.semiring.log_space:
            return outer(x)
        e, shift = x.split([x.shape[2] - 1, 1], 2)
        return torch.cat([outer(e), shift.sum(1)], 1)
