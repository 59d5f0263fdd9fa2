"""The built-in ops of the IR, each declared once (see `op_def` for how an op is declared).

Two families share one graph:

- circuit ops compute (folds, batch, units) tensors from data or from other circuit ops
  (their operands are numbered slots 0..arity-1) and read parameters through named slots;
- parameter ops compute parameter tensors (first dimension: folds) from other parameter ops.

Ops hold attributes only, never tensors or graph links; `Graph` holds the wiring and the
tensor values. Every op starts with one fold: folding rewrites ops into ops with more folds.
`semiring` is None until the `lower-semiring` pass says how an op computes, and `kernel` None
until `select-kernels` names the backend kernel that computes it (if not the eager one).

To add an op, declare it like the ones below in a module of your own and decorate it with
`register_op`; register its torch kernel beside the kernel (`cirkit_ir.backends.torch`
`register_layer` / `register_parameter_node`) and, for a new symbolic layer, its lowering rule
beside the layer (`cirkit_ir.ir.lower.layer_rule`). `examples/custom_op.py` does all of it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attrs

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.ir.op_def import (
    Need,
    OperandsDef,
    ParamDef,
    declaration,
    fold_attr,
    folds_attr,
    operands_def,
    param_def,
    positive,
    register_op,
    result_def,
    shape_attr,
)
from cirkit_ir.ir.traits import Decomposable, Elementwise, ReadsData, Smooth, Trait, Unscoped
from cirkit_ir.ir.types import MAX_SEMIRINGS, SEMIRINGS, CircuitType, DType, ParamType
from cirkit_ir.symbolic.initializers import Initializer
from cirkit_ir.validators import check_bounds, instance_of, is_real, one_of

_semiring = attrs.validators.optional(one_of(SEMIRINGS + MAX_SEMIRINGS))


_KERNEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*\Z")


def _kernel_name(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and not (isinstance(value, str) and _KERNEL_NAME.match(value)):
        raise OptionError(
            f"kernel must be a kernel name (letters, digits, '-', '_') or None, got {value!r}"
        )


@attrs.frozen
class Op:
    """Base of every op. `name` is the op's mnemonic in the text form."""

    name: ClassVar[str] = ""
    traits: ClassVar[tuple[Trait, ...]] = ()
    operands: ClassVar[OperandsDef] = operands_def(0)

    @property
    def result_type(self) -> CircuitType | ParamType:
        raise NotImplementedError

    @property
    def num_folds(self) -> int:
        return self.result_type.folds

    @property
    def arity(self) -> int:
        """How many numbered operands the op reads (slots 0..arity-1)."""
        return declaration(type(self)).arity(self)

    @classmethod
    def has_trait(cls, trait: type[Trait]) -> bool:
        return any(isinstance(t, trait) for t in declaration(cls).traits)

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

    # -- folding ----------------------------------------------------------------------------------

    @property
    def signature(self) -> tuple[object, ...]:
        """What must agree for two ops to fold into one: every attribute but the fold data."""
        cls = type(self)
        return (cls, (_SIGNATURE_GETTERS.get(cls) or _signature_getter(cls))(self))

    def fold_key(self, fold: int) -> tuple[object, ...]:
        """The per-fold attributes of fold `fold` (how folding orders input folds)."""
        return tuple(getattr(self, f)[fold] for f in declaration(type(self)).fold_fields)

    def folded(self, parts: Sequence[tuple[Op, int]]) -> Op:
        """The op whose fold j is fold `parts[j][1]` of op `parts[j][0]` (equal signatures)."""
        decl = declaration(type(self))
        changes: dict[str, object] = {
            f: [getattr(op, f)[i] for op, i in parts] for f in decl.fold_fields
        }
        if decl.folds_field is not None:
            changes["num_folds"] = len(parts)
        return self.replace(**changes)


def _signature_getter(cls: type) -> Callable[[Any], tuple]:
    """A C-level getter of the signature fields of `cls`, made once per class (it runs
    once per op of every graph that is folded)."""
    getter = _SIGNATURE_GETTERS.get(cls)
    if getter is None:
        names = declaration(cls).signature_fields
        if not names:
            getter = _no_fields
        elif len(names) == 1:
            one = operator.attrgetter(names[0])
            getter = lambda op: (one(op),)  # noqa: E731
        else:
            getter = operator.attrgetter(*names)
        _SIGNATURE_GETTERS[cls] = getter
    return getter


