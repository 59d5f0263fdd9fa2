"""Queries (`cirkit_ir.backends.torch.queries`) against brute-force enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from cirkit_ir.backends.torch.queries import IntegrateQuery
from cirkit_ir.errors import InputError
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.templates import circuit_templates
from cirkit_ir.templates.parameterization import Parameterization

SEMIRINGS = ["lse-sum", "sum-product", "complex-lse-sum"]
FLAGS = [(False, False), (True, True)]
STATES = (3, 3, 2, 2)  # categorical(3), binomial(2), embedding(2), categorical(2)


def discrete_circuit(sum_product_layer: str):
    specs = [
        {"name": "categorical", "args": {"num_categories": 3}},
        {"name": "binomial", "args": {"total_count": 2}},
        {
            "name": "embedding",
            "args": {"num_states": 2, "weight": Parameterization(activation="exp")},
        },
        {"name": "categorical", "args": {"num_categories": 2}},
    ]
    return circuit_templates.tabular_data(
        "random-binary-tree",
        input_layers=specs,
        num_input_units=2,
        sum_product_layer=sum_product_layer,
        num_sum_units=2,
    )


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
