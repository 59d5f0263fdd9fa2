"""Property tests of the circuit algebra over random compatible circuits: every circuit is a
random vtree over 2-3 discrete variables, each operand with its own units and input types;
the operators must agree with brute-force enumeration (`cirkit_ir.reference`), and their
compiled forms, folded or not, under every valid semiring, with the reference."""

from __future__ import annotations

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cirkit_ir.symbolic.functional as SF
from cirkit_ir import reference as R
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    CategoricalLayer,
    CircuitBuilder,
    DenseLayer,
    EmbeddingLayer,
    HadamardLayer,
    MixingLayer,
    NormalInitializer,
    TensorParameter,
)

STATES = 2


@st.composite
def vtrees(draw, variables: tuple[int, ...]):
    """A random binary tree over `variables` (nested tuples of variable ids)."""
    if len(variables) == 1:
        return variables[0]
    cut = draw(st.integers(1, len(variables) - 1))
    return (draw(vtrees(variables[:cut])), draw(vtrees(variables[cut:])))


def build(tree, units: int, kind: str, dtype: str, mixing: bool, seed: int):
    """A smooth, decomposable circuit following `tree`: inputs, then per inner node a hadamard
    of its children and a dense layer (two of them mixed, with `mixing`)."""
    torch.manual_seed(seed)
    b = CircuitBuilder()

    def table(variable):
        if kind == "categorical":
            return b.add(CategoricalLayer([variable], units, num_categories=STATES))
        weight = TensorParameter((units, 1, STATES), NormalInitializer(), tensor_dtype=dtype)
        return b.add(EmbeddingLayer([variable], units, num_states=STATES, weight=weight))

    def node(t, out_units):
        if isinstance(t, int):
            leaf = table(t)
            return leaf if out_units == units else b.add(DenseLayer(units, out_units), [leaf])
        left, right = node(t[0], units), node(t[1], units)
        branches = 2 if mixing else 1
        sums = []
        for _ in range(branches):
            product = b.add(HadamardLayer(units, 2), [left, right])
            weight = TensorParameter((out_units, units), NormalInitializer(), tensor_dtype=dtype)
            sums.append(b.add(DenseLayer(units, out_units, weight=weight), [product]))
        if not mixing:
            return sums[0]
        mix = TensorParameter((out_units, 2), NormalInitializer(), tensor_dtype=dtype)
        return b.add(MixingLayer(out_units, 2, weight=mix), sums)

    return b.build([node(tree, 1)])


def all_assignments(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(STATES), repeat=n)))


@st.composite
def operands(draw):
    n = draw(st.integers(2, 3))
    tree = draw(vtrees(tuple(range(n))))
    dtype = draw(st.sampled_from(["real", "complex"]))
    mixing = draw(st.booleans())
    pair = [
        build(
            tree,
            draw(st.integers(1, 2)),
            draw(st.sampled_from(["categorical", "embedding"])),
            dtype,
            mixing,
            draw(st.integers(0, 2**16)),
        )
        for _ in range(2)
    ]
    return n, dtype, pair


def values_for(derived, original, values):
    by_leaf = {id(leaf): values[i] for i, leaf in enumerate(original.tensor_parameters())}
    drawn = R.draw_values(derived)
    return {
        i: by_leaf.get(id(leaf), drawn[i]) for i, leaf in enumerate(derived.tensor_parameters())
    }


def linear(circuit, x, values):
    return torch.exp(R.evaluate(circuit, x, values, mode="complex"))


@settings(max_examples=25, deadline=None)
@given(operands())
def test_operators_agree_with_enumeration(case):
    n, _, (c1, c2) = case
    both = SF.concatenate([c1, c2])
    values = R.draw_values(both)
    x = all_assignments(n)
    out = linear(both, x, values)
    product = SF.multiply(c1, SF.conjugate(c2))
    expected = out[:, 0, 0] * out[:, 1, 0].conj()
    got = linear(product, x, values_for(product, both, values))[:, 0, 0]
    torch.testing.assert_close(got, expected)
    z = SF.integrate(product)
    total = linear(z, torch.zeros(1, 0, dtype=torch.long), values_for(z, both, values))[0, 0, 0]
    torch.testing.assert_close(total, expected.sum())


@settings(max_examples=15, deadline=None)
@given(operands(), st.booleans(), st.sampled_from(["sum-product", "complex-lse-sum"]))
def test_compiled_squares_match_the_reference_folded_or_not(case, fold, semiring):
    n, dtype, (c1, _) = case
    if dtype == "complex" and semiring == "sum-product":
        semiring = "complex-lse-sum"  # complex parameters compute in complex logs
    squared = SF.multiply(c1, SF.conjugate(c1))
    both = SF.concatenate([squared, SF.integrate(squared)])
    compiled = PipelineContext(semiring=semiring, fold=fold, optimize=fold).compile(both, seed=0)
    x = all_assignments(n)
    out = compiled(x.unsqueeze(1))
    R.assert_matches(out, both, x, compiled.symbolic_state(), semiring, 1e-4)
    log = R.output_as_log(out, semiring)
    total = torch.exp((log[:, 0, 0] - log[:, 1, 0]).real).sum()
    assert abs(float(total) - 1.0) < 1e-4  # |c|^2 / Z is normalized
