"""Sum layers, plain and fused with the product before them.

Each is `unscale(contract(weights, scale(x)))` (see `semirings`): in log space the inputs are
shifted by their maximum over units and exponentiated once, contracted with the (linear)
weights by one batched matmul over folds, and logged once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backends.torch.layers.base import TorchLayer


class TorchDenseLayer(TorchLayer):
    """y = W x, W (F, out, in)."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]),)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        e, shift = self.semiring.scale(x[:, 0], 1)  # (F, I, B), (F, 1, B)
        return self.semiring.unscale(torch.bmm(prepared[0], e), shift)


class TorchMixingLayer(TorchLayer):
    """y[k] = sum_h W[k, h] x_h[k], W (F, K, H): a log-sum-exp over the arity axis."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]).transpose(1, 2).unsqueeze(-1),)  # (F, H, K, 1)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        e, shift = self.semiring.scale(x, 1)  # (F, H, K, B), (F, 1, K, B)
        y = (e * prepared[0]).sum(1)
        return self.semiring.unscale(y, None if shift is None else shift.squeeze(1))


def outer(e: Tensor) -> Tensor:
    """(F, H, K, B) -> (F, K**H, B): all products of one unit per input, first input slowest."""
    y = e[:, 0]
    for h in range(1, e.shape[1]):
        y = (y.unsqueeze(2) * e[:, h].unsqueeze(1)).flatten(1, 2)
    return y


class TorchTuckerLayer(TorchLayer):
    """A Kronecker product then a dense sum: y = W (x_1 (x) ... (x) x_H), W (F, out, in**H).

    In log space each input is shifted by its own maximum, so the outer product of the
    exponentials never overflows and its largest entry is 1; the shifts add back at the end.
    """

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]),)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        e, shift = self.semiring.scale(x, 2)  # (F, H, K, B), (F, H, 1, B)
        y = torch.bmm(prepared[0], outer(e))
        return self.semiring.unscale(y, None if shift is None else shift.sum(1))


class TorchCPTLayer(TorchLayer):
    """A Hadamard product then a dense sum: y = W (x_1 * ... * x_H), W (F, out, in)."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]),)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        e, shift = self.semiring.scale(self.semiring.prod(x, 1), 1)
        return self.semiring.unscale(torch.bmm(prepared[0], e), shift)


class TorchCPLayer(TorchLayer):
    """A dense sum per input then a Hadamard product: y = prod_h W_h x_h, W (F, H, out, in)."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        w = self.semiring.weights(params[0])
        return (w.flatten(0, 1),)  # (F * H, out, in)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        f, h, _, b = x.shape
        e, shift = self.semiring.scale(x.flatten(0, 1), 1)  # (F * H, in, B)
        y = self.semiring.unscale(torch.bmm(prepared[0], e), shift)
        return self.semiring.prod(y.view(f, h, -1, b), 1)
