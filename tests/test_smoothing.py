"""Circuits that libcirkit compiles as they are: non-smooth sums and its general `SumLayer`.

`cirkit_ir.symbolic.lowerable` rewrites them into circuits the IR takes (smooth; dense and
mixing layers) that compute the same values; `PipelineContext.compile` does it on its own.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from cirkit_ir import errors, reference
from cirkit_ir.ir import lower
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    CategoricalLayer,
    Circuit,
    DenseLayer,
    EmbeddingLayer,
    ExpParameter,
    GaussianLayer,
    HadamardLayer,
    MixingLayer,
    MixingWeightParameter,
    Scope,
    SumLayer,
    TensorParameter,
    expand_sum_layers,
    lowerable,
    smooth,
)

FLAGS = [
    ("sum-product", False, False),
    ("lse-sum", False, False),
    ("lse-sum", True, True),
    ("complex-lse-sum", True, True),
]


def _categorical(variable: int, units: int = 2, categories: int = 3) -> CategoricalLayer:
    return CategoricalLayer(Scope([variable]), units, num_categories=categories)


def _rough() -> Circuit:
    """mix(x0 * x1, x0, x2 * x1): inputs over {0, 1}, {0} and {1, 2} (three of them)."""
    a, b, c, d = _categorical(0), _categorical(1), _categorical(0), _categorical(2, categories=4)
    e = _categorical(1)
    ab = HadamardLayer(2, 2)
    de = HadamardLayer(2, 2)
    mix = MixingLayer(2, 3)
    root = DenseLayer(2, 1)
    layers = [a, b, c, d, e, ab, de, mix, root]
    return Circuit(layers, {ab: [a, b], de: [d, e], mix: [ab, c, de], root: [mix]}, [root])


def _values_by_leaf(original: Circuit, rewritten: Circuit, state: dict) -> dict:
    """A compiled circuit's state (keyed by `rewritten`'s sources) keyed by `original`'s."""
    source = {id(leaf): i for i, leaf in enumerate(rewritten.tensor_parameters())}
    return {i: state[source[id(leaf)]] for i, leaf in enumerate(original.tensor_parameters())}


@pytest.mark.parametrize(("semiring", "fold", "optimize"), FLAGS)
def test_non_smooth_circuits_compile_to_their_values(semiring, fold, optimize):
    circuit = _rough()
    assert not circuit.is_smooth
    ctx = PipelineContext("torch", semiring, fold, optimize, seed=3, dtype=torch.float64)
    compiled = ctx.compile(circuit)
    x = torch.tensor(list(itertools.product(range(3), range(3), range(4))))
    values = _values_by_leaf(circuit, lowerable(circuit), compiled.symbolic_state())
    # against the circuit as it is, not smoothed
    reference.assert_matches(compiled(x), circuit, x, values, semiring, tol=1e-9)


def test_smoothing_multiplies_by_ones_over_the_missing_variables():
    circuit = _rough()
    smoothed = smooth(circuit)
    assert smoothed.is_smooth and smoothed.num_variables == 3
    ones = [layer for layer in smoothed.layers if isinstance(layer, EmbeddingLayer)]
    # x0 lacks 1 and 2; x0*x1 lacks 2; x2*x1 lacks 0: one layer per variable (2 units each)
    assert sorted((tuple(layer.scope)[0], layer.num_states) for layer in ones) == [
        (0, 3),
        (1, 3),
        (2, 4),
    ]
    assert all(not layer.weight.learnable for layer in ones)
    kept = set(circuit.layers)
    assert kept <= set(smoothed.layers)  # the same layer objects, parameters shared
    assert smooth(smoothed) is smoothed


def test_smoothing_takes_the_values_every_input_layer_accepts():
    small, large = _categorical(0, categories=2), _categorical(0, categories=5)
    other = _categorical(1)
    product = HadamardLayer(2, 2)
    mix = MixingLayer(2, 2)
    circuit = Circuit(
        [small, large, other, product, mix], {product: [large, other], mix: [small, product]}, [mix]
    )
    (ones,) = [layer for layer in smooth(circuit).layers if isinstance(layer, EmbeddingLayer)]
    assert tuple(ones.scope) == (1,) and ones.num_states == 3


def test_a_missing_continuous_variable_cannot_be_smoothed():
    g0, g1 = GaussianLayer(Scope([0]), 2), GaussianLayer(Scope([1]), 2)
    product = HadamardLayer(2, 2)
    mix = MixingLayer(2, 2)
    circuit = Circuit([g0, g1, product, mix], {product: [g0, g1], mix: [product, g0]}, [mix])
    with pytest.raises(
        errors.PropertyError, match=r"layer #3 \(MixingLayer\).*slot 1 lacks variable 1.*continuous"
    ):
        PipelineContext().compile(circuit)


def test_non_decomposable_circuits_are_still_refused():
    a, b = _categorical(0), _categorical(0)
    product = HadamardLayer(2, 2)
    circuit = Circuit([a, b, product], {product: [a, b]}, [product])
    with pytest.raises(errors.PropertyError, match=r"not decomposable: layer #2 \(Hadamard"):
        PipelineContext().compile(circuit)


