"""The ops of the IR: frozen, slotted, validated attrs classes.

Two families share one graph:

- circuit ops compute (folds, batch, units) tensors from data or from other circuit ops
  (their operands are numbered slots 0..arity-1) and read parameters through named slots;
- parameter ops compute parameter tensors (first dimension: folds) from other parameter ops.

Ops hold attributes only, never tensors or graph links; `Graph` holds the wiring. Every op
starts with one fold: folding rewrites ops into ops with more folds. `semiring` is None until
the `lower-semiring` pass says how an op computes.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.ir.types import SEMIRINGS, CircuitType, DType, ParamType
from cirkit_ir.symbolic.initializers import Initializer
from cirkit_ir.validators import check_bounds, instance_of, is_real, one_of
from cirkit_ir.validators import positive_int as _positive

_semiring = attrs.validators.optional(one_of(SEMIRINGS))


def _int_tuple(values: object) -> tuple[int, ...]:
    # map, not a generator: this converts the shape, sources or variables of every new op
    try:
        return tuple(map(int, values))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise OptionError(
            f"expected a tuple of ints (a shape, folds' variables), got {values!r}"
        ) from None


@attrs.frozen
class Op:
    """Base of every op. `name` is the op's mnemonic in the text form."""

    name: ClassVar[str] = ""

    @property
    def result_type(self) -> CircuitType | ParamType:
        raise NotImplementedError

    @property
    def num_folds(self) -> int:
        return self.result_type.folds

    def replace(self, **changes: object) -> Op:
        """A copy with some attributes changed (ops are immutable)."""
        return attrs.evolve(self, **changes)

    def validate(self) -> None:
        """Raise `OptionError` for attribute values that no backend can run.

        Constructors check what every op needs (positive sizes, known names). Checks that
        analyses may want to skip, to be defined on any op (`ir.sign` reasons about clamps
        whatever their bounds), live here instead: the IR parser and the verifier call this,
        so text and graphs with such ops are refused before they reach a backend.
        """


# =============================================================================================
# Circuit ops


