"""The circuit algebra (`cirkit_ir.symbolic.functional`) against brute-force enumeration with
`cirkit_ir.reference`, compiled under every semiring where valid, and its bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

import cirkit_ir.symbolic.functional as SF
from cirkit_ir import reference as R
from cirkit_ir.errors import OptionError, PropertyError
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    CircuitBuilder,
    DenseLayer,
    EmbeddingLayer,
    GaussianLayer,
    HadamardLayer,
    MixingLayer,
    NormalInitializer,
    SumLayer,
    TensorParameter,
)

STATES = 3
K = 2


def _input(kind: str, variable: int, dtype: str = "real"):
    if kind == "embedding":
        weight = TensorParameter((K, 1, STATES), NormalInitializer(), tensor_dtype=dtype)
        return EmbeddingLayer([variable], K, num_states=STATES, weight=weight)
    if kind == "categorical":
        return CategoricalLayer([variable], K, num_categories=STATES)
    if kind == "binomial":
        return BinomialLayer([variable], K, total_count=STATES - 1)
    return GaussianLayer([variable], K)


def _circuit(kind: str = "embedding", *, dtype: str = "real", mixing: bool = False, swap=False):
    """x0, x1 -> inputs -> hadamard -> dense (-> mixing of two such products)."""
    b = CircuitBuilder()
    products = []
    for _ in range(2 if mixing else 1):
        inputs = [b.add(_input(kind, v, dtype)) for v in ((1, 0) if swap else (0, 1))]
        products.append(b.add(HadamardLayer(K, 2), inputs))
    weight = TensorParameter((K, K), NormalInitializer(), tensor_dtype=dtype)
    dense = [b.add(SumLayer(K, K, weight=weight), [p]) for p in products]
    if mixing:
        mix = TensorParameter((K, 2), NormalInitializer(), tensor_dtype=dtype)
        return b.build([b.add(MixingLayer(K, 2, weight=mix), dense)])
    return b.build(dense)


def _all_pairs(states: int = STATES) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(states), repeat=2)))


def _enumerated_sum(circuit, values) -> torch.Tensor:
    """sum over every assignment of exp(log-values), complex128."""
    log = R.evaluate(circuit, _all_pairs(), values, mode="complex")
    return torch.exp(log).sum(0)


def _constant(circuit, values) -> torch.Tensor:
    """The value of a circuit over no variable."""
    return torch.exp(
        R.evaluate(circuit, torch.zeros(1, 0, dtype=torch.long), values, mode="complex")
    )[0]


def _values_for(derived, original, values):
    """`values` (by source id of `original`) re-keyed by the source ids of `derived`, which
    shares leaves with it; derived-only leaves are drawn."""
    by_leaf = {id(leaf): values[i] for i, leaf in enumerate(original.tensor_parameters())}
    drawn = R.draw_values(derived)
    return {
        i: by_leaf.get(id(leaf), drawn[i]) for i, leaf in enumerate(derived.tensor_parameters())
    }


# -- integrate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["embedding", "categorical", "binomial"])
@pytest.mark.parametrize("mixing", [False, True])
def test_integrate_equals_the_enumerated_sum(kind, mixing):
    torch.manual_seed(0)
    c = _circuit(kind, mixing=mixing)
    z = SF.integrate(c)
    values = R.draw_values(c)
    expected = _enumerated_sum(c, values)
    got = _constant(z, _values_for(z, c, values))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_integrate_a_subset_is_the_marginal():
    torch.manual_seed(1)
    c = _circuit("embedding")
    m = SF.integrate(c, scope=[1])
    values = R.draw_values(c)
    x0 = torch.arange(STATES)
    got = torch.exp(
        R.evaluate(m, torch.stack([x0, x0], 1), _values_for(m, c, values), mode="complex")
    )
    full = torch.exp(R.evaluate(c, _all_pairs(), values, mode="complex")).reshape(
        STATES, STATES, 1, K
    )
    torch.testing.assert_close(got, full.sum(1))


def test_integrate_gaussian_matches_quadrature():
    torch.manual_seed(2)
    c = _circuit("gaussian")
    values = R.draw_values(c)
    grid = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    x = torch.cartesian_prod(grid, grid)
    density = torch.exp(R.evaluate(c, x, values, mode="complex")).real.reshape(
        len(grid), len(grid), K
    )
    quadrature = torch.trapezoid(torch.trapezoid(density, dx=step, dim=0), dx=step, dim=0)
    z = SF.integrate(c)
    got = _constant(z, _values_for(z, c, values))[0].real
    torch.testing.assert_close(got, quadrature, rtol=1e-4, atol=1e-6)


# -- multiply and conjugate -----------------------------------------------------------------------


def _outer_units(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, O, K1), (B, O, K2) -> (B, O, K1*K2) with unit i*K2 + j = a[i] b[j]."""
    return (a[..., :, None] * b[..., None, :]).flatten(-2)


