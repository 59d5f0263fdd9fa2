"""Numerics: deep circuits, exact zeros, float32 against float64.

* Deep circuits (a linear tree over 784 pixels, the seed notebook's circuit) have
  log-likelihoods in the thousands below zero, far under log(smallest double) = -708: they
  must come out finite and equal to the reference, and their gradients finite.
* An exact zero probability must give -inf where the likelihood is zero, finite values
  elsewhere, and never NaN (outputs or gradients of finite outputs).
* float32 and float64 compilations of the same circuit and seed agree.
"""

from __future__ import annotations

import math

import pytest
import torch
from ir_cases import quad_tree_2x2, two_unit_tree

from cirkit_ir import reference
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.region_graph import random_binary_tree
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ClampParameter,
    ConstantInitializer,
    GaussianLayer,
    TensorParameter,
)
from cirkit_ir.templates import Parameterization, circuit_from_region_graph, circuit_templates

SEMIRINGS_LOG = ("lse-sum", "complex-lse-sum")


def compile_circuit(
    circuit, semiring="lse-sum", *, dtype=torch.float64, fold=True, optimize=True, seed=0
):
    ctx = PipelineContext(semiring=semiring, fold=fold, optimize=optimize, dtype=dtype)
    return ctx.compile(circuit, seed=seed)


def image_batch(batch: int, pixels: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(256, (batch, 1, pixels), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def linear_tree_784():
    return circuit_templates.image_data(
        (1, 28, 28),
        region_graph="linear-tree",
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=2,
    )


@pytest.fixture(scope="module")
def seed_circuit_64():
    """The seed notebook's structure with 64 units. Tucker layers over 64 units hold
    64 x 64^2 weights each (about 7e8 parameters over the 28x28 quad graph), so this uses CP
    layers (64 x 64 per input), which keeps the same depth and the same number of units."""
    return circuit_templates.image_data(
        (1, 28, 28),
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=64,
        sum_product_layer="cp",
        num_sum_units=64,
        sum_weight_param="softmax",
    )


# ---------------------------------------------------------------------------------------------
# Deep circuits


@pytest.mark.parametrize("semiring", SEMIRINGS_LOG)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_linear_tree_784_exact_far_below_underflow(linear_tree_784, semiring, dtype):
    compiled = compile_circuit(linear_tree_784, semiring, dtype=dtype, seed=1)
    x = image_batch(4, 784)
    out = compiled(x)
    assert torch.isfinite(out.real).all()
    expected = reference.evaluate(linear_tree_784, x, compiled.symbolic_state())
    assert (expected < -2000).all()  # far below log(smallest double)
    rtol = 1e-10 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(out.real.double(), expected, rtol=rtol, atol=0)
    if semiring == "complex-lse-sum":
        # Positive values: the phase is a multiple of 2 pi.
        assert torch.allclose(torch.cos(out.imag.double()), torch.ones(1, dtype=torch.float64))


def test_linear_tree_784_gradients_are_finite(linear_tree_784):
    compiled = compile_circuit(linear_tree_784, dtype=torch.float32, seed=2)
    out = compiled(image_batch(4, 784))
    out.sum().backward()
    grads = [p.grad for p in compiled.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(bool((g != 0).any()) for g in grads)


@pytest.mark.parametrize(("fold", "optimize"), [(False, False), (True, False), (True, True)])
def test_seed_circuit_matches_reference(seed_circuit, fold, optimize):
    compiled = compile_circuit(
        seed_circuit, dtype=torch.float32, fold=fold, optimize=optimize, seed=42
    )
    x = image_batch(8, 784, seed=1)
    out = compiled(x)
    expected = reference.evaluate(seed_circuit, x, compiled.symbolic_state())
    assert (expected < -708).all()
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, rtol=2e-6, atol=0)


def test_seed_circuit_64_units(seed_circuit_64):
    compiled = compile_circuit(seed_circuit_64, dtype=torch.float32, seed=42)
    x = image_batch(4, 784, seed=2)
    out = compiled(x)
    expected = reference.evaluate(seed_circuit_64, x, compiled.symbolic_state())
    assert (expected < -708).all()
    torch.testing.assert_close(out.double(), expected, rtol=2e-6, atol=0)
    out.mean().backward()
    for name, p in compiled.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def compile_both(circuit, semiring="lse-sum", seed=0):
    """float64 and float32 compilations holding the same parameters (the float64 draws)."""
    c64 = compile_circuit(circuit, semiring, dtype=torch.float64, seed=seed)
    c32 = compile_circuit(circuit, semiring, dtype=torch.float32, seed=seed)
    c32.load_symbolic_state({s: v.float() for s, v in c64.symbolic_state().items()})
    return c64, c32


def test_seed_circuit_float64_equals_float32(seed_circuit):
    x = image_batch(8, 784, seed=3)
    c64, c32 = compile_both(seed_circuit, seed=5)
    out64, out32 = c64(x), c32(x)
    assert out64.dtype == torch.float64 and out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=2e-6, atol=0)


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("sum_product", ["tucker", "cp", "cp-t"])
def test_float64_equals_float32_on_small_circuits(semiring, sum_product):
    # Six pixels: likelihoods near 256^-6, well inside float32's range in every semiring.
    circuit = circuit_templates.image_data(
        (1, 2, 3),
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=3,
        sum_product_layer=sum_product,
        num_sum_units=3,
        num_classes=2,
    )
    x = image_batch(8, 6, seed=4)
    c64, c32 = compile_both(circuit, semiring, seed=6)
    out64, out32 = c64(x), c32(x)
    if semiring == "sum-product":
        torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=0)
    else:
        torch.testing.assert_close(out32.real.double(), out64.real, rtol=1e-6, atol=1e-5)


