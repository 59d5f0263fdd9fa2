"""Moments (`MomentsQuery`) and expectations (`ExpectationQuery`, `SF.expectation`) against
brute-force enumeration (discrete circuits) and quadrature or samples (gaussian circuits)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from ir_cases import DISCRETE_STATES, discrete_circuit

import cirkit_ir.symbolic.functional as SF
from cirkit_ir.backends.torch.queries import ExpectationQuery, MomentsQuery, SamplingQuery
from cirkit_ir.errors import InputError, OptionError, PropertyError
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.templates import circuit_templates

SEMIRINGS = ["lse-sum", "sum-product", "complex-lse-sum"]
STATES = DISCRETE_STATES
ALL = torch.tensor(list(itertools.product(*(range(n) for n in STATES))))


def gaussian_circuit(layer: str = "cp"):
    specs = ["gaussian", {"name": "categorical", "args": {"num_categories": 3}}, "gaussian"]
    return circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers=specs,
        num_input_units=3,
        sum_product_layer=layer,
        num_sum_units=3,
    )


def context(semiring="lse-sum", fold=True, optimize=True, **options):
    return PipelineContext(
        backend="torch", semiring=semiring, fold=fold, optimize=optimize, **options
    )


def compile_(symbolic, semiring="lse-sum", fold=True, optimize=True, seed=0):
    return context(semiring, fold, optimize).compile(symbolic, seed=seed).double()


def linear(values, semiring):
    return values if semiring == "sum-product" else values.real.exp()


def enumerated(circuit, semiring):
    """The normalized joint probabilities of `ALL`."""
    joint = linear(circuit(ALL)[:, 0, 0], semiring).detach()
    return joint / joint.sum()


def brute_moments(probs, states):
    """(means (D,), raw third moments (D,), covariance (D, D)) of a distribution over states."""
    x = states.to(probs.dtype)
    mean = probs @ x
    third = probs @ x**3
    centered = x - mean
    return mean, third, (probs[:, None] * centered).t() @ centered


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize(
    ("layer", "fold", "optimize"), [("cp", True, True), ("tucker", False, False)]
)
def test_moments_equal_enumeration(semiring, layer, fold, optimize):
    circuit = compile_(discrete_circuit(layer), semiring, fold, optimize)
    mean, third, cov = brute_moments(enumerated(circuit, semiring), ALL)
    query = MomentsQuery(circuit)
    with torch.no_grad():
        torch.testing.assert_close(query.mean()[0, 0], mean)
        torch.testing.assert_close(query(order=3)[0, 0], third)
        torch.testing.assert_close(query.variance()[0, 0], cov.diagonal())
        torch.testing.assert_close(query.covariance()[0], cov)
        # A subset, in the order asked; a Scope lists its variables in increasing order.
        torch.testing.assert_close(query.mean(variables=[3, 1])[0, 0], mean[[3, 1]])
        torch.testing.assert_close(query.mean(variables=Scope([3, 1]))[0, 0], mean[[1, 3]])
        torch.testing.assert_close(query.covariance(variables=[2, 0])[0], cov[[2, 0]][:, [2, 0]])


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
def test_conditional_moments_equal_enumeration(semiring):
    circuit = compile_(discrete_circuit(), semiring)
    probs = enumerated(circuit, semiring)
    query = MomentsQuery(circuit)
    # Row i observes variable 0 (= i) and, in the odd rows, variable 3 (= 1) too.
    x = torch.tensor([[0, 0, 0, 1], [1, 0, 0, 1], [2, 0, 0, 1], [2, 0, 0, 1]])
    evidence = torch.tensor([[True, False, False, False], [True, False, False, True]] * 2)
    with torch.no_grad():
        means, variances = (
            query.mean(x, evidence_mask=evidence),
            query.variance(x, evidence_mask=evidence),
        )
        covs = query.covariance(x, evidence_mask=evidence)
        seconds = query(x, evidence_mask=evidence, order=2)
    for row in range(len(x)):
        keep = (ALL[:, evidence[row]] == x[row, evidence[row]]).all(1)
        given = probs * keep
        mean, _, cov = brute_moments(given / given.sum(), ALL)
        torch.testing.assert_close(means[row, 0], mean)
        torch.testing.assert_close(covs[row], cov)
        torch.testing.assert_close(variances[row, 0], cov.diagonal())
        torch.testing.assert_close(seconds[row, 0], cov.diagonal() + mean**2)
    # In calls of at most 5 entries (one moment row per evidence row here): the same.
    with torch.no_grad():
        chunked = MomentsQuery(circuit, batch_size=5).covariance(x, evidence_mask=evidence)
    torch.testing.assert_close(chunked, covs)
    # Observed variables: their value, no variance.
    assert means[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 2.0]
    assert (variances[:, 0, 0] == 0).all() and (covs[:, 0, :] == 0).all()


def test_gaussian_moments_match_quadrature():
    circuit = compile_(gaussian_circuit())
    query = MomentsQuery(circuit)
    grid = torch.linspace(-14, 14, 801, dtype=torch.float64)
    x0, x2 = torch.meshgrid(grid, grid, indexing="ij")
    for category in range(3):
        x = torch.stack([x0.flatten(), torch.full_like(x0.flatten(), category), x2.flatten()], 1)
        with torch.no_grad():
            density = circuit(x)[:, 0, 0].exp().reshape(len(grid), len(grid))

        def integral(values, density=density):
            return torch.trapezoid(torch.trapezoid(values * density, grid, dim=1), grid)

        z = integral(torch.ones_like(x0))
        e0, e2 = integral(x0) / z, integral(x2) / z
        want = torch.tensor(
            [
                [integral(x0**2) / z - e0**2, integral(x0 * x2) / z - e0 * e2],
                [integral(x0 * x2) / z - e0 * e2, integral(x2**2) / z - e2**2],
            ],
            dtype=torch.float64,
        )
        evidence = torch.tensor([False, True, False])
        given = x[:1]
        with torch.no_grad():
            mean = query.mean(given, evidence_mask=evidence, variables=[0, 2])[0, 0]
            cov = query.covariance(given, evidence_mask=evidence, variables=[0, 2])[0]
            third = query(given, evidence_mask=evidence, variables=[0], order=3)[0, 0, 0]
        close = {"rtol": 1e-6, "atol": 1e-6}
        torch.testing.assert_close(mean, torch.stack([e0, e2]), **close)
        torch.testing.assert_close(cov, want, **close)
        torch.testing.assert_close(third, integral(x0**3) / z, **close)


def test_gaussian_moments_match_samples():
    """Means and covariance within the bounds the sample count gives (fixed seed)."""
    circuit = compile_(gaussian_circuit("tucker"))
    n = 4000
    with torch.no_grad():
        samples, _ = SamplingQuery(circuit)(n, generator=torch.Generator().manual_seed(0))
        mean = MomentsQuery(circuit).mean()[0, 0]
        cov = MomentsQuery(circuit).covariance()[0]
    data = samples[:, 0].double()
    std = cov.diagonal().sqrt()
    # 5 standard errors: std / sqrt(n) for a mean, about std_i std_j sqrt(2 / n) for a covariance.
    assert ((data.mean(0) - mean).abs() <= 5 * std / math.sqrt(n)).all()
    sample_cov = torch.cov(data.t())
    assert ((sample_cov - cov).abs() <= 5 * std[:, None] * std[None, :] * math.sqrt(2 / n)).all()


def test_far_means_keep_their_variances():
    """Moving every mean by 1000 moves the means by 1000 and keeps the covariance, to float32
    precision: the shift keeps a variance of about 1 out of the difference E[X^2] - E[X]^2
    of numbers near 1e6."""
    symbolic = gaussian_circuit()
    ctx = context()
    circuit = ctx.compile(symbolic, seed=0)
    state = circuit.symbolic_state()
    leaves = {id(leaf): i for i, leaf in enumerate(symbolic.tensor_parameters())}
    means = [
        leaves[id(node)]
        for layer in symbolic.input_layers
        if type(layer).__name__ == "GaussianLayer"
        for node in layer.mean.nodes()
        if id(node) in leaves
    ]
    assert means
    moved = ctx.compile(symbolic, seed=0)
    moved.load_symbolic_state({i: state[i] + 1000 for i in means}, strict=False)
    with torch.no_grad():
        before, after = MomentsQuery(circuit), MomentsQuery(moved)
        shift = torch.tensor([1000.0, 0.0, 1000.0])
        torch.testing.assert_close(after.mean()[0, 0], before.mean()[0, 0] + shift)
        torch.testing.assert_close(after.covariance(), before.covariance(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_expectation_equals_enumeration(semiring):
    p_sc, f_sc = discrete_circuit(), discrete_circuit()  # same structure, their own tensors
    p, f = compile_(p_sc, semiring, seed=0), compile_(f_sc, semiring, seed=1)
    ctx = context(semiring, dtype=torch.float64)
    query = ExpectationQuery(
        p_sc, f_sc, ctx=ctx, p_state=p.symbolic_state(), f_state=f.symbolic_state()
    )
    with torch.no_grad():
        pv, fv = linear(p(ALL)[:, 0, 0], semiring), linear(f(ALL)[:, 0, 0], semiring)
        want = (pv * fv).sum() / pv.sum()  # p is not normalized (an embedding input)
        torch.testing.assert_close(query()[0, 0], want)
        torch.testing.assert_close(query(log=True)[0, 0].real, want.log())
        x = ALL[[0, 7, 20]]
        evidence = torch.tensor([True, False, True, False])
        got = query(x, evidence_mask=evidence)[:, 0]
    for row in range(len(x)):
        keep = (ALL[:, evidence] == x[row, evidence]).all(1)
        torch.testing.assert_close(got[row], (pv * fv * keep).sum() / (pv * keep).sum())


def test_expectation_of_gaussians_matches_quadrature_and_the_symbolic_one():
    p_sc, f_sc = gaussian_circuit(), gaussian_circuit()
    p, f = compile_(p_sc, seed=0), compile_(f_sc, seed=1)
    ctx = context(dtype=torch.float64)
    query = ExpectationQuery(
        p_sc, f_sc, ctx=ctx, p_state=p.symbolic_state(), f_state=f.symbolic_state()
    )
    grid = torch.linspace(-14, 14, 801, dtype=torch.float64)
    x0, x2 = (t.flatten() for t in torch.meshgrid(grid, grid, indexing="ij"))
    total = 0.0
    with torch.no_grad():
        for category in range(3):
            x = torch.stack([x0, torch.full_like(x0, category), x2], 1)
            values = (p(x)[:, 0, 0] + f(x)[:, 0, 0]).exp().reshape(len(grid), len(grid))
            total = total + torch.trapezoid(torch.trapezoid(values, grid, dim=1), grid)
        torch.testing.assert_close(query()[0, 0], total, rtol=1e-6, atol=1e-9)  # p normalized
        # SF.expectation: int p f, compiled with the same tensors.
        symbolic = SF.expectation(p_sc, f_sc)
        leaves = {id(leaf): i for i, leaf in enumerate(symbolic.tensor_parameters())}
        state = {}
        for sc, compiled in ((p_sc, p), (f_sc, f)):
            for source, value in compiled.symbolic_state().items():
                state[leaves[id(sc.tensor_parameters()[source])]] = value
        value = ctx.compile(symbolic, parameters=state)()
        torch.testing.assert_close(value[0, 0, 0].exp(), total, rtol=1e-6, atol=1e-9)


# -- bad input ---------------------------------------------------------------------------------


def test_moments_bad_input():
    query = MomentsQuery(compile_(discrete_circuit()))
    with pytest.raises(InputError, match="not in the circuit's scope"):
        query.mean(variables=[1, 7])
    with pytest.raises(OptionError, match="order must be a positive int"):
        query(order=0)
    with pytest.raises(OptionError, match="variables must be"):
        query.mean(variables=[])
    with pytest.raises(OptionError, match="twice"):
        query.covariance(variables=[1, 1])
    with pytest.raises(InputError, match="shape"):
        query.mean(ALL[:2], evidence_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(InputError, match="without the data"):
        query.mean(evidence_mask=Scope([0]))
    with pytest.raises(PropertyError, match="one output unit"):
        MomentsQuery(compile_(discrete_circuit(num_classes=2))).mean()
    with pytest.raises(OptionError, match="batch_size must be a positive int"):
        MomentsQuery(query.circuit, batch_size=0)
    with pytest.raises(OptionError, match="compiled TorchCircuit"):
        MomentsQuery(discrete_circuit())


def test_expectation_bad_input():
    p_sc = discrete_circuit()
    with pytest.raises(PropertyError, match="not compatible"):
        ExpectationQuery(p_sc, discrete_circuit(seed=7), ctx=context())  # another tree
    with pytest.raises(PropertyError, match="one unit per output"):
        ExpectationQuery(p_sc, discrete_circuit(num_classes=2), ctx=context())
    with pytest.raises(OptionError, match="source ids"):
        ExpectationQuery(p_sc, discrete_circuit(), ctx=context(), p_state={10_000: torch.ones(1)})
    query = ExpectationQuery(p_sc, discrete_circuit(), ctx=context())
    with pytest.raises(InputError, match="masks for a batch"):
        query(ALL[:3], evidence_mask=torch.ones(2, 4, dtype=torch.bool))


def test_moments_of_a_layer_without_a_rule_and_of_impossible_evidence():
    from cirkit_ir.symbolic import CircuitBuilder, HadamardLayer, PolynomialLayer, SumLayer

    b = CircuitBuilder()
    inputs = [b.add(PolynomialLayer([v], 2, degree=1)) for v in (0, 1)]
    polynomials = b.build([b.add(SumLayer(2, 1), [b.add(HadamardLayer(2, 2), inputs)])])
    query = MomentsQuery(compile_(polynomials, "sum-product"))
    with pytest.raises(PropertyError, match="no moment rule"):
        query.mean()
    # An embedding whose weights are all 0: no value of variable 2 is possible.
    symbolic = discrete_circuit()
    (embedding,) = [la for la in symbolic.input_layers if type(la).__name__ == "EmbeddingLayer"]
    leaves = {id(leaf): i for i, leaf in enumerate(symbolic.tensor_parameters())}
    (source,) = [leaves[id(n)] for n in embedding.weight.nodes() if id(n) in leaves]
    circuit = compile_(symbolic, "sum-product")
    circuit.load_symbolic_state(
        {source: torch.full_like(circuit.symbolic_state()[source], -1e4)}, strict=False
    )
    with pytest.raises(InputError, match="probability 0"):
        MomentsQuery(circuit).mean(ALL[:1], evidence_mask=Scope([2]))


def test_expectations_import_before_queries():
    """(This file imports them through `queries` first.)"""
    import subprocess
    import sys

    statement = "import cirkit_ir.backends.torch.expectations"
    subprocess.run([sys.executable, "-c", statement], check=True)


def test_queries_through_the_float32_fallback(monkeypatch):
    """The exact float32 fallback recomputes a subset of the batch: the queries' per-entry
    replacements follow it (they used to fail on the shapes), and the values are right."""
    from cirkit_ir.backends.torch import exact, semirings
    from cirkit_ir.backends.torch.queries import IntegrateQuery

    symbolic = gaussian_circuit()
    circuit = context().compile(symbolic, seed=0)
    wide = compile_(symbolic)
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0)) * 3
    x[:, 1] = torch.arange(32) % 3
    mask = torch.rand(32, 3, generator=torch.Generator().manual_seed(1)) < 0.5
    recomputed = []

    def spy(circuit, x, rows, inner=exact.exact_fallback):
        recomputed.append(len(rows))
        return inner(circuit, x, rows)

    monkeypatch.setattr(exact, "exact_fallback", spy)
    monkeypatch.setattr(semirings, "UNDERFLOW", 0.1)  # flags some entries, not all
    with torch.no_grad():
        got = IntegrateQuery(circuit)(x, integrate_vars=mask)
        want = IntegrateQuery(wide)(x.double(), integrate_vars=mask)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
        means = MomentsQuery(circuit).mean(x, evidence_mask=~mask)
        want = MomentsQuery(wide).mean(x.double(), evidence_mask=~mask)
        torch.testing.assert_close(means.double(), want, rtol=1e-4, atol=1e-4)
    assert recomputed and all(0 < n < 32 * 4 for n in recomputed)


@pytest.mark.parametrize("semiring", ["sum-product", "complex-lse-sum"])
def test_a_derivative_integrates_to_zero(semiring):
    """d/dx_0 p integrates to 0 over x_0 (IntegrateQuery took it for a normalized gaussian)."""
    from cirkit_ir.backends.torch.queries import IntegrateQuery
    from cirkit_ir.passes import default_pipeline

    pipeline = "differentiate{variables=[0]}," + default_pipeline(
        semiring, fold=True, optimize=True
    )
    ctx = PipelineContext(backend="torch", semiring=semiring, pipeline=pipeline)
    circuit = ctx.compile(gaussian_circuit(), seed=0).double()
    grid = torch.linspace(-14, 14, 2001, dtype=torch.float64)
    x = torch.stack([grid, torch.ones_like(grid), torch.full_like(grid, 0.3)], 1)
    with torch.no_grad():
        out = circuit(x)[:, 0, 0]
        values = out if semiring == "sum-product" else out.exp().real
        assert values.abs().max() > 1e-3
        torch.testing.assert_close(torch.trapezoid(values, grid).item(), 0.0, atol=1e-8, rtol=0)
        out = IntegrateQuery(circuit)(x[:1], integrate_vars=Scope([0]))[0, 0, 0]
        value = out if semiring == "sum-product" else out.exp()
        torch.testing.assert_close(abs(complex(value)), 0.0, atol=1e-12, rtol=0)


def test_binomials_too_large_to_tabulate(monkeypatch):
    """The closed-form moments of a binomial evaluated from its pmf equal the table's."""
    from cirkit_ir.backends.torch.layers.inputs import TorchBinomialLayer

    symbolic = circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers={"name": "binomial", "args": {"total_count": 6}},
        num_features=3,
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
    )
    tabulated = compile_(symbolic)
    monkeypatch.setattr(TorchBinomialLayer, "TABLE_LIMIT", 2)
    direct = compile_(symbolic)
    binomials = [la for la in direct.layers if isinstance(la, TorchBinomialLayer)]
    assert binomials and not any(la.tabulate for la in binomials)
    x, evidence = torch.tensor([[3, 0, 0]]), torch.tensor([True, False, False])
    with torch.no_grad():
        for method in ("mean", "variance"):
            want = getattr(MomentsQuery(tabulated), method)(x, evidence_mask=evidence)
            got = getattr(MomentsQuery(direct), method)(x, evidence_mask=evidence)
            torch.testing.assert_close(got, want)
        with pytest.raises(PropertyError, match="too large"):
            MomentsQuery(direct)(order=3)


def test_moments_are_differentiable():
    """d E[X_0] / d theta by autograd equals a central difference (moment matching trains)."""
    circuit = compile_(gaussian_circuit())
    leaf = next(p for p in circuit.parameters() if p.requires_grad)
    query = MomentsQuery(circuit)
    (grad,) = torch.autograd.grad(query.mean()[0, 0, 0], leaf)
    direction = torch.randn(
        leaf.shape, generator=torch.Generator().manual_seed(0), dtype=leaf.dtype
    )
    h = 1e-6
    with torch.no_grad():
        leaf += h * direction
        circuit.invalidate_cache()
        up = query.mean()[0, 0, 0]
        leaf -= 2 * h * direction
        circuit.invalidate_cache()
        down = query.mean()[0, 0, 0]
        leaf += h * direction
    torch.testing.assert_close(
        (grad * direction).sum(), (up - down) / (2 * h), rtol=1e-5, atol=1e-8
    )
