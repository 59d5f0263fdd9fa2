"""Symbolic layers: what each layer of a tensorized circuit computes, independent of any backend.

A layer maps `arity` inputs of `num_input_units` units each to `num_output_units` units.
Input layers read variables (their `scope`) from data with `num_channels` channels; inner
layers read other layers. Parameters are roots of parameter graphs (`parameters.py`).
Layers are compared by identity: a circuit is a graph of these objects.

Constructors take cirkit's arguments and defaults: a parameter is given as a graph
(``probs=...``), or made by a factory from its shape (``probs_factory=...``), or left to the
layer's default, the one cirkit 0.3.1 uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import attrs

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.symbolic.initializers import ConstantInitializer, NormalInitializer
from cirkit_ir.symbolic.parameters import (
    ParameterNode,
    ScaledSigmoidParameter,
    SigmoidParameter,
    SoftmaxParameter,
    TensorParameter,
)
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.validators import a_or_an, instance_of, short_repr
from cirkit_ir.validators import positive_int as _positive_int

ParameterFactory = Callable[[tuple[int, ...]], ParameterNode]
"""Builds a parameter graph of the shape it is given (cirkit's `ParameterFactory`)."""

# A layer's parameter argument: a parameter graph (None picks the layer's default).
_optional_param = attrs.validators.optional(
    instance_of(ParameterNode, "build one, e.g. TensorParameter(shape), or leave it out")
)


def _optional_factory(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and not callable(value):
        raise OptionError(
            f"{type(instance).__name__}.{attribute.name} must be a callable shape -> parameter"
            f" (e.g. Parameterization(...).build), got {short_repr(value)}"
        )


def _factory_field() -> object:
    return attrs.field(default=None, kw_only=True, repr=False, validator=_optional_factory)


def _check_shape(layer: Layer, name: str, param: ParameterNode, shape: tuple[int, ...]) -> None:
    if param.shape != shape:
        raise StructureError(
            f"{type(layer).__name__}: parameter '{name}' has shape {param.shape}, expected {shape}"
        )


def _set_param(
    layer: Layer,
    name: str,
    factory: ParameterFactory | None,
    shape: tuple[int, ...],
    default: ParameterFactory,
) -> None:
    """Fills the empty parameter slot `name`: from `factory`, else from the layer's default."""
    param = (factory or default)(shape)
    if not isinstance(param, ParameterNode):
        raise OptionError(
            f"{type(layer).__name__}.{name}_factory{shape} returned"
            f" {a_or_an(type(param).__name__)}; it must return a parameter graph of that shape"
        )
    object.__setattr__(layer, name, param)


def _one_param(layer: Layer) -> None:
    """A layer that takes `probs` or `logits` got at most one of them (and of their factories)."""
    for given in (("probs", "logits"), ("probs_factory", "logits_factory")):
        if all(getattr(layer, name) is not None for name in given):
            raise OptionError(
                f"{type(layer).__name__} takes {given[0]} or {given[1]}, not both; drop one"
            )


def _probs_or_logits(
    layer: CategoricalLayer | BinomialLayer, shape: tuple[int, ...], default: ParameterFactory
) -> None:
    """cirkit's precedence: a given graph, then the logits factory, then the probs factory,
    then the default `probs`."""
    _one_param(layer)
    if layer.probs is None and layer.logits is None:
        if layer.logits_factory is not None:
            _set_param(layer, "logits", layer.logits_factory, shape, default)
        else:
            _set_param(layer, "probs", layer.probs_factory, shape, default)
    name, param = layer._param()
    _check_shape(layer, name, param, shape)


def _normal(shape: tuple[int, ...]) -> ParameterNode:
    return TensorParameter(shape, NormalInitializer())


def _softmax_of_normal(shape: tuple[int, ...]) -> ParameterNode:
    return SoftmaxParameter(_normal(shape), axis=-1)


@attrs.frozen(eq=False)
class Layer:
    """Base class. `kind` is the short name that the IR and dumps use."""

    kind: ClassVar[str] = ""

    @property
    def num_input_units(self) -> int:
        raise NotImplementedError

    @property
    def num_output_units(self) -> int:
        raise NotImplementedError

    @property
    def arity(self) -> int:
        raise NotImplementedError

    @property
    def params(self) -> dict[str, ParameterNode]:
        """The layer's parameter graphs by name (e.g. 'weight', 'probs')."""
        return {}

    def config(self) -> dict[str, object]:
        """The layer's non-parameter attributes, as the IR records them."""
        return {}


# ---------------------------------------------------------------------------------------------
# Input layers


@attrs.frozen(eq=False)
class InputLayer(Layer):
    """A layer over variables: `scope` names them, data has `num_channels` channels each.

    The layer multiplies its per-channel densities (channels are independent).
    """

    scope: Scope = attrs.field(converter=Scope)
    num_output_units_: int = attrs.field(validator=_positive_int, alias="num_output_units")
    num_channels: int = attrs.field(default=1, validator=_positive_int, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if len(self.scope) != 1:
            raise StructureError(
                f"{type(self).__name__} is univariate: its scope must hold one variable,"
                f" got {self.scope}"
            )

    @property
    def num_input_units(self) -> int:
        return self.num_channels

    @property
    def num_output_units(self) -> int:
        return self.num_output_units_

    @property
    def arity(self) -> int:
        return 1

    @property
    def num_variables(self) -> int:
        return len(self.scope)

    @property
    def max_value(self) -> int | None:
        """The largest datum a discrete layer accepts (its data are 0..max_value); None for
        a continuous layer."""
        return None


@attrs.frozen(eq=False)
class CategoricalLayer(InputLayer):
    """p(x) = probs[k, c, x] per channel. Give `probs` (normalized) or `logits`, not both;
    by default `probs` is a softmax of normal draws."""

    kind: ClassVar[str] = "categorical"
    num_categories: int = attrs.field(kw_only=True, validator=_positive_int)
    probs: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    logits: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    probs_factory: ParameterFactory | None = _factory_field()
    logits_factory: ParameterFactory | None = _factory_field()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        shape = (self.num_output_units, self.num_channels, self.num_categories)
        _probs_or_logits(self, shape, _softmax_of_normal)

    def _param(self) -> tuple[str, ParameterNode]:
        if self.logits is not None:
            return "logits", self.logits
        assert self.probs is not None
        return "probs", self.probs

    @property
    def params(self) -> dict[str, ParameterNode]:
        name, param = self._param()
        return {name: param}

    @property
    def max_value(self) -> int:
        return self.num_categories - 1

    def config(self) -> dict[str, object]:
        return {"num_categories": self.num_categories}


def _sigmoid_of_normal(shape: tuple[int, ...]) -> ParameterNode:
    return SigmoidParameter(_normal(shape))


@attrs.frozen(eq=False)
class BinomialLayer(InputLayer):
    """p(x) = C(n, x) probs^x (1 - probs)^(n - x) with n = `total_count` (default 2, as in
    cirkit); by default `probs` is a sigmoid of normal draws."""

    kind: ClassVar[str] = "binomial"
    total_count: int = attrs.field(default=2, kw_only=True, validator=_positive_int)
    probs: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    logits: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    probs_factory: ParameterFactory | None = _factory_field()
    logits_factory: ParameterFactory | None = _factory_field()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        shape = (self.num_output_units, self.num_channels)
        _probs_or_logits(self, shape, _sigmoid_of_normal)

    def _param(self) -> tuple[str, ParameterNode]:
        if self.logits is not None:
            return "logits", self.logits
        assert self.probs is not None
        return "probs", self.probs

    @property
    def params(self) -> dict[str, ParameterNode]:
        name, param = self._param()
        return {name: param}

    @property
    def max_value(self) -> int:
        return self.total_count

    def config(self) -> dict[str, object]:
        return {"total_count": self.total_count}


def _default_stddev(shape: tuple[int, ...]) -> ParameterNode:
    """cirkit's default: a sigmoid of normal draws scaled into (1e-5, 1)."""
    return ScaledSigmoidParameter(_normal(shape), vmin=1e-5, vmax=1.0)


@attrs.frozen(eq=False)
class GaussianLayer(InputLayer):
    """A normal density with per-unit, per-channel `mean` and `stddev` (> 0); by default the
    mean is drawn from N(0, 1) and the stddev is a sigmoid of normal draws scaled into
    (1e-5, 1)."""

    kind: ClassVar[str] = "gaussian"
    mean: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    stddev: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    mean_factory: ParameterFactory | None = _factory_field()
    stddev_factory: ParameterFactory | None = _factory_field()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        shape = (self.num_output_units, self.num_channels)
        if self.mean is None:
            _set_param(self, "mean", self.mean_factory, shape, _normal)
        if self.stddev is None:
            _set_param(self, "stddev", self.stddev_factory, shape, _default_stddev)
        _check_shape(self, "mean", self.mean, shape)
        _check_shape(self, "stddev", self.stddev, shape)

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"mean": self.mean, "stddev": self.stddev}


@attrs.frozen(eq=False)
class EmbeddingLayer(InputLayer):
    """f(x) = weight[k, c, x] per channel: an unnormalized table over `num_states` states
    (default 2, as in cirkit); by default the weights are normal draws."""

    kind: ClassVar[str] = "embedding"
    num_states: int = attrs.field(default=2, kw_only=True, validator=_positive_int)
    weight: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    weight_factory: ParameterFactory | None = _factory_field()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        shape = (self.num_output_units, self.num_channels, self.num_states)
        if self.weight is None:
            _set_param(self, "weight", self.weight_factory, shape, _normal)
        _check_shape(self, "weight", self.weight, shape)

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"weight": self.weight}

    @property
    def max_value(self) -> int:
        return self.num_states - 1

    def config(self) -> dict[str, object]:
        return {"num_states": self.num_states}


@attrs.frozen(eq=False)
class ConstantLayer(Layer):
    """A layer that reads no variable and outputs `value` (K,), non-negative, in linear space."""

    kind: ClassVar[str] = "constant"
    value: ParameterNode = attrs.field(
        repr=False,
        validator=instance_of(
            ParameterNode, "e.g. TensorParameter((K,), ConstantInitializer(1.0))"
        ),
    )

    def __attrs_post_init__(self) -> None:
        if len(self.value.shape) != 1:
            raise StructureError(
                f"ConstantLayer needs a vector value (K,), got shape {self.value.shape}"
            )

    scope: ClassVar[Scope] = Scope(())

    @property
    def num_input_units(self) -> int:
        return 0

    @property
    def num_output_units(self) -> int:
        return self.value.shape[0]

    @property
    def arity(self) -> int:
        return 0

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"value": self.value}


