"""Initializers: how a tensor parameter gets its first values.

They are symbolic (frozen, comparable, printable in the IR) and know how to fill a torch
tensor, so that the backend and the reference evaluator draw the same values from a seed.
"""

from __future__ import annotations

import json
from typing import ClassVar

import attrs
import numpy as np
import torch

from cirkit_ir.errors import OptionError
from cirkit_ir.validators import finite_real, integer, positive_real, real_not_nan


@attrs.frozen
class Initializer:
    """Base class; `name` is how the IR text form spells the initializer."""

    name: ClassVar[str] = ""

    def sample(
        self, shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def options(self) -> dict[str, float]:
        return attrs.asdict(self)


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype.to_real() if dtype.is_complex else dtype


def _as_dtype(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return values if values.dtype == dtype else values.to(dtype)


def _both_parts(draw, shape, dtype: torch.dtype) -> torch.Tensor:
    """`draw(shape, real dtype)`, for a complex dtype drawn twice: the real part, then the
    imaginary part, independent and from the same distribution (a complex parameter with a
    zero imaginary part would be a real one, and its circuit's phases could never train)."""
    if not dtype.is_complex:
        return draw(shape, dtype)
    real = _real_dtype(dtype)
    return torch.complex(draw(shape, real), draw(shape, real))


@attrs.frozen
class NormalInitializer(Initializer):
    """Independent normal draws, N(mean, stddev^2)."""

    name: ClassVar[str] = "normal"
    mean: float = attrs.field(default=0.0, validator=finite_real)
    stddev: float = attrs.field(default=1.0, validator=positive_real)

    def sample(self, shape, dtype, generator=None):
        def draw(shape, dtype):
            values = torch.randn(shape, dtype=dtype, generator=generator)
            if self.stddev != 1.0 or self.mean != 0.0:  # the standard normal needs no arithmetic
                values = values * self.stddev + self.mean
            return values

        return _both_parts(draw, shape, dtype)


@attrs.frozen
class UniformInitializer(Initializer):
    """Independent uniform draws on [a, b)."""

    name: ClassVar[str] = "uniform"
    a: float = attrs.field(default=0.0, validator=finite_real)
    b: float = attrs.field(default=1.0, validator=finite_real)

    def __attrs_post_init__(self) -> None:
        if not self.a < self.b:
            raise OptionError(
                f"UniformInitializer needs a < b (draws lie in [a, b)), got a={self.a}, b={self.b}"
            )

    def sample(self, shape, dtype, generator=None):
        def draw(shape, dtype):
            return torch.rand(shape, dtype=dtype, generator=generator) * (self.b - self.a) + self.a

        return _both_parts(draw, shape, dtype)


@attrs.frozen
class DirichletInitializer(Initializer):
    """Rows drawn from a symmetric Dirichlet(alpha) along `axis`: they sum to one."""

    name: ClassVar[str] = "dirichlet"
    alpha: float = attrs.field(default=1.0, validator=positive_real)
    axis: int = attrs.field(default=-1, validator=integer)

    def sample(self, shape, dtype, generator=None):
        # A Dirichlet draw is a normalized vector of Gamma(alpha, 1) draws; torch's gamma
        # sampler takes no generator, so draw Gamma(alpha) from uniforms by inversion when
        # alpha == 1 (the common case) and otherwise through torch.distributions.
        real = _real_dtype(dtype)
        if self.alpha == 1.0:
            u = torch.rand(shape, dtype=real, generator=generator).clamp_min(torch.finfo(real).tiny)
            gammas = -torch.log(u)
        else:
            if generator is not None:
                seed = int(torch.randint(2**62, (1,), generator=generator))
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    gammas = torch.distributions.Gamma(
                        torch.tensor(self.alpha, dtype=real), torch.tensor(1.0, dtype=real)
                    ).sample(shape)
            else:
                gammas = torch.distributions.Gamma(
                    torch.tensor(self.alpha, dtype=real), torch.tensor(1.0, dtype=real)
                ).sample(shape)
        return _as_dtype(gammas / gammas.sum(dim=self.axis, keepdim=True), dtype)


@attrs.frozen
class ConstantInitializer(Initializer):
    """Every entry set to `value`."""

    name: ClassVar[str] = "constant"
    value: float = attrs.field(default=0.0, validator=real_not_nan)

    def sample(self, shape, dtype, generator=None):
        return torch.full(shape, self.value, dtype=dtype)


def _json_array(value: object) -> str:
    """A number or a (nested) array of real numbers as canonical JSON text."""
    if isinstance(value, str):  # JSON text, as the IR parser hands it back
        try:
            value = json.loads(value)
        except ValueError:
            raise OptionError(
                f"ConstantTensorInitializer takes a number or an array, got the text {value!r}"
            ) from None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()  # type: ignore[union-attr]
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise OptionError(
            "ConstantTensorInitializer takes a real number or an array of real numbers, got"
            f" {type(value).__name__} {value!r}"
        ) from None
    if np.isnan(array).any():
        raise OptionError("ConstantTensorInitializer values must not be NaN")
    return json.dumps(array.tolist())


@attrs.frozen
class ConstantTensorInitializer(Initializer):
    """Fixed values: a number, or an array that broadcasts to the tensor's shape.

    cirkit's name. The values are held as JSON text (`value`), so that the initializer is
    hashable and the IR text form prints it and parses it back; `array` gives them as NumPy.
    """

    name: ClassVar[str] = "constant-tensor"
    value: str = attrs.field(converter=_json_array)

    @property
    def array(self) -> np.ndarray:
        return np.asarray(json.loads(self.value), dtype=np.float64)

    def allows_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether the values broadcast to `shape`."""
        try:
            return np.broadcast_shapes(self.array.shape, shape) == tuple(shape)
        except ValueError:
            return False

    def sample(self, shape, dtype, generator=None):
        values = torch.as_tensor(self.array, dtype=_real_dtype(dtype))
        return _as_dtype(values.broadcast_to(shape).clone(), dtype)


INITIALIZERS: dict[str, type[Initializer]] = {
    cls.name: cls
    for cls in (
        NormalInitializer,
        UniformInitializer,
        DirichletInitializer,
        ConstantInitializer,
        ConstantTensorInitializer,
    )
}