@pytest.mark.parametrize(
    "kinds",
    [
        ("embedding", "embedding"),
        ("categorical", "embedding"),
        ("categorical", "categorical"),
        ("binomial", "binomial"),
        ("binomial", "categorical"),
    ],
)
@pytest.mark.parametrize("mixing", [False, True])
def test_multiply_equals_the_pointwise_product(kinds, mixing):
    torch.manual_seed(3)
    c1, c2 = _circuit(kinds[0], mixing=mixing), _circuit(kinds[1], mixing=mixing, swap=True)
    product = SF.multiply(c1, c2)
    both = SF.concatenate([c1, c2])
    values = R.draw_values(both)
    x = _all_pairs()
    out = torch.exp(R.evaluate(both, x, values, mode="complex"))
    expected = _outer_units(out[:, :1], out[:, 1:])
    got = torch.exp(R.evaluate(product, x, _values_for(product, both, values), mode="complex"))
    torch.testing.assert_close(got, expected)


def test_conjugate_is_the_complex_conjugate():
    torch.manual_seed(4)
    c = _circuit("embedding", dtype="complex", mixing=True)
    conj = SF.conjugate(c)
    values = R.draw_values(c)
    assert any(v.is_complex() and bool((v.imag != 0).any()) for v in values.values())
    x = _all_pairs()
    expected = torch.exp(R.evaluate(c, x, values, mode="complex")).conj()
    got = torch.exp(R.evaluate(conj, x, _values_for(conj, c, values), mode="complex"))
    torch.testing.assert_close(got, expected)


def test_conjugate_keeps_real_layers():
    c = _circuit("categorical")
    assert SF.conjugate(c).layers == c.layers


def _squared_log_p(c):
    """log p = log |c|^2 - log Z, of the squared circuit, as one circuit with two outputs."""
    squared = SF.multiply(c, SF.conjugate(c))
    return SF.concatenate([squared, SF.integrate(squared)])


def test_squared_circuit_is_normalized_over_a_two_pixel_image():
    torch.manual_seed(5)
    c = _circuit("embedding", dtype="complex", mixing=True)
    both = _squared_log_p(c)
    values = R.draw_values(both)
    x = _all_pairs()
    out = R.evaluate(both, x, values, mode="complex")
    log_p = out[:, 0, 0] - out[:, 1, 0]
    total = torch.exp(log_p.real).sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize(
    ("semiring", "fold"),
    [("complex-lse-sum", False), ("complex-lse-sum", True), ("sum-product", True)],
)
def test_compiled_squared_circuit_matches_the_reference(semiring, fold):
    torch.manual_seed(6)
    dtype = "complex" if semiring == "complex-lse-sum" else "real"
    c = _circuit("embedding", dtype=dtype, mixing=True)
    both = _squared_log_p(c)
    compiled = PipelineContext(semiring=semiring, fold=fold, optimize=fold).compile(both, seed=7)
    x = _all_pairs()
    out = compiled(x.unsqueeze(1))
    R.assert_matches(out, both, x, compiled.symbolic_state(), semiring, 1e-4)
    log = R.output_as_log(out, semiring)
    total = torch.exp((log[:, 0, 0] - log[:, 1, 0]).real).sum()
    assert abs(float(total) - 1.0) < 1e-4


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("fold", [False, True])
def test_compiled_marginal_matches_the_reference(semiring, fold):
    """A circuit beside its partition function and a marginal, compiled together."""
    b = CircuitBuilder()
    inputs = [b.add(CategoricalLayer([v], K, num_categories=STATES)) for v in (0, 1)]
    c = b.build([b.add(DenseLayer(K, 1), [b.add(HadamardLayer(K, 2), inputs)])])
    both = SF.concatenate([c, SF.integrate(c, scope=[1]), SF.integrate(c)])
    compiled = PipelineContext(semiring=semiring, fold=fold, optimize=fold).compile(both, seed=3)
    x = _all_pairs()
    out = compiled(x.unsqueeze(1))
    R.assert_matches(out, both, x, compiled.symbolic_state(), semiring, 1e-5)
    z = R.output_as_log(out, semiring)[0, 2, 0]
    assert abs(complex(torch.exp(z)) - 1.0) < 1e-5