@attrs.frozen(eq=False)
class EvidenceLayer(Layer):
    """An input layer evaluated at a fixed `observation` (C,): a constant of the data.

    Conditioning a circuit on evidence replaces input layers by these.
    """

    kind: ClassVar[str] = "evidence"
    layer: InputLayer = attrs.field(
        validator=instance_of(InputLayer, "evidence conditions an input layer on its variable")
    )
    observation: ParameterNode = attrs.field(
        repr=False,
        validator=instance_of(
            ParameterNode, "e.g. TensorParameter((C,), ConstantInitializer(x), learnable=False)"
        ),
    )

    def __attrs_post_init__(self) -> None:
        _check_shape(self, "observation", self.observation, (self.layer.num_channels,))
        self._check_constant_observation()

    def _check_constant_observation(self) -> None:
        """A constant observation outside the range of a discrete layer fails here, where it
        was written. (Other observations are drawn or loaded at compile time or later: the
        backend checks those when it evaluates them.) Observations round to the nearest
        integer, as the backend rounds them."""
        node, top = self.observation, self.layer.max_value
        if top is None or not isinstance(node, TensorParameter):
            return
        if not isinstance(node.initializer, ConstantInitializer):
            return
        value = node.initializer.value
        if math.isfinite(value) and 0 <= round(value) <= top:
            return
        (variable,) = self.layer.scope
        raise StructureError(
            f"EvidenceLayer of a {type(self.layer).__name__} over variable {variable}: the"
            f" observation is the constant {value:g}, out of range; the layer accepts 0..{top}."
            " Pass an observation in that range"
        )

    scope: ClassVar[Scope] = Scope(())

    @property
    def num_input_units(self) -> int:
        return 0

    @property
    def num_output_units(self) -> int:
        return self.layer.num_output_units

    @property
    def arity(self) -> int:
        return 0

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"observation": self.observation, **self.layer.params}


