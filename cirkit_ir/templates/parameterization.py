"""How a template parameterizes a tensor: an initializer for the raw tensor, an activation on top.

A `Parameterization` is a small, frozen description (strings and numbers, so it can sit in
configs and be compared); `build_parameter` turns it plus a shape into a symbolic parameter
graph: a `TensorParameter` leaf, wrapped in the activation's node unless the activation is
``'none'``.

>>> p = Parameterization(initialization="uniform", activation="positive-clamp")
>>> build_parameter(p, (4, 16)).shape
(4, 16)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.symbolic.initializers import (
    ConstantInitializer,
    DirichletInitializer,
    Initializer,
    NormalInitializer,
    UniformInitializer,
)
from cirkit_ir.symbolic.parameters import (
    ClampParameter,
    ExpParameter,
    LogSoftmaxParameter,
    ParameterNode,
    SigmoidParameter,
    SoftmaxParameter,
    SoftplusParameter,
    TensorParameter,
)
from cirkit_ir.validators import check_bounds

INITIALIZATIONS: dict[str, type[Initializer]] = {
    "normal": NormalInitializer,
    "uniform": UniformInitializer,
    "dirichlet": DirichletInitializer,
    "constant": ConstantInitializer,
}
"""Initialization name -> initializer class; `initialization_kwargs` go to its fields."""

ACTIVATIONS: tuple[str, ...] = (
    "softmax",
    "log-softmax",
    "positive-clamp",
    "exp",
    "sigmoid",
    "softplus",
    "none",
)
"""The activations a parameterization may apply to its tensor."""

# The keyword arguments each activation accepts, with their defaults.
_ACTIVATION_OPTIONS: dict[str, dict[str, Any]] = {
    "softmax": {"axis": -1},
    "log-softmax": {"axis": -1},
    "positive-clamp": {"vmin": 1e-18, "vmax": None},
    "exp": {},
    "sigmoid": {},
    "softplus": {},
    "none": {},
}

DTYPES: tuple[str, ...] = ("real", "complex")
REAL_ONLY_ACTIVATIONS: tuple[str, ...] = (
    "softmax",
    "log-softmax",
    "positive-clamp",
    "sigmoid",
    "softplus",
)
"""The activations meaningless on complex numbers: a complex parameterization refuses them."""


class FrozenKwargs(dict):
    """A read-only dict of options: hashable (when its values are) and picklable."""

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("parameterization options are read-only; build a new Parameterization")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return repr(dict(self))


def _frozen_mapping(value: Mapping[str, Any] | None) -> FrozenKwargs:
    if value is None:
        return FrozenKwargs()
    if not isinstance(value, Mapping):
        raise OptionError(f"parameterization options must be a mapping of names, got {value!r}")
    for name in value:
        if not isinstance(name, str):
            raise OptionError(f"parameterization option names must be strings, got {name!r}")
    return FrozenKwargs(value)


def _check_choice(allowed: tuple[str, ...], what: str):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, str) or value not in allowed:
            raise OptionError.choose(what, value, allowed)

    return check


def _check_names(what: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in given:
        if name not in allowed:
            if not allowed:
                raise OptionError(f"{what} takes no options, got {name!r}")
            raise OptionError.choose(f"{what} option", name, allowed)


@attrs.frozen(repr=False)
class Parameterization:
    """A tensor's initialization, activation and dtype (libcirkit's fields and defaults).

    Args:
        initialization: how the raw tensor is drawn: 'normal' (the default), 'uniform',
            'dirichlet' or 'constant'.
        activation: what is applied to the raw tensor: 'none' (the default), 'softmax' and
            'log-softmax' (along ``activation_kwargs['axis']``, default the last axis),
            'positive-clamp' (clamped to at least ``vmin``, default 1e-18), 'exp', 'sigmoid'
            or 'softplus'.
        dtype: 'real' or 'complex'.
        initialization_kwargs: options of the initializer: ``mean``, ``stddev`` (normal);
            ``a``, ``b`` (uniform); ``alpha``, ``axis`` (dirichlet); ``value`` (constant).
        activation_kwargs: options of the activation (see `activation`).

    Raises:
        OptionError: an unknown name or option, or a bad option value; the message lists what
            is allowed.
    """

    initialization: str = attrs.field(
        default="normal", validator=_check_choice(tuple(INITIALIZATIONS), "initialization")
    )
    activation: str = attrs.field(
        default="none", validator=_check_choice(ACTIVATIONS, "activation")
    )
    dtype: str = attrs.field(default="real", validator=_check_choice(DTYPES, "dtype"))
    initialization_kwargs: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    activation_kwargs: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)

    def __attrs_post_init__(self) -> None:
        init_cls = INITIALIZATIONS[self.initialization]
        fields = tuple(f.name for f in attrs.fields(init_cls))
        _check_names(f"{self.initialization!r} initialization", self.initialization_kwargs, fields)
        # Build once so that bad values (a negative std, a >= b, ...) fail here, not later.
        self.initializer()
        options = _ACTIVATION_OPTIONS[self.activation]
        _check_names(f"{self.activation!r} activation", self.activation_kwargs, tuple(options))
        axis = self.activation_kwargs.get("axis", -1)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise OptionError(f"the {self.activation!r} axis must be an int, got {axis!r}")
        if self.dtype == "complex" and self.activation in REAL_ONLY_ACTIVATIONS:
            raise OptionError(
                f"the {self.activation!r} activation orders or bounds values, which complex"
                " numbers do not have; give a complex parameterization 'none' or 'exp', or"
                " make it real (dtype='real')"
            )
        if self.activation == "positive-clamp":
            bounds = {**options, **self.activation_kwargs}
            check_bounds(bounds["vmin"], bounds["vmax"], "the 'positive-clamp' activation")

    def initializer(self) -> Initializer:
        """The symbolic initializer that the raw tensor is drawn from."""
        try:
            return INITIALIZATIONS[self.initialization](**self.initialization_kwargs)
        except (TypeError, ValueError) as error:
            raise OptionError(
                f"bad options {dict(self.initialization_kwargs)!r} for the {self.initialization!r}"
                f" initialization: {error}"
            ) from error

    def build(self, shape: tuple[int, ...]) -> ParameterNode:
        """The symbolic parameter graph of this parameterization for a tensor of `shape`."""
        return build_parameter(self, shape)

    def __repr__(self) -> str:
        extra = ""
        if self.initialization_kwargs:
            extra += f", initialization_kwargs={dict(self.initialization_kwargs)!r}"
        if self.activation_kwargs:
            extra += f", activation_kwargs={dict(self.activation_kwargs)!r}"
        return (
            f"Parameterization(initialization={self.initialization!r},"
            f" activation={self.activation!r}, dtype={self.dtype!r}{extra})"
        )


def build_parameter(
    parameterization: Parameterization, shape: tuple[int, ...], *, learnable: bool = True
) -> ParameterNode:
    """A `TensorParameter` of `shape` under `parameterization`'s activation.

    Raises:
        OptionError: `shape` is not a tuple of positive ints, or the activation's axis does
            not fit it.
    """
    if not isinstance(parameterization, Parameterization):
        raise OptionError(
            f"expected a Parameterization, got {type(parameterization).__name__}: "
            f"{parameterization!r}"
        )
    if (
        not isinstance(shape, tuple)
        or not shape
        or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape)
    ):
        raise OptionError(f"a parameter shape must be a tuple of positive ints, got {shape!r}")
    tensor = TensorParameter(
        shape,
        parameterization.initializer(),
        learnable=learnable,
        tensor_dtype=parameterization.dtype,
    )
    options = {**_ACTIVATION_OPTIONS[parameterization.activation]}
    options.update(parameterization.activation_kwargs)
    try:
        match parameterization.activation:
            case "softmax":
                return SoftmaxParameter(tensor, axis=options["axis"])
            case "log-softmax":
                return LogSoftmaxParameter(tensor, axis=options["axis"])
            case "positive-clamp":
                return ClampParameter(tensor, vmin=options["vmin"], vmax=options["vmax"])
            case "exp":
                return ExpParameter(tensor)
            case "sigmoid":
                return SigmoidParameter(tensor)
            case "softplus":
                return SoftplusParameter(tensor)
            case _:
                return tensor
    except ValueError as error:  # e.g. an axis out of range for the shape
        raise OptionError(f"cannot apply {parameterization!r} to shape {shape}: {error}") from error


def as_parameterization(
    value: str | Parameterization, what: str, allowed: tuple[str, ...] = ACTIVATIONS
) -> Parameterization:
    """Accept a Parameterization, or an activation name (one of `allowed`) with its usual
    initialization.

    A name gets a normal initialization, except 'positive-clamp' and 'none', whose raw values
    are used as they are and so get a uniform one on [0, 1) to start positive.
    """
    if isinstance(value, Parameterization):
        return value
    if not isinstance(value, str) or value not in allowed:
        raise OptionError.choose(what, value, (*allowed, "a Parameterization"))
    init = "uniform" if value in ("positive-clamp", "none") else "normal"
    return Parameterization(initialization=init, activation=value)