def test_training_the_squared_circuit_trains_the_original():
    c = _circuit("embedding", dtype="complex")
    both = _squared_log_p(SF.concatenate([c]))
    # The squared circuit reads c's tensors only: one leaf per tensor of c.
    assert {id(p) for p in both.tensor_parameters()} == {id(p) for p in c.tensor_parameters()}


# -- evidence ---------------------------------------------------------------------------


def test_evidence_equals_evaluating_at_the_observation():
    torch.manual_seed(8)
    c = _circuit("categorical")
    e = SF.evidence(c, {0: 2})
    values = R.draw_values(c)
    x = torch.tensor([[2, v] for v in range(STATES)])
    expected = R.evaluate(c, x, values)
    got = R.evaluate(e, torch.tensor([[0, v] for v in range(STATES)]), _values_for(e, c, values))
    torch.testing.assert_close(got, expected)


# -- bad input ---------------------------------------------------------------------------


def test_incompatible_circuits_are_refused():
    c1 = _circuit("embedding")
    b = CircuitBuilder()
    inputs = [b.add(_input("embedding", v)) for v in (0, 2)]
    other = b.build([b.add(DenseLayer(K, K), [b.add(HadamardLayer(K, 2), inputs)])])
    with pytest.raises(PropertyError, match="not compatible"):
        SF.multiply(c1, other)


def test_non_decomposable_operands_are_refused():
    b = CircuitBuilder()
    inputs = [b.add(_input("embedding", 0)) for _ in range(2)]
    bad = b.build([b.add(HadamardLayer(K, 2), inputs)])
    for op in (lambda c: SF.integrate(c), lambda c: SF.multiply(c, c)):
        with pytest.raises(PropertyError, match=r"decomposable.*layer #2 \(HadamardLayer\)"):
            op(bad)


def test_input_layers_of_different_types_or_sizes_are_refused():
    with pytest.raises(PropertyError, match="no product rule"):
        SF.multiply(_circuit("embedding"), _circuit("gaussian"))


def test_integrating_unknown_variables_is_refused():
    with pytest.raises(OptionError, match=r"cannot integrate variables \[5\]"):
        SF.integrate(_circuit(), scope=[0, 5])


@pytest.mark.parametrize(
    ("obs", "match"),
    [
        ({7: 1}, r"cannot observe variables \[7\]"),
        ({0: (1, 2)}, "must be 1 number"),
        ({0: 3}, "out of range"),
        ({0: -1}, "out of range"),
        ({0: "a"}, "must be 1 number"),
    ],
)
def test_bad_evidence_is_refused(obs, match):
    with pytest.raises(OptionError, match=match):
        SF.evidence(_circuit("categorical"), obs)


def test_bad_operands_are_refused():
    with pytest.raises(OptionError, match="symbolic Circuit"):
        SF.integrate("c")
    with pytest.raises(OptionError, match="list of circuits"):
        SF.concatenate(_circuit())
    with pytest.raises(PropertyError, match="outputs"):
        SF.multiply(_circuit(), SF.concatenate([_circuit(), _circuit()]))


# -- complex parameterizations and the example ------------------------------------------------


def test_complex_parameterizations_draw_both_parts_and_refuse_real_activations():
    from cirkit_ir.templates.parameterization import Parameterization

    for initialization in ("normal", "uniform"):
        leaf = Parameterization(dtype="complex", initialization=initialization).build((64,))
        assert leaf.dtype == "complex"
        value = leaf.initializer.sample((64,), torch.complex128)
        assert bool((value.imag != 0).all()) and bool((value.real != value.imag).all())
    for activation in ("softmax", "log-softmax", "positive-clamp", "softplus", "sigmoid"):
        with pytest.raises(OptionError, match=f"'{activation}' activation"):
            Parameterization(dtype="complex", activation=activation)


