"""Sum layers, plain and fused with the product before them.

Each reads its inputs as linear values with a log scale (`Semiring.split`), contracts them
with linear weights by one batched matmul over folds, and normalizes the result again
(`Semiring.finish`); in the sum-product semiring the scale is absent and `finish` is the
identity. See `semirings` for the packed form the log semirings compute in.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch.kernels import register_layer
from cirkit_ir.backends.torch.layers.base import TorchLayer, may_defer
from cirkit_ir.backends.torch.semirings import Semiring, exp_, tiny
from cirkit_ir.ir import ops

# The Tucker layer builds its (F, K**H, B) outer product, contracts it and normalizes the
# result a block of folds at a time, so that each block's intermediate values stay in cache
# from one step to the next and memory does not grow with the number of folds (at 64 units
# one fold's outer product alone is 4 MiB). A block is about eight folds' outer products,
# within these bounds (measured on the seed circuit, one or two threads: 4 MiB blocks make
# 4 units about 1.5x faster than one block, 8 folds make 32 units 1.4x faster than one).
BLOCK_MIN_BYTES = 4 << 20
BLOCK_MAX_BYTES = 8 << 20
BLOCK_FOLDS = 8
# On a GPU the blocks are for memory only (no cache to stay in, and each block's half-dozen
# kernel launches cost more than its arithmetic at small sizes): an H200 ran the seed circuit's
# eager forward at 64 units in 131 ms with the CPU's blocks, 10x libcirkit's unblocked einsum.
GPU_BLOCK_BYTES = 256 << 20


def block_folds(per_fold_bytes: int, gpu: bool = False) -> int:
    """How many folds one block of a blocked contraction holds (on a GPU when `gpu`)."""
    if gpu:
        return max(1, GPU_BLOCK_BYTES // per_fold_bytes)
    target = min(max(BLOCK_MIN_BYTES, BLOCK_FOLDS * per_fold_bytes), BLOCK_MAX_BYTES)
    return max(1, target // per_fold_bytes)


# Softmax-normalized weights at least this large are normalized a block of folds at a time
# inside the Tucker layer when no gradient is needed (`SoftmaxWeights`): the normalized
# tensor never exists whole (0.8 GB for the seed circuit's largest layer at 64 units), and
# each block is still in cache when the contraction reads it.
DEFER_SOFTMAX_BYTES = 8 << 20


class SoftmaxWeights:
    """softmax(logits, axis) as a layer's weights, not computed yet (see `prepare_softmax`):
    `block(start, stop)` normalizes folds start..stop-1 (the axis is not the fold axis)."""

    def __init__(self, logits: Tensor, axis: int, semiring: Semiring) -> None:
        self.logits, self.axis, self.semiring = logits, axis, semiring
        self.shape = logits.shape

    def block(self, start: int, stop: int) -> Tensor:
        return self.semiring.weights(torch.softmax(self.logits[start:stop], self.axis))


def _shift_sum(shift: Tensor | None, dim: int = 1) -> Tensor | None:
    """The sum of the arity's log scales (F, H, 1, B) -> (F, 1, B)."""
    if shift is None:
        return None
    if shift.shape[dim] == 2:
        return torch.add(shift.select(dim, 0), shift.select(dim, 1))
    return shift.sum(dim)


def outer(e: Tensor, out: Tensor | None = None) -> Tensor:
    """(F, H, K, B) -> (F, K**H, B): all products of one unit per input, first input slowest."""
    f, h, k, b = e.shape
    if h == 2 and out is None:
        a, c = e.unbind(1)
        return (a.unsqueeze(2) * c.unsqueeze(1)).flatten(1, 2)
    if h == 1:
        return e[:, 0] if out is None else out.copy_(e[:, 0])
    y = e[:, 0]
    for i in range(1, h):
        a, c = y.unsqueeze(2), e[:, i].unsqueeze(1)
        if i == h - 1 and out is not None:
            torch.mul(a, c, out=out.view(f, -1, k, b))
            return out
        y = (a * c).flatten(1, 2)
    return y


@register_layer(ops.DenseOp)
class TorchDenseLayer(TorchLayer):
    """y = W x, W (F, out, in)."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]),)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        s = self.semiring
        x = x[:, 0]
        if not s.log_space:
            return torch.bmm(prepared[0], x)
        e, shift = x.split([x.shape[1] - 1, 1], 1)  # (F, I, B) values, (F, 1, B) scale
        return s.finish(torch.bmm(prepared[0], e), shift)


@register_layer(ops.MixingOp)
class TorchMixingLayer(TorchLayer):
    """y[k] = sum_h W[k, h] x_h[k], W (F, K, H): a weighted log-sum-exp over the arity axis."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]).transpose(1, 2).unsqueeze(-1),)  # (F, H, K, 1)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        s = self.semiring
        (w,) = prepared
        if not s.log_space:
            return (x * w).sum(1)
        e, shift = x.split([x.shape[2] - 1, 1], 2)  # (F, H, K, B), (F, H, 1, B)
        shift = shift.detach()
        # Bring the inputs to one scale, the largest: each input's weights times
        # exp(its scale - the largest), in (0, 1].
        top = (shift.real if shift.is_complex() else shift).amax(1)  # (F, 1, B)
        coef = exp_(shift - top.unsqueeze(1)) * w  # (F, H, K, B)
        if e.requires_grad and torch.is_grad_enabled():
            y = (coef * e).sum(1)
        else:
            y = coef.mul_(e).sum(1)
        return s.finish(y, top)


