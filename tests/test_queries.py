"""Queries (`cirkit_ir.backends.torch.queries`) against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from ir_cases import DISCRETE_STATES, discrete_circuit

from cirkit_ir.backends.torch.queries import IntegrateQuery, MAPQuery, SamplingQuery
from cirkit_ir.errors import InputError, OptionError, PropertyError
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.templates import circuit_templates

SEMIRINGS = ["lse-sum", "sum-product", "complex-lse-sum"]
FLAGS = [(False, False), (True, True)]
STATES = DISCRETE_STATES


def compile_(symbolic, semiring="lse-sum", fold=True, optimize=True):
    ctx = PipelineContext(backend="torch", semiring=semiring, fold=fold, optimize=optimize)
    return ctx.compile(symbolic, seed=0).double()


def linear(values, semiring):
    return values if semiring == "sum-product" else values.real.exp()


ALL = torch.tensor(list(itertools.product(*(range(n) for n in STATES))))


@pytest.mark.parametrize("layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize(("fold", "optimize"), FLAGS)
def test_marginals_equal_summed_likelihoods(layer, semiring, fold, optimize):
    circuit = compile_(discrete_circuit(layer), semiring, fold, optimize)
    joint = linear(circuit(ALL)[:, 0, 0], semiring).reshape(STATES)
    query = IntegrateQuery(circuit)
    for integrated in [(1,), (0, 3), (1, 2, 3), (0, 1, 2, 3)]:
        mask = torch.zeros(4, dtype=torch.bool)
        mask[list(integrated)] = True
        got = linear(query(ALL, integrate_vars=mask)[:, 0, 0], semiring).reshape(STATES)
        want = joint.sum(integrated, keepdim=True).expand(STATES)
        torch.testing.assert_close(got, want)
    # The same query three ways: a mask per sample, a scope, a list of scopes.
    scopes = [Scope([v for v in range(4) if (i >> v) & 1]) for i in range(len(ALL))]
    per_sample = query(ALL, integrate_vars=scopes)
    masks = torch.tensor([[(i >> v) & 1 == 1 for v in range(4)] for i in range(len(ALL))])
    torch.testing.assert_close(per_sample, query(ALL, integrate_vars=masks))
    for i in (0, 5, 17):
        torch.testing.assert_close(
            per_sample[i], query(ALL[i : i + 1], integrate_vars=scopes[i])[0]
        )


def test_unnormalized_embedding_integrates_to_its_table_sum():
    circuit = compile_(discrete_circuit("cp"), "sum-product")
    z = IntegrateQuery(circuit)(ALL[:2], integrate_vars=Scope(range(4)))
    torch.testing.assert_close(z[:, 0, 0], circuit(ALL)[:, 0, 0].sum().expand(2))
    assert abs(z[0, 0, 0].item() - 1.0) > 1e-3  # the embedding is not normalized


def test_gaussian_marginal_matches_quadrature():
    specs = [
        {"name": "gaussian"},
        {"name": "categorical", "args": {"num_categories": 3}},
        "gaussian",
    ]
    symbolic = circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers=specs,
        num_input_units=3,
        sum_product_layer="cp",
        num_sum_units=3,
    )
    circuit = compile_(symbolic)
    grid = torch.linspace(-12, 12, 4001, dtype=torch.float64)
    x = torch.zeros(len(grid), 3, dtype=torch.float64)
    x[:, 0], x[:, 1], x[:, 2] = grid, 2, 0.3
    query = IntegrateQuery(circuit)
    density = circuit(x)[:, 0, 0].exp()  # p(x0, x1=2, x2=0.3)
    without_x2 = query(x, integrate_vars=torch.tensor([False, False, True]))[:, 0, 0].exp()
    without_x0 = query(x[:1], integrate_vars=torch.tensor([True, False, False]))[0, 0, 0]
    only_x1 = query(x[:1], integrate_vars=torch.tensor([True, False, True]))[0, 0, 0]
    close = {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(without_x0, torch.trapezoid(density, grid).log(), **close)
    torch.testing.assert_close(only_x1, torch.trapezoid(without_x2, grid).log(), **close)
    total = IntegrateQuery(circuit)(x[:1], integrate_vars=Scope(range(3)))
    torch.testing.assert_close(
        total[0, 0, 0], torch.zeros((), dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_image_circuit_marginal_is_a_distribution_over_the_rest():
    symbolic = circuit_templates.image_data(
        (1, 2, 2),
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=2,
    )
    circuit = compile_(symbolic)
    # integrate out pixels 1..3, enumerate pixel 0 over its 256 values: they sum to 1.
    x = torch.zeros(256, 4, dtype=torch.long)
    x[:, 0] = torch.arange(256)
    x[:, 1:] = -1  # never read
    values = IntegrateQuery(circuit)(x, integrate_vars=torch.tensor([False, True, True, True]))
    torch.testing.assert_close(values.exp().sum(), torch.ones((), dtype=torch.float64))


def test_conditional_from_two_calls():
    circuit = compile_(discrete_circuit("tucker"))
    joint = circuit(ALL)[:, 0, 0].exp().reshape(STATES)
    query = IntegrateQuery(circuit)
    x = ALL
    rest = Scope([3])  # p(x0 | x1, x2) with x3 integrated out
    log_cond = query(x, integrate_vars=rest) - query(x, integrate_vars=rest | Scope([0]))
    p12 = joint.sum((0, 3), keepdim=True)
    want = (joint.sum(3, keepdim=True) / p12).expand(STATES)
    torch.testing.assert_close(log_cond[:, 0, 0].exp().reshape(STATES), want)


def test_integrate_bad_input():
    circuit = compile_(discrete_circuit("cp"))
    query = IntegrateQuery(circuit)
    with pytest.raises(InputError, match="shape"):
        query(ALL, integrate_vars=torch.zeros(len(ALL), 3, dtype=torch.bool))
    with pytest.raises(InputError, match="bool"):
        query(ALL, integrate_vars=torch.zeros(len(ALL), 4))
    with pytest.raises(InputError, match="not variables"):
        query(ALL, integrate_vars=Scope([7]))
    with pytest.raises(InputError, match="masks for a batch"):
        query(ALL, integrate_vars=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(InputError):
        query(ALL + 5, integrate_vars=Scope([0]))  # out of range where not integrated


# -- MAP -----------------------------------------------------------------------------------------


def deterministic_circuits():
    """Deterministic circuits of every inner layer type: an SDD with random weights (mixing,
    hadamard, constant-probability categoricals), and one split over two variables whose
    input units are (numerically) indicators of their states (tucker, cp-t; kronecker, hadamard
    and dense unfused)."""
    from cirkit_ir.symbolic.initializers import UniformInitializer
    from cirkit_ir.symbolic.parameters import TensorParameter
    from cirkit_ir.templates.logic import SDD

    sdd = SDD.from_text(
        "sdd 5\nL 1 0 1\nL 2 2 2\nL 3 0 -1\nL 4 4 3\nD 0 1 2 1 2 3 4\n"
    ).build_circuit(
        weight_factory=lambda shape: TensorParameter(shape, UniformInitializer(0.1, 1.0))
    )
    yield "sdd", compile_(sdd, "sum-product", False, False), (2, 2, 2)
    for layer in ("tucker", "cp-t"):  # cp ends in a dense over products of sums: not deterministic
        symbolic = circuit_templates.tabular_data(
            "random-binary-tree",
            input_layers={"name": "categorical", "args": {"num_categories": 3}},
            num_features=2,
            num_input_units=3,
            sum_product_layer=layer,
            num_sum_units=3,
        )
        for fold, optimize in FLAGS:
            circuit = compile_(symbolic, "lse-sum", fold, optimize)
            state = circuit.symbolic_state()
            for source, value in state.items():
                if tuple(value.shape) == (3, 1, 3):  # categorical logits: near-indicators
                    state[source] = 80.0 * torch.eye(3, dtype=value.dtype).unsqueeze(1)
            circuit.load_symbolic_state(state)
            yield f"{layer}-{fold}", circuit, (3, 3)


def log_values(circuit, x):
    v = circuit(x)[:, 0, 0]
    return v if circuit.semiring.log_space else v.log()


@pytest.mark.parametrize("case", list(deterministic_circuits()), ids=lambda c: c[0])
def test_map_equals_brute_force_on_deterministic_circuits(case):
    _, circuit, states = case
    every = torch.tensor(list(itertools.product(*(range(n) for n in states))))
    logs = log_values(circuit, every)
    value, state = MAPQuery(circuit)()
    torch.testing.assert_close(value, logs.max().expand(1))
    torch.testing.assert_close(log_values(circuit, state), value)
    # With evidence on the first variable: the max over the others, per value.
    d = len(states)
    x = every[:: len(every) // states[0]]
    evidence = torch.zeros(d, dtype=torch.bool)
    evidence[0] = True
    value, state = MAPQuery(circuit)(x, evidence_mask=evidence)
    want = logs.reshape(states[0], -1).amax(1)
    torch.testing.assert_close(value, want)
    torch.testing.assert_close(log_values(circuit, state), value)
    assert torch.equal(state[:, 0, 0], x[:, 0])


@pytest.mark.parametrize("layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize(("fold", "optimize"), FLAGS)
def test_map_is_a_lower_bound_attained_by_its_state(layer, fold, optimize):
    """On any circuit: tree max <= p(returned state) <= max_x p(x)."""
    circuit = compile_(discrete_circuit(layer), "lse-sum", fold, optimize)
    logs = log_values(circuit, ALL)
    value, state = MAPQuery(circuit)()
    attained = log_values(circuit, state)
    assert value.item() <= attained.item() + 1e-9 <= logs.max().item() + 2e-9
    # integrate out variable 3: the state leaves it as given, maximizes 0..2
    x = torch.zeros(1, 4, dtype=torch.long)
    value, state = MAPQuery(circuit)(
        x, evidence_mask=torch.zeros(4, dtype=torch.bool), integrate_vars=Scope([3])
    )
    marginal = IntegrateQuery(circuit)(state, integrate_vars=Scope([3]))[0, 0, 0]
    assert value.item() <= marginal.item() + 1e-9
    assert state[0, 0, 3] == 0


def test_max_sum_is_visible_in_the_ir():
    from cirkit_ir.backends.torch import codegen
    from cirkit_ir.errors import CompilationError
    from cirkit_ir.ir.printer import print_ir

    query = MAPQuery(compile_(discrete_circuit("cp")))
    text = print_ir(query.graph)
    assert "semiring=max-sum" in text and "semiring=lse-sum" not in text
    with pytest.raises(CompilationError, match="MAPQuery"):
        codegen(query.graph)


# -- sampling ----------------------------------------------------------------------------------


def tv_bound(num_samples: int, num_states: int, failure: float = 1e-6) -> float:
    """A bound that the total-variation distance between an empirical distribution of
    `num_samples` draws and the true one exceeds with probability below `failure`:
    TV = max_A |P_n(A) - P(A)| over the 2**states events; Hoeffding on each and a union bound
    give sqrt((states log 2 + log(1/failure)) / (2 n))."""
    return math.sqrt((num_states * math.log(2) + math.log(1 / failure)) / (2 * num_samples))


def total_variation(samples, probs):
    index = torch.zeros(len(samples), dtype=torch.long)
    for v, n in enumerate(STATES):
        index = index * n + samples[:, 0, v]
    empirical = torch.bincount(index, minlength=probs.numel()).double() / len(samples)
    return 0.5 * (empirical - probs.flatten()).abs().sum().item()


@pytest.mark.parametrize("layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("semiring", ["lse-sum", "sum-product"])
@pytest.mark.parametrize(("fold", "optimize"), FLAGS)
def test_samples_follow_the_distribution(layer, semiring, fold, optimize):
    circuit = compile_(discrete_circuit(layer), semiring, fold, optimize)
    probs = torch.exp(log_values(circuit, ALL)).reshape(STATES)
    probs = probs / probs.sum()  # the embedding is unnormalized: sampling normalizes
    n = 4000
    samples, units = SamplingQuery(circuit)(
        num_samples=n, generator=torch.Generator().manual_seed(0)
    )
    assert samples.shape == (n, 1, 4) and len(units) == len(circuit.layers)
    assert total_variation(samples, probs) < tv_bound(n, probs.numel())


@pytest.mark.parametrize("layer", ["tucker", "cp-t"])
def test_conditional_samples_follow_the_conditional(layer):
    """cirkit #55's check: fix the evidence Z, draw X | Z many times, compare with p(X | Z)."""
    circuit = compile_(discrete_circuit(layer))
    joint = torch.exp(log_values(circuit, ALL)).reshape(STATES)
    n = 4000
    evidence = torch.tensor([False, True, False, True])
    x = torch.tensor([[0, 2, 0, 1]])  # one evidence row, n draws
    samples, _ = SamplingQuery(circuit)(
        n, x=x, evidence_mask=evidence, generator=torch.Generator().manual_seed(1)
    )
    assert (samples[:, 0, 1] == 2).all() and (samples[:, 0, 3] == 1).all()
    conditional = torch.zeros(STATES, dtype=torch.float64)
    conditional[:, 2, :, 1] = joint[:, 2, :, 1] / joint[:, 2, :, 1].sum()
    assert total_variation(samples, conditional) < tv_bound(n, STATES[0] * STATES[2])