@attrs.frozen
class CircuitOp(Op):
    """An op over circuit values. `arity` numbered operands, parameters in `param_slots`."""

    semiring: str | None = attrs.field(default=None, kw_only=True, validator=_semiring)

    @property
    def arity(self) -> int:
        return 0

    @property
    def num_output_units(self) -> int:
        raise NotImplementedError

    @property
    def num_input_units(self) -> int:
        return 0

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ()

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape each parameter slot must have (fold dimension first)."""
        return {}

    @property
    def nonnegative_slots(self) -> tuple[str, ...]:
        """The parameter slots whose values must be non-negative for likelihoods to be (sum
        weights, probabilities, tables). 'lse-sum' needs them so (the log of a negative
        likelihood is NaN): the backend checks those that `ir.sign` cannot prove so."""
        return ()

    @property
    def dtype(self) -> DType:
        return "complex" if self.semiring == "complex-lse-sum" else "real"

    @property
    def result_type(self) -> CircuitType:
        return CircuitType(self.num_folds, self.num_output_units, self.dtype)

    @property
    def signature(self) -> tuple[object, ...]:
        """What must agree for two ops to fold into one: every attribute but the fold data."""
        return (type(self),) + tuple(
            getattr(self, a.name) for a in attrs.fields(type(self)) if a.name not in _FOLD_ATTRS
        )


_FOLD_ATTRS = frozenset({"num_folds", "variables"})


# -- inputs ------------------------------------------------------------------------------------


@attrs.frozen
class InputOp(CircuitOp):
    """Reads data: fold f looks at variable `variables[f]`, over `num_channels` channels."""

    variables: tuple[int, ...] = attrs.field(converter=_int_tuple)
    num_channels: int = attrs.field(validator=_positive)
    num_units: int = attrs.field(validator=_positive)

    def __attrs_post_init__(self) -> None:
        if not self.variables:
            raise StructureError(f"{type(self).__name__} needs at least one fold (variable)")

    @property
    def num_folds(self) -> int:
        return len(self.variables)

    @property
    def num_output_units(self) -> int:
        return self.num_units


@attrs.frozen
class CategoricalOp(InputOp):
    """Categorical over `num_categories`; `param` says how the parameter is given."""

    name: ClassVar[str] = "categorical"
    num_categories: int = attrs.field(validator=_positive)
    param: str = attrs.field(default="probs", validator=one_of(("probs", "logits", "log_probs")))

    @property
    def param_slots(self) -> tuple[str, ...]:
        return (self.param,)

    def param_shapes(self):
        return {
            self.param: (self.num_folds, self.num_units, self.num_channels, self.num_categories)
        }

    @property
    def nonnegative_slots(self) -> tuple[str, ...]:
        return ("probs",) if self.param == "probs" else ()


@attrs.frozen
class BinomialOp(InputOp):
    """Binomial with `total_count` trials."""

    name: ClassVar[str] = "binomial"
    total_count: int = attrs.field(validator=_positive)
    param: str = attrs.field(default="logits", validator=one_of(("probs", "logits")))

    @property
    def param_slots(self) -> tuple[str, ...]:
        return (self.param,)

    def param_shapes(self):
        return {self.param: (self.num_folds, self.num_units, self.num_channels)}


@attrs.frozen
class GaussianOp(InputOp):
    """Normal density with `mean` and `stddev` parameters."""

    name: ClassVar[str] = "gaussian"

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("mean", "stddev")

    def param_shapes(self):
        shape = (self.num_folds, self.num_units, self.num_channels)
        return {"mean": shape, "stddev": shape}


@attrs.frozen
class EmbeddingOp(InputOp):
    """A non-negative table `weight` over `num_states` states."""

    name: ClassVar[str] = "embedding"
    num_states: int = attrs.field(validator=_positive)

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("weight",)

    def param_shapes(self):
        return {"weight": (self.num_folds, self.num_units, self.num_channels, self.num_states)}

    @property
    def nonnegative_slots(self) -> tuple[str, ...]:
        return ("weight",)


@attrs.frozen
class ConstantOp(CircuitOp):
    """Outputs `value` (folds, units), independent of the data, in linear space."""

    name: ClassVar[str] = "constant"
    num_units: int = attrs.field(validator=_positive)
    num_folds_: int = attrs.field(default=1, validator=_positive, alias="num_folds", kw_only=True)

    @property
    def num_folds(self) -> int:
        return self.num_folds_

    @property
    def num_output_units(self) -> int:
        return self.num_units

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("value",)

    def param_shapes(self):
        return {"value": (self.num_folds, self.num_units)}

    @property
    def nonnegative_slots(self) -> tuple[str, ...]:
        return ("value",)


@attrs.frozen
class EvidenceOp(CircuitOp):
    """An input op `distribution` evaluated at a fixed `observation` (folds, channels).

    `distribution` holds the input op's attributes; its parameter slots are this op's too.
    """

    name: ClassVar[str] = "evidence"
    distribution: InputOp = attrs.field(
        validator=instance_of(InputOp, "evidence evaluates an input op at its observation")
    )

    @property
    def num_folds(self) -> int:
        return self.distribution.num_folds

    @property
    def num_output_units(self) -> int:
        return self.distribution.num_units

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("observation",) + self.distribution.param_slots

    def param_shapes(self):
        d = self.distribution
        return {"observation": (d.num_folds, d.num_channels), **d.param_shapes()}

    @property
    def nonnegative_slots(self) -> tuple[str, ...]:
        return self.distribution.nonnegative_slots


# -- inner ops -----------------------------------------------------------------------------------


@attrs.frozen
class InnerOp(CircuitOp):
    """An op over other circuit ops; `num_folds` is its fold count."""

    num_folds_: int = attrs.field(default=1, validator=_positive, alias="num_folds", kw_only=True)

    @property
    def num_folds(self) -> int:
        return self.num_folds_

    @property
    def nonnegative_slots(self) -> tuple[str, ...]:
        return self.param_slots  # an inner op's only parameters are sum weights


_FOLD_ATTRS = _FOLD_ATTRS | {"num_folds_"}


@attrs.frozen
class DenseOp(InnerOp):
    """y = W x, W (folds, out, in): a sum layer with one input."""

    name: ClassVar[str] = "dense"
    in_units: int = attrs.field(validator=_positive)
    out_units: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return 1

    @property
    def num_input_units(self) -> int:
        return self.in_units

    @property
    def num_output_units(self) -> int:
        return self.out_units

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("weight",)

    def param_shapes(self):
        return {"weight": (self.num_folds, self.out_units, self.in_units)}


@attrs.frozen
class MixingOp(InnerOp):
    """y[k] = sum_h W[k, h] x_h[k], W (folds, units, arity)."""

    name: ClassVar[str] = "mixing"
    units: int = attrs.field(validator=_positive)
    num_inputs: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return self.num_inputs

    @property
    def num_input_units(self) -> int:
        return self.units

    @property
    def num_output_units(self) -> int:
        return self.units

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("weight",)

    def param_shapes(self):
        return {"weight": (self.num_folds, self.units, self.num_inputs)}


@attrs.frozen
class HadamardOp(InnerOp):
    """y[k] = prod_h x_h[k]."""

    name: ClassVar[str] = "hadamard"
    units: int = attrs.field(validator=_positive)
    num_inputs: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return self.num_inputs

    @property
    def num_input_units(self) -> int:
        return self.units

    @property
    def num_output_units(self) -> int:
        return self.units


@attrs.frozen
class KroneckerOp(InnerOp):
    """All products of one unit per input: in_units ** arity units, first input slowest."""

    name: ClassVar[str] = "kronecker"
    in_units: int = attrs.field(validator=_positive)
    num_inputs: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return self.num_inputs

    @property
    def num_input_units(self) -> int:
        return self.in_units

    @property
    def num_output_units(self) -> int:
        return self.in_units**self.num_inputs


@attrs.frozen
class TuckerOp(InnerOp):
    """A kronecker product then a dense sum, fused: W (folds, out, in ** arity)."""

    name: ClassVar[str] = "tucker"
    in_units: int = attrs.field(validator=_positive)
    out_units: int = attrs.field(validator=_positive)
    num_inputs: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return self.num_inputs

    @property
    def num_input_units(self) -> int:
        return self.in_units

    @property
    def num_output_units(self) -> int:
        return self.out_units

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("weight",)

    def param_shapes(self):
        return {"weight": (self.num_folds, self.out_units, self.in_units**self.num_inputs)}


@attrs.frozen
class CPTOp(InnerOp):
    """A hadamard product then a dense sum, fused: W (folds, out, in)."""

    name: ClassVar[str] = "cp-t"
    in_units: int = attrs.field(validator=_positive)
    out_units: int = attrs.field(validator=_positive)
    num_inputs: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return self.num_inputs

    @property
    def num_input_units(self) -> int:
        return self.in_units

    @property
    def num_output_units(self) -> int:
        return self.out_units

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("weight",)

    def param_shapes(self):
        return {"weight": (self.num_folds, self.out_units, self.in_units)}


@attrs.frozen
class CPOp(InnerOp):
    """A dense sum per input then a hadamard product, fused: W (folds, arity, out, in)."""

    name: ClassVar[str] = "cp"
    in_units: int = attrs.field(validator=_positive)
    out_units: int = attrs.field(validator=_positive)
    num_inputs: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return self.num_inputs

    @property
    def num_input_units(self) -> int:
        return self.in_units

    @property
    def num_output_units(self) -> int:
        return self.out_units

    @property
    def param_slots(self) -> tuple[str, ...]:
        return ("weight",)

    def param_shapes(self):
        return {"weight": (self.num_folds, self.num_inputs, self.out_units, self.in_units)}


SUM_OPS: tuple[type[CircuitOp], ...] = (DenseOp, MixingOp, TuckerOp, CPTOp, CPOp)
PRODUCT_OPS: tuple[type[CircuitOp], ...] = (HadamardOp, KroneckerOp)
INPUT_OPS: tuple[type[CircuitOp], ...] = (
    CategoricalOp,
    BinomialOp,
    GaussianOp,
    EmbeddingOp,
    ConstantOp,
    EvidenceOp,
)


# =============================================================================================
# Parameter ops


@attrs.frozen
class ParamOp(Op):
    """A parameter op. `shape` is its result shape (folds first); `arity` operands."""

    shape: tuple[int, ...] = attrs.field(converter=_int_tuple, kw_only=True)

    @property
    def arity(self) -> int:
        """How many parameter operands the op reads (slots 0..arity-1)."""
        return 1

    @property
    def dtype(self) -> DType:
        return "real"

    @property
    def result_type(self) -> ParamType:
        return ParamType(self.shape, self.dtype)

    @property
    def num_folds(self) -> int:
        return self.shape[0]  # `result_type.folds`, without building the type

    def infer_shape(self, operand_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The result shape implied by the operands' shapes (the verifier compares)."""
        return operand_shapes[0]

    @property
    def signature(self) -> tuple[object, ...]:
        """What must agree for two parameter ops to fold: all but the fold dimension."""
        values = attrs.asdict(self, recurse=False)
        values["shape"] = self.shape[1:]
        values.pop("sources", None)
        return (type(self), tuple(sorted(values.items(), key=lambda kv: kv[0])))


