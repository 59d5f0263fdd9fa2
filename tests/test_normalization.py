"""Normalized circuits, enumerated exhaustively: they sum to one, and summing a variable out
by enumeration gives the circuit over the remaining variables.

Circuits have 2-4 variables with few categories (softmax sum weights, softmax categorical
probabilities, or binomials), so every assignment fits in one batch. The marginal circuit is
built by hand: the marginalized variable's input layers become constant layers of ones (a
normalized input integrates to one), evaluated by the reference with the compiled circuit's
parameters.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from ir_cases import two_unit_tree

from cirkit_ir import reference
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.region_graph import (
    chow_liu_tree,
    fully_factorized,
    linear_tree,
    poon_domingos,
    quad_graph,
    quad_tree,
    random_binary_tree,
)
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ConstantInitializer,
    ConstantLayer,
    GaussianLayer,
    InputLayer,
    ScaledSigmoidParameter,
    TensorParameter,
)
from cirkit_ir.templates import circuit_from_region_graph, circuit_templates

SEMIRINGS = ("sum-product", "lse-sum", "complex-lse-sum")

REGION_GRAPHS = {
    "random-binary-tree": lambda: random_binary_tree(3, num_repetitions=2, seed=5),
    "linear-tree": lambda: linear_tree(3, num_repetitions=2, randomize=True),
    "fully-factorized": lambda: fully_factorized(3, num_repetitions=2),
    "chow-liu": lambda: chow_liu_tree(
        np.random.RandomState(0).randint(0, 3, size=(30, 3)), "categorical", num_categories=3
    ),
    "quad-tree-2": lambda: quad_tree((2, 2), num_patch_splits=2),
    "quad-tree-4": lambda: quad_tree((2, 2), num_patch_splits=4),
    "quad-graph": lambda: quad_graph((2, 2)),
    "poon-domingos": lambda: poon_domingos((2, 2), delta=1),
}


def _categorical(num_categories: int):
    return lambda scope, units: CategoricalLayer(scope, units, num_categories=num_categories)


def _binomial(total_count: int):
    return lambda scope, units: BinomialLayer(scope, units, total_count=total_count)


def build(region_graph: str, sum_product: str, *, factory=None, num_classes=1, mixing=True):
    return circuit_from_region_graph(
        REGION_GRAPHS[region_graph](),
        input_factory=factory or _categorical(3),
        sum_product=sum_product,
        num_input_units=2,
        num_sum_units=3,
        num_classes=num_classes,
        use_mixing_weights=mixing,
    )


def all_assignments(num_variables: int, num_values: int) -> torch.Tensor:
    rows = list(itertools.product(range(num_values), repeat=num_variables))
    return torch.tensor(rows, dtype=torch.long)[:, None, :]


def total_mass(output: torch.Tensor, semiring: str) -> torch.Tensor:
    """The sum over the batch of a compiled output (B, O, K), as a probability (O, K)."""
    if semiring == "sum-product":
        return output.sum(dim=0).real.double()
    return torch.logsumexp(output.real.double(), dim=0).exp()


def compile_circuit(circuit, semiring="lse-sum", fold=True, optimize=True, seed=0):
    ctx = PipelineContext(semiring=semiring, fold=fold, optimize=optimize, dtype=torch.float64)
    return ctx.compile(circuit, seed=seed)


# ---------------------------------------------------------------------------------------------
# Sums to one


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("sum_product", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("region_graph", sorted(REGION_GRAPHS))
def test_sums_to_one(region_graph, sum_product, semiring):
    circuit = build(region_graph, sum_product, num_classes=2)
    compiled = compile_circuit(circuit, semiring, seed=7)
    x = all_assignments(circuit.num_variables, 3)
    out = compiled(x)
    assert out.shape == (len(x), 1, 2)
    torch.testing.assert_close(total_mass(out, semiring), torch.ones(1, 2, dtype=torch.float64))
    # The reference agrees point by point, too.
    reference.assert_matches(out, circuit, x, compiled.symbolic_state(), semiring, 1e-9)


@pytest.mark.parametrize(("fold", "optimize"), list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("mixing", [True, False])
def test_sums_to_one_for_every_flag(fold, optimize, mixing):
    circuit = build("poon-domingos", "tucker", mixing=mixing)
    compiled = compile_circuit(circuit, "lse-sum", fold, optimize, seed=3)
    out = compiled(all_assignments(4, 3))
    assert torch.logsumexp(out.double(), dim=0).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("sum_product", ["tucker", "cp", "cp-t"])
def test_binomial_circuit_sums_to_one(sum_product):
    circuit = build("random-binary-tree", sum_product, factory=_binomial(3))
    compiled = compile_circuit(circuit, seed=11)
    out = compiled(all_assignments(3, 4))
    assert torch.logsumexp(out.double(), dim=0).item() == pytest.approx(0.0, abs=1e-12)


def test_categorical_logits_circuit_sums_to_one():
    def factory(scope, units):
        logits = TensorParameter((units, 1, 4))
        return CategoricalLayer(scope, units, num_categories=4, logits=logits)

    circuit = build("linear-tree", "cp", factory=factory)
    compiled = compile_circuit(circuit, seed=2)
    out = compiled(all_assignments(3, 4))
    assert torch.logsumexp(out.double(), dim=0).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("region_graph", ["quad-tree-2", "quad-graph", "linear-tree"])
def test_image_template_over_two_pixels_sums_to_one(region_graph):
    # image_data((1, 1, 2)): two pixels of 256 categories each, 65536 assignments.
    circuit = circuit_templates.image_data(
        (1, 1, 2),
        region_graph=region_graph,
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=2,
        sum_weight_param="softmax",
    )
    compiled = compile_circuit(circuit, seed=4)
    out = compiled(all_assignments(2, 256))
    assert torch.logsumexp(out.double(), dim=0).item() == pytest.approx(0.0, abs=1e-10)


def test_multichannel_image_template_sums_to_one():
    # One pixel with two channels of 256 categories: 65536 assignments.
    circuit = circuit_templates.image_data(
        (2, 1, 1),
        region_graph="quad-tree-2",
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
    )
    compiled = compile_circuit(circuit, seed=4)
    values = torch.arange(256)
    x = torch.stack(torch.meshgrid(values, values, indexing="ij"), dim=-1).reshape(-1, 2, 1)
    out = compiled(x)
    assert torch.logsumexp(out.double(), dim=0).item() == pytest.approx(0.0, abs=1e-10)


def test_gaussian_circuit_integrates_to_one():
    def factory(scope, units):
        stddev = ScaledSigmoidParameter(TensorParameter((units, 1)), vmin=0.5, vmax=2.0)
        return GaussianLayer(scope, units, stddev=stddev)

    circuit = two_unit_tree(factory, "cp", seed=1)
    compiled = compile_circuit(circuit, seed=5)
    step = 0.04
    grid = torch.arange(-14.0, 14.0 + step / 2, step, dtype=torch.float64)
    x = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1).reshape(-1, 1, 2)
    out = compiled(x).double()
    # The trapezoid rule on smooth, fast-decaying integrands is exact up to the tails.
    integral = torch.logsumexp(out, dim=0).exp().item() * step * step
    assert integral == pytest.approx(1.0, abs=1e-8)


# ---------------------------------------------------------------------------------------------
# Marginals


def marginal_circuit(circuit: Circuit, variable: int) -> tuple[Circuit, dict[int, int]]:
    """The circuit with `variable`'s input layers replaced by constant layers of ones, and
    the map from its new source ids to the old ones (-1 for the new constant leaves)."""
    replaced = {}
    for layer in circuit.layers:
        if isinstance(layer, InputLayer) and variable in layer.scope:
            ones = TensorParameter((layer.num_output_units,), ConstantInitializer(1.0))
            replaced[layer] = ConstantLayer(ones)
    layers = [replaced.get(layer, layer) for layer in circuit.layers]
    in_layers = {
        replaced.get(layer, layer): [replaced.get(c, c) for c in circuit.layer_inputs(layer)]
        for layer in circuit.layers
    }
    outputs = [replaced.get(layer, layer) for layer in circuit.outputs]
    marginal = Circuit(layers, in_layers, outputs)
    old = {id(leaf): i for i, leaf in enumerate(circuit.tensor_parameters())}
    new_to_old = {i: old.get(id(leaf), -1) for i, leaf in enumerate(marginal.tensor_parameters())}
    return marginal, new_to_old


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("sum_product", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("region_graph", ["random-binary-tree", "quad-graph", "chow-liu"])
def test_summing_out_a_variable_gives_the_marginal(region_graph, sum_product, semiring):
    circuit = build(region_graph, sum_product)
    compiled = compile_circuit(circuit, semiring, seed=13)
    num_variables = circuit.num_variables
    x = all_assignments(num_variables, 3)
    out = compiled(x)  # (3^n, 1, 1)
    state = compiled.symbolic_state()
    for variable in range(num_variables):
        marginal, new_to_old = marginal_circuit(circuit, variable)
        values = {
            new: state[old] if old >= 0 else torch.ones(marginal.tensor_parameters()[new].shape)
            for new, old in new_to_old.items()
        }
        # Group the assignments by the values of the other variables, and sum each group.
        others = [v for v in range(num_variables) if v != variable]
        rest = all_assignments(len(others), 3)
        keys = x[:, 0, others]
        summed = []
        for row in rest[:, 0, :]:
            rows = (keys == row).all(dim=1)
            summed.append(total_mass(out[rows], semiring))
        by_enumeration = torch.log(torch.stack(summed))  # (3^(n-1), 1, 1)
        data = torch.zeros(len(rest), 1, num_variables, dtype=torch.long)
        data[:, 0, others] = rest[:, 0, :]
        expected = reference.evaluate(marginal, data, values)
        torch.testing.assert_close(by_enumeration, expected, rtol=1e-10, atol=1e-12)
        # And the marginal is itself normalized.
        assert torch.logsumexp(expected, dim=0).item() == pytest.approx(0.0, abs=1e-12)


def test_marginal_of_a_hand_built_circuit_by_hand():
    # p(x0, x1) = sum_k w_k c0_k(x0) c1_k(x1): sum_x1 p = sum_k w_k c0_k(x0).
    circuit = circuit_from_region_graph(
        fully_factorized(2),
        input_factory=_categorical(2),
        sum_product="cp-t",
        num_input_units=2,
        num_sum_units=2,
    )
    compiled = compile_circuit(circuit, "sum-product", seed=21)
    state = compiled.symbolic_state()
    p = compiled(all_assignments(2, 2))[:, 0, 0].reshape(2, 2).double()
    values = reference.evaluate_parameters(circuit, state)
    c0, c1, _, dense = circuit.layers
    probs0 = values[id(c0.probs)][:, 0, :]  # (K, 2)
    w = values[id(dense.weight)][0]  # (K,)
    by_hand = torch.stack([sum(w[k] * probs0[k, a] for k in range(2)) for a in range(2)])
    torch.testing.assert_close(p.sum(dim=1), by_hand, rtol=1e-12, atol=0)
    assert math.isclose(p.sum().item(), 1.0, abs_tol=1e-12)
