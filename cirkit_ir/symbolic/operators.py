"""Per-layer rules of the circuit algebra (`functional`): integrals, products, conjugates.

Each rule is registered for a layer class (a pair of classes for products), beside nothing
else: a user's layer joins the algebra by registering its own rules with `integrate_rule`,
`multiply_rule` and `conjugate_rule`. Rules only build layers whose parameter graphs read the
operands' parameter nodes, so a derived circuit shares (and trains) the operands' tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from cirkit_ir.errors import PropertyError
from cirkit_ir.symbolic import layers as sl
from cirkit_ir.symbolic import parameters as sp
from cirkit_ir.symbolic.initializers import ConstantInitializer
from cirkit_ir.symbolic.kronecker_dense import KroneckerDenseLayer
from cirkit_ir.symbolic.polynomial import (
    PolynomialDifferentialParameter,
    PolynomialLayer,
    PolynomialProductParameter,
)

IntegrateRule = Callable[[sl.InputLayer], sl.Layer]
"""The layer (over no variable) that stands for an input layer summed over its variable."""

MultiplyRule = Callable[[sl.Layer, sl.Layer], tuple[sl.Layer, Sequence[tuple[int, int] | sl.Layer]]]
"""``rule(l1, l2) -> (layer, inputs)``: the product layer, and what it reads: pairs (input
index of l1, input index of l2) whose products the functional builds, or new layers that read
nothing (a product of input layers may be a block, e.g. a density times its normalizer).
Units of the product are paired as in a Kronecker layer: unit i of l1 and j of l2 is
i * K2 + j."""

ConjugateRule = Callable[[sl.Layer], sl.Layer]

DifferentiateRule = Callable[[sl.InputLayer, int], sl.Layer]
"""``rule(layer, order)``: the input layer of the order-th derivative of `layer` w.r.t. its
variable."""

INTEGRATE_RULES: dict[type[sl.Layer], IntegrateRule] = {}
MULTIPLY_RULES: dict[tuple[type[sl.Layer], type[sl.Layer]], MultiplyRule] = {}
CONJUGATE_RULES: dict[type[sl.Layer], ConjugateRule] = {}
DIFFERENTIATE_RULES: dict[type[sl.Layer], DifferentiateRule] = {}


def integrate_rule(cls: type[sl.Layer]) -> Callable[[IntegrateRule], IntegrateRule]:
    """Registers the integral (over its whole domain) of the input layer class `cls`."""

    def register(rule: IntegrateRule) -> IntegrateRule:
        INTEGRATE_RULES[cls] = rule
        return rule

    return register


def multiply_rule(
    cls1: type[sl.Layer], cls2: type[sl.Layer]
) -> Callable[[MultiplyRule], MultiplyRule]:
    """Registers the product of a layer of class `cls1` and one of class `cls2`."""

    def register(rule: MultiplyRule) -> MultiplyRule:
        MULTIPLY_RULES[cls1, cls2] = rule
        return rule

    return register


def conjugate_rule(cls: type[sl.Layer]) -> Callable[[ConjugateRule], ConjugateRule]:
    """Registers the complex conjugate of layers of class `cls` (the default conjugates every
    complex parameter of the layer, which is right for layers linear in each parameter)."""

    def register(rule: ConjugateRule) -> ConjugateRule:
        CONJUGATE_RULES[cls] = rule
        return rule

    return register


def differentiate_rule(
    cls: type[sl.Layer],
) -> Callable[[DifferentiateRule], DifferentiateRule]:
    """Registers the derivative of the input layers of class `cls` w.r.t. their variable."""

    def register(rule: DifferentiateRule) -> DifferentiateRule:
        DIFFERENTIATE_RULES[cls] = rule
        return rule

    return register


def lookup(rules: dict, cls: type) -> Callable | None:
    """The rule of `cls` or of its nearest registered base class."""
    for base in cls.__mro__:
        if base in rules:
            return rules[base]
    return None


def lookup_pair(cls1: type, cls2: type) -> MultiplyRule | None:
    for base1 in cls1.__mro__:
        for base2 in cls2.__mro__:
            rule = MULTIPLY_RULES.get((base1, base2))
            if rule is not None:
                return rule
    return None


# -- integrals -----------------------------------------------------------------------------------


def _ones(units: int) -> sp.ParameterNode:
    return sp.TensorParameter((units,), ConstantInitializer(1.0), learnable=False)


def _sum_states_prod_channels(table: sp.ParameterNode) -> sp.ParameterNode:
    """(K, C, S) -> (K,): each channel's table summed over its states, channels multiplied.
    The table of a product of tables (an outer product of two) is never materialized: its
    sum over states is their Gram matrix."""
    if isinstance(table, sp.OuterParameter) and table.axis == 0 and len(table.shape) == 3:
        per_channel: sp.ParameterNode = sp.GramParameter(table.a, table.b)
    else:
        per_channel = sp.ReduceParameter(table, axis=2, kind="sum")
    return sp.ReduceParameter(per_channel, axis=1, kind="prod")


def _probs(layer: sl.CategoricalLayer) -> sp.ParameterNode:
    """A categorical layer's probabilities as a parameter graph (a softmax of its logits)."""
    if layer.probs is not None:
        return layer.probs
    return sp.SoftmaxParameter(layer.logits, axis=-1)


