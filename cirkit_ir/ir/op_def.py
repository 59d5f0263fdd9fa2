"""How an op is declared: its attributes, operands, result, parameter slots and traits, once.

An op is a frozen attrs class; `register_op` makes it known by name to the text form, and its
declarations are all that the printer, the parser, the verifier, fold, fuse and dce read::

    @register_op
    class DenseOp(InnerOp):
        '''y = W x, W (folds, out, in): a sum over one input's units.'''

        name = "dense"
        traits = (Smooth(),)
        in_units: int = positive()
        out_units: int = positive()
        operands = operands_def(1, units="in_units")
        result = result_def("out_units")
        weight = param_def("out_units", "in_units", nonnegative=True)

- attributes are attrs fields (validated when the op is made, printed and parsed by name);
  `fold_attr()` marks a per-fold attribute (one entry per fold, such as an input's
  variables), which folding concatenates and which two ops need not share to fold together;
- `operands_def(count, units=...)` says how many numbered operands the op reads and how many
  units each has; `result_def(units)` the units of a circuit op's result;
- `param_def(*dims, ...)` declares a named parameter slot: its shape after the fold
  dimension, what its values must be (`nonnegative`, `need`) and, for slots that exist only
  for some attribute values, `when`;
- `traits` say what passes may rely on (see `cirkit_ir.ir.traits`).

A dimension (in `units`, `count`, `param_def`) is an int, the name of an int attribute, or a
function of the op. Nothing here lists ops: the registry is filled by the decorator, so an op
defined outside the package joins exactly like the built-in ones.
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.validators import positive_int

Dim = int | str | Callable[[Any], int]
"""A size: a literal, the name of an int attribute of the op, or a function of the op."""


def resolve(dim: Dim, op: object) -> int:
    """The value of a `Dim` for `op`."""
    if type(dim) is int:
        return dim
    if type(dim) is str:
        return getattr(op, dim)
    return dim(op)  # type: ignore[operator]


def getter(dim: Dim | None, default: int = 0) -> Callable[[Any], int]:
    """`resolve(dim, op)` as a function of the op, made once per op class (sizes are read
    for every op of every graph, many times)."""
    if dim is None:
        return lambda op: default
    if type(dim) is int:
        return lambda op: dim
    if type(dim) is str:
        return operator.attrgetter(dim)
    return dim  # type: ignore[return-value]


# -- what parameter values must be -----------------------------------------------------------------


class Need(enum.Enum):
    """What the values of a parameter slot must be for its layer to compute a likelihood."""

    NONNEGATIVE = "non-negative"  # [0, inf): sum weights, probs and tables under 'lse-sum'
    PROBABILITY = "a probability"  # [0, 1]: a binomial's probs
    POSITIVE = "positive"  # [smallest normal, inf): a gaussian's stddev (1 / stddev)

    def proven(self, bounds: Any, tiny: float) -> bool:
        """Whether values within `bounds` (a `sign.Bounds`, None when unknown) meet the
        need, in a dtype whose smallest normal number is `tiny` (below it, 1 / stddev
        overflows)."""
        if bounds is None:
            return False
        if self is Need.POSITIVE:
            return bounds.lo >= tiny
        return bounds.lo >= 0 and (self is Need.NONNEGATIVE or bounds.hi <= 1)


# -- declarations ----------------------------------------------------------------------------------


@attrs.frozen
class OperandsDef:
    """`count` numbered operands (slots 0..count-1), each with `units` units (circuit ops;
    None for parameter ops, whose operands are tensors)."""

    count: Dim = 0
    units: Dim | None = None


@attrs.frozen
class ResultDef:
    """A circuit op's result: (folds, batch, `units`) values."""

    units: Dim


@attrs.frozen
class ParamDef:
    """A named parameter slot: a tensor of shape (folds, *dims).

    `nonnegative`: the values are sum weights or linear probabilities, which real logs
    ('lse-sum') need non-negative. `need`: a domain the values need in every semiring (a
    binomial's probs in [0, 1], a stddev > 0). `when`: the slot exists only for ops for
    which it returns True (a categorical reads `probs`, `logits` or `log_probs`).
    """

    dims: tuple[Dim, ...]
    nonnegative: bool = False
    need: Need | None = None
    when: Callable[[Any], bool] | None = None
    name: str = ""  # set by the op class it is declared on

    def shape(self, op: object, folds: int) -> tuple[int, ...]:
        return (folds, *(resolve(d, op) for d in self.dims))


def operands_def(count: Dim, units: Dim | None = None) -> OperandsDef:
    """`count` numbered operands with `units` units each (see the module docstring)."""
    return OperandsDef(count, units)


def result_def(units: Dim) -> ResultDef:
    """A circuit op's result has `units` units."""
    return ResultDef(units)


def param_def(
    *dims: Dim,
    nonnegative: bool = False,
    need: Need | None = None,
    when: Callable[[Any], bool] | None = None,
) -> ParamDef:
    """A parameter slot of shape (folds, *dims), named by the class attribute it is bound to."""
    return ParamDef(tuple(dims), nonnegative, need, when)


def positive(**kwargs: Any) -> Any:
    """An attribute holding a positive int (a number of units, categories, inputs)."""
    return attrs.field(validator=positive_int, **kwargs)


def fold_attr(**kwargs: Any) -> Any:
    """A per-fold attribute: a tuple with one entry per fold (an input's variables).

    Folding concatenates it, ops that differ only in it fold together, and its length is the
    op's number of folds.
    """
    metadata = {**kwargs.pop("metadata", {}), "per_fold": True}
    return attrs.field(converter=int_tuple, metadata=metadata, **kwargs)


