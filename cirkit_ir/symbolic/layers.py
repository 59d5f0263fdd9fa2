"""Symbolic layers: what each layer of a tensorized circuit computes, independent of any backend.

A layer maps `arity` inputs of `num_input_units` units each to `num_output_units` units.
Input layers read variables (their `scope`) from data with `num_channels` channels; inner
layers read other layers. Parameters are roots of parameter graphs (`parameters.py`).
Layers are compared by identity: a circuit is a graph of these objects.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.symbolic.initializers import ConstantInitializer, NormalInitializer
from cirkit_ir.symbolic.parameters import (
    ExpParameter,
    ParameterNode,
    ScaledSigmoidParameter,
    SoftmaxParameter,
    TensorParameter,
)
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.validators import instance_of
from cirkit_ir.validators import positive_int as _positive_int

# A layer's parameter argument: a parameter graph (None picks the layer's default).
_optional_param = attrs.validators.optional(
    instance_of(ParameterNode, "build one, e.g. TensorParameter(shape), or leave it out")
)


def _check_shape(layer: Layer, name: str, param: ParameterNode, shape: tuple[int, ...]) -> None:
    if param.shape != shape:
        raise StructureError(
            f"{type(layer).__name__}: parameter '{name}' has shape {param.shape}, expected {shape}"
        )


def _one_param(layer: Layer) -> None:
    """A layer that takes `probs` or `logits` got at most one of them."""
    if layer.probs is not None and layer.logits is not None:  # type: ignore[attr-defined]
        raise OptionError(
            f"{type(layer).__name__} takes probs or logits, not both; drop one of them"
        )


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


def _default_probs_like(shape: tuple[int, ...]) -> ParameterNode:
    return SoftmaxParameter(TensorParameter(shape, NormalInitializer()), axis=-1)


@attrs.frozen(eq=False)
class CategoricalLayer(InputLayer):
    """p(x) = probs[k, c, x] per channel. Give `probs` (normalized) or `logits`, not both."""

    kind: ClassVar[str] = "categorical"
    num_categories: int = attrs.field(kw_only=True, validator=_positive_int)
    probs: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    logits: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        _one_param(self)
        shape = (self.num_output_units, self.num_channels, self.num_categories)
        if self.probs is None and self.logits is None:
            object.__setattr__(self, "probs", _default_probs_like(shape))
        name, param = self._param()
        _check_shape(self, name, param, shape)

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


@attrs.frozen(eq=False)
class BinomialLayer(InputLayer):
    """p(x) = C(n, x) probs^x (1 - probs)^(n - x) with n = `total_count`."""

    kind: ClassVar[str] = "binomial"
    total_count: int = attrs.field(kw_only=True, validator=_positive_int)
    probs: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    logits: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        _one_param(self)
        shape = (self.num_output_units, self.num_channels)
        if self.probs is None and self.logits is None:
            object.__setattr__(self, "logits", TensorParameter(shape, NormalInitializer()))
        name, param = self._param()
        _check_shape(self, name, param, shape)

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


@attrs.frozen(eq=False)
class GaussianLayer(InputLayer):
    """A normal density with per-unit, per-channel `mean` and `stddev` (> 0)."""

    kind: ClassVar[str] = "gaussian"
    mean: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )
    stddev: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        shape = (self.num_output_units, self.num_channels)
        if self.mean is None:
            object.__setattr__(self, "mean", TensorParameter(shape, NormalInitializer()))
        if self.stddev is None:
            object.__setattr__(
                self,
                "stddev",
                ScaledSigmoidParameter(
                    TensorParameter(shape, NormalInitializer()), vmin=1e-4, vmax=10.0
                ),
            )
        _check_shape(self, "mean", self.mean, shape)
        _check_shape(self, "stddev", self.stddev, shape)

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"mean": self.mean, "stddev": self.stddev}


@attrs.frozen(eq=False)
class EmbeddingLayer(InputLayer):
    """f(x) = weight[k, c, x] per channel: an unnormalized table over `num_states` states."""

    kind: ClassVar[str] = "embedding"
    num_states: int = attrs.field(kw_only=True, validator=_positive_int)
    weight: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        shape = (self.num_output_units, self.num_channels, self.num_states)
        if self.weight is None:
            object.__setattr__(
                self, "weight", ExpParameter(TensorParameter(shape, NormalInitializer()))
            )
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
    """Base of the layers that take weighted sums."""


@attrs.frozen(eq=False)
class DenseLayer(SumLayer):
    """y = W x with W of shape (num_output_units, num_input_units); one input."""

    kind: ClassVar[str] = "dense"
    num_input_units_: int = attrs.field(validator=_positive_int, alias="num_input_units")
    num_output_units_: int = attrs.field(validator=_positive_int, alias="num_output_units")
    weight: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )

    def __attrs_post_init__(self) -> None:
        shape = (self.num_output_units_, self.num_input_units_)
        if self.weight is None:
            object.__setattr__(self, "weight", _default_probs_like(shape))
        _check_shape(self, "weight", self.weight, shape)

    @property
    def num_input_units(self) -> int:
        return self.num_input_units_

    @property
    def num_output_units(self) -> int:
        return self.num_output_units_

    @property
    def arity(self) -> int:
        return 1

    @property
    def params(self) -> dict[str, ParameterNode]:
        return {"weight": self.weight}


@attrs.frozen(eq=False)
class MixingLayer(SumLayer):
    """y[k] = sum_h W[k, h] x_h[k]: a per-unit mixture of `arity` inputs of equal units."""

    kind: ClassVar[str] = "mixing"
    num_units: int = attrs.field(validator=_positive_int)
    arity_: int = attrs.field(validator=_positive_int, alias="arity")
    weight: ParameterNode | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_param
    )

    def __attrs_post_init__(self) -> None:
        shape = (self.num_units, self.arity_)
        if self.weight is None:
            object.__setattr__(self, "weight", _default_probs_like(shape))
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