def _no_fields(op: object) -> tuple:
    return ()


_SIGNATURE_GETTERS: dict[type, Callable[[Any], tuple]] = {}


# =============================================================================================
# Circuit ops


@attrs.frozen
class CircuitOp(Op):
    """An op over circuit values: `arity` numbered operands, parameters in named slots."""

    semiring: str | None = attrs.field(default=None, kw_only=True, validator=_semiring)
    kernel: str | None = attrs.field(default=None, kw_only=True, validator=_kernel_name)
    """The backend kernel that computes the op (`select-kernels` sets it; None: the default
    kernel, eager). Only a name here: the backend that compiles the graph knows which names
    exist and which ops each computes (`backends.torch.kernels.kernel_class`)."""

    @property
    def num_input_units(self) -> int:
        return declaration(type(self)).input_units(self)

    @property
    def num_output_units(self) -> int:
        units = declaration(type(self)).output_units
        if units is None:
            raise NotImplementedError(f"{type(self).__name__} declares no result_def")
        return units(self)

    def param_defs(self) -> tuple[tuple[ParamDef, Op], ...]:
        """The op's parameter slots, each with the op its sizes are read from."""
        return tuple(
            (d, self) for d in declaration(type(self)).params if d.when is None or d.when(self)
        )

    @property
    def param_slots(self) -> tuple[str, ...]:
        """The names of the parameter slots, in declared order."""
        return tuple(d.name for d, _ in self.param_defs())

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape each parameter slot must have (fold dimension first)."""
        folds = self.num_folds
        return {d.name: d.shape(owner, folds) for d, owner in self.param_defs()}

    @property
    def nonnegative_slots(self) -> tuple[str, ...]:
        """The slots whose values must be non-negative for likelihoods to be (sum weights,
        probabilities, tables). 'lse-sum' needs them so (the log of a negative likelihood
        is NaN): the backend checks those that `ir.sign` cannot prove so."""
        return tuple(d.name for d, _ in self.param_defs() if d.nonnegative)

    def slot_needs(self, signed_parameters: bool) -> dict[str, Need]:
        """Slot -> what its values must be, for the slots that have a domain.

        `signed_parameters`: whether the semiring computes with signed sum weights and
        probabilities (sum-product, complex logs); if not, `nonnegative` slots need >= 0.
        """
        needs: dict[str, Need] = {}
        for d, _ in self.param_defs():
            if d.need is not None:
                needs[d.name] = d.need
            elif d.nonnegative and not signed_parameters:
                needs[d.name] = Need.NONNEGATIVE
        return needs

    @property
    def dtype(self) -> DType:
        return "complex" if self.semiring == "complex-lse-sum" else "real"

    @property
    def result_type(self) -> CircuitType:
        return CircuitType(self.num_folds, self.num_output_units, self.dtype)


# -- inputs ------------------------------------------------------------------------------------


@attrs.frozen
class InputOp(CircuitOp):
    """Reads data: fold f looks at variable `variables[f]`, over `num_channels` channels."""

    traits = (ReadsData(),)
    variables: tuple[int, ...] = fold_attr()
    num_channels: int = positive()
    num_units: int = positive()
    result = result_def("num_units")

    def __attrs_post_init__(self) -> None:
        if not self.variables:
            raise StructureError(f"{type(self).__name__} needs at least one fold (variable)")

    @property
    def num_folds(self) -> int:
        return len(self.variables)

    def max_value(self) -> int | None:
        """The largest valid datum of a discrete input; None for a continuous one."""
        return None


def _reads(param: str) -> Callable[[Any], bool]:
    """`when` of a slot that exists when the op's `param` attribute names it."""
    return lambda op: op.param == param


@register_op
@attrs.frozen
class CategoricalOp(InputOp):
    """Categorical over `num_categories`; `param` says how the parameter is given."""

    name = "categorical"
    num_categories: int = positive()
    param: str = attrs.field(default="probs", validator=one_of(("probs", "logits", "log_probs")))
    probs = param_def(
        "num_units", "num_channels", "num_categories", nonnegative=True, when=_reads("probs")
    )
    logits = param_def("num_units", "num_channels", "num_categories", when=_reads("logits"))
    log_probs = param_def("num_units", "num_channels", "num_categories", when=_reads("log_probs"))

    def max_value(self) -> int:
        return self.num_categories - 1