def test_sum_of_squares_example_runs_quickly():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "examples" / "sum_of_squares.py"
    spec = importlib.util.spec_from_file_location("sum_of_squares", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--quick", "--no-progress"])
    assert set(results) == {"complex", "real", "mixture"}
    # Normalized models of 17-valued pixels: close to the 4.09 bits of a uniform one.
    assert all(0 < bpd < 8 for bpd in results.values())


# -- polynomials and differentiate -----------------------------------------------------------


def _polynomial_circuit(degree: int = 2, mixing: bool = False):
    from cirkit_ir.symbolic import PolynomialLayer

    b = CircuitBuilder()
    products = []
    for _ in range(2 if mixing else 1):
        inputs = [b.add(PolynomialLayer([v], K, degree=degree)) for v in (0, 1)]
        products.append(b.add(HadamardLayer(K, 2), inputs))
    dense = [b.add(SumLayer(K, K), [p]) for p in products]
    if mixing:
        return b.build([b.add(MixingLayer(K, 2), dense)])
    return b.build(dense)


POINTS = torch.tensor([[0.3, -0.7], [1.2, 0.4], [-0.5, 2.0]], dtype=torch.float64)


def _linear(circuit, x, values):
    return torch.exp(R.evaluate(circuit, x, values, mode="complex"))


@pytest.mark.parametrize("mixing", [False, True])
def test_multiply_polynomials_equals_the_pointwise_product(mixing):
    torch.manual_seed(9)
    c1, c2 = _polynomial_circuit(2, mixing), _polynomial_circuit(3, mixing)
    both = SF.concatenate([c1, c2])
    values = R.draw_values(both)
    out = _linear(both, POINTS, values)
    product = SF.multiply(c1, c2)
    got = _linear(product, POINTS, _values_for(product, both, values))
    torch.testing.assert_close(got, _outer_units(out[:, :1], out[:, 1:]))


@pytest.mark.parametrize("order", [1, 2])
def test_differentiate_equals_a_finite_difference(order):
    torch.manual_seed(10)
    c = _polynomial_circuit(3, mixing=True)
    d = SF.differentiate(c, order=order)
    assert len(d.outputs) == 3  # d/dx0, d/dx1, c
    values = R.draw_values(c)
    got = _linear(d, POINTS, _values_for(d, c, values)).real
    h = 1e-3
    for variable in (0, 1):
        step = torch.zeros(2, dtype=torch.float64)
        step[variable] = h
        f = [_linear(c, POINTS + k * step, values).real[:, 0] for k in (-1, 0, 1)]
        fd = (f[2] - f[0]) / (2 * h) if order == 1 else (f[2] - 2 * f[1] + f[0]) / h**2
        torch.testing.assert_close(got[:, variable], fd, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[:, 2], _linear(c, POINTS, values).real[:, 0])


@pytest.mark.parametrize(("semiring", "fold"), [("sum-product", False), ("complex-lse-sum", True)])
def test_compiled_polynomial_algebra_matches_the_reference(semiring, fold):
    torch.manual_seed(11)
    c = _polynomial_circuit(2, mixing=True)
    both = SF.differentiate(SF.multiply(c, c))  # derivatives of a product of polynomials
    compiled = PipelineContext(semiring=semiring, fold=fold, optimize=fold).compile(both, seed=1)
    out = compiled(POINTS.float().unsqueeze(1))
    R.assert_matches(out, both, POINTS, compiled.symbolic_state(), semiring, 1e-4)


def test_differentiate_refuses_discrete_inputs_and_bad_orders():
    with pytest.raises(PropertyError, match=r"no derivative rule for layer #0 \(EmbeddingLayer\)"):
        SF.differentiate(_circuit())
    with pytest.raises(OptionError, match="positive int"):
        SF.differentiate(_polynomial_circuit(), order=0)


def test_multiply_gaussians_is_the_pointwise_product_and_integrates_in_closed_form():
    torch.manual_seed(12)
    c1, c2 = _circuit("gaussian"), _circuit("gaussian", swap=True)
    both = SF.concatenate([c1, c2])
    values = R.draw_values(both)
    x = torch.tensor([[0.1, -0.3], [1.5, 0.2], [-2.0, 0.7]], dtype=torch.float64)
    out = _linear(both, x, values)
    product = SF.multiply(c1, c2)
    pvalues = _values_for(product, both, values)
    torch.testing.assert_close(_linear(product, x, pvalues), _outer_units(out[:, :1], out[:, 1:]))
    # The integral of the product, against quadrature of the pointwise product.
    z = SF.integrate(product)
    grid = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    dense = _linear(both, torch.cartesian_prod(grid, grid), values).real
    f = _outer_units(dense[:, :1], dense[:, 1:]).reshape(len(grid), len(grid), K * K)
    quadrature = torch.trapezoid(torch.trapezoid(f, dx=step, dim=0), dx=step, dim=0)
    got = _constant(z, _values_for(z, both, values))[0].real
    torch.testing.assert_close(got, quadrature, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("semiring", ["sum-product", "complex-lse-sum"])
def test_compiled_gaussian_product_matches_the_reference(semiring):
    c1, c2 = _circuit("gaussian"), _circuit("gaussian")
    product = SF.multiply(c1, c2)
    both = SF.concatenate([product, SF.integrate(product)])
    compiled = PipelineContext(semiring=semiring, fold=True, optimize=True).compile(both, seed=2)
    x = torch.tensor([[0.1, -0.3], [1.5, 0.2]], dtype=torch.float64)
    out = compiled(x.float().unsqueeze(1))
    R.assert_matches(out, both, x, compiled.symbolic_state(), semiring, 1e-4)


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("fold", [False, True])
def test_compiled_products_of_tables_match_the_reference(semiring, fold):
    """Binomial times categorical, softmax weights (non-negative: valid under lse-sum)."""

    def circuit(kind):
        b = CircuitBuilder()
        inputs = [b.add(_input(kind, v)) for v in (0, 1)]
        return b.build([b.add(DenseLayer(K, K), [b.add(HadamardLayer(K, 2), inputs)])])

    product = SF.multiply(circuit("binomial"), circuit("categorical"))
    both = SF.concatenate([product, SF.integrate(product)])
    compiled = PipelineContext(semiring=semiring, fold=fold, optimize=fold).compile(both, seed=4)
    x = _all_pairs()
    out = compiled(x.unsqueeze(1))
    R.assert_matches(out, both, x, compiled.symbolic_state(), semiring, 1e-5)


def test_evidence_compiles_and_matches_the_reference():
    b = CircuitBuilder()
    inputs = [b.add(_input("categorical", v)) for v in (0, 1)]
    c = b.build([b.add(DenseLayer(K, K), [b.add(HadamardLayer(K, 2), inputs)])])
    e = SF.evidence(c, {1: 2})
    compiled = PipelineContext(semiring="lse-sum", fold=True, optimize=True).compile(e, seed=5)
    x = torch.tensor([[0], [1], [2]])  # variable 1 is observed: the data hold variable 0
    R.assert_matches(compiled(x.unsqueeze(1)), e, x, compiled.symbolic_state(), "lse-sum", 1e-5)


def test_monotonic_plus_squared_mixture_is_normalized():
    """The example's c1 + |c2|^2 over (c1's Z + c2's Z), on a 2-variable image."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "examples" / "sum_of_squares.py"
    spec = importlib.util.spec_from_file_location("sum_of_squares_mixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    b = CircuitBuilder()
    inputs = [b.add(_input("categorical", v)) for v in (0, 1)]
    c1 = b.build([b.add(DenseLayer(K, 1), [b.add(HadamardLayer(K, 2), inputs)])])
    b = CircuitBuilder()
    inputs = [b.add(_input("embedding", v, "complex")) for v in (0, 1)]
    weight = TensorParameter((1, K), NormalInitializer(), tensor_dtype="complex")
    c2 = b.build([b.add(SumLayer(K, 1, weight=weight), [b.add(HadamardLayer(K, 2), inputs)])])
    model = module.mixture_model(c1, c2)
    compiled = PipelineContext(semiring="complex-lse-sum", fold=True).compile(model, seed=6)
    x = _all_pairs()
    log_p = module.log_likelihood(compiled(x.unsqueeze(1)).detach(), squared=False)
    assert abs(float(torch.exp(log_p).sum()) - 1.0) < 1e-5
