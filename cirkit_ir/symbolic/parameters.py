"""Symbolic parameters: small DAGs of tensor leaves and element-wise or shape-changing ops.

A layer holds the root of its parameter graph. Nodes are compared by identity, so two layers
that hold the same node share a parameter. Every node knows its shape; the shapes here are
those of one layer (no fold dimension: the IR adds it).
"""

from __future__ import annotations

import math
import operator
from typing import ClassVar, Literal

import attrs

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.symbolic.initializers import (
    ConstantTensorInitializer,
    DirichletInitializer,
    Initializer,
    NormalInitializer,
)
from cirkit_ir.validators import (
    Validator,
    check_bounds,
    finite_real,
    instance_of,
    is_int,
    one_of,
)

DType = Literal["real", "complex"]


def _shape(value: object) -> tuple[int, ...]:
    try:
        shape = tuple(map(operator.index, value))  # type: ignore[call-overload]
    except TypeError:
        raise OptionError(
            f"a parameter shape is a tuple of positive ints, got {value!r}; e.g. (4, 3)"
        ) from None
    if any(d <= 0 for d in shape):
        raise OptionError(f"parameter shapes need positive dimensions, got {shape}")
    return shape


def _is_node(what: str) -> Validator:
    """The validator of an operand: a node of a parameter graph, not a tensor or a number."""
    return instance_of(
        ParameterNode, f"wrap values in a TensorParameter (e.g. TensorParameter({what}))"
    )


