"""How values are represented and combined in each semiring.

Sum-product values are plain linear values, (F, K, B): layers compute with them directly.

Log semirings ('lse-sum', 'complex-lse-sum') compute in *scaled linear* form: a (F, K, B)
block of values is held as a (F, K + 1, B) tensor, the *packed* form, whose first K rows
are linear values e and whose last row is one log scale s per (fold, batch) entry; the
values it stands for are log(e) + s. Every packed tensor is normalized: in each column the
largest e is exactly 1 (or the column is all 0). A sum layer is then one plain matmul of
linear weights with e, with no exp or log of the K units around it: only the (F, 1, B)
scale row takes a log, once per layer, when `finish` normalizes the result again; and a
Kronecker product of normalized inputs is normalized already (its largest entry is 1 * 1).
That is the log-sum-exp trick with the maximum carried from layer to layer instead of
recomputed from logs, and it is exact the same way: a log-likelihood of -5000 is an e near 1
with s near -5000, no clamping changes a result (the divisor of an all-zero column is the
smallest normal number, so the column stays an exact 0 with a finite scale and comes out as
log(0) = -inf, never NaN), and values below the float range relative to the column's
largest (exp(-87) in float32) read as 0, as they do in a log-sum-exp. The scale rows are
constants of the math (they cancel), so no gradient flows through them.

Input layers whose values are circuit outputs evaluate to logs instead (`layers.inputs`), so
that outputs are exact per unit however far apart the units are.

Because the scale is a row of the same tensor, every fold gather (views, `index_select`,
`torch.cat`) moves values and scales together, and the generated forward reads the same in
every semiring. `unpack` turns the packed outputs back into logs.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

from cirkit_ir.errors import CompilationError


class _Log(torch.autograd.Function):
    """log(t) whose gradient is 0 where the incoming gradient is 0.

    A table entry that no datum reads gets gradient 0; at an exact zero probability torch's
    own log would give 0 * inf = NaN there. Elsewhere this is the usual grad / conj(t).
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(t)
        return torch.log(t)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (t,) = ctx.saved_tensors
        return torch.where(grad == 0, 0, grad / t.conj())


def log(t: Tensor) -> Tensor:
    """The log of parameter values (probabilities, weights): exact, with safe gradients."""
    return _Log.apply(t) if t.requires_grad else torch.log(t)


def _needs_grad(t: Tensor) -> bool:
    return t.requires_grad and torch.is_grad_enabled()


_LOG2_E = 1.0 / math.log(2.0)

# Below this many elements a result is assembled with `torch.cat` (fewer, cheaper calls: an
# unfolded circuit runs thousands of one-fold layers, where each call's overhead is most of
# the cost); above it, written in place into the packed tensor (one pass over memory less).
SMALL = 1 << 15

_TINY = {
    dtype: torch.finfo(dtype).tiny
    for dtype in (torch.float32, torch.float64, torch.complex64, torch.complex128)
}


# -- the underflow watch -------------------------------------------------------------------------
#
# A packed column holds its units relative to the largest, so a unit more than exp(-87) below
# it (float32) reads as 0, and a sum that weights that unit heavily comes out 0 or imprecise.
# Every such loss shows in a sum's raw result y (inputs normalized to at most 1, weights of
# order 1): some unit of the column has y < UNDERFLOW (0 included). While a forward watches,
# `watch(y)` keeps per batch entry the smallest y of each sum (one small reduction per
# layer; float64 is not watched: it has no wider fallback); `TorchCircuit.forward` then
# recomputes the flagged batch entries exactly (`backends.torch.exact`). A fused kernel that
# normalizes its own sums calls `watch` on its raw results the same way.

UNDERFLOW = 2.0**-100
"""Sum results below this (relative to normalized inputs) may have lost a unit to underflow:
lost parts are below 2**-126 each, so above it a result keeps at least 24 - log2(n) bits."""


class _Watch(threading.local):
    """The running watch of this thread: the batch size and each sum's (B,) smallest raw
    results so far (reduced once, when the watch stops), or None when not watching."""

    batch: int = 0
    found: list[Tensor] | None = None


_watching = _Watch()


def start_watch(batch: int) -> tuple[int, list[Tensor] | None]:
    """Starts watching sums for a batch of `batch` entries; returns the previous watch."""
    previous = (_watching.batch, _watching.found)
    _watching.batch, _watching.found = batch, []
    return previous