# ---------------------------------------------------------------------------------------------
# Inner layers


@attrs.frozen(eq=False)
class SumLayer(Layer):
    """cirkit's sum layer: y = W [x_1; ...; x_arity], W of shape (num_output_units,
    arity * num_input_units) times the concatenated inputs (a matrix-vector product when
    arity is 1). By default W is drawn from N(0, 1), with no activation, as in cirkit.

    The compiler lowers it as the layers it stands for (`cirkit_ir.symbolic.sum_layers`):
    a dense layer, or a mixing layer, or a dense layer per input and a mixing layer.
    """

    kind: ClassVar[str] = "sum"
    num_input_units_: int = attrs.field(validator=_positive_int, alias="num_input_units")
    num_output_units_: int = attrs.field(validator=_positive_int, alias="num_output_units")
    arity_: int = attrs.field(default=1, validator=_positive_int, alias="arity")
    weight: ParameterNode | None = attrs.field(default=None, repr=False, validator=_optional_param)
    weight_factory: ParameterFactory | None = attrs.field(
        default=None, repr=False, validator=_optional_factory
    )

    def __attrs_post_init__(self) -> None:
        shape = (self.num_output_units_, self.arity_ * self.num_input_units_)
        if self.weight is None:
            _set_param(self, "weight", self.weight_factory, shape, self._default_weight)
        _check_shape(self, "weight", self.weight, shape)

    @staticmethod
    def _default_weight(shape: tuple[int, ...]) -> ParameterNode:
        return _normal(shape)

    @property
    def num_input_units(self) -> int:
        return self.num_input_units_

    @property
    def num_output_units(self) -> int:
        return self.num_output_units_

    @property
    def arity(self) -> int:
        return self.arity_

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"weight": self.weight}