@attrs.frozen
class TensorOp(ParamOp):
    """A leaf tensor. `sources[f]` identifies the symbolic tensor that fold f came from.

    Sources let the backend draw the same values for a symbolic parameter however the graph
    was folded (compiling with a seed), and map values between compiled circuits.
    """

    name: ClassVar[str] = "tensor"
    initializer: Initializer = attrs.field(
        validator=instance_of(Initializer, "e.g. NormalInitializer()")
    )
    learnable: bool = True
    tensor_dtype: DType = "real"
    sources: tuple[int, ...] = attrs.field(converter=_int_tuple, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.shape:
            raise StructureError("tensor: the shape needs a fold dimension first, got ()")
        if len(self.sources) != self.shape[0]:
            raise StructureError(
                f"tensor: {len(self.sources)} sources for {self.shape[0]} folds in {self.shape}"
            )

    @property
    def arity(self) -> int:
        return 0

    @property
    def dtype(self) -> DType:
        return self.tensor_dtype

    def infer_shape(self, operand_shapes):
        return self.shape


def _negative_axis(value: int) -> int:
    if not isinstance(value, int) or value >= 0:
        raise OptionError(
            f"parameter op axes are negative (counted from the end, so that folding keeps"
            f" them), got {value!r}"
        )
    return value


@attrs.frozen
class SoftmaxOp(ParamOp):
    name: ClassVar[str] = "softmax"
    axis: int = attrs.field(default=-1, validator=lambda i, a, v: _negative_axis(v))


@attrs.frozen
class LogSoftmaxOp(ParamOp):
    name: ClassVar[str] = "log-softmax"
    axis: int = attrs.field(default=-1, validator=lambda i, a, v: _negative_axis(v))


@attrs.frozen
class ExpOp(ParamOp):
    name: ClassVar[str] = "exp"


@attrs.frozen
class LogOp(ParamOp):
    name: ClassVar[str] = "log"


@attrs.frozen
class SigmoidOp(ParamOp):
    name: ClassVar[str] = "sigmoid"


@attrs.frozen
class SoftplusOp(ParamOp):
    name: ClassVar[str] = "softplus"


@attrs.frozen
class ClampOp(ParamOp):
    """Clamps into [vmin, vmax]; a missing bound (None) does not clamp that side."""

    name: ClassVar[str] = "clamp"
    vmin: float | None = None
    vmax: float | None = None

    def validate(self) -> None:
        """Neither bound (torch refuses it, at the first forward), a NaN bound (every value
        NaN) or vmin > vmax (vmax everywhere) is an `OptionError` here."""
        check_bounds(self.vmin, self.vmax, "clamp")


@attrs.frozen
class ScaledSigmoidOp(ParamOp):
    name: ClassVar[str] = "scaled-sigmoid"
    vmin: float = 0.0
    vmax: float = 1.0

    def validate(self) -> None:
        """A bound that is not a finite number makes values NaN (inf - inf, 0 * inf)."""
        for name, bound in (("vmin", self.vmin), ("vmax", self.vmax)):
            if not is_real(bound) or not math.isfinite(bound):
                raise OptionError(f"scaled-sigmoid: {name} must be a finite number, got {bound!r}")


@attrs.frozen
class MixingWeightOp(ParamOp):
    """(F, K, H) mixing weights -> (F, K, H*K) dense weights, [k, h*K + k] = w[k, h]."""

    name: ClassVar[str] = "mixing-weight"

    def infer_shape(self, operand_shapes):
        f, k, h = operand_shapes[0]
        return (f, k, h * k)


@attrs.frozen
class ReduceOp(ParamOp):
    """Reduces `axis` with `kind` in {sum, prod, lse}."""

    name: ClassVar[str] = "reduce"
    axis: int = attrs.field(default=-1, validator=lambda i, a, v: _negative_axis(v))
    kind: str = attrs.field(default="sum", validator=one_of(("sum", "prod", "lse")))

    def infer_shape(self, operand_shapes):
        shape = list(operand_shapes[0])
        del shape[self.axis]
        return tuple(shape)


@attrs.frozen
class KroneckerParamOp(ParamOp):
    """Per fold, the Kronecker product of two matrices."""

    name: ClassVar[str] = "kron"

    @property
    def arity(self) -> int:
        return 2

    def infer_shape(self, operand_shapes):
        (f, a0, a1), (_, b0, b1) = operand_shapes
        return (f, a0 * b0, a1 * b1)


@attrs.frozen
class MatMulOp(ParamOp):
    """Per fold, a @ b: the weight of two dense ops in a row."""

    name: ClassVar[str] = "matmul"

    @property
    def arity(self) -> int:
        return 2

    def infer_shape(self, operand_shapes):
        (f, m, _), (_, _, n) = operand_shapes
        return (f, m, n)


@attrs.frozen
class StackOp(ParamOp):
    """Stacks arity operands (F, *S) on a new axis 1: (F, arity, *S) (cp weights)."""

    name: ClassVar[str] = "stack"
    num_inputs: int = attrs.field(validator=_positive)

    @property
    def arity(self) -> int:
        return self.num_inputs

    def infer_shape(self, operand_shapes):
        first = operand_shapes[0]
        return (first[0], len(operand_shapes), *first[1:])


PARAM_OPS: tuple[type[ParamOp], ...] = (
    TensorOp,
    SoftmaxOp,
    LogSoftmaxOp,
    ExpOp,
    LogOp,
    SigmoidOp,
    SoftplusOp,
    ClampOp,
    ScaledSigmoidOp,
    MixingWeightOp,
    ReduceOp,
    KroneckerParamOp,
    MatMulOp,
    StackOp,
)
CIRCUIT_OPS: tuple[type[CircuitOp], ...] = (
    *INPUT_OPS,
    DenseOp,
    MixingOp,
    HadamardOp,
    KroneckerOp,
    TuckerOp,
    CPTOp,
    CPOp,
)
OPS_BY_NAME: dict[str, type[Op]] = {cls.name: cls for cls in (*CIRCUIT_OPS, *PARAM_OPS)}


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