def test_parameter_cache_follows_parameter_changes():
    # In eval mode without autograd, compiled circuits cache their parameter values between
    # forwards; every way of changing the parameters must be seen by the next forward.
    circuit = quad_tree_2x2()
    compiled = compile_circuit(circuit, seed=1).eval()
    x = image_batch(4, 4, seed=5)
    with torch.no_grad():
        first = compiled(x)
        torch.testing.assert_close(compiled(x), first, rtol=0, atol=0)
        for p in compiled.parameters():  # in place, as an optimizer step would
            p.add_(0.5)
        state = compiled.symbolic_state()
        after_step = compiled(x)
        reference.assert_matches(after_step, circuit, x, state, "lse-sum", 1e-9)
        assert not torch.equal(after_step, first)
        state = {s: v * 0.5 for s, v in state.items()}
        compiled.load_symbolic_state(state)
        reference.assert_matches(compiled(x), circuit, x, state, "lse-sum", 1e-9)


def test_sum_product_underflows_to_zero_not_nan(linear_tree_784):
    # Linear values of a 784-pixel image are below the smallest double: the sum-product
    # semiring can only give 0 there, but never NaN.
    compiled = compile_circuit(linear_tree_784, "sum-product", seed=1)
    out = compiled(image_batch(2, 784))
    assert not torch.isnan(out).any()
    assert (out == 0).all()


# ---------------------------------------------------------------------------------------------
# Exact zeros


def _zero_probability_circuit(activation):
    """Three variables over 3 categories, where category 2 has probability 0 in every unit of
    variable 0's input layers (probabilities given by hand through `activation`)."""

    def factory(scope, units):
        probs = activation(TensorParameter((units, 1, 3)))
        return CategoricalLayer(scope, units, num_categories=3, probs=probs)

    return circuit_from_region_graph(
        random_binary_tree(3, num_repetitions=2, seed=1),
        input_factory=factory,
        sum_product="tucker",
        num_input_units=2,
        num_sum_units=2,
    )


def _load_zero_probs(compiled, circuit, dtype):
    """Sets every input table to rows with a 0 in category 2 for variable 0, and a 0 in
    category 0 for only the first unit of the other variables."""
    state = compiled.symbolic_state()
    for layer in circuit.layers:
        if isinstance(layer, CategoricalLayer):
            (leaf,) = [n for n in layer.probs.nodes() if isinstance(n, TensorParameter)]
            source = circuit.tensor_parameters().index(leaf)
            if 0 in layer.scope:
                rows = [[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]]
            else:
                rows = [[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]]
            state[source] = torch.tensor(rows, dtype=dtype)[:, None, :]
    compiled.load_symbolic_state(state)
    return state


