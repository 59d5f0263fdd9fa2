"""How values are represented and combined in each semiring.

Layers are written once against this small interface, so a sum layer is always
`unscale(linear_op(scale(x)))`: in linear space scale/unscale are identities; in log space
`scale` subtracts the largest (real part of a) value along the contracted axis and
exponentiates, and `unscale` takes the log and adds it back. That is the log-sum-exp trick
with one maximum per (fold, batch) entry, exact to the last bit of the result's exponent: no
clamping, so a log-likelihood of -5000 comes out as -5000. A maximum of -inf (every input is
log 0) is replaced by 0, so the result is log(0) = -inf rather than NaN.
"""

from __future__ import annotations

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


class Semiring:
    """The sum-product semiring: linear values, real or complex."""

    name = "sum-product"
    log_space = False

    def from_linear(self, t: Tensor) -> Tensor:
        """Values from non-negative (or signed) linear quantities such as probabilities."""
        return t

    def from_log(self, t: Tensor) -> Tensor:
        """Values from natural logs (log-densities)."""
        return torch.exp(t)

    def weights(self, w: Tensor) -> Tensor:
        """Sum weights ready to multiply scaled values (weights stay linear)."""
        return w

    def scale(self, x: Tensor, dim: int) -> tuple[Tensor, Tensor | None]:
        """Linear values safe to contract along `dim`, and the scale to add back."""
        return x, None

    def unscale(self, y: Tensor, shift: Tensor | None) -> Tensor:
        return y

    def prod(self, x: Tensor, dim: int) -> Tensor:
        """The semiring product along `dim`."""
        return x.prod(dim)

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b

    def __repr__(self) -> str:
        return self.name


class LSESumSemiring(Semiring):
    """Natural logs of non-negative values; sums as log-sum-exp, products as sums."""

    name = "lse-sum"
    log_space = True

    def from_linear(self, t: Tensor) -> Tensor:
        return log(t)

    def from_log(self, t: Tensor) -> Tensor:
        return t

    def scale(self, x: Tensor, dim: int) -> tuple[Tensor, Tensor | None]:
        # The maximum is a constant of the math (it cancels), so no gradient flows through it;
        # detaching first also lets the guard run in place.
        shift = x.detach().amax(dim, keepdim=True).nan_to_num_(0.0, 0.0, 0.0)
        return torch.sub(x, shift).exp_(), shift

    def unscale(self, y: Tensor, shift: Tensor | None) -> Tensor:
        return torch.log(y).add_(shift)

    def prod(self, x: Tensor, dim: int) -> Tensor:
        return x.sum(dim)

    def mul(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class ComplexLSESumSemiring(LSESumSemiring):
    """Complex logs (principal branch): log-sum-exp for signed or complex weights.

    On real non-negative parameters the real part of every value equals the lse-sum value.
    """

    name = "complex-lse-sum"

    def from_linear(self, t: Tensor) -> Tensor:
        return log(_complex(t))

    def from_log(self, t: Tensor) -> Tensor:
        return _complex(t)

    def weights(self, w: Tensor) -> Tensor:
        return _complex(w)

    def scale(self, x: Tensor, dim: int) -> tuple[Tensor, Tensor | None]:
        shift = x.detach().real.amax(dim, keepdim=True).nan_to_num_(0.0, 0.0, 0.0)
        return torch.sub(x, shift).exp_(), shift


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
    try:
        return SEMIRINGS[name]
    except KeyError:
        raise CompilationError(
            f"unknown semiring {name!r}; expected one of {sorted(SEMIRINGS)}"
        ) from None
