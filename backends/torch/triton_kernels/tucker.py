"""The Triton Tucker layer: a binary Tucker layer in lse-sum computed by the fused Triton
kernels (`tucker_jit.py`) on GPUs, registered as the op's "triton" kernel.

Anything the kernels do not cover (a CPU tensor outside Triton's interpreter, complex or
mixed dtypes, more than `MAX_UNITS` output units) is computed by the eager layer it extends.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch import semirings, triton_kernels
from cirkit_ir.backends.torch.kernels import TRITON, register_layer
from cirkit_ir.backends.torch.layers.sums import SoftmaxWeights
from cirkit_ir.backends.torch.layers.sums import TorchTuckerLayer as EagerTuckerLayer
from cirkit_ir.ir import ops

MAX_UNITS = 256
"""The most output units the kernels keep in one program (`tucker_jit.MAX_UNITS`)."""
SOFTMAX_BLOCK_BYTES = 256 << 20
"""Deferred softmax weights (no gradient, `SoftmaxWeights`) are normalized about this many
bytes of folds at a time, so that a large layer's normalized weights never exist whole (822 MB
for the seed circuit's largest layer at 64 units)."""


def _jit():
    return triton_kernels.load("tucker_jit")


class _FusedTucker2(torch.autograd.Function):
    """out = [y / m ; log m + s_a + s_c], y = W (a (x) c), in one Triton kernel; the backward
    forms W^T g once for both inputs. The scale rows and m carry no gradient (`semirings`)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        out, m, low = _jit().tucker2_forward(x, w, semirings.watching())
        _watch(low)
        ctx.save_for_backward(x, w, m)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w, m = ctx.saved_tensors
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        return _jit().tucker2_backward(x, w, m, grad, want_x, want_w)


def tucker2(x: Tensor, w: Tensor, low_precision: bool = False, out: Tensor | None = None) -> Tensor:
    """The packed binary Tucker layer of `x` (F, 2, K+1, B) and linear weights `w`
    (F, O, K*K): through autograd where a gradient is recorded, else the forward alone,
    multiplying in bfloat16 if `low_precision`, into `out` if given (no gradient)."""
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        return _FusedTucker2.apply(x, w)
    out, _, low = _jit().tucker2_forward(x, w, semirings.watching(), low_precision, out)
    _watch(low)
    return out


def _watch(low: Tensor | None) -> None:
    if low is not None:
        semirings.watch(low)


@register_layer(ops.TuckerOp, kernel=TRITON)
class TorchTuckerLayer(EagerTuckerLayer):
    """`TorchTuckerLayer` through the fused Triton kernels: binary layers in 'lse-sum', on
    CUDA devices, float32 or float64, up to `MAX_UNITS` output units. Float32 products are
    exact unless torch's matmuls may use TF32 (`torch.set_float32_matmul_precision`);
    `contraction_dtype='bfloat16'` multiplies in bfloat16 (forward without gradients only).
    It keeps libcirkit's class name, as the native layers do; `layer.kernel` and
    `circuit.code` tell them apart."""

    kernel = TRITON
    devices = ("cuda",)
    contraction_dtype = "float32"

    @classmethod
    def supports(cls, op: ops.CircuitOp, semiring_name: str) -> bool:
        """Whether the Triton kernels compute `op` (else the eager kernel is chosen)."""
        return op.arity == 2 and semiring_name == "lse-sum" and op.out_units <= MAX_UNITS

    def _fused(self, x: Tensor, w: Tensor) -> bool:
        on_device = x.is_cuda or (x.device.type == "cpu" and triton_kernels.interpreting())
        return (
            on_device
            and x.dtype in (torch.float32, torch.float64)
            and w.dtype == x.dtype
            and x.shape[1] == 2
            and w.shape[1] <= MAX_UNITS
            and self.semiring.name == "lse-sum"
        )

    def evaluate(self, x: Tensor, *prepared: Tensor | SoftmaxWeights) -> Tensor:
        (w,) = prepared
        weights = w.logits if isinstance(w, SoftmaxWeights) else w
        if not self._fused(x, weights):
            return super().evaluate(x, *prepared)
        low_precision = self.contraction_dtype == "bfloat16" and x.dtype == torch.float32
        if not isinstance(w, SoftmaxWeights):
            return tucker2(x, _flat(w), low_precision)
        f = x.shape[0]
        step = max(1, SOFTMAX_BLOCK_BYTES // (weights[0].numel() * weights.element_size()))
        out = x.new_empty((f, w.shape[1] + 1, x.shape[-1]))
        for start in range(0, f, step):
            stop = min(f, start + step)
            tucker2(x[start:stop], _flat(w.block(start, stop)), low_precision, out[start:stop])
        return out


def _flat(w: Tensor) -> Tensor:
    """Weights (F, O, K, K) or (F, O, K*K) as the kernels read them, (F, O, K*K)."""
    return w.reshape(w.shape[0], w.shape[1], -1)


TritonTuckerLayer = TorchTuckerLayer
"""The Triton Tucker layer under a name that says so (its class name is libcirkit's)."""
