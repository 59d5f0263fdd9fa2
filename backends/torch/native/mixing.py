"""The native mixing layer: a mixing layer (a weighted sum over the inputs, unit by unit) in
lse-sum computed by the fused C++ kernel (`mixing.cpp`), registered as the op's "native"
kernel.

Softmax-parameterized weights arrive as their logits (`softmax_params`) and are normalized
inside the kernel's loop, forward and backward. Anything the kernel does not cover (another
device or dtype, a softmax over another axis) is computed by the eager layer it extends.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch.kernels import NATIVE, register_layer
from cirkit_ir.backends.torch.layers.sums import SoftmaxWeights
from cirkit_ir.backends.torch.layers.sums import TorchMixingLayer as EagerMixingLayer
from cirkit_ir.backends.torch.native.fused import softmax_contraction
from cirkit_ir.backends.torch.native.logits import keeps_logits
from cirkit_ir.ir import ops


@register_layer(ops.MixingOp, kernel=NATIVE)
class TorchMixingLayer(EagerMixingLayer):
    """`TorchMixingLayer` through the fused kernel: lse-sum, on CPU, float32 or float64.

    It keeps libcirkit's class name (as the native Tucker layer does); `layer.kernel` and
    `circuit.code` tell the kernels apart."""

    kernel = NATIVE
    softmax_params = ("weight",)

    @classmethod
    def supports(cls, op: ops.CircuitOp, semiring_name: str) -> bool:
        """Whether the fused kernel computes `op` (else the eager kernel is chosen)."""
        return semiring_name == "lse-sum"

    @classmethod
    def preferred(cls, op: ops.CircuitOp) -> bool:
        """Where kernels='auto' picks this kernel: where it measured faster than eager.
        Measured on this machine (one thread, batch 256, float32, medians, another process
        running; eager includes the weight softmax, which the kernel does in its loop):
        forward 2.2x eager at 784 folds of 4 units, 2.9x at 49 folds, 2.9x for one fold;
        3.7x / 14x / 2.7x at 32 units. Forward + backward 2.3x / 2.3x / 2.0x at 4 units,
        3.4x / 2.5x / 1.9x at 32. Faster everywhere measured, so everywhere."""
        return True

    def prepare_softmax(self, logits: Tensor, axis: int) -> tuple:
        """Logits normalized over the inputs (the last axis) stay logits: the kernel
        normalizes them; otherwise (`keeps_logits`) the softmax is computed here."""
        if keeps_logits(logits, axis):
            return (SoftmaxWeights(logits, -1, self.semiring),)
        return super().prepare_softmax(logits, axis)

    def _fused(self, x: Tensor, w: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and w.dtype == x.dtype
            and self.semiring.name == "lse-sum"
        )

    def evaluate(self, x: Tensor, *prepared: Tensor | SoftmaxWeights) -> Tensor:
        (w,) = prepared
        logits = isinstance(w, SoftmaxWeights)
        # The kernel reads (F, K, H): the logits as they are, or the eager layer's
        # prepared (F, H, K, 1) weights transposed back.
        wk = w.logits if logits else w.squeeze(-1).transpose(1, 2)
        if not self._fused(x, wk):
            if logits:
                w = self.prepare(w.block(0, w.shape[0]))[0]
            return super().evaluate(x, w)
        b = x.shape[-1]
        if x.stride(3) != 1 or x.stride(2) != b:
            x = x.contiguous()
        wk = wk.contiguous()
        return softmax_contraction("mixing", x, wk, logits)


NativeMixingLayer = TorchMixingLayer
"""The native mixing layer under a name that says so (its class name is libcirkit's)."""
