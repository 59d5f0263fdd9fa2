"""What the fused contraction kernels' wrappers share: the loaded ops, the underflow watch
hand-over, and the autograd function of the kernels that normalize their weights themselves
(`cpt` and `mixing`: forward and backward to the weights or to their softmax logits)."""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch import native, semirings


def kernel_ops():
    """`torch.ops.cirkit_ir_native`, the extension loaded first (loading registers its ops)."""
    native.load()
    return torch.ops.cirkit_ir_native


def watch(low: Tensor | None) -> None:
    """Hands a kernel's smallest raw sums per column (what the eager layers' normalizations
    watch) to the underflow watch; None when it is not watching."""
    if low is not None:
        semirings.watch(low)


class _SoftmaxContraction(torch.autograd.Function):
    """out = `{name}_forward(x, w, logits)` in one C++ pass, w the weights or softmax(logits,
    -1); the backward is the kernel's own (to the logits when given them). The column maxima
    and scale rows carry no gradient (see `semirings`)."""

    @staticmethod
    def forward(ctx, name: str, x: Tensor, w: Tensor, logits: bool) -> Tensor:  # type: ignore[override]
        forward = getattr(kernel_ops(), f"{name}_forward")
        out, ms, low = forward(x, w, logits, True, semirings.watching())
        watch(low)
        ctx.name, ctx.logits = name, logits
        ctx.save_for_backward(x, w, ms)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w, ms = ctx.saved_tensors
        want_x, want_w = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        backward = getattr(kernel_ops(), f"{ctx.name}_backward")
        gx, gw = backward(x, w, ctx.logits, ms, grad, want_x, want_w)
        return None, (gx if want_x else None), (gw if want_w else None), None


def softmax_contraction(name: str, x: Tensor, w: Tensor, logits: bool) -> Tensor:
    """Kernel `name` ('cpt' or 'mixing') on packed `x` and contiguous `w`: through autograd
    where a gradient is recorded, else the forward alone (nothing saved)."""
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        return _SoftmaxContraction.apply(name, x, w, logits)
    forward = getattr(kernel_ops(), f"{name}_forward")
    out, _, low = forward(x, w, logits, False, semirings.watching())
    watch(low)
    return out
