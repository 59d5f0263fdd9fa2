"""attrs validators that raise `cirkit_ir.errors` exceptions naming the class and argument.

Symbolic layers, parameters, initializers and IR ops are frozen attrs classes that users
build directly; attrs' own validators raise a bare `ValueError` or `TypeError` whose message
is a tuple. These say which class and argument got which value, and what it takes instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from numbers import Integral, Real
from typing import Any

import attrs

from cirkit_ir.errors import OptionError

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def short_repr(value: object, limit: int = 80) -> str:
    """`repr(value)` on one line, cut to `limit` characters (an array's repr is long)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def a_or_an(noun: str) -> str:
    """`noun` with its indefinite article: 'an InputLayer', 'a TensorParameter'."""
    return ("an " if noun[:1].lower() in ("a", "e", "i", "o", "u") else "a ") + noun


def argument_name(instance: object, attribute: attrs.Attribute) -> str:
    """'Class.argument', spelled as the caller passes it (an attrs alias, not `units_`)."""
    return f"{type(instance).__name__}.{attribute.alias or attribute.name}"


def is_int(value: object) -> bool:
    """Whether `value` is an integer (NumPy's included), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether `value` is a real number (int, float, NumPy scalars), not a bool."""
    if type(value) is float or type(value) is int:  # the common case, without the ABC check
        return True
    return isinstance(value, Real) and not isinstance(value, bool)


def positive_int(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if type(value) is int and value > 0:  # the common case, first: IR ops check thousands
        return
    if not is_int(value) or value <= 0:  # type: ignore[operator]
        raise OptionError(
            f"{argument_name(instance, attribute)} must be a positive int, got {value!r}"
        )


def integer(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not is_int(value):
        raise OptionError(f"{argument_name(instance, attribute)} must be an int, got {value!r}")


def finite_real(instance: object, attribute: attrs.Attribute, value: object) -> None:
    """A real number that is neither NaN nor infinite."""
    if not is_real(value) or not math.isfinite(value):  # type: ignore[arg-type]
        raise OptionError(
            f"{argument_name(instance, attribute)} must be a finite number, got {value!r}"
        )


def real_not_nan(instance: object, attribute: attrs.Attribute, value: object) -> None:
    """A real number; +-inf is allowed (it can mean 'no bound' or log 0), NaN is not."""
    if not is_real(value) or math.isnan(value):  # type: ignore[arg-type]
        raise OptionError(
            f"{argument_name(instance, attribute)} must be a number (not NaN), got {value!r}"
        )


def positive_real(instance: object, attribute: attrs.Attribute, value: object) -> None:
    """A finite real number above zero (a scale, a concentration)."""
    if not is_real(value) or not 0 < value < math.inf:  # type: ignore[operator]
        raise OptionError(
            f"{argument_name(instance, attribute)} must be a finite number > 0, got {value!r}"
        )


def one_of(allowed: Iterable[object]) -> Validator:
    """A validator for a value from a closed set; the error lists the set."""
    choices = tuple(allowed)

    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if value not in choices:
            raise OptionError.choose(argument_name(instance, attribute), value, choices)

    return check


def instance_of(cls: type, hint: str) -> Validator:
    """A validator for an argument of class `cls`; `hint` says how to make one."""

    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, cls):
            raise OptionError(
                f"{argument_name(instance, attribute)} must be {a_or_an(cls.__name__)}, got"
                f" {a_or_an(type(value).__name__)} {short_repr(value)}; {hint}"
            )

    return check


def check_bounds(vmin: object, vmax: object, what: str) -> None:
    """The bounds of a clamp: numbers or None (no bound), at least one given, vmin <= vmax.

    A clamp without bounds is almost surely a forgotten option, and torch refuses it only
    when the circuit first runs; a NaN bound makes every value NaN.
    """
    for name, bound in (("vmin", vmin), ("vmax", vmax)):
        if bound is not None and (not is_real(bound) or math.isnan(bound)):  # type: ignore[arg-type]
            raise OptionError(f"{what}: {name} must be a number or None, got {bound!r}")
    if vmin is None and vmax is None:
        raise OptionError(
            f"{what} needs vmin or vmax (or both), got neither; give the bound it clamps to"
        )
    if vmin is not None and vmax is not None and not vmin <= vmax:  # type: ignore[operator]
        raise OptionError(f"{what} needs vmin <= vmax, got vmin={vmin!r}, vmax={vmax!r}")
