"""Factories the templates share, under libcirkit's names (`cirkit.templates.utils`).

An input layer factory builds the input layer of one variable, ``factory(scope, num_units)``;
a parameter factory builds a parameter graph of a given shape, ``factory(shape)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cirkit_ir.errors import OptionError
from cirkit_ir.symbolic.layers import (
    BinomialLayer,
    CategoricalLayer,
    EmbeddingLayer,
    GaussianLayer,
    InputLayer,
    ParameterFactory,
)
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.templates.parameterization import Parameterization

__all__ = [
    "INPUT_LAYERS",
    "InputLayerFactory",
    "Parameterization",
    "name_to_input_layer_factory",
    "named_parameterizations_to_factories",
    "parameterization_to_factory",
]

InputLayerFactory = Callable[[Scope, int], InputLayer]
"""Builds the input layer of one variable: ``factory(Scope([v]), num_units)``."""

INPUT_LAYERS: dict[str, type[InputLayer]] = {
    "categorical": CategoricalLayer,
    "binomial": BinomialLayer,
    "gaussian": GaussianLayer,
    "embedding": EmbeddingLayer,
}
"""Input layers by the names templates give them."""


def name_to_input_layer_factory(name: str, **kwargs: Any) -> InputLayerFactory:
    """A factory of `name` input layers (see `INPUT_LAYERS`) built with `kwargs`, e.g.
    ``num_categories=3`` or ``probs_factory=...``.

    Raises:
        OptionError: an unknown name, or (when the factory is called) arguments the layer
            does not take or misses.
    """
    if name not in INPUT_LAYERS:
        raise OptionError.choose("input layer", name, tuple(INPUT_LAYERS))
    layer_cls = INPUT_LAYERS[name]

    def factory(scope: Scope, num_units: int) -> InputLayer:
        try:
            return layer_cls(scope, num_units, **kwargs)
        except TypeError as error:  # a missing or unknown keyword
            raise OptionError(
                f"cannot build a {name} input layer with arguments {sorted(kwargs)}: {error}"
            ) from None

    return factory


def parameterization_to_factory(param: Parameterization) -> ParameterFactory:
    """The parameter factory of a parameterization (its `build`)."""
    if not isinstance(param, Parameterization):
        raise OptionError(f"expected a Parameterization, got {type(param).__name__}: {param!r}")
    return param.build


def named_parameterizations_to_factories(
    params: Mapping[str, Parameterization],
) -> dict[str, ParameterFactory]:
    """``{'probs': p}`` -> ``{'probs_factory': p.build}``: layer constructor arguments."""
    if not isinstance(params, Mapping):
        raise OptionError(
            f"input_params must map parameter names to Parameterizations, got {params!r}"
        )
    return {f"{name}_factory": parameterization_to_factory(p) for name, p in params.items()}