@register_op
@attrs.frozen
class BinomialOp(InputOp):
    """Binomial with `total_count` trials."""

    name = "binomial"
    total_count: int = positive()
    param: str = attrs.field(default="logits", validator=one_of(("probs", "logits")))
    probs = param_def("num_units", "num_channels", need=Need.PROBABILITY, when=_reads("probs"))
    logits = param_def("num_units", "num_channels", when=_reads("logits"))

    def max_value(self) -> int:
        return self.total_count


@register_op
@attrs.frozen
class GaussianOp(InputOp):
    """Normal density with `mean` and `stddev` parameters."""

    name = "gaussian"
    mean = param_def("num_units", "num_channels")
    stddev = param_def("num_units", "num_channels", need=Need.POSITIVE)


@register_op
@attrs.frozen
class EmbeddingOp(InputOp):
    """A non-negative table `weight` over `num_states` states."""

    name = "embedding"
    num_states: int = positive()
    weight = param_def("num_units", "num_channels", "num_states", nonnegative=True)

    def max_value(self) -> int:
        return self.num_states - 1


@register_op
@attrs.frozen
class ConstantOp(CircuitOp):
    """Outputs `value` (folds, units), independent of the data, in linear space."""

    name = "constant"
    traits = (Unscoped(),)
    num_units: int = positive()
    num_folds_: int = folds_attr()
    result = result_def("num_units")
    value = param_def("num_units", nonnegative=True)

    @property
    def num_folds(self) -> int:
        return self.num_folds_


@register_op
@attrs.frozen
class EvidenceOp(CircuitOp):
    """An input op `distribution` evaluated at a fixed `observation` (folds, channels).

    `distribution` holds the input op's attributes (its variables say which variable each
    fold observed, for the record); its parameter slots are this op's too.
    """

    name = "evidence"
    traits = (Unscoped(),)
    distribution: InputOp = attrs.field(
        validator=instance_of(InputOp, "evidence evaluates an input op at its observation")
    )
    result = result_def(lambda op: op.distribution.num_units)
    observation = param_def(lambda op: op.distribution.num_channels)

    @property
    def num_folds(self) -> int:
        return self.distribution.num_folds

    def param_defs(self) -> tuple[tuple[ParamDef, Op], ...]:
        return super().param_defs() + self.distribution.param_defs()

    @property
    def signature(self) -> tuple[object, ...]:
        return (type(self), self.semiring, self.distribution.signature)

    def fold_key(self, fold: int) -> tuple[object, ...]:
        return self.distribution.fold_key(fold)

    def folded(self, parts: Sequence[tuple[Op, int]]) -> Op:
        inner = [(op.distribution, f) for op, f in parts]  # type: ignore[attr-defined]
        return self.replace(distribution=self.distribution.folded(inner))


# -- inner ops -----------------------------------------------------------------------------------


@attrs.frozen
class InnerOp(CircuitOp):
    """An op over other circuit ops; `num_folds` is its fold count."""

    num_folds_: int = folds_attr()

    @property
    def num_folds(self) -> int:
        return self.num_folds_


@register_op
@attrs.frozen
class DenseOp(InnerOp):
    """y = W x, W (folds, out, in): a sum layer with one input."""

    name = "dense"
    traits = (Smooth(),)
    in_units: int = positive()
    out_units: int = positive()
    operands = operands_def(1, units="in_units")
    result = result_def("out_units")
    weight = param_def("out_units", "in_units", nonnegative=True)


@register_op
@attrs.frozen
class MixingOp(InnerOp):
    """y[k] = sum_h W[k, h] x_h[k], W (folds, units, arity)."""

    name = "mixing"
    traits = (Smooth(),)
    units: int = positive()
    num_inputs: int = positive()
    operands = operands_def("num_inputs", units="units")
    result = result_def("units")
    weight = param_def("units", "num_inputs", nonnegative=True)


@register_op
@attrs.frozen
class HadamardOp(InnerOp):
    """y[k] = prod_h x_h[k]."""

    name = "hadamard"
    traits = (Decomposable(),)
    units: int = positive()
    num_inputs: int = positive()
    operands = operands_def("num_inputs", units="units")
    result = result_def("units")


def units_power(base: int, exponent: int) -> int:
    """base ** exponent units (a Kronecker product's), refused past int64 before it is computed:
    a hostile `num_inputs=1000000000` would otherwise take seconds to build a huge int."""
    if base > 1 and exponent * math.log2(base) > 63:
        raise StructureError(
            f"{base} ** {exponent} units is beyond int64: the arity (num_inputs) is too large"
        )
    return base**exponent