@integrate_rule(sl.EmbeddingLayer)
def _integrate_embedding(layer: sl.EmbeddingLayer) -> sl.Layer:
    return sl.ConstantLayer(_sum_states_prod_channels(layer.weight))


@integrate_rule(sl.CategoricalLayer)
def _integrate_categorical(layer: sl.CategoricalLayer) -> sl.Layer:
    # Given probabilities may be unnormalized (or signed): sum them. Logits normalize to 1.
    if layer.probs is None:
        return sl.ConstantLayer(_ones(layer.num_output_units))
    return sl.ConstantLayer(_sum_states_prod_channels(layer.probs))


@integrate_rule(sl.BinomialLayer)
@integrate_rule(sl.GaussianLayer)
def _integrate_normalized(layer: sl.InputLayer) -> sl.Layer:
    """Normalized densities integrate to one over the whole domain."""
    return sl.ConstantLayer(_ones(layer.num_output_units))


# -- products ------------------------------------------------------------------------------------


def _states(layer: sl.InputLayer) -> int:
    return layer.max_value + 1  # type: ignore[operator]


def _table(layer: sl.InputLayer) -> sp.ParameterNode:
    """A discrete layer's values as a (K, C, S) table."""
    if isinstance(layer, sl.CategoricalLayer):
        return _probs(layer)
    if isinstance(layer, sl.BinomialLayer):
        name, param = layer._param()
        return sp.BinomialTableParameter(
            param, total_count=layer.total_count, logits=name == "logits"
        )
    return layer.weight


def _multiply_tables(l1: sl.InputLayer, l2: sl.InputLayer):
    """A product of two tables (categorical, embedding or binomial) is an unnormalized table: an
    embedding layer whose weight is the outer product of the two over the units."""
    if _states(l1) != _states(l2):
        raise PropertyError(
            f"cannot multiply a {type(l1).__name__} of {_states(l1)} states by a"
            f" {type(l2).__name__} of {_states(l2)} over variable {l1.scope}: give both"
            " layers the same number of states"
        )
    layer = sl.EmbeddingLayer(
        l1.scope,
        l1.num_output_units * l2.num_output_units,
        num_channels=l1.num_channels,
        num_states=_states(l1),
        weight=sp.OuterParameter(_table(l1), _table(l2), axis=0),
    )
    return layer, ()


_TABLES = (sl.CategoricalLayer, sl.EmbeddingLayer, sl.BinomialLayer)
for _cls1 in _TABLES:
    for _cls2 in _TABLES:
        multiply_rule(_cls1, _cls2)(_multiply_tables)


def _kronecker_weights(l1, l2) -> sp.ParameterNode:
    return sp.KroneckerParameter(l1.weight, l2.weight)


def _dense_weight(layer: sl.Layer) -> sp.ParameterNode:
    return layer.weight  # a KroneckerDenseLayer's is the Kronecker product of its factors


def _multiply_dense(l1: sl.Layer, l2: sl.Layer):
    """(W1 x)(W2 y) = (W1 (x) W2)(x (x) y): a dense layer over the product of the inputs,
    its weight kept as the two factors (`KroneckerDenseLayer`)."""
    return KroneckerDenseLayer(_dense_weight(l1), _dense_weight(l2)), ((0, 0),)


