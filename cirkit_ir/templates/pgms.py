"""Circuits of classic probabilistic graphical models (libcirkit's `templates.pgms`).

>>> from cirkit_ir.templates import pgms
>>> hmm = pgms.hmm([0, 1, 2], input_layer_kwargs={"num_categories": 4}, num_latent_states=3)
>>> hmm.num_variables
3
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cirkit_ir.errors import OptionError
from cirkit_ir.symbolic.builder import CircuitBuilder
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.layers import DenseLayer, HadamardLayer, InputLayer, Layer
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.templates.from_region_graph import check_positive_int
from cirkit_ir.templates.parameterization import Parameterization
from cirkit_ir.templates.utils import (
    InputLayerFactory,
    name_to_input_layer_factory,
    named_parameterizations_to_factories,
)

__all__ = ["fully_factorized", "hmm"]

PGM_INPUT_LAYERS: tuple[str, ...] = ("categorical", "binomial", "gaussian")


def _input_factories(
    num_variables: int,
    input_layer: str,
    input_params: Mapping[str, Parameterization] | None,
    input_layer_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> list[InputLayerFactory]:
    """One input layer factory per variable (position), from a layer name, parameterizations
    by parameter name, and constructor arguments shared by all or given one per variable."""
    if input_layer not in PGM_INPUT_LAYERS:
        raise OptionError.choose("input layer", input_layer, PGM_INPUT_LAYERS)
    if input_layer_kwargs is None:
        per_variable: list[Mapping[str, Any]] = [{}] * num_variables
    elif isinstance(input_layer_kwargs, Mapping):
        per_variable = [input_layer_kwargs] * num_variables
    elif isinstance(input_layer_kwargs, Sequence) and not isinstance(input_layer_kwargs, str):
        per_variable = list(input_layer_kwargs)
        if len(per_variable) != num_variables:
            raise OptionError(
                f"input_layer_kwargs lists {len(per_variable)} dicts for {num_variables}"
                " variables; give one dict per variable, or one dict for all"
            )
        for i, kwargs in enumerate(per_variable):
            if not isinstance(kwargs, Mapping):
                raise OptionError(f"input_layer_kwargs[{i}] must be a dict, got {kwargs!r}")
    else:
        raise OptionError(
            f"input_layer_kwargs must be a dict or a list of dicts, got {input_layer_kwargs!r}"
        )
    params = named_parameterizations_to_factories(input_params or {})
    return [name_to_input_layer_factory(input_layer, **kwargs, **params) for kwargs in per_variable]


def fully_factorized(
    num_variables: int,
    input_layer: str = "categorical",
    input_params: Mapping[str, Parameterization] | None = None,
    input_layer_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Circuit:
    """p(x) = p(x_0) p(x_1) ... : one single-unit input layer per variable, multiplied.

    Args:
        num_variables: the number of variables (0 .. num_variables - 1).
        input_layer: 'categorical' (the default), 'binomial' or 'gaussian'.
        input_params: parameterizations of the input layers' parameters by name (e.g.
            ``{'probs': Parameterization(activation='softmax')}``); None keeps each
            layer's default.
        input_layer_kwargs: constructor arguments of the input layers (e.g.
            ``{'num_categories': 4}``), one dict for all, or a list with one per variable.

    Raises:
        OptionError: a bad option, or input layer arguments the layer does not take.
    """
    check_positive_int(num_variables, "num_variables")
    factories = _input_factories(num_variables, input_layer, input_params, input_layer_kwargs)
    builder = CircuitBuilder()
    inputs = [builder.add(factory(Scope([v]), 1)) for v, factory in enumerate(factories)]
    if num_variables == 1:
        return builder.build(inputs)
    product = builder.add(HadamardLayer(1, arity=num_variables), inputs)
    return builder.build([product])


def hmm(
    ordering: Sequence[int],
    input_layer: str = "categorical",
    num_latent_states: int = 1,
    input_params: Mapping[str, Parameterization] | None = None,
    input_layer_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    weight_param: Parameterization | None = None,
) -> Circuit:
    """An inhomogeneous hidden Markov model over the variables in `ordering`.

    With Z_t the hidden state at step t (K = `num_latent_states` values) and X_t the variable
    ``ordering[t]``, the circuit computes

        p(x) = sum_z w_0[z_0] p(x_0 | z_0) prod_{t >= 1} W_t[z_{t-1}, z_t] p(x_t | z_t),

    built from the last step backwards, as libcirkit builds it: the input layer of step t
    (K units: the emission p(x_t | z_t)), a hadamard product with the message of steps
    t+1.., and a dense layer (the transition W_t, K x K; the initial distribution w_0,
    1 x K, at t = 0). Each step has its own emissions and transitions.

    Args:
        ordering: the variables in the order of the chain, a permutation of 0..n-1.
        input_layer: 'categorical' (the default), 'binomial' or 'gaussian' emissions.
        num_latent_states: K, the units of every layer but the output.
        input_params: parameterizations of the emission parameters by name.
        input_layer_kwargs: constructor arguments of the emission layers, one dict for all
            or a list with one per step (the i-th for variable ``ordering[i]``).
        weight_param: the parameterization of the transition weights; None is a softmax
            over normal draws (each row sums to one).

    Raises:
        OptionError: a bad option, or input layer arguments the layer does not take.
    """
    if isinstance(ordering, str) or not isinstance(ordering, Sequence) or not ordering:
        raise OptionError(f"ordering must be a non-empty list of variables, got {ordering!r}")
    num_variables = len(ordering)
    if sorted(ordering) != list(range(num_variables)):
        raise OptionError(
            f"ordering must list each of the variables 0..{num_variables - 1} once,"
            f" got {list(ordering)!r}"
        )
    check_positive_int(num_latent_states, "num_latent_states")
    factories = _input_factories(num_variables, input_layer, input_params, input_layer_kwargs)
    if weight_param is None:
        weight_param = Parameterization(initialization="normal", activation="softmax")
    if not isinstance(weight_param, Parameterization):
        raise OptionError(f"weight_param must be a Parameterization, got {weight_param!r}")

    k = num_latent_states
    builder = CircuitBuilder()

    def emission(step: int) -> InputLayer:
        return builder.add(factories[step](Scope([ordering[step]]), k))

    def transition(x: Layer, step: int) -> DenseLayer:
        units = 1 if step == 0 else k
        weight = weight_param.build((units, k))
        return builder.add(DenseLayer(k, units, weight=weight), [x])

    message = transition(emission(num_variables - 1), num_variables - 1)
    for step in reversed(range(num_variables - 1)):
        product = builder.add(HadamardLayer(k, arity=2), [message, emission(step)])
        message = transition(product, step)
    return builder.build([message])
