"""Polynomial input layers, and the parameter ops of their algebra (products, derivatives).

A polynomial is closed under the algebra's operators: the product of two is a polynomial
whose coefficients convolve, the derivative one whose coefficients shift and scale. Both are
parameter nodes over the operands' coefficients, so a derived circuit trains the original.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from cirkit_ir.errors import StructureError
from cirkit_ir.symbolic.layers import (
    InputLayer,
    ParameterFactory,
    _check_shape,
    _factory_field,
    _normal,
    _optional_param,
    _set_param,
)
from cirkit_ir.symbolic.parameters import (
    BinaryParameter,
    ParameterNode,
    UnaryParameter,
)
from cirkit_ir.validators import positive_int

_nonnegative_int = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(0))


@attrs.frozen(eq=False)
class PolynomialLayer(InputLayer):
    """f(x) = sum_d coeff[k, c, d] x^d per channel (channels multiplied), of `degree`; by
    default the coefficients are normal draws. (libcirkit's coefficients are (K, degree + 1):
    here they carry the channel axis every input layer has.)"""

    kind: ClassVar[str] = "polynomial"
    degree: int = attrs.field(kw_only=True, validator=_nonnegative_int)
    coeff: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    coeff_factory: ParameterFactory | None = _factory_field()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        shape = (self.num_output_units, self.num_channels, self.degree + 1)
        if self.coeff is None:
            _set_param(self, "coeff", self.coeff_factory, shape, _normal)
        _check_shape(self, "coeff", self.coeff, shape)

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"coeff": self.coeff}

    def config(self) -> dict[str, object]:
        return {"degree": self.degree}


@attrs.frozen(eq=False)
class PolynomialProductParameter(BinaryParameter):
    """The coefficients of the products of two layers' polynomials, (K1, C, D1) and
    (K2, C, D2) -> (K1 * K2, C, D1 + D2 - 1): unit i * K2 + j multiplies unit i of `a` by
    unit j of `b` (their coefficients convolve)."""

    name: ClassVar[str] = "polynomial-product"

    def __attrs_post_init__(self) -> None:
        if len(self.a.shape) != 3 or len(self.b.shape) != 3 or self.a.shape[1] != self.b.shape[1]:
            raise StructureError(
                "PolynomialProductParameter needs (units, channels, degree + 1) coefficients"
                f" with equal channels, got {self.a.shape} and {self.b.shape}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        (k1, c, d1), (k2, _, d2) = self.a.shape, self.b.shape
        return (k1 * k2, c, d1 + d2 - 1)


@attrs.frozen(eq=False)
class PolynomialDifferentialParameter(UnaryParameter):
    """The coefficients of the `order`-th derivative: (K, C, D) -> (K, C, max(D - order, 1)),
    coefficient d becomes coeff[d + order] * (d + order)! / d! (a constant 0 when the order
    exceeds the degree)."""

    name: ClassVar[str] = "polynomial-differential"
    order: int = attrs.field(default=1, validator=positive_int)

    @property
    def shape(self) -> tuple[int, ...]:
        k, c, d = self.x.shape
        return (k, c, max(d - self.order, 1))