@attrs.frozen(eq=False)
class ParameterNode:
    """A node of a parameter graph; `inputs` are the nodes it reads."""

    @property
    def inputs(self) -> tuple[ParameterNode, ...]:
        return ()

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def dtype(self) -> DType:
        return self.inputs[0].dtype

    def nodes(self) -> list[ParameterNode]:
        """The nodes of the graph rooted here, inputs before users, each once."""
        # An explicit stack, not a recursive closure: a closure that calls itself is a
        # reference cycle, garbage that only the cyclic collector frees, and
        # `Circuit.tensor_parameters` calls this once per layer. Entries are
        # (node, inputs already pushed?).
        order: list[ParameterNode] = []
        seen: set[int] = set()
        stack: list[tuple[ParameterNode, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                # Reversed, so that the first input is visited (and listed) first.
                stack.extend((child, False) for child in reversed(node.inputs))
        return order


@attrs.frozen(eq=False)
class TensorParameter(ParameterNode):
    """A leaf: a tensor of a given shape, drawn from `initializer`."""

    tensor_shape: tuple[int, ...] = attrs.field(converter=_shape)
    initializer: Initializer = attrs.field(
        factory=NormalInitializer,
        validator=instance_of(Initializer, "e.g. NormalInitializer() or ConstantInitializer(1.0)"),
    )
    learnable: bool = True
    tensor_dtype: DType = attrs.field(default="real", validator=one_of(("real", "complex")))

    def __attrs_post_init__(self) -> None:
        init = self.initializer
        if isinstance(init, DirichletInitializer):
            _check_axis(init, init.axis, self.tensor_shape)
        if isinstance(init, ConstantTensorInitializer) and not init.allows_shape(self.shape):
            raise StructureError(
                f"TensorParameter of shape {self.shape}: its ConstantTensorInitializer holds"
                f" values of shape {init.array.shape}, which do not broadcast to it"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.tensor_shape

    @property
    def dtype(self) -> DType:
        return self.tensor_dtype


@attrs.frozen(eq=False)
class UnaryParameter(ParameterNode):
    """An op with one input whose shape it keeps."""

    name: ClassVar[str] = ""
    x: ParameterNode = attrs.field(validator=_is_node("shape, initializer"))

    @property
    def inputs(self) -> tuple[ParameterNode, ...]:
        return (self.x,)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape


@attrs.frozen(eq=False)
class BinaryParameter(ParameterNode):
    """An op with two inputs, `a` and `b`: complex when either is."""

    name: ClassVar[str] = ""
    a: ParameterNode = attrs.field(validator=_is_node("shape"))
    b: ParameterNode = attrs.field(validator=_is_node("shape"))

    @property
    def inputs(self) -> tuple[ParameterNode, ...]:
        return (self.a, self.b)

    @property
    def dtype(self) -> DType:
        return "complex" if "complex" in (self.a.dtype, self.b.dtype) else "real"


def _check_axis(node: object, axis: object, shape: tuple[int, ...]) -> int:
    if not is_int(axis) or not -len(shape) <= axis < len(shape):  # type: ignore[operator]
        raise OptionError(
            f"{type(node).__name__}: axis {axis!r} out of range for shape {shape}; give an int"
            f" in {-len(shape)}..{len(shape) - 1}"
        )
    return int(axis) % len(shape)  # type: ignore[call-overload]


@attrs.frozen(eq=False)
class SoftmaxParameter(UnaryParameter):
    """Normalizes along `axis`, so weights are non-negative and sum to one."""

    name: ClassVar[str] = "softmax"
    axis: int = -1

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "axis", _check_axis(self, self.axis, self.x.shape))


@attrs.frozen(eq=False)
class LogSoftmaxParameter(UnaryParameter):
    """The log of a softmax, computed stably."""

    name: ClassVar[str] = "log-softmax"
    axis: int = -1

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "axis", _check_axis(self, self.axis, self.x.shape))


@attrs.frozen(eq=False)
class ExpParameter(UnaryParameter):
    name: ClassVar[str] = "exp"


@attrs.frozen(eq=False)
class LogParameter(UnaryParameter):
    name: ClassVar[str] = "log"


@attrs.frozen(eq=False)
class SigmoidParameter(UnaryParameter):
    name: ClassVar[str] = "sigmoid"


@attrs.frozen(eq=False)
class SoftplusParameter(UnaryParameter):
    name: ClassVar[str] = "softplus"


@attrs.frozen(eq=False)
class ClampParameter(UnaryParameter):
    """Clamps into [vmin, vmax]; the 'positive-clamp' parameterization uses vmin > 0."""

    name: ClassVar[str] = "clamp"
    vmin: float | None = 1e-18
    vmax: float | None = None

    def __attrs_post_init__(self) -> None:
        check_bounds(self.vmin, self.vmax, "ClampParameter")


@attrs.frozen(eq=False)
class ScaledSigmoidParameter(UnaryParameter):
    """vmin + (vmax - vmin) * sigmoid(x): a smooth map into an interval (e.g. std-devs)."""

    name: ClassVar[str] = "scaled-sigmoid"
    vmin: float = attrs.field(default=0.0, validator=finite_real)
    vmax: float = attrs.field(default=1.0, validator=finite_real)


@attrs.frozen(eq=False)
class MixingWeightParameter(UnaryParameter):
    """Expands mixing weights (K, H) into a dense weight (K, H*K), block-sparse.

    Entry [k, h*K + k] is w[k, h], every other entry is zero: the dense form of a mixing
    layer, so a mixing layer can be rewritten as a dense layer over stacked inputs.
    """

    name: ClassVar[str] = "mixing-weight"

    def __attrs_post_init__(self) -> None:
        if len(self.x.shape) != 2:
            raise StructureError(
                f"MixingWeightParameter expands (units, arity) mixing weights, a matrix; got"
                f" an input of shape {self.x.shape}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        k, h = self.x.shape
        return (k, h * k)


@attrs.frozen(eq=False)
class ReduceParameter(UnaryParameter):
    """Reduces `axis` away with `sum`, `prod` or `logsumexp`."""

    name: ClassVar[str] = "reduce"
    axis: int = -1
    kind: str = attrs.field(default="sum", validator=one_of(("sum", "prod", "lse")))

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "axis", _check_axis(self, self.axis, self.x.shape))

    @property
    def shape(self) -> tuple[int, ...]:
        shape = self.x.shape
        return shape[: self.axis] + shape[self.axis + 1 :]


@attrs.frozen(eq=False)
class KroneckerParameter(BinaryParameter):
    """The Kronecker product of two matrices."""

    name: ClassVar[str] = "kronecker"

    def __attrs_post_init__(self) -> None:
        if len(self.a.shape) != 2 or len(self.b.shape) != 2:
            raise StructureError(
                f"KroneckerParameter needs two matrices, got shapes {self.a.shape} and"
                f" {self.b.shape}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(x * y for x, y in zip(self.a.shape, self.b.shape, strict=True))


@attrs.frozen(eq=False)
class MatMulParameter(BinaryParameter):
    """The matrix product a @ b: the weight of two dense layers in a row."""

    name: ClassVar[str] = "matmul"

    def __attrs_post_init__(self) -> None:
        if len(self.a.shape) != 2 or len(self.b.shape) != 2 or self.a.shape[1] != self.b.shape[0]:
            raise StructureError(
                f"MatMulParameter cannot multiply shapes {self.a.shape} and {self.b.shape}: it"
                " needs matrices (m, n) and (n, p)"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.a.shape[0], self.b.shape[1])


def num_elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


@attrs.frozen(eq=False)
class ConjugateParameter(UnaryParameter):
    """The complex conjugate (the identity on real values): what `conjugate` wraps every
    complex parameter of a circuit in, so that the conjugate trains the original."""

    name: ClassVar[str] = "conjugate"


@attrs.frozen(eq=False)
class OuterParameter(BinaryParameter):
    """The outer product of `a` and `b` along `axis`, flattened there; the other axes are
    element-wise: out[..., i * J + j, ...] = a[..., i, ...] * b[..., j, ...].

    With axis 0 it is the parameter of a product of two input layers (their units paired,
    the first operand's varying slowest, as in a Kronecker layer)."""

    name: ClassVar[str] = "outer"
    axis: int = 0

    def __attrs_post_init__(self) -> None:
        axis = _check_axis(self, self.axis, self.a.shape)
        object.__setattr__(self, "axis", axis)
        rest_a = self.a.shape[:axis] + self.a.shape[axis + 1 :]
        rest_b = self.b.shape[:axis] + self.b.shape[axis + 1 :]
        if len(self.a.shape) != len(self.b.shape) or rest_a != rest_b:
            raise StructureError(
                f"OuterParameter along axis {axis} needs shapes that agree elsewhere, got"
                f" {self.a.shape} and {self.b.shape}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        shape = list(self.a.shape)
        shape[self.axis] *= self.b.shape[self.axis]
        return tuple(shape)


@attrs.frozen(eq=False)
class GramParameter(BinaryParameter):
    """Per channel, the inner products of every unit of `a` with every unit of `b` over the
    last axis: (K1, C, S), (K2, C, S) -> (K1 * K2, C), entry [i * K2 + j, c] =
    sum_s a[i, c, s] b[j, c, s].

    It is the sum over states of their `OuterParameter` along axis 0 (the integral of a
    product of two tables), computed as a matrix product rather than materialized."""

    name: ClassVar[str] = "gram"

    def __attrs_post_init__(self) -> None:
        if len(self.a.shape) != 3 or self.a.shape[1:] != self.b.shape[1:]:
            raise StructureError(
                "GramParameter needs (units, channels, states) tables that agree but in units,"
                f" got {self.a.shape} and {self.b.shape}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.a.shape[0] * self.b.shape[0], self.a.shape[1])


GAUSSIAN_PRODUCT_OUTPUTS: tuple[str, ...] = ("mean", "stddev", "normalizer")


@attrs.frozen(eq=False)
class GaussianProductParameter(ParameterNode):
    """The product of two layers of normal densities, unit i * K2 + j of unit i of the
    first (`mean1`, `stddev1`, each (K1, C)) and j of the second, in closed form:

        N(x; m1, s1) N(x; m2, s2) = N(m1; m2, sqrt(s1^2 + s2^2)) N(x; m, s),
        s^2 = s1^2 s2^2 / (s1^2 + s2^2),  m = (m1 s2^2 + m2 s1^2) / (s1^2 + s2^2).

    `output` picks m or s ((K1 * K2, C)) or the normalizer, the first factor multiplied over
    the channels ((K1 * K2,))."""

    name: ClassVar[str] = "gaussian-product"
    mean1: ParameterNode = attrs.field(validator=_is_node("shape"))
    stddev1: ParameterNode = attrs.field(validator=_is_node("shape"))
    mean2: ParameterNode = attrs.field(validator=_is_node("shape"))
    stddev2: ParameterNode = attrs.field(validator=_is_node("shape"))
    output: str = attrs.field(default="mean", validator=one_of(GAUSSIAN_PRODUCT_OUTPUTS))

    def __attrs_post_init__(self) -> None:
        (k1, c), (k2, c2) = self.mean1.shape, self.mean2.shape
        if c != c2 or self.stddev1.shape != (k1, c) or self.stddev2.shape != (k2, c):
            raise StructureError(
                "GaussianProductParameter needs (units, channels) means and stddevs, equal"
                f" channels; got {self.mean1.shape}, {self.stddev1.shape}, {self.mean2.shape},"
                f" {self.stddev2.shape}"
            )

    @property
    def inputs(self) -> tuple[ParameterNode, ...]:
        return (self.mean1, self.stddev1, self.mean2, self.stddev2)

    @property
    def shape(self) -> tuple[int, ...]:
        (k1, c), (k2, _) = self.mean1.shape, self.mean2.shape
        return (k1 * k2,) if self.output == "normalizer" else (k1 * k2, c)


@attrs.frozen(eq=False)
class BinomialTableParameter(UnaryParameter):
    """The table of a binomial layer: (K, C) probabilities (or logits, with `logits`) ->
    (K, C, total_count + 1), entry x = C(n, x) p^x (1 - p)^(n - x). A product of a binomial
    layer with another discrete layer is a product of their tables."""

    name: ClassVar[str] = "binomial-table"
    total_count: int = 1
    logits: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.x.shape, self.total_count + 1)