# -- cirkit's SumLayer -------------------------------------------------------------------------


def _probs(layer: CategoricalLayer, values: dict, source: dict, x: torch.Tensor) -> torch.Tensor:
    """p(x) of every unit of a categorical layer (B, K), from the raw leaf values (softmax)."""
    raw = values[source[id(layer.probs.x)]][:, 0, :]  # (K, N)
    return torch.softmax(raw, dim=-1)[:, x].T


@pytest.mark.parametrize(("semiring", "fold", "optimize"), FLAGS[:3])
def test_sum_layer_multiplies_its_weight_by_the_concatenated_inputs(semiring, fold, optimize):
    inputs = [_categorical(v, units=3) for v in range(3)]
    product = HadamardLayer(3, 3)
    first = SumLayer(3, 2, arity=1, weight=ExpParameter(TensorParameter((2, 3))))  # dense
    positive = TensorParameter((2, 9))
    concat = SumLayer(3, 2, arity=3, weight=ExpParameter(positive))  # W (2, 9)
    total = SumLayer(2, 1, arity=2, weight=ExpParameter(TensorParameter((1, 4))))
    layers = [*inputs, product, first, concat, total]
    circuit = Circuit(
        layers, {product: inputs, first: [product], concat: inputs, total: [first, concat]}, [total]
    )
    ctx = PipelineContext("torch", semiring, fold, optimize, seed=5, dtype=torch.float64)
    compiled = ctx.compile(circuit)
    x = torch.tensor(list(itertools.product(range(3), repeat=3)))
    values = _values_by_leaf(circuit, lowerable(circuit), compiled.symbolic_state())
    source = {id(leaf): i for i, leaf in enumerate(circuit.tensor_parameters())}
    p = [_probs(layer, values, source, x[:, v]) for v, layer in enumerate(inputs)]  # (B, 3) each
    w_first = values[source[id(first.weight.x)]].exp()
    w_concat = values[source[id(positive)]].exp()
    w_total = values[source[id(total.weight.x)]].exp()
    h_first = (p[0] * p[1] * p[2]) @ w_first.T  # (B, 2)
    h_concat = torch.cat(p, dim=1) @ w_concat.T  # (B, 2)
    expected = torch.cat([h_first, h_concat], dim=1) @ w_total.T  # (B, 1)
    out = compiled(x).detach().reshape(-1, 1)
    got = out if semiring == "sum-product" else out.exp()
    assert torch.allclose(got, expected, rtol=1e-10)
    # the reference evaluates SumLayers itself, from the same definition
    by_source = {i: values[i] for i in range(len(circuit.tensor_parameters()))}
    reference_p = reference.evaluate(circuit, x, by_source, log_space=False).reshape(-1, 1)
    assert torch.allclose(reference_p, expected, rtol=1e-10)
    # lowering by hand names the step that writes a wide SumLayer as the IR's layers
    with pytest.raises(errors.CompilationError, match="lowerable"):
        lower(circuit)


def test_sum_layers_become_the_layers_the_ir_has():
    a, b = _categorical(0), _categorical(1)
    mixing_weight = MixingWeightParameter(TensorParameter((2, 2)))
    as_mixing = SumLayer(2, 2, arity=2, weight=mixing_weight)
    as_dense = SumLayer(2, 3)
    circuit = Circuit(
        [a, b, as_mixing, as_dense], {as_mixing: [a, b], as_dense: [as_mixing]}, [as_dense]
    )
    expanded = expand_sum_layers(circuit)
    kinds = [type(layer) for layer in expanded.layers]
    assert kinds == [CategoricalLayer, CategoricalLayer, MixingLayer, DenseLayer]
    assert expanded.layers[2].weight is mixing_weight.x
    assert expanded.layers[3].weight is as_dense.weight
    assert expand_sum_layers(expanded) is expanded
    scalar = SumLayer(1, 1, arity=3)  # a logic circuit's OR: a mixing of single units
    ins = [CategoricalLayer(Scope([0]), 1, num_categories=2) for _ in range(3)]
    rewritten = expand_sum_layers(Circuit([*ins, scalar], {scalar: ins}, [scalar]))
    assert isinstance(rewritten.outputs[0], MixingLayer)
    assert rewritten.outputs[0].weight is scalar.weight


def test_sum_layer_defaults_and_arguments():
    layer = SumLayer(3, 2, 2)
    assert layer.weight.shape == (2, 6) and isinstance(layer.weight, TensorParameter)
    made = SumLayer(3, 2, arity=2, weight_factory=lambda shape: TensorParameter(shape))
    assert made.weight.shape == (2, 6)
    with pytest.raises(errors.StructureError, match=r"'weight' has shape \(2, 3\), expected"):
        SumLayer(3, 2, 2, TensorParameter((2, 3)))
    with pytest.raises(errors.OptionError, match="weight_factory.*returned an int"):
        SumLayer(3, 2, weight_factory=lambda shape: 3)
    with pytest.raises(errors.StructureError, match="DenseLayer reads one input"):
        DenseLayer(3, 2, 2)
