"""`cirkit_ir.templates.pgms`: fully factorized models and HMMs compute what the models say.

The HMM is checked against a forward algorithm written here, on transition and emission
tables drawn by the test and loaded into the compiled circuit.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cirkit_ir import errors
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import CategoricalLayer, DenseLayer, GaussianLayer, HadamardLayer
from cirkit_ir.templates import Parameterization, pgms

FLAGS = [
    ("sum-product", False, False),
    ("lse-sum", False, False),
    ("lse-sum", True, True),
    ("sum-product", True, True),
]
RAW = Parameterization(activation="none")


def _stochastic(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random rows that sum to one."""
    table = rng.random(shape) + 0.05
    return table / table.sum(axis=-1, keepdims=True)


def _forward(pi, transitions, emissions, x) -> float:
    """p(x) by the forward algorithm: alpha_t(z') = sum_z alpha_{t-1}(z) T_t[z, z'] e_t(z')."""
    alpha = [pi[z] * emissions[0][z][x[0]] for z in range(len(pi))]
    for t in range(1, len(x)):
        alpha = [
            sum(alpha[z] * transitions[t][z][z2] for z in range(len(alpha)))
            * emissions[t][z2][x[t]]
            for z2 in range(len(alpha))
        ]
    return sum(alpha)


def _output(circuit, semiring: str, x: torch.Tensor) -> torch.Tensor:
    out = circuit(x).detach().reshape(-1)
    return out if semiring == "sum-product" else out.exp()


@pytest.mark.parametrize(("semiring", "fold", "optimize"), FLAGS)
def test_hmm_matches_the_forward_algorithm(semiring, fold, optimize):
    ordering, k, n = [2, 0, 3, 1], 3, 4  # 4 variables with 4 values, 3 hidden states
    circuit = pgms.hmm(
        ordering,
        num_latent_states=k,
        input_layer_kwargs={"num_categories": n},
        input_params={"probs": RAW},
        weight_param=RAW,
    )
    rng = np.random.default_rng(0)
    pi = _stochastic(rng, k)
    transitions = [None] + [_stochastic(rng, k, k) for _ in ordering[1:]]
    emissions = [_stochastic(rng, k, n) for _ in ordering]

    # Load the tables: a step's emission reads variable ordering[t]; the dense layer of step
    # t has the scope of steps t.. (the initial distribution at t = 0).
    values = {}
    source = {id(leaf): i for i, leaf in enumerate(circuit.tensor_parameters())}
    for layer in circuit.layers:
        if isinstance(layer, CategoricalLayer):
            (variable,) = layer.scope
            table = emissions[ordering.index(variable)]
            values[source[id(layer.probs)]] = torch.tensor(table).reshape(k, 1, n)
        elif isinstance(layer, DenseLayer):
            t = len(ordering) - len(circuit.layer_scope(layer))
            weight = pi[None, :] if t == 0 else transitions[t]
            values[source[id(layer.weight)]] = torch.tensor(weight)
    assert len(values) == len(source)

    ctx = PipelineContext("torch", semiring, fold, optimize, dtype=torch.float64)
    compiled = ctx.compile(circuit, parameters=values)
    data = torch.tensor(list(itertools.product(range(n), repeat=len(ordering))))
    got = _output(compiled, semiring, data)
    for x, value in zip(data.tolist(), got.tolist(), strict=True):
        by_step = [x[v] for v in ordering]
        assert value == pytest.approx(_forward(pi, transitions, emissions, by_step), rel=1e-10)
    assert float(got.sum()) == pytest.approx(1.0, rel=1e-10)  # a distribution


def test_hmm_structure_follows_libcirkit():
    circuit = pgms.hmm([1, 0], num_latent_states=2, input_layer_kwargs={"num_categories": 3})
    kinds = [type(layer) for layer in circuit.layers]
    # built from the last step backwards: emission, transition, emission, product, initial
    assert kinds == [CategoricalLayer, DenseLayer, CategoricalLayer, HadamardLayer, DenseLayer]
    assert [layer.num_output_units for layer in circuit.layers] == [2, 2, 2, 2, 1]
    assert circuit.layers[0].scope.variables == {0}  # the last step reads ordering[-1]
    single = pgms.hmm([0], num_latent_states=3, input_layer_kwargs={"num_categories": 2})
    assert [layer.num_output_units for layer in single.layers] == [3, 1]