ZERO_DATA = torch.tensor([[2, 0, 1], [0, 0, 0], [1, 2, 0], [2, 2, 2]])[:, None, :]


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize(
    "activation",
    [lambda t: t, lambda t: ClampParameter(t, vmin=0.0)],
    ids=["raw-probs", "clamped-probs"],
)
def test_zero_probability_gives_minus_inf_and_no_nan(semiring, fold, activation):
    circuit = _zero_probability_circuit(activation)
    compiled = compile_circuit(circuit, semiring, fold=fold, seed=3)
    state = _load_zero_probs(compiled, circuit, torch.float64)
    out = compiled(ZERO_DATA)
    assert (
        not torch.isnan(out.real).any()
        and not torch.isnan(out.imag if out.is_complex() else out).any()
    )
    log_p = reference.output_as_log(out, semiring).real
    assert torch.isneginf(log_p[[0, 3]]).all()  # x0 = 2 has probability 0
    assert torch.isfinite(log_p[[1, 2]]).all()  # zeros in some units only: finite
    reference.assert_matches(out, circuit, ZERO_DATA, state, semiring, 1e-9)


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
def test_gradient_of_an_unobserved_zero_probability_is_zero(semiring):
    # Minimal: one categorical, probs (0.5, 0.5, 0), observe category 0. d log p / d probs is
    # (2, 0, 0): the zero entry is never read, so its gradient is 0.
    leaf = TensorParameter((1, 1, 3))
    layer = CategoricalLayer([0], 1, num_categories=3, probs=leaf)
    circuit = Circuit([layer], {}, [layer])
    compiled = compile_circuit(circuit, semiring, seed=0)
    compiled.load_symbolic_state({0: torch.tensor([[[0.5, 0.5, 0.0]]], dtype=torch.float64)})
    compiled(torch.tensor([[0]])).real.sum().backward()
    (grad,) = [p.grad for p in compiled.parameters()]
    torch.testing.assert_close(grad.reshape(3), torch.tensor([2.0, 0.0, 0.0]).double())


def test_gradient_of_a_zero_probability_in_sum_product_is_right():
    leaf = TensorParameter((1, 1, 3))
    layer = CategoricalLayer([0], 1, num_categories=3, probs=leaf)
    circuit = Circuit([layer], {}, [layer])
    compiled = compile_circuit(circuit, "sum-product", seed=0)
    compiled.load_symbolic_state({0: torch.tensor([[[0.5, 0.5, 0.0]]], dtype=torch.float64)})
    compiled(torch.tensor([[0]])).sum().backward()
    (grad,) = [p.grad for p in compiled.parameters()]
    torch.testing.assert_close(grad.reshape(3), torch.tensor([1.0, 0.0, 0.0]).double())


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
def test_gradients_with_zero_probabilities_are_finite(semiring):
    circuit = _zero_probability_circuit(lambda t: ClampParameter(t, vmin=0.0))
    compiled = compile_circuit(circuit, semiring, seed=3)
    _load_zero_probs(compiled, circuit, torch.float64)
    out = compiled(ZERO_DATA[[1, 2]])  # finite outputs whose terms include log 0 = -inf
    assert torch.isfinite(out.real).all()
    out.real.sum().backward()
    for name, p in compiled.named_parameters():
        if p.grad is not None:
            grad = torch.view_as_real(p.grad) if p.grad.is_complex() else p.grad
            assert torch.isfinite(grad).all(), name


def test_constant_zero_initializer_gives_minus_inf():
    # A categorical whose probabilities are a clamped constant 0 (never positive): every
    # likelihood is exactly 0.
    def factory(scope, units):
        probs = ClampParameter(TensorParameter((units, 1, 2), ConstantInitializer(0.0)), vmin=0.0)
        return CategoricalLayer(scope, units, num_categories=2, probs=probs)

    circuit = two_unit_tree(factory, "cp")
    compiled = compile_circuit(circuit, seed=0)
    out = compiled(torch.tensor([[0, 1], [1, 1]]))
    assert torch.isneginf(out).all()