def test_gaussian_samples_match_moments():
    specs = ["gaussian", "gaussian"]
    symbolic = circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers=specs,
        num_input_units=3,
        sum_product_layer="cp",
        num_sum_units=3,
    )
    circuit = compile_(symbolic)
    samples, _ = SamplingQuery(circuit)(20000, generator=torch.Generator().manual_seed(0))
    grid = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    x = torch.stack([grid, torch.zeros_like(grid)], 1)
    density = IntegrateQuery(circuit)(x, integrate_vars=Scope([1]))[:, 0, 0].exp().detach()
    mean = torch.trapezoid(density * grid, grid)
    var = torch.trapezoid(density * (grid - mean) ** 2, grid)
    # the sample mean is within 5 standard errors of the mean
    assert abs(samples[:, 0, 0].mean() - mean) < 5 * math.sqrt(var / 20000)


def test_sampling_and_map_bad_input():
    circuit = compile_(discrete_circuit("cp"))
    with pytest.raises(OptionError, match="positive"):
        SamplingQuery(circuit)(num_samples=0)
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(InputError, match="out of range"):
        MAPQuery(circuit)(
            x + torch.tensor([5, 0, 0, 0]), evidence_mask=torch.tensor([True, False, False, False])
        )
    with pytest.raises(InputError, match="shape"):
        MAPQuery(circuit)(x, evidence_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(InputError, match="shape"):
        SamplingQuery(circuit)(2, x=x, evidence_mask=torch.zeros(3, dtype=torch.bool))
    signed = compile_(discrete_circuit("cp"), "complex-lse-sum")
    for query in (SamplingQuery(signed), MAPQuery(signed)):
        with pytest.raises(PropertyError, match="not a distribution"):
            query() if isinstance(query, MAPQuery) else query(num_samples=3)
    symbolic = circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers="gaussian",
        num_features=3,
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
        sum_weight_param="none",
    )
    negative = compile_(symbolic, "sum-product")
    state = negative.symbolic_state()
    state = {k: v - 2.0 if v.dim() >= 2 and v.shape[-1] == 2 else v for k, v in state.items()}
    negative.load_symbolic_state(state)
    with pytest.raises(PropertyError, match="negative"):
        SamplingQuery(negative)(num_samples=3)