def _needs_grad(t: Tensor) -> bool:
    return t.requires_grad and torch.is_grad_enabled()


def _blocks(folds: int, step: int) -> list[tuple[int, int]]:
    return [(i, min(i + step, folds)) for i in range(0, folds, step)]


def _tucker_blocks(
    e: Tensor, w: Tensor | SoftmaxWeights, semiring: Semiring, step: int, m: Tensor | None = None
) -> Tensor:
    """The Tucker contraction of linear (F, H, K, B) values, normalized, a block of folds at
    a time (no gradient): (F, O(+1), B), without the inputs' scales. With `m`, the
    divisors (F, 1, B) are written there too (the packed lse-sum form only)."""
    f, h, k, b = e.shape
    o = w.shape[1]
    out = semiring.result(f, o, b, e)
    block = e.new_empty((step, k**h, b))
    ybuf = e.new_empty((step, o, b))
    for start, stop in _blocks(f, step):
        n = stop - start
        outer(e[start:stop], block[:n])
        wb = w.block(start, stop) if isinstance(w, SoftmaxWeights) else w[start:stop]
        y = torch.bmm(wb, block[:n], out=ybuf[:n])
        if m is None:
            semiring.finish_into(y, out[start:stop])
        else:
            mb = torch.amax(y, 1, keepdim=True, out=m[start:stop]).clamp_min_(tiny(m))
            semiring._write(y, mb, out[start:stop], 1)
    return out


class _PackedTucker2(torch.autograd.Function):
    """A binary Tucker layer in the packed lse-sum form, with a backward of its own.

    The generic graph (outer product, bmm, normalization, concatenation) records a dozen
    ops, keeps the (F, K*K, B) outer product, and gets the inputs' gradients from the
    gradient of the outer product with a multiply and a reduction per input. Here, with
    y = W (a (x) c) normalized to y / m (m the detached per-column divisor):

        dL/dW = g (a (x) c)^T,  dL/da[i] = sum_{o,j} W[o,i,j] g[o] c[j],  g = dL/d(y/m) / m,

    and likewise for c: the outer products are rebuilt a block of folds at a time (as the
    forward builds them), so each stays in cache between the multiply that makes it and the
    matmul that reads it. The scale rows carry no gradient (see `semirings`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, semiring, step: int) -> Tensor:  # type: ignore[override]
        f, _, k1, b = x.shape
        k = k1 - 1
        m = x.new_empty((f, 1, b))
        out = _tucker_blocks(x[:, :, :k], w, semiring, step, m)
        out[:, -1:].add_(x[:, 0, k:]).add_(x[:, 1, k:])
        ctx.step = step
        ctx.save_for_backward(x, w, m)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, w, m = ctx.saved_tensors
        f, _, k1, b = x.shape
        k, o = k1 - 1, w.shape[1]
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_w = w.new_empty(w.shape) if want_w else None
        grad_x = None
        if want_x:
            # In x's memory layout (that of the fold gather before the layer), so that the
            # gather's backward reads it without a strided copy.
            grad_x = torch.empty_like(x)
        step = ctx.step
        ga = x.new_empty((step, o, k, b))  # g (x) a, [(o, i), b]
        gc = x.new_empty((step, o, k, b))  # g (x) c, [(o, j), b]
        tmp = x.new_empty((step, k, b))
        for start, stop in _blocks(f, step):
            n = stop - start
            a, c = x[start:stop, 0, :k], x[start:stop, 1, :k]
            g = torch.div(grad[start:stop, :o], m[start:stop]).unsqueeze(2)  # (n, O, 1, B)
            w3 = w[start:stop].view(n, o * k, k)  # [(o, i), j]
            g_a = torch.mul(g, a.unsqueeze(1), out=ga[:n]).view(n, o * k, b)
            if want_w:  # dW[o, i, j] = sum_b (g (x) a)[(o, i), b] c[j, b]
                torch.bmm(g_a, c.transpose(1, 2), out=grad_w[start:stop].view(n, o * k, k))
            if want_x:
                grad_x[start:stop, :, k:].zero_()  # the scale rows: no gradient
                # dc[j] = sum_{o,i} W[o,i,j] (g (x) a)[(o, i)]: W as [j, (o, i)] is a view.
                torch.bmm(w3.transpose(1, 2), g_a, out=tmp[:n])
                grad_x[start:stop, 1, :k] = tmp[:n]
                # da[i] = sum_{o,j} W[o,i,j] (g (x) c)[(o, j)]: W as [i, (o, j)] is a copy.
                wa = w3.view(n, o, k, k).transpose(1, 2).reshape(n, k, o * k)
                g_c = torch.mul(g, c.unsqueeze(1), out=gc[:n]).view(n, o * k, b)
                torch.bmm(wa, g_c, out=tmp[:n])
                grad_x[start:stop, 0, :k] = tmp[:n]
        return grad_x, grad_w, None, None


@register_layer(ops.TuckerOp)
class TorchTuckerLayer(TorchLayer):
    """A Kronecker product then a dense sum: y = W (x_1 (x) ... (x) x_H), W (F, out, in**H).

    Each input is normalized (largest value 1), so the outer product never overflows and its
    largest entry is 1; the input scales add up. The outer product is built, contracted and
    normalized a block of folds at a time (`block_folds`); with gradients, a binary layer in
    lse-sum takes `_PackedTucker2`'s own backward. Large softmax weights are normalized
    block by block too when no gradient is needed (`prepare_softmax`).
    """

    softmax_params = ("weight",)

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]),)

    def prepare_softmax(self, logits: Tensor, axis: int) -> tuple:
        large = logits.numel() * logits.element_size() >= DEFER_SOFTMAX_BYTES
        if large and axis != -logits.dim() and may_defer():
            return (SoftmaxWeights(logits, axis, self.semiring),)
        return super().prepare_softmax(logits, axis)

    def evaluate(self, x: Tensor, *prepared: Tensor | SoftmaxWeights) -> Tensor:
        s = self.semiring
        (w,) = prepared
        e, shift = s.split(x, 2)  # (F, H, K, B), (F, H, 1, B)
        f, h, k, b = e.shape
        inner = k**h
        step = block_folds(inner * b * e.element_size(), e.is_cuda)
        step = min(step, f)
        grad = not isinstance(w, SoftmaxWeights) and (_needs_grad(e) or _needs_grad(w))
        if grad and h == 2 and s.name == "lse-sum":
            return _PackedTucker2.apply(x, w, s, step)
        if h == 1 or (step == f and not isinstance(w, SoftmaxWeights)):
            if isinstance(w, SoftmaxWeights):
                w = w.block(0, f)
            return s.finish(torch.bmm(w, outer(e)), _shift_sum(shift))
        if grad:
            return s.finish(torch.bmm(w, outer(e)), _shift_sum(shift))
        return s.add_shift(_tucker_blocks(e, w, s, step), _shift_sum(shift))


@register_layer(ops.CPTOp)
class TorchCPTLayer(TorchLayer):
    """A Hadamard product then a dense sum: y = W (x_1 * ... * x_H), W (F, out, in)."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.semiring.weights(params[0]),)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        s = self.semiring
        e, shift = s.split(x, 2)
        y = torch.bmm(prepared[0], e.prod(1))
        return s.finish(y, _shift_sum(shift))