@register_op
@attrs.frozen
class KroneckerOp(InnerOp):
    """All products of one unit per input: in_units ** arity units, first input slowest."""

    name = "kronecker"
    traits = (Decomposable(),)
    in_units: int = positive()
    num_inputs: int = positive()
    operands = operands_def("num_inputs", units="in_units")
    result = result_def(lambda op: units_power(op.in_units, op.num_inputs))


@register_op
@attrs.frozen
class TuckerOp(InnerOp):
    """A kronecker product then a dense sum, fused: W (folds, out, in ** arity)."""

    name = "tucker"
    traits = (Decomposable(),)
    in_units: int = positive()
    out_units: int = positive()
    num_inputs: int = positive()
    operands = operands_def("num_inputs", units="in_units")
    result = result_def("out_units")
    weight = param_def(
        "out_units", lambda op: units_power(op.in_units, op.num_inputs), nonnegative=True
    )


@register_op
@attrs.frozen
class CPTOp(InnerOp):
    """A hadamard product then a dense sum, fused: W (folds, out, in)."""

    name = "cp-t"
    traits = (Decomposable(),)
    in_units: int = positive()
    out_units: int = positive()
    num_inputs: int = positive()
    operands = operands_def("num_inputs", units="in_units")
    result = result_def("out_units")
    weight = param_def("out_units", "in_units", nonnegative=True)


@register_op
@attrs.frozen
class CPOp(InnerOp):
    """A dense sum per input then a hadamard product, fused: W (folds, arity, out, in)."""

    name = "cp"
    traits = (Decomposable(),)
    in_units: int = positive()
    out_units: int = positive()
    num_inputs: int = positive()
    operands = operands_def("num_inputs", units="in_units")
    result = result_def("out_units")
    weight = param_def("num_inputs", "out_units", "in_units", nonnegative=True)


# =============================================================================================
# Parameter ops


@attrs.frozen
class ParamOp(Op):
    """A parameter op. `shape` is its result shape (folds first); `arity` operands."""

    operands = operands_def(1)
    shape: tuple[int, ...] = shape_attr()

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
        cls = type(self)
        getter = _SIGNATURE_GETTERS.get(cls) or _signature_getter(cls)
        return (cls, self.shape[1:], getter(self))

    def folded(self, parts: Sequence[tuple[Op, int]]) -> Op:
        decl = declaration(type(self))
        changes: dict[str, object] = {
            f: [getattr(op, f)[i] for op, i in parts] for f in decl.fold_fields
        }
        return self.replace(shape=(len(parts), *self.shape[1:]), **changes)