def test_folded_dag_with_mixing_samples_and_map():
    """Quad graph (mixing layers over shared folds), folded and fused: a pixel's sampled
    marginal against `IntegrateQuery`'s, and MAP's bounds."""
    symbolic = circuit_templates.image_data(
        (1, 2, 2),
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=2,
    )
    circuit = compile_(symbolic)
    n = 4000
    samples, _ = SamplingQuery(circuit)(n, generator=torch.Generator().manual_seed(3))
    x = torch.zeros(256, 4, dtype=torch.long)
    x[:, 2] = torch.arange(256)
    others = torch.tensor([True, True, False, True])
    exact = IntegrateQuery(circuit)(x, integrate_vars=others)[:, 0, 0].exp()
    empirical = torch.bincount(samples[:, 0, 2], minlength=256).double() / n
    assert 0.5 * (empirical - exact).abs().sum().item() < tv_bound(n, 256)
    value, state = MAPQuery(circuit)()
    assert value.item() <= log_values(circuit, state).item() + 1e-9


def test_gaussian_map_state_attains_its_value():
    symbolic = circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers="gaussian",
        num_features=3,
        num_input_units=3,
        sum_product_layer="tucker",
        num_sum_units=3,
    )
    circuit = compile_(symbolic)
    x = torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64)
    value, state = MAPQuery(circuit)(x, evidence_mask=torch.tensor([True, False, False]))
    assert state[0, 0, 0] == 0.5
    assert value.item() <= log_values(circuit, state).item() + 1e-9