@register_layer(ops.CPOp)
class TorchCPLayer(TorchLayer):
    """A dense sum per input then a Hadamard product: y = prod_h W_h x_h, W (F, H, out, in).

    Each input's sum is normalized before the product, so a product of small sums does not
    underflow."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        w = self.semiring.weights(params[0])
        return (w.flatten(0, 1),)  # (F * H, out, in)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        s = self.semiring
        f, h = x.shape[:2]
        e, shift = s.split(x.flatten(0, 1), 1)  # (F * H, in, B), (F * H, 1, B)
        z = s.finish(torch.bmm(prepared[0], e), shift)  # (F * H, out(+1), B)
        z = z.unflatten(0, (f, h))
        ez, zshift = s.split(z, 2)
        return s.finish(ez.prod(1), _shift_sum(zshift))


@register_layer(ops.KroneckerDenseOp)
class TorchKroneckerDenseLayer(TorchLayer):
    """y = (W1 (x) W2) x as W1 X W2^T per batch entry, X the input as an (in1, in2) matrix."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        w1, w2 = params
        return self.semiring.weights(w1), self.semiring.weights(w2)

    @staticmethod
    def _contract(w1: Tensor, w2: Tensor, e: Tensor) -> Tensor:
        f, (o1, i1), (o2, i2) = e.shape[0], w1.shape[1:], w2.shape[1:]
        b = e.shape[-1]
        x = e.reshape(f, i1, i2 * b)
        y = torch.bmm(w1, x).reshape(f, o1, i2, b)  # contract i1
        y = torch.matmul(w2.unsqueeze(1), y)  # (F, O1, O2, B): contract i2
        return y.reshape(f, o1 * o2, b)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        s = self.semiring
        w1, w2 = prepared
        x = x[:, 0]
        if not s.log_space:
            return self._contract(w1, w2, x)
        e, shift = x.split([x.shape[1] - 1, 1], 1)  # (F, I, B) values, (F, 1, B) scale
        return s.finish(self._contract(w1, w2, e), shift)