def folds_attr() -> Any:
    """The number of folds of an op that has no per-fold attribute, `num_folds=` (default 1).

    Printed in the result type rather than among the attributes.
    """
    return attrs.field(default=1, validator=positive_int, alias="num_folds", kw_only=True)


def int_tuple(values: object) -> tuple[int, ...]:
    """A tuple of ints, converted from any iterable of integers (map: runs for every op)."""
    try:
        return tuple(map(int, values))  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise OptionError(
            f"expected a tuple of ints (a shape, folds' variables), got {values!r}"
        ) from None


def is_per_fold(field: attrs.Attribute) -> bool:
    return bool(field.metadata.get("per_fold"))


def is_folds_field(field: attrs.Attribute) -> bool:
    """The field holding the fold count (`folds_attr`)."""
    return field.alias == "num_folds"


def shape_attr() -> Any:
    """A parameter op's result shape, folds first (`shape=`): fold data, like `folds_attr`."""
    return attrs.field(converter=int_tuple, kw_only=True, metadata={"fold_shape": True})


def is_fold_data(field: attrs.Attribute) -> bool:
    """Whether a field says how many folds an op has, or what each fold holds."""
    return is_per_fold(field) or is_folds_field(field) or bool(field.metadata.get("fold_shape"))


# -- the per-class view of the declarations --------------------------------------------------------


@attrs.frozen
class Declaration:
    """An op class's declarations, gathered once (what `Op` methods read for every op)."""

    operands: OperandsDef
    result: ResultDef | None
    params: tuple[ParamDef, ...]
    arity: Callable[[Any], int]  # the op's number of operands
    input_units: Callable[[Any], int]  # units of each operand (0 without units)
    output_units: Callable[[Any], int] | None  # units of the result (circuit ops)
    traits: tuple[Any, ...]
    fold_fields: tuple[str, ...]  # per-fold attributes
    folds_field: str | None  # the fold-count field, if the op has one
    signature_fields: tuple[str, ...]  # what two ops must share to fold together


_DECLARATIONS: dict[type, Declaration] = {}


def declaration(cls: type) -> Declaration:
    """The declarations of op class `cls` (its own and its bases')."""
    found = _DECLARATIONS.get(cls)
    if found is None:
        found = _DECLARATIONS[cls] = _gather(cls)
    return found


def _gather(cls: type) -> Declaration:
    operands = OperandsDef()
    result = None
    params: dict[str, ParamDef] = {}
    traits: list[Any] = []
    for klass in reversed(cls.__mro__):
        own = vars(klass)
        if isinstance(own.get("operands"), OperandsDef):
            operands = own["operands"]
        if isinstance(own.get("result"), ResultDef):
            result = own["result"]
        for key, value in own.items():
            if isinstance(value, ParamDef):
                params[key] = attrs.evolve(value, name=key)
        for trait in own.get("traits", ()):
            if trait not in traits:
                traits.append(trait)
    fields = attrs.fields(cls) if attrs.has(cls) else ()
    return Declaration(
        operands=operands,
        result=result,
        params=tuple(params.values()),
        arity=getter(operands.count),
        input_units=getter(operands.units),
        output_units=None if result is None else getter(result.units),
        traits=tuple(traits),
        fold_fields=tuple(f.name for f in fields if is_per_fold(f)),
        folds_field=next((f.name for f in fields if is_folds_field(f)), None),
        signature_fields=tuple(f.name for f in fields if not is_fold_data(f)),
    )


# -- the registry ----------------------------------------------------------------------------------

_OPS: dict[str, type] = {}

OpClass = TypeVar("OpClass", bound=type)


def register_op(cls: OpClass) -> OpClass:
    """Class decorator: makes `cls` a frozen attrs op (if it is not one yet) and registers it
    under its `name`, for the text form and every pass.

    Registering another class under a taken name is an `OptionError`; registering the same
    class again (a module reload) replaces it.
    """
    from cirkit_ir.ir.ops import Op  # the base class; ops.py registers through here

    if not (isinstance(cls, type) and issubclass(cls, Op)):
        raise OptionError(f"register_op decorates subclasses of cirkit_ir.ir.ops.Op, got {cls!r}")
    if "__attrs_attrs__" not in cls.__dict__:
        cls = attrs.frozen(cls)  # type: ignore[assignment]
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not _valid_name(name):
        raise OptionError(
            f"{cls.__name__} needs a class attribute `name`: letters, digits, '-', '_' and '.',"
            f" starting with a letter (its mnemonic in the IR text); got {name!r}"
        )
    previous = _OPS.get(name)
    if previous is not None and _qualname(previous) != _qualname(cls):
        raise OptionError(
            f"an op named {name!r} is already registered ({_qualname(previous)}); pick another name"
        )
    _OPS[name] = cls
    _DECLARATIONS.pop(cls, None)
    return cls


def lookup_op(name: str) -> type | None:
    """The op class registered under `name`, or None."""
    return _OPS.get(name)


def registered_ops() -> dict[str, type]:
    """A copy of the registry: name -> op class, in registration order."""
    return dict(_OPS)


def iter_registered(base: type) -> Iterator[type]:
    """The registered op classes derived from `base`."""
    return (cls for cls in _OPS.values() if issubclass(cls, base))


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalpha() and all(c.isalnum() or c in "-_." for c in name)


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# The annotations of ops name these (ClassVar[...] is checked by attrs).
__all__ = [
    "ClassVar",
    "Declaration",
    "Dim",
    "Need",
    "OperandsDef",
    "ParamDef",
    "ResultDef",
    "declaration",
    "fold_attr",
    "folds_attr",
    "int_tuple",
    "iter_registered",
    "lookup_op",
    "operands_def",
    "param_def",
    "positive",
    "register_op",
    "registered_ops",
    "shape_attr",
    "resolve",
    "result_def",
]