def test_softmax_of_minus_inf_logits_gives_zero_probability():
    # Categorical logits of -inf are exact zeros after the softmax.
    def factory(scope, units):
        return CategoricalLayer(
            scope, units, num_categories=3, logits=TensorParameter((units, 1, 3))
        )

    circuit = two_unit_tree(factory, "cp-t")
    compiled = compile_circuit(circuit, seed=0)
    state = compiled.symbolic_state()
    for layer in circuit.layers:
        if isinstance(layer, CategoricalLayer):
            source = circuit.tensor_parameters().index(layer.logits)
            state[source] = torch.tensor([[[0.0, 1.0, -math.inf]]] * 2, dtype=torch.float64)
    compiled.load_symbolic_state(state)
    x = torch.tensor([[0, 1], [2, 0]])
    out = compiled(x)
    assert torch.isfinite(out[0]).all() and torch.isneginf(out[1]).all()
    reference.assert_matches(out, circuit, x, state, "lse-sum", 1e-9)


def test_deep_signed_circuit_under_complex_lse_sum():
    # Signed weights on a deep circuit: complex log-values far below -708, finite, and equal
    # to the reference (errors measured against the sum of the terms' moduli).
    circuit = circuit_templates.image_data(
        (1, 28, 28),
        region_graph="linear-tree",
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
        sum_weight_param=Parameterization(initialization="normal", activation="none"),
    )
    compiled = compile_circuit(circuit, "complex-lse-sum", seed=9)
    x = image_batch(3, 784, seed=9)
    out = compiled(x)
    assert out.is_complex() and torch.isfinite(out.real).all()
    reference.assert_matches(out, circuit, x, compiled.symbolic_state(), "complex-lse-sum", 1e-8)


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum", "complex-lse-sum"])
def test_binomial_probabilities_zero_and_one(semiring):
    # probs 0 and 1 are exact: x = 0 (resp. n) has probability 1, everything else 0.
    def factory(scope, units):
        return BinomialLayer(scope, units, total_count=3, probs=TensorParameter((units, 1)))

    circuit = two_unit_tree(factory, "cp-t")
    compiled = compile_circuit(circuit, semiring, seed=0)
    state = compiled.symbolic_state()
    for layer in circuit.layers:
        if isinstance(layer, BinomialLayer):
            source = circuit.tensor_parameters().index(layer.probs)
            state[source] = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    compiled.load_symbolic_state(state)
    x = torch.tensor([[0, 0], [3, 3], [0, 3], [1, 2]])
    out = compiled(x)
    log_p = reference.output_as_log(out, semiring).real
    assert not torch.isnan(log_p).any()
    # cp-t multiplies unit k of both variables: unit 0 has p = 0 (mass on x = 0), unit 1 has
    # p = 1 (mass on x = 3), so only (0, 0) and (3, 3) have mass.
    assert torch.isfinite(log_p[:2]).all() and torch.isneginf(log_p[2:]).all()
    reference.assert_matches(out, circuit, x, state, semiring, 1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gaussian_far_tails_are_exact(dtype):
    # Points 1000 standard deviations away: log-likelihoods near -5e5, no clamping.
    def factory(scope, units):
        return GaussianLayer(scope, units, stddev=ClampParameter(TensorParameter((units, 1))))

    circuit = two_unit_tree(factory, "tucker", num_variables=3)
    compiled = compile_circuit(circuit, dtype=dtype, seed=0)
    state = compiled.symbolic_state()
    for leaf_id, leaf in enumerate(circuit.tensor_parameters()):
        if leaf.shape == (2, 1):  # means and (clamped) standard deviations
            state[leaf_id] = torch.full((2, 1), 1.0, dtype=dtype)
    compiled.load_symbolic_state(state)
    x = torch.tensor([[1000.0, -999.0, 1.0], [1.0, 2.0, 3.0]], dtype=dtype)
    out = compiled(x)
    expected = reference.evaluate(circuit, x, state)
    assert expected[0].item() < -9e5
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(out.double(), expected, rtol=rtol, atol=1e-5)