def stop_watch(previous: tuple[int, list[Tensor] | None]) -> Tensor | None:
    """Ends the watch (restoring `previous`): the (B,) smallest raw sum result per batch
    entry, or None if no sum was watched."""
    found = _watching.found
    _watching.batch, _watching.found = previous
    if not found:
        return None
    return found[0] if len(found) == 1 else torch.stack(found).amin(0)


def pause_watch() -> tuple[int, list[Tensor] | None]:
    """Stops watching (for a nested evaluation); `stop_watch` of the result resumes."""
    previous = (_watching.batch, _watching.found)
    _watching.batch, _watching.found = 0, None
    return previous


def watching() -> bool:
    """Whether a forward is watching sums (so that a fused kernel skips the reduction if not)."""
    return _watching.found is not None


def watch(y: Tensor, dim: int = 1) -> None:
    """Records the smallest raw sum result of each batch entry (the last axis of `y`): one
    reduction per call, the only cost of watching."""
    found = _watching.found
    if found is None or y.dtype in (torch.float64, torch.complex128):
        return
    if y.shape[-1] != _watching.batch:
        return
    y = y.detach()
    if y.is_complex():
        y = y.abs()
    found.append(y.amin(tuple(range(y.dim() - 1))) if y.dim() > 1 else y.clone())


def tiny(t: Tensor) -> float:
    """The smallest normal number of `t`'s (real) dtype."""
    return _TINY.get(t.dtype) or torch.finfo(t.dtype).tiny


def exp(t: Tensor) -> Tensor:
    """exp(t), as 2 ** (t log2 e) for real t: torch's exp2 is about 4x faster than its exp on
    CPUs. The rounding of t log2 e costs a relative error of |t| times the dtype's epsilon,
    as much as t itself carries when it is a difference of logs of that size."""
    if t.is_complex():
        return torch.exp(t)
    return torch.exp2(t * _LOG2_E)


def exp_(t: Tensor) -> Tensor:
    """`exp`, in place (torch's own exp on small or complex tensors: one call fewer)."""
    if t.is_complex() or t.numel() < 4096:
        return t.exp_()
    return t.mul_(_LOG2_E).exp2_()


class _PackLog(torch.autograd.Function):
    """`pack_log` with gradients: d e / d t = e (the scale row is a constant)."""

    @staticmethod
    def forward(ctx, t: Tensor, dim: int, semiring: LSESumSemiring) -> Tensor:  # type: ignore[override]
        out = semiring._pack_log_into(t, dim)
        ctx.dim = dim
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        k = out.shape[ctx.dim] - 1
        e = out.narrow(ctx.dim, 0, k)
        return grad.narrow(ctx.dim, 0, k) * e.conj(), None, None


class _Finish(torch.autograd.Function):
    """`finish` with gradients: d (y / m) / d y = 1 / m (m and the scales are constants)."""

    @staticmethod
    def forward(ctx, y: Tensor, shift: Tensor | None, dim: int, semiring: LSESumSemiring) -> Tensor:  # type: ignore[override]
        m = semiring._divisor(y, dim)
        out = semiring._finish_into(y, m, shift, dim)
        ctx.dim = dim
        ctx.save_for_backward(m)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (m,) = ctx.saved_tensors
        return grad.narrow(ctx.dim, 0, grad.shape[ctx.dim] - 1) / m, None, None, None


