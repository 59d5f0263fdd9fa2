"""The native Tucker layer: a binary Tucker layer in lse-sum computed by the fused C++
kernel (`tucker.cpp`), registered as the op's "native" kernel.

Anything the kernel does not cover (another device or dtype, weights that need a complex
or a float64-vs-float32 mix) is computed by the eager layer it extends, so that a circuit
moved to another device keeps working.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch import native, semirings
from cirkit_ir.backends.torch.kernels import NATIVE, register_layer
from cirkit_ir.backends.torch.layers.sums import SoftmaxWeights
from cirkit_ir.backends.torch.layers.sums import TorchTuckerLayer as EagerTuckerLayer
from cirkit_ir.ir import ops

CONTRACTION_DTYPES = ("float32", "bfloat16")
SMALL_WORK = 4096
"""O * K * K up to which the kernel contracts with plain loops (`kSmallWork` in tucker.cpp)."""


class _FusedTucker2(torch.autograd.Function):
    """out = [y / m ; log m + s_a + s_c], y = W (a (x) c), in one C++ pass; the backward
    is the kernel's own (W^T g once per tile for both inputs). The scale rows and the
    divisor m carry no gradient (see `semirings`)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        out, m = native.load().tucker2_forward(x, w, None)
        _watch(out, m)
        ctx.save_for_backward(x, w, m)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w, m = ctx.saved_tensors
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx, gw = native.load().tucker2_backward(x, w, m, grad, want_x, want_w)
        return (gx if want_x else None), (gw if want_w else None)


@register_layer(ops.TuckerOp, kernel=NATIVE)
class TorchTuckerLayer(EagerTuckerLayer):
    """`TorchTuckerLayer` through the fused kernel: binary layers in 'lse-sum', on CPU, in
    float32 or float64. `contraction_dtype='bfloat16'` multiplies in bfloat16 (forward
    without gradients only; see the README for its accuracy).

    It keeps libcirkit's class name, so that a compiled circuit prints as libcirkit's does
    whichever kernel computes it; `layer.kernel` and `circuit.code` tell them apart."""

    kernel = NATIVE
    contraction_dtype = "float32"

    @classmethod
    def supports(cls, op: ops.CircuitOp, semiring_name: str) -> bool:
        """Whether the fused kernel computes `op` (else the eager kernel is chosen)."""
        return op.arity == 2 and semiring_name == "lse-sum"

    @classmethod
    def preferred(cls, op: ops.CircuitOp) -> bool:
        """Where kernels='auto' picks this kernel: where it measured faster than eager.
        GEMM-sized layers (O K^2 > SMALL_WORK: 1.4x at 32 units) and the one-fold layers of
        unfolded circuits (1.7-2.1x); small folded layers stay eager (0.8-1.1x at 4 units,
        where the eager batched matmul already runs near the memory floor)."""
        assert isinstance(op, ops.TuckerOp)
        return op.out_units * op.in_units**2 > SMALL_WORK or op.num_folds == 1

    def _fused(self, x: Tensor, w: Tensor | SoftmaxWeights) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.shape[1] == 2
            and (w.logits if isinstance(w, SoftmaxWeights) else w).dtype == x.dtype
            and self.semiring.name == "lse-sum"
        )

    def evaluate(self, x: Tensor, *prepared: Tensor | SoftmaxWeights) -> Tensor:
        (w,) = prepared
        if not self._fused(x, w):
            return super().evaluate(x, *prepared)
        f, _, k1, b = x.shape
        x = x.contiguous()
        kernel = native.load()
        if isinstance(w, SoftmaxWeights):  # no gradient: normalize a block of folds at a time
            out = x.new_empty((f, w.shape[1] + 1, b))
            step = max(1, (8 << 20) // max(1, w.shape[1] * w.shape[2] * x.element_size()))
            for start in range(0, f, step):
                stop = min(f, start + step)
                wb = w.block(start, stop).reshape(stop - start, w.shape[1], -1).contiguous()
                out[start:stop] = self._forward(kernel, x[start:stop], wb)
            return out
        w = w.reshape(f, w.shape[1], -1).contiguous()
        grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
        if grad and w.shape[1] * w.shape[2] > SMALL_WORK:
            # Measured at 32 units: the eager blocked backward (a few large bmm) beats the
            # kernel's per-tile GEMMs, which run 2.3x slower; keep the eager one there.
            return super().evaluate(x, *prepared)
        if grad:
            return _FusedTucker2.apply(x, w)
        return self._forward(kernel, x, w)

    def _forward(self, kernel, x: Tensor, w: Tensor) -> Tensor:
        # bfloat16 pays off in the kernel's GEMM tiles only (O * K * K > 4096, see tucker.cpp).
        low = None
        if self.contraction_dtype == "bfloat16" and w.shape[1] * w.shape[2] > SMALL_WORK:
            low = w.to(torch.bfloat16)
        out, m = kernel.tucker2_forward(x, w, low)
        _watch(out, m)
        return out


def _watch(out: Tensor, m: Tensor) -> None:
    """Hands the raw sums' smallest values (normalized values times the column maxima) to
    the underflow watch, as the eager layers do, so flagged columns are recomputed exactly."""
    if semirings.watching():
        semirings.watch((out[:, :-1].amin(1, keepdim=True) * m).detach())


NativeTuckerLayer = TorchTuckerLayer
"""The native Tucker layer under a name that says so (its class name is libcirkit's)."""