def test_hmm_default_weights_are_a_softmax():
    circuit = pgms.hmm([0, 1], num_latent_states=3, input_layer_kwargs={"num_categories": 2})
    compiled = PipelineContext(seed=1).compile(circuit)  # sum-product, libcirkit's default
    data = torch.tensor(list(itertools.product(range(2), repeat=2)))
    assert float(compiled(data).detach().sum()) == pytest.approx(1.0, rel=1e-5)


def test_hmm_per_step_kwargs_follow_the_ordering():
    circuit = pgms.hmm(
        [1, 0],
        num_latent_states=2,
        input_layer_kwargs=[{"num_categories": 5}, {"num_categories": 3}],
    )
    categories = {tuple(layer.scope)[0]: layer.num_categories for layer in circuit.input_layers}
    assert categories == {1: 5, 0: 3}  # the i-th dict is for variable ordering[i]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ordering": []}, "non-empty list"),
        ({"ordering": [0, 2]}, "each of the variables 0..1 once"),
        ({"ordering": [0, 1], "input_layer": "embedding"}, "unknown input layer 'embedding'"),
        ({"ordering": [0, 1], "input_layer_kwargs": [{}]}, "lists 1 dicts for 2 variables"),
        ({"ordering": [0, 1]}, "num_categories"),
        ({"ordering": [0], "num_latent_states": 0}, "num_latent_states must be a positive"),
        ({"ordering": [0], "input_layer": "gaussian", "weight_param": "softmax"}, "weight_param"),
    ],
)
def test_hmm_bad_options(kwargs, match):
    with pytest.raises(errors.OptionError, match=match):
        pgms.hmm(**kwargs)


@pytest.mark.parametrize(("semiring", "fold", "optimize"), FLAGS)
def test_fully_factorized_is_the_product_of_its_marginals(semiring, fold, optimize):
    circuit = pgms.fully_factorized(
        3, input_layer_kwargs={"num_categories": 3}, input_params={"probs": RAW}
    )
    rng = np.random.default_rng(1)
    marginals = [_stochastic(rng, 3) for _ in range(3)]
    source = {id(leaf): i for i, leaf in enumerate(circuit.tensor_parameters())}
    values = {
        source[id(layer.probs)]: torch.tensor(marginals[tuple(layer.scope)[0]]).reshape(1, 1, 3)
        for layer in circuit.input_layers
    }
    ctx = PipelineContext("torch", semiring, fold, optimize, dtype=torch.float64)
    compiled = ctx.compile(circuit, parameters=values)
    data = torch.tensor(list(itertools.product(range(3), repeat=3)))
    got = _output(compiled, semiring, data)
    for x, value in zip(data.tolist(), got.tolist(), strict=True):
        expected = marginals[0][x[0]] * marginals[1][x[1]] * marginals[2][x[2]]
        assert value == pytest.approx(expected, rel=1e-12)


def test_fully_factorized_layers():
    gaussian = pgms.fully_factorized(4, input_layer="gaussian")
    assert [type(layer) for layer in gaussian.layers] == [GaussianLayer] * 4 + [HadamardLayer]
    assert all(layer.num_output_units == 1 for layer in gaussian.layers)
    single = pgms.fully_factorized(1, input_layer="binomial", input_layer_kwargs={"total_count": 4})
    assert len(single.layers) == 1 and single.outputs == (single.layers[0],)
    per_variable = pgms.fully_factorized(
        2, input_layer_kwargs=[{"num_categories": 2}, {"num_categories": 7}]
    )
    assert [layer.num_categories for layer in per_variable.input_layers] == [2, 7]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_variables": 0}, "num_variables must be a positive"),
        ({"num_variables": 2, "input_layer": "poisson"}, "unknown input layer 'poisson'"),
        ({"num_variables": 2, "input_layer_kwargs": "num_categories"}, "a dict or a list"),
        ({"num_variables": 2, "input_layer_kwargs": [{}, 3]}, r"input_layer_kwargs\[1\]"),
        ({"num_variables": 1, "input_layer_kwargs": {"bins": 3}}, "unexpected keyword"),
    ],
)
def test_fully_factorized_bad_options(kwargs, match):
    with pytest.raises(errors.OptionError, match=match):
        pgms.fully_factorized(**kwargs)
