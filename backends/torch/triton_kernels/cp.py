"""The Triton CP layer: a CP layer (a dense sum per input, then their Hadamard product) in
lse-sum computed by the fused Triton kernels (`cp_jit.py`) on GPUs, registered as the op's
"triton" kernel.

Anything the kernels do not cover (a CPU tensor outside Triton's interpreter, complex or
mixed dtypes, more than `MAX_UNITS` output units) is computed by the eager layer it extends.
The weights arrive normalized, as the eager layer prepares them, (F * H, O, K).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch import semirings, triton_kernels
from cirkit_ir.backends.torch.kernels import TRITON, register_layer
from cirkit_ir.backends.torch.layers.sums import TorchCPLayer as EagerCPLayer
from cirkit_ir.ir import ops

MAX_UNITS = 256
"""The most output units the kernels keep in one program (`cp_jit.MAX_UNITS`)."""


def _jit():
    return triton_kernels.load("cp_jit")


class _FusedCP(torch.autograd.Function):
    """out = [p / M ; log M + sum_h (log m_h + s_h)], p = prod_h (W_h e_h) / m_h, in one
    Triton kernel; the backward is the kernels' own, from the normalized sums the forward
    kept. The divisors m_h, M and the scale rows carry no gradient (see `semirings`)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        out, zn, ms, low = _jit().cp_forward(x, w, True, semirings.watching())
        _watch(low)
        ctx.save_for_backward(x, w, zn, ms)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w, zn, ms = ctx.saved_tensors
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        return _jit().cp_backward(x, w, zn, ms, grad, want_x, want_w)


def cp(x: Tensor, w: Tensor) -> Tensor:
    """The packed CP layer of `x` (F, H, K+1, B) and linear weights `w` (F, H, O, K): through
    autograd where a gradient is recorded, else the forward alone."""
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        return _FusedCP.apply(x, w)
    out, _, _, low = _jit().cp_forward(x, w, False, semirings.watching())
    _watch(low)
    return out


def _watch(low: Tensor | None) -> None:
    """Each column's smallest raw sum or product: what the eager layer's two `finish` calls
    report to the underflow watch."""
    if low is not None:
        semirings.watch(low)


@register_layer(ops.CPOp, kernel=TRITON)
class TorchCPLayer(EagerCPLayer):
    """`TorchCPLayer` through the fused Triton kernels: lse-sum, on CUDA devices, float32 or
    float64, up to `MAX_UNITS` output units. Float32 products are exact unless torch's
    matmuls may use TF32 (`torch.set_float32_matmul_precision`). It keeps libcirkit's class
    name, as the native layers do; `layer.kernel` and `circuit.code` tell them apart."""

    kernel = TRITON
    devices = ("cuda",)

    @classmethod
    def supports(cls, op: ops.CircuitOp, semiring_name: str) -> bool:
        """Whether the Triton kernels compute `op` (else the eager kernel is chosen)."""
        return semiring_name == "lse-sum" and op.out_units <= MAX_UNITS

    @classmethod
    def preferred(cls, op: ops.CircuitOp) -> bool:
        """Where kernels='auto' picks this kernel: nowhere yet. It passes its tests in
        Triton's interpreter but has not run on a GPU (none was lent when it was written), so
        'auto' keeps CP layers eager there; kernels='triton' opts in."""
        return False

    def _fused(self, x: Tensor, w: Tensor) -> bool:
        on_device = x.is_cuda or (x.device.type == "cpu" and triton_kernels.interpreting())
        return (
            on_device
            and x.dtype in (torch.float32, torch.float64)
            and w.dtype == x.dtype
            and w.shape[1] <= MAX_UNITS
            and self.semiring.name == "lse-sum"
        )

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        (w,) = prepared  # (F * H, O, K), as the eager layer prepares it
        if not self._fused(x, w):
            return super().evaluate(x, *prepared)
        f, h = x.shape[:2]
        return cp(x, w.reshape(f, h, w.shape[1], w.shape[2]))


TritonCPLayer = TorchCPLayer
"""The Triton CP layer under a name that says so (its class name is libcirkit's)."""