@attrs.frozen(eq=False)
class DenseLayer(SumLayer):
    """y = W x with W of shape (num_output_units, num_input_units); one input. By default W
    is a softmax of normal draws (each row sums to one)."""

    kind: ClassVar[str] = "dense"

    def __attrs_post_init__(self) -> None:
        if self.arity_ != 1:
            raise StructureError(
                f"DenseLayer reads one input, got arity={self.arity_}; use a SumLayer (the"
                " inputs concatenated) or a MixingLayer (a per-unit mixture) for more"
            )
        super().__attrs_post_init__()

    @staticmethod
    def _default_weight(shape: tuple[int, ...]) -> ParameterNode:
        return _softmax_of_normal(shape)


@attrs.frozen(eq=False)
class MixingLayer(Layer):
    """y[k] = sum_h W[k, h] x_h[k]: a per-unit mixture of `arity` inputs of equal units.

    It is cirkit's sum layer with a mixing weight (`MixingWeightParameter`), stored compactly
    as the (num_units, arity) matrix W. By default W is a softmax of normal draws.
    """

    kind: ClassVar[str] = "mixing"
    num_units: int = attrs.field(validator=_positive_int)
    arity_: int = attrs.field(validator=_positive_int, alias="arity")
    weight: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    weight_factory: ParameterFactory | None = _factory_field()

    def __attrs_post_init__(self) -> None:
        shape = (self.num_units, self.arity_)
        if self.weight is None:
            _set_param(self, "weight", self.weight_factory, shape, _softmax_of_normal)
        _check_shape(self, "weight", self.weight, shape)

    @property
    def num_input_units(self) -> int:
        return self.num_units

    @property
    def num_output_units(self) -> int:
        return self.num_units

    @property
    def arity(self) -> int:
        return self.arity_

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"weight": self.weight}


SUM_LAYERS: tuple[type[Layer], ...] = (SumLayer, MixingLayer)
"""The layers that take weighted sums (a DenseLayer is a SumLayer): smoothness concerns them."""


@attrs.frozen(eq=False)
class ProductLayer(Layer):
    """Base of the product layers (no parameters)."""

    num_input_units_: int = attrs.field(validator=_positive_int, alias="num_input_units")
    arity_: int = attrs.field(default=2, validator=_positive_int, alias="arity")

    @property
    def num_input_units(self) -> int:
        return self.num_input_units_

    @property
    def arity(self) -> int:
        return self.arity_


@attrs.frozen(eq=False)
class HadamardLayer(ProductLayer):
    """y[k] = prod_h x_h[k]: element-wise product of `arity` inputs."""

    kind: ClassVar[str] = "hadamard"

    @property
    def num_output_units(self) -> int:
        return self.num_input_units_


@attrs.frozen(eq=False)
class KroneckerLayer(ProductLayer):
    """y = x_1 (x) x_2 (x) ...: all products of one unit per input, K^arity units.

    Unit order: the first input's index varies slowest (row-major over the inputs).
    """

    kind: ClassVar[str] = "kronecker"

    @property
    def num_output_units(self) -> int:
        return self.num_input_units_**self.arity_


INPUT_LAYERS: tuple[type[Layer], ...] = (
    CategoricalLayer,
    BinomialLayer,
    GaussianLayer,
    EmbeddingLayer,
    ConstantLayer,
    EvidenceLayer,
)