@register_op
@attrs.frozen
class TensorOp(ParamOp):
    """A leaf tensor. `sources[f]` names the symbolic tensor that fold f holds.

    A source is the identity of one tensor of the circuit (its index in
    `Circuit.tensor_parameters()` when lowered): the value the graph holds for it
    (`Graph.values`), or else the one the backend draws for it from `initializer` (the same
    however the graph was folded, when compiling with a seed).
    """

    name = "tensor"
    operands = operands_def(0)
    initializer: Initializer = attrs.field(
        validator=instance_of(Initializer, "e.g. NormalInitializer()")
    )
    learnable: bool = True
    tensor_dtype: DType = "real"
    sources: tuple[int, ...] = fold_attr(kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.shape:
            raise StructureError("tensor: the shape needs a fold dimension first, got ()")
        if len(self.sources) != self.shape[0]:
            raise StructureError(
                f"tensor: {len(self.sources)} sources for {self.shape[0]} folds in {self.shape}"
            )

    @property
    def dtype(self) -> DType:
        return self.tensor_dtype

    def infer_shape(self, operand_shapes):
        return self.shape


def _negative_axis(instance: object, attribute: object, value: object) -> None:
    if type(value) is not int or value >= 0:
        raise OptionError(
            f"parameter op axes are negative (counted from the end, so that folding keeps"
            f" them), got {value!r}"
        )


def _axis_attr() -> Any:
    return attrs.field(default=-1, validator=_negative_axis)


@attrs.frozen
class _AxisOp(ParamOp):
    """A parameter op over one axis, counted from the end (`validate`: within the rank)."""

    axis: int = _axis_attr()

    def validate(self) -> None:
        if -self.axis > len(self.shape) - 1:
            raise OptionError(
                f"{self.name}: axis {self.axis} is out of range for shape"
                f" {'x'.join(map(str, self.shape))} (axes count from the end and never reach"
                " the fold dimension)"
            )


@register_op
@attrs.frozen
class SoftmaxOp(_AxisOp):
    name = "softmax"


@register_op
@attrs.frozen
class LogSoftmaxOp(_AxisOp):
    name = "log-softmax"


@register_op
@attrs.frozen
class ExpOp(ParamOp):
    name = "exp"
    traits = (Elementwise(),)


@register_op
@attrs.frozen
class LogOp(ParamOp):
    name = "log"
    traits = (Elementwise(),)


@register_op
@attrs.frozen
class SigmoidOp(ParamOp):
    name = "sigmoid"
    traits = (Elementwise(),)


@register_op
@attrs.frozen
class SoftplusOp(ParamOp):
    name = "softplus"
    traits = (Elementwise(),)


@register_op
@attrs.frozen
class ClampOp(ParamOp):
    """Clamps into [vmin, vmax]; a missing bound (None) does not clamp that side."""

    name = "clamp"
    traits = (Elementwise(),)
    vmin: float | None = None
    vmax: float | None = None

    def validate(self) -> None:
        """Neither bound (torch refuses it, at the first forward), a NaN bound (every value
        NaN) or vmin > vmax (vmax everywhere) is an `OptionError` here."""
        check_bounds(self.vmin, self.vmax, "clamp")


@register_op
@attrs.frozen
class ScaledSigmoidOp(ParamOp):
    name = "scaled-sigmoid"
    traits = (Elementwise(),)
    vmin: float = 0.0
    vmax: float = 1.0

    def validate(self) -> None:
        """A bound that is not a finite number makes values NaN (inf - inf, 0 * inf)."""
        for name, bound in (("vmin", self.vmin), ("vmax", self.vmax)):
            if not is_real(bound) or not math.isfinite(bound):
                raise OptionError(f"scaled-sigmoid: {name} must be a finite number, got {bound!r}")


@register_op
@attrs.frozen
class MixingWeightOp(ParamOp):
    """(F, K, H) mixing weights -> (F, K, H*K) dense weights, [k, h*K + k] = w[k, h]."""

    name = "mixing-weight"

    def infer_shape(self, operand_shapes):
        f, k, h = operand_shapes[0]
        return (f, k, h * k)


@register_op
@attrs.frozen
class ReduceOp(_AxisOp):
    """Reduces `axis` with `kind` in {sum, prod, lse}."""

    name = "reduce"
    kind: str = attrs.field(default="sum", validator=one_of(("sum", "prod", "lse")))

    def infer_shape(self, operand_shapes):
        shape = list(operand_shapes[0])
        del shape[self.axis]
        return tuple(shape)

    def validate(self) -> None:
        if -self.axis > len(self.shape):
            raise OptionError(
                f"reduce: axis {self.axis} is out of range for a result of shape"
                f" {'x'.join(map(str, self.shape))} (the axis of the operand, counted from its"
                " end, never reaches the fold dimension)"
            )


@register_op
@attrs.frozen
class KroneckerParamOp(ParamOp):
    """Per fold, the Kronecker product of two matrices."""

    name = "kron"
    operands = operands_def(2)

    def infer_shape(self, operand_shapes):
        (f, a0, a1), (_, b0, b1) = operand_shapes
        return (f, a0 * b0, a1 * b1)


@register_op
@attrs.frozen
class MatMulOp(ParamOp):
    """Per fold, a @ b: the weight of two dense ops in a row."""

    name = "matmul"
    operands = operands_def(2)

    def infer_shape(self, operand_shapes):
        (f, m, _), (_, _, n) = operand_shapes
        return (f, m, n)


@register_op
@attrs.frozen
class StackOp(ParamOp):
    """Stacks arity operands (F, *S) on a new axis 1: (F, arity, *S) (cp weights)."""

    name = "stack"
    num_inputs: int = positive()
    operands = operands_def("num_inputs")

    def infer_shape(self, operand_shapes):
        first = operand_shapes[0]
        return (first[0], len(operand_shapes), *first[1:])


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


@register_op
@attrs.frozen
class ConjugateOp(ParamOp):
    """The complex conjugate, entry by entry (what the `conjugate` pass puts on complex
    tensors)."""

    name = "conj"
    traits = (Elementwise(),)

    @property
    def dtype(self) -> DType:
        return "complex"


@register_op
@attrs.frozen
class OuterOp(_AxisOp):
    """Per fold, the outer product of two operands along `axis` (from the end), flattened
    there (the first operand's index varying slowest); other axes are element-wise."""

    name = "outer"
    operands = operands_def(2)

    def infer_shape(self, operand_shapes):
        a, b = operand_shapes
        shape = list(a)
        shape[self.axis] *= b[self.axis]
        return tuple(shape)


@register_op
@attrs.frozen
class GaussianDerivativeOp(InputOp):
    """The derivative of a normal density in its variable, d/dx N(x; mean, stddev): signed,
    so only semirings that compute with signed values (sum-product, complex-lse-sum) run it.
    One channel (the derivative of a multi-channel density is a gradient, not one value)."""

    name = "gaussian-derivative"
    mean = param_def("num_units", "num_channels")
    stddev = param_def("num_units", "num_channels", need=Need.POSITIVE)


@register_op
@attrs.frozen
class PolynomialOp(InputOp):
    """f(x) = sum_d coeff[k, c, d] x^d per channel, channels multiplied (signed values)."""

    name = "polynomial"
    degree: int = attrs.field(validator=attrs.validators.ge(0))
    coeff = param_def("num_units", "num_channels", lambda op: op.degree + 1)


@register_op
@attrs.frozen
class PolynomialProductOp(ParamOp):
    """Per fold, (K1, C, D1) and (K2, C, D2) coefficients -> those of the K1 * K2 products
    (unit i * K2 + j), (K1 * K2, C, D1 + D2 - 1)."""

    name = "poly-product"
    operands = operands_def(2)

    def infer_shape(self, operand_shapes):
        (f, k1, c, d1), (_, k2, _, d2) = operand_shapes
        return (f, k1 * k2, c, d1 + d2 - 1)


@register_op
@attrs.frozen
class PolynomialDifferentialOp(ParamOp):
    """Per fold, the coefficients of the `order`-th derivative (K, C, D) -> (K, C, D')."""

    name = "poly-differential"
    order: int = positive()

    def infer_shape(self, operand_shapes):
        f, k, c, d = operand_shapes[0]
        return (f, k, c, max(d - self.order, 1))


@register_op
@attrs.frozen
class GramOp(ParamOp):
    """Per fold and channel, all inner products of two tables' units over their last axis:
    (F, K1, C, S), (F, K2, C, S) -> (F, K1 * K2, C)."""

    name = "gram"
    operands = operands_def(2)

    def infer_shape(self, operand_shapes):
        (f, k1, c, _), (_, k2, _, _) = operand_shapes
        return (f, k1 * k2, c)


@register_op
@attrs.frozen
class GaussianProductOp(ParamOp):
    """Per fold, the closed-form product of two layers of normal densities, (F, K1, C) means
    and stddevs of each: `output` is the product's 'mean' or 'stddev' (F, K1 * K2, C) or its
    'normalizer' (F, K1 * K2) (see `symbolic.GaussianProductParameter`)."""

    name = "gaussian-product"
    operands = operands_def(4)
    output: str = attrs.field(default="mean", validator=one_of(("mean", "stddev", "normalizer")))

    def infer_shape(self, operand_shapes):
        (f, k1, c), _, (_, k2, _), _ = operand_shapes
        return (f, k1 * k2) if self.output == "normalizer" else (f, k1 * k2, c)


@register_op
@attrs.frozen
class KroneckerDenseOp(InnerOp):
    """y = (W1 (x) W2) x, W1 (folds, out1, in1), W2 (folds, out2, in2), never materialized:
    the product of two dense ops (output unit o1 * out2 + o2, input unit i1 * in2 + i2)."""

    name = "kron-dense"
    traits = (Smooth(),)
    in1: int = positive()
    in2: int = positive()
    out1: int = positive()
    out2: int = positive()
    operands = operands_def(1, units=lambda op: op.in1 * op.in2)
    result = result_def(lambda op: op.out1 * op.out2)
    weight1 = param_def("out1", "in1", nonnegative=True)
    weight2 = param_def("out2", "in2", nonnegative=True)


@register_op
@attrs.frozen
class BinomialTableOp(ParamOp):
    """Per fold, the (K, C, total_count + 1) table of binomials of (K, C) probabilities (or
    logits, with `logits`)."""

    name = "binomial-table"
    total_count: int = positive()
    logits: bool = False

    def infer_shape(self, operand_shapes):
        return (*operand_shapes[0], self.total_count + 1)