class Semiring:
    """The sum-product semiring: linear values, real or complex, computed with directly."""

    name = "sum-product"
    log_space = False
    # Whether sum weights and linear input parameters may be negative: plain arithmetic and
    # complex logs compute with signed values; real logs cannot (log of a negative is NaN).
    signed_parameters = True

    # -- parameters (tables, weights) -----------------------------------------------------------

    def from_linear(self, t: Tensor) -> Tensor:
        """Values from non-negative (or signed) linear quantities such as probabilities."""
        return t

    def from_log(self, t: Tensor) -> Tensor:
        """Values from natural logs (log-densities)."""
        return torch.exp(t)

    def weights(self, w: Tensor) -> Tensor:
        """Sum weights ready to multiply linear values (weights stay linear)."""
        return w

    # -- the evaluation representation --------------------------------------------------------

    def pack(self, t: Tensor, dim: int) -> Tensor:
        """Semiring values (units along `dim`) -> the form layers compute with."""
        return t

    def pack_log(self, t: Tensor, dim: int) -> Tensor:
        """Natural logs (units along `dim`) -> the form layers compute with."""
        return torch.exp(t)

    def pack_linear(self, t: Tensor, dim: int) -> Tensor:
        """Non-negative linear values (units along `dim`) -> the form layers compute with."""
        return t

    def unpack(self, x: Tensor, dim: int) -> Tensor:
        """The inverse of `pack`: semiring values."""
        return x

    def split(self, x: Tensor, dim: int) -> tuple[Tensor, Tensor | None]:
        """(linear values, their log scale or None) of a computed-with tensor; the scale is
        detached and has size 1 along `dim`."""
        return x, None

    def finish(self, y: Tensor, shift: Tensor | None, dim: int = 1) -> Tensor:
        """A layer's result from linear values `y` (units along `dim`) whose log scale is
        `shift` (size 1 along `dim`, or None for 0)."""
        return y

    # Building a result a block of folds at a time, without gradients: `result` allocates
    # it, `finish_into` writes one block of linear (F, K, B) values into its slice, and
    # `add_shift` adds the (F, 1, B) log scale of the inputs once all blocks are in.

    def result(self, folds: int, units: int, batch: int, like: Tensor) -> Tensor:
        return like.new_empty((folds, units, batch))

    def finish_into(self, y: Tensor, out: Tensor) -> None:
        out.copy_(y)

    def add_shift(self, out: Tensor, shift: Tensor | None) -> Tensor:
        return out

    def __repr__(self) -> str:
        return self.name


class LSESumSemiring(Semiring):
    """Natural logs of non-negative values, computed in the packed scaled-linear form."""

    name = "lse-sum"
    log_space = True
    signed_parameters = False

    def from_linear(self, t: Tensor) -> Tensor:
        return log(t)

    def from_log(self, t: Tensor) -> Tensor:
        return t

    def _magnitude(self, t: Tensor) -> Tensor:
        """What normalization divides by the largest of (the values themselves when real)."""
        return t

    def _key(self, t: Tensor) -> Tensor:
        """What the largest log is taken of (the real part of a complex log)."""
        return t

    def pack(self, t: Tensor, dim: int) -> Tensor:
        return self.pack_log(t, dim)

    def pack_log(self, t: Tensor, dim: int) -> Tensor:
        # The largest log along the units; -inf (every value is 0) becomes 0 so that the
        # values come out as exact zeros rather than NaN.
        if _needs_grad(t):
            return _PackLog.apply(t, dim, self)
        return self._pack_log_into(t, dim)

    def _pack_log_into(self, t: Tensor, dim: int) -> Tensor:
        s = self._key(t).amax(dim, keepdim=True).nan_to_num_(0.0, 0.0, 0.0)
        if t.numel() < SMALL:
            return torch.cat([exp_(t - s), s if s.dtype == t.dtype else s.to(t.dtype)], dim)
        k = t.shape[dim]
        size = list(t.shape)
        size[dim] = k + 1
        out = t.new_empty(size)
        exp_(torch.sub(t, s, out=out.narrow(dim, 0, k)))
        out.narrow(dim, k, 1).copy_(s)
        return out

    def pack_linear(self, t: Tensor, dim: int) -> Tensor:
        t = self.weights(t)
        m = self._divisor(t, dim)
        return torch.cat([t / m, torch.log(m).to(t.dtype)], dim)

    def unpack(self, x: Tensor, dim: int) -> Tensor:
        k = x.shape[dim] - 1
        # The safe `log`: an entry of probability 0 that the loss does not read (grad 0)
        # passes 0 back, not 0 / 0 = NaN, so the other entries' gradients stay finite.
        return log(x.narrow(dim, 0, k)).add_(x.narrow(dim, k, 1))

    def split(self, x: Tensor, dim: int) -> tuple[Tensor, Tensor | None]:
        k = x.shape[dim] - 1
        return x.narrow(dim, 0, k), x.narrow(dim, k, 1).detach()

    def _divisor(self, y: Tensor, dim: int) -> Tensor:
        # The largest value along the units, never below the smallest normal number: an
        # all-zero column stays exactly zero (its scale finite), and any other divisor is
        # exact too, since the scale takes its log.
        m = self._magnitude(y.detach()).amax(dim, keepdim=True)
        return m.clamp_min_(tiny(m))

    def finish(self, y: Tensor, shift: Tensor | None, dim: int = 1) -> Tensor:
        """Without gradients `y` (the layer's own result) may be overwritten."""
        if y.requires_grad and torch.is_grad_enabled():
            return _Finish.apply(y, shift, dim, self)
        m = self._magnitude(y).amax(dim, keepdim=True).clamp_min_(tiny(y))
        if y.numel() >= SMALL:
            return self._finish_into(y, m, shift, dim)
        watch(y, dim)
        y = y.div_(m)
        scale = m.log_()  # m is not needed any more
        if y.is_complex():
            scale = scale.to(y.dtype)
        if shift is not None:
            scale.add_(shift)
        return torch.cat([y, scale], dim)

    def _finish_into(self, y: Tensor, m: Tensor, shift: Tensor | None, dim: int) -> Tensor:
        k = y.shape[dim]
        size = list(y.shape)
        size[dim] = k + 1
        out = y.new_empty(size)
        self._write(y, m, out, dim)
        if shift is not None:
            out.narrow(dim, k, 1).add_(shift)
        return out

    def _write(self, y: Tensor, m: Tensor, out: Tensor, dim: int) -> None:
        """y / m and log m into the packed `out`."""
        watch(y, dim)
        k = y.shape[dim]
        torch.div(y, m, out=out.narrow(dim, 0, k))
        # log into a new tensor, then copied: torch's log writing to a strided `out` takes
        # a scalar loop, 4x slower.
        out.narrow(dim, k, 1).copy_(torch.log(m))

    def result(self, folds: int, units: int, batch: int, like: Tensor) -> Tensor:
        return like.new_empty((folds, units + 1, batch))

    def finish_into(self, y: Tensor, out: Tensor) -> None:
        self._write(y, self._divisor(y, 1), out, 1)

    def add_shift(self, out: Tensor, shift: Tensor | None) -> Tensor:
        if shift is not None:
            out[:, -1:].add_(shift)
        return out


