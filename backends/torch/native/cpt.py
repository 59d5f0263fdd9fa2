"""The native CP-T and dense layers: a CP-T layer (the inputs' Hadamard product, then a
dense sum) and a dense layer (the same with one input) in lse-sum computed by the fused C++
kernel (`cpt.cpp`), registered as the ops' "native" kernels.

Softmax-parameterized weights arrive as their logits (`softmax_params`) and are normalized
inside the kernel's loop, forward and backward. Anything the kernel does not cover (another
device or dtype, a softmax over another axis) is computed by the eager layer each extends.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch.kernels import NATIVE, register_layer
from cirkit_ir.backends.torch.layers.sums import SoftmaxWeights
from cirkit_ir.backends.torch.layers.sums import TorchCPTLayer as EagerCPTLayer
from cirkit_ir.backends.torch.layers.sums import TorchDenseLayer as EagerDenseLayer
from cirkit_ir.backends.torch.native.fused import softmax_contraction
from cirkit_ir.backends.torch.native.logits import keeps_logits
from cirkit_ir.ir import ops

SMALL_WORK = 512
"""O * K up to which the kernel contracts with plain loops (`kSmallWork` in cpt.cpp)."""


class _NativeHadamardDense:
    """What the native CP-T and dense layers share: the kernel call, the logits hand-over
    and the eager fallback (a mixin before the eager layer class)."""

    kernel = NATIVE
    softmax_params = ("weight",)

    @classmethod
    def supports(cls, op: ops.CircuitOp, semiring_name: str) -> bool:
        """Whether the fused kernel computes `op` (else the eager kernel is chosen)."""
        return semiring_name == "lse-sum"

    def prepare_softmax(self, logits: Tensor, axis: int) -> tuple:
        """Logits normalized over the input units (the last axis) stay logits: the kernel
        normalizes them; otherwise (`keeps_logits`) the softmax is computed here."""
        if keeps_logits(logits, axis):
            return (SoftmaxWeights(logits, -1, self.semiring),)
        return super().prepare_softmax(logits, axis)  # type: ignore[misc]

    def evaluate(self, x: Tensor, *prepared: Tensor | SoftmaxWeights) -> Tensor:
        (w,) = prepared
        logits = isinstance(w, SoftmaxWeights)
        wk = w.logits if logits else w
        fused = (
            x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and wk.dtype == x.dtype
            and self.semiring.name == "lse-sum"  # type: ignore[attr-defined]
        )
        if not fused:
            if logits:
                w = self.prepare(w.block(0, w.shape[0]))[0]  # type: ignore[attr-defined]
            return super().evaluate(x, w)  # type: ignore[misc]
        if x.stride(3) != 1 or x.stride(2) != x.shape[-1]:
            x = x.contiguous()
        wk = wk.contiguous()
        return softmax_contraction("cpt", x, wk, logits)


@register_layer(ops.CPTOp, kernel=NATIVE)
class TorchCPTLayer(_NativeHadamardDense, EagerCPTLayer):
    """`TorchCPTLayer` through the fused kernel: lse-sum, on CPU, float32 or float64. It
    keeps libcirkit's class name; `layer.kernel` and `circuit.code` tell the kernels apart."""

    @classmethod
    def preferred(cls, op: ops.CircuitOp) -> bool:
        """Where kernels='auto' picks this kernel: where it measured faster than eager.
        Measured on this machine (one thread, batch 256, float32, medians; eager includes the
        weight softmax): forward 2.1x eager at 86 folds of 4 units, 2.3x at 12, 2.4x for one
        fold; 1.07x / 1.25x / 1.7x at 32 units. Forward + backward 1.8-5.6x at 4 units,
        2.2x / 1.5x / 1.6x at 32. Faster everywhere measured, so everywhere."""
        return True


@register_layer(ops.DenseOp, kernel=NATIVE)
class TorchDenseLayer(_NativeHadamardDense, EagerDenseLayer):
    """`TorchDenseLayer` through the fused kernel (a CP-T layer of one input): lse-sum, on
    CPU, float32 or float64."""

    @classmethod
    def preferred(cls, op: ops.CircuitOp) -> bool:
        """Where kernels='auto' picks this kernel: where it measured faster than eager.
        Measured as for CP-T: at 4 units forward 1.9x eager at 86 and 12 folds, 2.1x for one
        fold, forward + backward 1.2-1.7x; at 32 units forward 1.03x at 86 folds, 0.94x at
        12, 1.5x for one fold, forward + backward 0.96x / 1.01x / 1.2x. So: the small layers
        (plain loops, O K <= SMALL_WORK) and one-fold ones; folded GEMM-sized ones are a wash
        and stay eager."""
        assert isinstance(op, ops.DenseOp)
        return op.out_units * op.in_units <= SMALL_WORK or op.num_folds == 1


NativeCPTLayer = TorchCPTLayer
NativeDenseLayer = TorchDenseLayer
"""The native layers under names that say so (their class names are libcirkit's)."""
