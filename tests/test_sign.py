"""`cirkit_ir.ir.sign`: which parameter ops provably compute non-negative values.

Rule by rule on hand-built graphs, then soundness: on random chains of parameter ops
evaluated by the torch backend, a value the analysis calls non-negative never is negative.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from backends.torch.parameters import node_from_op
from cirkit_ir.errors import VerificationError
from cirkit_ir.ir import FoldMap, Graph, ops
from cirkit_ir.ir.sign import Sign, nonnegative, sign
from cirkit_ir.symbolic.initializers import (
    ConstantInitializer,
    NormalInitializer,
    UniformInitializer,
)

SHAPE = (2, 3, 3)


def tensor(graph: Graph, *, initializer=None, learnable: bool = True, dtype: str = "real") -> int:
    op = ops.TensorOp(
        initializer or NormalInitializer(),
        learnable=learnable,
        tensor_dtype=dtype,
        shape=SHAPE,
        sources=range(SHAPE[0]),
    )
    return graph.add_op(op)


def apply(graph: Graph, op: ops.ParamOp, *inputs: int) -> int:
    """`op` (built with any shape) reading `inputs`, with the shape they give it."""
    shape = op.infer_shape([graph.op(i).shape for i in inputs])
    return graph.add_op(op.replace(shape=shape), list(inputs))


def unary(cls: type[ops.ParamOp], **options: object) -> ops.ParamOp:
    return cls(shape=(1,), **options)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [ops.SoftmaxOp, ops.ExpOp, ops.SigmoidOp, ops.SoftplusOp])
def test_activations_are_nonnegative(cls):
    graph = Graph()
    node = apply(graph, unary(cls), tensor(graph))
    assert sign(graph, node) == Sign.NONNEGATIVE
    assert nonnegative(graph, node)


def test_sums_and_products_of_nonnegative_values_are_nonnegative():
    graph = Graph()
    soft = apply(graph, unary(ops.SoftmaxOp), tensor(graph))
    exp = apply(graph, unary(ops.ExpOp), apply(graph, unary(ops.LogSoftmaxOp), tensor(graph)))
    chains = [
        apply(graph, unary(ops.MixingWeightOp), soft),
        apply(graph, ops.KroneckerParamOp(shape=(1,)), soft, exp),
        apply(graph, ops.MatMulOp(shape=(1,)), exp, soft),
        apply(graph, ops.StackOp(2, shape=(1,)), exp, soft),
        apply(graph, unary(ops.ReduceOp, kind="sum"), exp),
        apply(graph, unary(ops.ReduceOp, kind="prod"), soft),
        apply(graph, unary(ops.ReduceOp, kind="lse"), soft),  # lse(x) >= max(x)
    ]
    known: dict[int, Sign] = {}
    assert all(nonnegative(graph, node, known) for node in chains)
    assert known[soft] == known[exp] == Sign.NONNEGATIVE  # memoized for the next call


@pytest.mark.parametrize(
    "initializer",
    [NormalInitializer(), UniformInitializer(0.1, 1.0), ConstantInitializer(1.0)],
)
@pytest.mark.parametrize("learnable", [True, False])
def test_tensors_may_be_negative_whatever_their_initializer(initializer, learnable):
    """Training, load_state_dict and load_symbolic_state write any values into a leaf."""
    graph = Graph()
    node = tensor(graph, initializer=initializer, learnable=learnable)
    assert sign(graph, node) == Sign.REAL
    assert not nonnegative(graph, node)


def test_logs_and_mixes_with_signed_values_may_be_negative():
    graph = Graph()
    raw, soft = tensor(graph), apply(graph, unary(ops.SoftmaxOp), tensor(graph))
    signed = [
        apply(graph, unary(ops.LogOp), soft),
        apply(graph, unary(ops.LogSoftmaxOp), raw),
        apply(graph, unary(ops.ReduceOp, kind="lse"), raw),
        apply(graph, ops.KroneckerParamOp(shape=(1,)), soft, raw),
        apply(graph, ops.MatMulOp(shape=(1,)), raw, soft),
        apply(graph, ops.StackOp(2, shape=(1,)), soft, raw),
        apply(graph, unary(ops.MixingWeightOp), raw),
    ]
    assert [sign(graph, node) for node in signed] == [Sign.REAL] * len(signed)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (unary(ops.ClampOp, vmin=0.0), Sign.NONNEGATIVE),
        (unary(ops.ClampOp, vmin=1e-18, vmax=1.0), Sign.NONNEGATIVE),
        (unary(ops.ClampOp), Sign.REAL),
        (unary(ops.ClampOp, vmin=-1.0), Sign.REAL),
        (unary(ops.ClampOp, vmax=1.0), Sign.REAL),
        (unary(ops.ClampOp, vmin=1.0, vmax=-1.0), Sign.REAL),  # torch gives vmax everywhere
        (unary(ops.ClampOp, vmin=float("nan")), Sign.REAL),
        (unary(ops.ScaledSigmoidOp), Sign.NONNEGATIVE),
        (unary(ops.ScaledSigmoidOp, vmin=2.0, vmax=0.0), Sign.NONNEGATIVE),
        (unary(ops.ScaledSigmoidOp, vmin=-1.0, vmax=1.0), Sign.REAL),
        (unary(ops.ScaledSigmoidOp, vmin=1.0, vmax=-1.0), Sign.REAL),
    ],
)
def test_bounded_activations_are_nonnegative_when_both_bounds_are(op, expected):
    graph = Graph()
    assert sign(graph, apply(graph, op, tensor(graph))) == expected


def test_complex_values_are_never_nonnegative():
    graph = Graph()
    raw = tensor(graph, dtype="complex")
    assert sign(graph, raw) == Sign.ANY
    for cls in (ops.ExpOp, ops.SoftmaxOp, ops.ClampOp):
        assert sign(graph, apply(graph, unary(cls), raw)) == Sign.ANY


@attrs.frozen
class UserOp(ops.ParamOp):
    """A parameter op the analysis has no rule for."""

    name: ClassVar[str] = "user-op"


def test_unknown_ops_may_be_anything():
    graph = Graph()
    user = apply(graph, unary(UserOp), apply(graph, unary(ops.SoftmaxOp), tensor(graph)))
    assert sign(graph, user) == Sign.ANY
    assert sign(graph, apply(graph, unary(ops.SigmoidOp), user)) == Sign.ANY  # maybe complex
    circuit_op = graph.add_op(ops.ConstantOp(2), params={"value": user})
    assert sign(graph, circuit_op) == Sign.ANY


def test_a_long_chain_needs_no_recursion():
    graph = Graph()
    node = tensor(graph)
    for _ in range(5000):
        node = apply(graph, unary(ops.ExpOp), node)
    assert nonnegative(graph, node)


def test_a_cycle_is_an_error_not_a_hang():
    graph = Graph()
    a = apply(graph, unary(ops.ExpOp), tensor(graph))
    b = apply(graph, unary(ops.ExpOp), a)
    graph.connect(b, a, 0, FoldMap.identity(SHAPE[0]))
    with pytest.raises(VerificationError, match="depends on itself"):
        sign(graph, b)


# ---------------------------------------------------------------------------------------------
# Soundness on random chains


def _applicable(shape: tuple[int, ...]) -> list[tuple[ops.ParamOp, int]]:
    """(op, arity) pairs that fit a value of `shape`; binary ops read the value twice."""
    small = len(shape) == 3 and shape[1] * shape[2] <= 16
    steps: list[tuple[ops.ParamOp, int]] = [
        (unary(cls), 1)
        for cls in (ops.SoftmaxOp, ops.LogSoftmaxOp, ops.ExpOp, ops.LogOp, ops.SigmoidOp)
    ]
    steps.append((unary(ops.SoftplusOp), 1))
    for lo, hi in itertools.product((None, -1.0, 0.0, 0.5), (None, -0.5, 0.0, 2.0)):
        if lo is not None or hi is not None:  # torch.clamp needs a bound
            steps.append((unary(ops.ClampOp, vmin=lo, vmax=hi), 1))
    for lo in (-1.0, 0.0, 2.0):
        steps += [(unary(ops.ScaledSigmoidOp, vmin=lo, vmax=hi), 1) for hi in (-1.0, 0.0, 1.0)]
    if len(shape) > 2:
        steps += [(unary(ops.ReduceOp, kind=k), 1) for k in ("sum", "prod", "lse")]
    if small:
        steps += [(unary(ops.MixingWeightOp), 1), (ops.KroneckerParamOp(shape=(1,)), 2)]
    if len(shape) == 3 and shape[1] == shape[2]:
        steps.append((ops.MatMulOp(shape=(1,)), 2))
    if len(shape) == 3:
        steps.append((ops.StackOp(2, shape=(1,)), 2))
    return steps


@given(
    data=st.data(),
    mean=st.floats(-3.0, 3.0),
    std=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**16),
)
def test_values_called_nonnegative_are_nonnegative(data, mean, std, seed):
    graph = Graph()
    node = tensor(graph, initializer=NormalInitializer(mean, std))
    chain = [node]
    for _ in range(data.draw(st.integers(1, 6), label="length")):
        op, arity = data.draw(st.sampled_from(_applicable(graph.op(node).shape)), label="op")
        node = apply(graph, op, *[node] * arity)
        chain.append(node)

    values: dict[int, torch.Tensor] = {}
    known: dict[int, Sign] = {}
    for n in chain:
        op = graph.op(n)
        inputs = [values[p] for p in graph.inputs(n)]
        module = node_from_op(
            op, [tuple(t.shape) for t in inputs], dtype=torch.float64, device=None, seed=seed
        )
        values[n] = module(*inputs).detach()
        if sign(graph, n, known) == Sign.NONNEGATIVE:
            assert not (values[n] < 0).any(), f"%{n} {op.name}: {values[n].min()}"
