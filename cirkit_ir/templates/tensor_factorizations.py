"""Tensor factorizations as circuits (libcirkit's `templates.tensor_factorizations`).

A tensor T of shape (I_1, ..., I_n) is a function of n discrete variables: variable j takes
the values 0..I_j - 1, and the circuit evaluated at x is the entry T[x_1, ..., x_n]. Each
factor matrix A_j (I_j x R) is the table of an input layer over variable j with R units
(by default an embedding: unit r at value x is A_j[x, r]).

>>> from cirkit_ir.templates import tensor_factorizations
>>> cp = tensor_factorizations.cp((3, 4, 5), rank=2)
>>> cp.num_variables
3
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cirkit_ir.errors import OptionError
from cirkit_ir.symbolic.builder import CircuitBuilder
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import ConstantInitializer, ConstantTensorInitializer
from cirkit_ir.symbolic.layers import (
    DenseLayer,
    EmbeddingLayer,
    HadamardLayer,
    InputLayer,
    KroneckerLayer,
    Layer,
    MixingLayer,
)
from cirkit_ir.symbolic.parameters import ParameterNode, TensorParameter
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.templates.from_region_graph import check_positive_int
from cirkit_ir.templates.parameterization import Parameterization
from cirkit_ir.templates.utils import (
    name_to_input_layer_factory,
    named_parameterizations_to_factories,
)

__all__ = ["cp", "tensor_train", "tucker"]

FACTOR_INPUT_LAYERS: dict[str, str] = {
    "embedding": "num_states",
    "categorical": "num_categories",
    "binomial": "total_count",
}
"""The input layers a factor can be, with the argument that takes the dimension I_j."""

_UNPARAMETERIZED = Parameterization(initialization="normal", activation="none")


def _check_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, str) or not isinstance(shape, Sequence) or not shape:
        raise OptionError(f"shape must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(check_positive_int(d, f"shape[{i}]") for i, d in enumerate(shape))


def _check_param(value: object, what: str) -> Parameterization | None:
    if value is not None and not isinstance(value, Parameterization):
        raise OptionError(f"{what} must be a Parameterization or None, got {value!r}")
    return value


def _factors(
    builder: CircuitBuilder,
    shape: tuple[int, ...],
    rank: int,
    input_layer: str,
    input_params: Mapping[str, Parameterization] | None,
) -> list[Layer]:
    """One input layer of `rank` units per dimension: the factor matrices."""
    if input_layer not in FACTOR_INPUT_LAYERS:
        raise OptionError.choose("factor input layer", input_layer, tuple(FACTOR_INPUT_LAYERS))
    params = named_parameterizations_to_factories(input_params or {})
    size_option = FACTOR_INPUT_LAYERS[input_layer]
    return [
        builder.add(
            name_to_input_layer_factory(input_layer, **{size_option: dim}, **params)(
                Scope([j]), rank
            )
        )
        for j, dim in enumerate(shape)
    ]


def _product(builder: CircuitBuilder, layer_cls: type, factors: list[Layer], rank: int) -> Layer:
    """The factors multiplied (a single factor is its own product)."""
    if len(factors) == 1:
        return factors[0]
    return builder.add(layer_cls(rank, arity=len(factors)), factors)


def _ones(shape: tuple[int, ...]) -> ParameterNode:
    return TensorParameter(shape, ConstantInitializer(1.0), learnable=False)


def _constant(values: np.ndarray) -> ParameterNode:
    return TensorParameter(values.shape, ConstantTensorInitializer(values), learnable=False)


def cp(
    shape: tuple[int, ...],
    rank: int,
    *,
    input_layer: str = "embedding",
    input_params: dict[str, Parameterization] | None = None,
    weight_param: Parameterization | None = None,
) -> Circuit:
    """The rank-R CP factorization T[x] = sum_r w_r A_1[x_1, r] ... A_n[x_n, r].

    Built as the factors' input layers (R units each), a hadamard layer and a dense layer to
    one unit whose weight is w.

    Args:
        shape: (I_1, ..., I_n).
        rank: R.
        input_layer: 'embedding' (the default: A_j is the table), 'categorical' or
            'binomial' (a distribution per unit; a binomial over I_j trials takes the values
            0..I_j).
        input_params: parameterizations of the factors' parameters by name (e.g.
            ``{'weight': Parameterization(activation='softmax')}``); None keeps each layer's
            default (an embedding's is normal draws, no activation).
        weight_param: the parameterization of w; None fixes w to ones (not learned).

    Raises:
        OptionError: a bad shape, rank, layer or parameterization.
    """
    shape = _check_shape(shape)
    check_positive_int(rank, "rank")
    weight_param = _check_param(weight_param, "weight_param")
    builder = CircuitBuilder()
    factors = _factors(builder, shape, rank, input_layer, input_params)
    product = _product(builder, HadamardLayer, factors, rank)
    weight = _ones((1, rank)) if weight_param is None else weight_param.build((1, rank))
    return builder.build([builder.add(DenseLayer(rank, 1, weight=weight), [product])])


def tucker(
    shape: tuple[int, ...],
    rank: int,
    *,
    input_layer: str = "embedding",
    input_params: dict[str, Parameterization] | None = None,
    core_param: Parameterization | None = None,
) -> Circuit:
    """The rank-R Tucker factorization
    T[x] = sum_{r_1..r_n} W[r_1, ..., r_n] A_1[x_1, r_1] ... A_n[x_n, r_n].

    Built as the factors' input layers (R units each), a kronecker layer (R^n units, the
    first factor's index slowest) and a dense layer to one unit whose weight is the core W
    flattened in that (row-major) order.

    Args:
        shape: (I_1, ..., I_n).
        rank: R.
        input_layer, input_params: as for `cp`.
        core_param: the parameterization of the core W; None is normal draws, no activation.

    Raises:
        OptionError: a bad shape, rank, layer or parameterization.
    """
    shape = _check_shape(shape)
    check_positive_int(rank, "rank")
    core_param = _check_param(core_param, "core_param") or _UNPARAMETERIZED
    builder = CircuitBuilder()
    factors = _factors(builder, shape, rank, input_layer, input_params)
    product = _product(builder, KroneckerLayer, factors, rank)
    units = product.num_output_units
    core = core_param.build((1, units))
    return builder.build([builder.add(DenseLayer(units, 1, weight=core), [product])])


def tensor_train(
    shape: tuple[int, ...],
    rank: int,
    *,
    factor_param: Parameterization | None = None,
) -> Circuit:
    """The rank-R tensor train (matrix-product state)
    T[x] = sum_{r_1..r_{n-1}} V_1[x_1, r_1] V_2[x_2, r_1, r_2] ... V_n[x_n, r_{n-1}],
    contracted from left to right, laid out as libcirkit lays it out.

    The cores are embeddings of R units: V_1 and V_n one each (unit r at value x is
    V[x, r]), an inner V_j one per right index b (unit a of the b-th is V_j[x, a, b]). Step j
    turns the vector s (R units, over x_1..x_{j-1}) into s'[b] = sum_a s[a] V_j[x_j, a, b]:
    for each b, a hadamard product of s with the b-th embedding and a dense layer that puts
    the sum of its units on unit b (constant 0/1 weights); a mixing layer of constant weights
    1 adds the R results. The last step is a hadamard product with V_n and a dense layer of
    ones. A one-dimensional shape gives the vector V_1[x_1, :] (R outputs), as in libcirkit.

    Args:
        shape: (I_1, ..., I_n).
        rank: R.
        factor_param: the parameterization of every core; None is normal draws, no
            activation (``Parameterization(dtype='complex')`` gives complex cores).

    Raises:
        OptionError: a bad shape, rank or parameterization.
    """
    shape = _check_shape(shape)
    check_positive_int(rank, "rank")
    factor_param = _check_param(factor_param, "factor_param") or _UNPARAMETERIZED
    builder = CircuitBuilder()

    def core(j: int) -> InputLayer:
        table = factor_param.build((rank, 1, shape[j]))
        return builder.add(EmbeddingLayer(Scope([j]), rank, num_states=shape[j], weight=table))

    state: Layer = core(0)
    if len(shape) == 1:
        return builder.build([state])
    # onto[b]: the (R, R) weight whose row b is ones, the others zero
    onto = [_constant(np.outer(np.eye(rank)[b], np.ones(rank))) for b in range(rank)]
    add_up = _ones((rank, rank))
    for j in range(1, len(shape) - 1):
        columns = []
        for b in range(rank):
            coupled = builder.add(HadamardLayer(rank, arity=2), [state, core(j)])
            columns.append(builder.add(DenseLayer(rank, rank, weight=onto[b]), [coupled]))
        state = builder.add(MixingLayer(rank, rank, weight=add_up), columns)
    last = builder.add(HadamardLayer(rank, arity=2), [state, core(len(shape) - 1)])
    return builder.build([builder.add(DenseLayer(rank, 1, weight=_ones((1, rank))), [last])])
