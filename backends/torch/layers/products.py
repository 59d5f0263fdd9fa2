"""Product layers: exact in every semiring (log space adds logs; nothing is exponentiated)."""

from __future__ import annotations

from torch import Tensor

from backends.torch.layers.base import TorchLayer


class TorchHadamardLayer(TorchLayer):
    """y[k] = prod_h x_h[k]."""

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        return self.semiring.prod(x, 1)


class TorchKroneckerLayer(TorchLayer):
    """All products of one unit per input, K**H units, the first input's index slowest."""

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        mul = self.semiring.mul
        y = x[:, 0]
        for h in range(1, x.shape[1]):
            y = mul(y.unsqueeze(2), x[:, h].unsqueeze(1)).flatten(1, 2)
        return y