class ComplexLSESumSemiring(LSESumSemiring):
    """Complex logs (principal branch): log-sum-exp for signed or complex weights.

    Packed values are complex, normalized by their largest modulus; scales are real (held
    in the complex tensor with a zero imaginary part). On real non-negative parameters the
    real part of every value equals the lse-sum value.
    """

    name = "complex-lse-sum"
    signed_parameters = True

    def from_linear(self, t: Tensor) -> Tensor:
        return log(_complex(t))

    def from_log(self, t: Tensor) -> Tensor:
        return _complex(t)

    def weights(self, w: Tensor) -> Tensor:
        return _complex(w)

    def _magnitude(self, t: Tensor) -> Tensor:
        return t.abs()

    def _key(self, t: Tensor) -> Tensor:
        return t.real if t.is_complex() else t

    def pack_log(self, t: Tensor, dim: int) -> Tensor:
        return super().pack_log(_complex(t), dim)


def _complex(t: Tensor) -> Tensor:
    """`t` as the complex dtype of its precision (float32 -> complex64, ...)."""
    return t.to(torch.promote_types(t.dtype, torch.complex64))


SEMIRINGS: dict[str, Semiring] = {
    s.name: s for s in (Semiring(), LSESumSemiring(), ComplexLSESumSemiring())
}


def get_semiring(name: str | None) -> Semiring:
    """The semiring an op says it computes in; ops without one cannot be compiled."""
    if name is None:
        raise CompilationError(
            "an op has no semiring: run the 'lower-semiring{semiring=...}' pass before codegen"
        )
    if name in ("max-sum", "max-product"):
        raise CompilationError(
            f"semiring {name!r} is not compiled to a forward: compile the circuit in 'lse-sum'"
            " and query it with cirkit_ir.backends.torch.queries.MAPQuery, which computes"
            " max-sum on it"
        )
    try:
        return SEMIRINGS[name]
    except KeyError:
        raise CompilationError(
            f"unknown semiring {name!r}; expected one of {sorted(SEMIRINGS)}"
        ) from None