for _cls1 in (sl.SumLayer, KroneckerDenseLayer):
    for _cls2 in (sl.SumLayer, KroneckerDenseLayer):
        multiply_rule(_cls1, _cls2)(_multiply_dense)


@multiply_rule(sl.MixingLayer, sl.MixingLayer)
def _multiply_mixings(l1: sl.MixingLayer, l2: sl.MixingLayer):
    """Unit (i, j) mixes the products of input h of l1 and h' of l2 with w1[i, h] w2[j, h']:
    the Kronecker product of the (K, H) weights, inputs ordered (h, h')."""
    layer = sl.MixingLayer(
        l1.num_units * l2.num_units, l1.arity * l2.arity, weight=_kronecker_weights(l1, l2)
    )
    return layer, tuple((h1, h2) for h1 in range(l1.arity) for h2 in range(l2.arity))


@multiply_rule(sl.HadamardLayer, sl.HadamardLayer)
def _multiply_hadamards(l1: sl.HadamardLayer, l2: sl.HadamardLayer):
    """prod_h x_h[i] * prod_h y_h[j] = prod_h (x_h (x) y_h)[i, j]: inputs paired in order."""
    layer = sl.HadamardLayer(l1.num_input_units * l2.num_input_units, l1.arity)
    return layer, tuple((h, h) for h in range(l1.arity))


@multiply_rule(sl.ConstantLayer, sl.ConstantLayer)
def _multiply_constants(l1: sl.ConstantLayer, l2: sl.ConstantLayer):
    return sl.ConstantLayer(sp.OuterParameter(l1.value, l2.value, axis=0)), ()


# -- conjugates ----------------------------------------------------------------------------------


def conjugate_params(layer: sl.Layer) -> sl.Layer:
    """`layer` with each complex parameter conjugated; the layer itself if none is complex."""
    changes = {
        name: sp.ConjugateParameter(param)
        for name, param in layer.params.items()
        if param.dtype == "complex"
    }
    if not changes:
        return layer
    return attrs.evolve(layer, **changes)


@conjugate_rule(sl.EvidenceLayer)
def _conjugate_evidence(layer: sl.EvidenceLayer) -> sl.Layer:
    inner = conjugate_params(layer.layer)
    return layer if inner is layer.layer else attrs.evolve(layer, layer=inner)


@conjugate_rule(sl.Layer)
def _conjugate_default(layer: sl.Layer) -> sl.Layer:
    return conjugate_params(layer)


@multiply_rule(sl.GaussianLayer, sl.GaussianLayer)
def _multiply_gaussians(l1: sl.GaussianLayer, l2: sl.GaussianLayer):
    """A product of normal densities is a normal density times a constant (the normalizer):
    a hadamard layer over a gaussian layer and a constant layer."""
    operands = (l1.mean, l1.stddev, l2.mean, l2.stddev)
    units = l1.num_output_units * l2.num_output_units
    density = sl.GaussianLayer(
        l1.scope,
        units,
        num_channels=l1.num_channels,
        mean=sp.GaussianProductParameter(*operands, output="mean"),
        stddev=sp.GaussianProductParameter(*operands, output="stddev"),
    )
    normalizer = sl.ConstantLayer(sp.GaussianProductParameter(*operands, output="normalizer"))
    return sl.HadamardLayer(units, 2), (density, normalizer)


# -- polynomials -----------------------------------------------------------------------------------


@multiply_rule(PolynomialLayer, PolynomialLayer)
def _multiply_polynomials(l1: PolynomialLayer, l2: PolynomialLayer):
    layer = PolynomialLayer(
        l1.scope,
        l1.num_output_units * l2.num_output_units,
        num_channels=l1.num_channels,
        degree=l1.degree + l2.degree,
        coeff=PolynomialProductParameter(l1.coeff, l2.coeff),
    )
    return layer, ()


@differentiate_rule(PolynomialLayer)
def _differentiate_polynomial(layer: PolynomialLayer, order: int) -> sl.Layer:
    coeff = PolynomialDifferentialParameter(layer.coeff, order=order)
    return PolynomialLayer(
        layer.scope,
        layer.num_output_units,
        num_channels=layer.num_channels,
        degree=coeff.shape[-1] - 1,
        coeff=coeff,
    )