def test_conditional_samples_with_evidence_per_row():
    """Rows with different evidence (the per-row Gumbel path): each group of rows follows its
    own conditional."""
    circuit = compile_(discrete_circuit("cp"))
    joint = torch.exp(log_values(circuit, ALL)).reshape(STATES)
    n = 3000
    x = torch.zeros(2 * n, 4, dtype=torch.long)
    x[n:, 0] = 2  # rows 0..n-1 observe x0 = 0, the others x0 = 2
    evidence = torch.tensor([True, False, False, False])
    samples, _ = SamplingQuery(circuit)(
        2 * n, x=x, evidence_mask=evidence, generator=torch.Generator().manual_seed(4)
    )
    for value, rows in ((0, samples[:n]), (2, samples[n:])):
        assert (rows[:, 0, 0] == value).all()
        conditional = torch.zeros(STATES, dtype=torch.float64)
        conditional[value] = joint[value] / joint[value].sum()
        assert total_variation(rows, conditional) < tv_bound(n, 3 * 2 * 2)


@pytest.mark.parametrize("reduce", ["amax", "lse"])
def test_blocked_sum_rule_equals_the_one_shot_one(monkeypatch, reduce):
    from cirkit_ir.backends.torch import topdown as td

    x = torch.randn(5, 2, 3, 7, dtype=torch.float64)
    logw = torch.randn(5, 4, 9, dtype=torch.float64)
    whole = td.TuckerRule().up(None, x, logw, getattr(td, reduce))
    monkeypatch.setattr(td, "SMALL", 0)
    monkeypatch.setattr(td, "CACHE", 20)  # two folds per block
    torch.testing.assert_close(td.TuckerRule().up(None, x, logw, getattr(td, reduce)), whole)
