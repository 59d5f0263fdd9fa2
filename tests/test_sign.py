"""`cirkit_ir.ir.sign`: which parameter ops provably compute non-negative values, which
values in [0, 1] or positive ones, and what each parameter slot needs.

Rule by rule on hand-built graphs, then soundness: on random chains of parameter ops
evaluated by the torch backend in float32 and float64, a value never leaves the bounds the
analysis proves (on the side of 0, 1 and the smallest normal number that they claim).
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cirkit_ir.backends.torch import make_parameter_node
from cirkit_ir.backends.torch.parameters import NodeContext
from cirkit_ir.errors import VerificationError
from cirkit_ir.ir import FoldMap, Graph, ops
from cirkit_ir.ir.sign import Bounds, Need, Sign, bounds, nonnegative, sign, slot_needs
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
        sources=[graph.new_source() for _ in range(SHAPE[0])],
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
    known: dict[int, Bounds | None] = {}
    assert all(nonnegative(graph, node, known) for node in chains)
    assert known[soft] == Bounds(0.0, 1.0)  # memoized for the next call
    assert known[exp] == Bounds(0.0)


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
# Bounds, and what parameter slots need

TINY32 = float(torch.finfo(torch.float32).tiny)
TINY64 = float(torch.finfo(torch.float64).tiny)


def chain(*steps: ops.ParamOp) -> tuple[Graph, int]:
    """A raw tensor under `steps`, the first applied first (binary ops read the value twice)."""
    graph = Graph()
    node = tensor(graph)
    for op in steps:
        node = apply(graph, op, *[node] * op.arity)
    return graph, node


def kron() -> ops.ParamOp:
    return ops.KroneckerParamOp(shape=(1,))


def matmul() -> ops.ParamOp:
    return ops.MatMulOp(shape=(1,))


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], Bounds()),
        ([unary(ops.SoftmaxOp)], Bounds(0.0, 1.0)),
        ([unary(ops.SigmoidOp)], Bounds(0.0, 1.0)),
        ([unary(ops.ExpOp)], Bounds(0.0)),  # not > 0: exp underflows to 0
        ([unary(ops.SoftplusOp)], Bounds(0.0)),  # as does softplus
        ([unary(ops.LogSoftmaxOp)], Bounds()),
        ([unary(ops.ClampOp, vmin=0.0, vmax=1.0)], Bounds(0.0, 1.0)),
        ([unary(ops.ClampOp, vmin=1e-3)], Bounds(1e-3)),
        ([unary(ops.SigmoidOp), unary(ops.ClampOp, vmax=0.5)], Bounds(0.0, 0.5)),
        ([unary(ops.SigmoidOp), unary(ops.ClampOp, vmin=2.0)], Bounds(2.0, 2.0)),
        ([unary(ops.ClampOp, vmin=1.0, vmax=-1.0)], Bounds(-1.0, -1.0)),
        ([unary(ops.ScaledSigmoidOp)], Bounds(0.0, 1.0)),
        ([unary(ops.ScaledSigmoidOp, vmin=1e-4, vmax=10.0)], Bounds(1e-4)),  # gaussian default
        ([unary(ops.ScaledSigmoidOp, vmin=0.2, vmax=0.5)], Bounds(0.2, 1.0)),  # 1, not 0.5
        ([unary(ops.ScaledSigmoidOp, vmin=0.5, vmax=0.0)], Bounds(0.0, 0.5)),  # falling
        ([unary(ops.SigmoidOp), kron()], Bounds(0.0, 1.0)),
        ([unary(ops.SigmoidOp), unary(ops.ReduceOp, kind="prod")], Bounds(0.0, 1.0)),
        ([unary(ops.SigmoidOp), unary(ops.ReduceOp, kind="sum")], Bounds(0.0)),  # above 1
        ([unary(ops.SigmoidOp), matmul()], Bounds(0.0)),  # sums of products
        ([unary(ops.SigmoidOp), unary(ops.ReduceOp, kind="lse")], Bounds(0.0)),
        ([unary(ops.ClampOp, vmin=1e-3), unary(ops.ReduceOp, kind="lse")], Bounds(1e-3)),
        ([unary(ops.ClampOp, vmin=1e-3), kron()], Bounds(0.0)),  # products underflow
        ([unary(ops.ClampOp, vmin=0.5), unary(ops.MixingWeightOp)], Bounds(0.0)),  # zeros
        ([unary(ops.SigmoidOp), ops.StackOp(2, shape=(1,))], Bounds(0.0, 1.0)),
        ([unary(ops.ExpOp), unary(ops.LogOp)], Bounds()),
    ],
    ids=str,
)
def test_bounds(steps, expected):
    graph, node = chain(*steps)
    assert bounds(graph, node) == expected


def test_a_stack_is_bounded_by_all_its_operands():
    graph = Graph()
    unit = apply(graph, unary(ops.SigmoidOp), tensor(graph))
    positive = apply(graph, unary(ops.ClampOp, vmin=0.5, vmax=3.0), tensor(graph))
    assert bounds(graph, apply(graph, ops.StackOp(2, shape=(1,)), unit, positive)) == Bounds(
        0.0, 3.0
    )
    assert bounds(graph, apply(graph, kron(), unit, positive)) == Bounds(0.0)  # 3 > 1


@pytest.mark.parametrize(
    ("steps", "probability", "positive32", "positive64"),
    [
        ([unary(ops.SigmoidOp)], True, False, False),
        ([unary(ops.SoftmaxOp)], True, False, False),
        ([unary(ops.ClampOp, vmin=0.0, vmax=1.0)], True, False, False),
        ([unary(ops.ScaledSigmoidOp, vmin=0.1, vmax=0.9)], True, True, True),
        ([unary(ops.ScaledSigmoidOp, vmin=0.0, vmax=2.0)], False, False, False),
        ([unary(ops.ScaledSigmoidOp, vmin=1e-4, vmax=10.0)], False, True, True),
        ([unary(ops.ScaledSigmoidOp, vmin=1.0, vmax=1e-3)], True, False, False),  # may be 0
        ([unary(ops.ClampOp, vmin=1e-18)], False, True, True),  # 'positive-clamp'
        ([unary(ops.ClampOp, vmin=1e-40)], False, False, True),  # subnormal in float32
        ([unary(ops.ClampOp, vmin=0.0)], False, False, False),
        ([unary(ops.ExpOp)], False, False, False),
        ([unary(ops.SoftplusOp)], False, False, False),
        ([], False, False, False),
    ],
    ids=str,
)
def test_needs_are_proven_only_by_bounds_that_imply_them(
    steps, probability, positive32, positive64
):
    graph, node = chain(*steps)
    b = bounds(graph, node)
    assert Need.PROBABILITY.proven(b, TINY32) is probability
    assert Need.POSITIVE.proven(b, TINY32) is positive32
    assert Need.POSITIVE.proven(b, TINY64) is positive64
    assert Need.NONNEGATIVE.proven(b, TINY32) is (b.lo >= 0)
    assert not any(need.proven(None, TINY32) for need in Need)  # complex, or unknown


@pytest.mark.parametrize(
    ("op", "signed", "expected"),
    [
        (ops.BinomialOp((0,), 1, 1, total_count=3, param="probs"), True, {"probs": "P"}),
        (ops.BinomialOp((0,), 1, 1, total_count=3, param="logits"), False, {}),
        (ops.GaussianOp((0,), 1, 1), True, {"stddev": "+"}),
        (ops.GaussianOp((0,), 1, 1), False, {"stddev": "+"}),
        (ops.EvidenceOp(ops.GaussianOp((0,), 1, 1)), True, {"stddev": "+"}),
        (
            ops.EvidenceOp(ops.BinomialOp((0,), 1, 1, total_count=3, param="probs")),
            False,
            {"probs": "P"},
        ),
        (ops.CategoricalOp((0,), 1, 1, num_categories=3), False, {"probs": ">="}),
        (ops.CategoricalOp((0,), 1, 1, num_categories=3), True, {}),
        (ops.CategoricalOp((0,), 1, 1, num_categories=3, param="logits"), False, {}),
        (ops.DenseOp(3, 2), False, {"weight": ">="}),
        (ops.DenseOp(3, 2), True, {}),
    ],
    ids=str,
)
def test_slot_needs(op, signed, expected):
    """Probs and stddevs have a domain in every semiring; signs only where the semiring
    computes real logs (`signed` False)."""
    short = {"P": Need.PROBABILITY, "+": Need.POSITIVE, ">=": Need.NONNEGATIVE}
    assert slot_needs(op, signed) == {slot: short[n] for slot, n in expected.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_scaled_sigmoid_rounds_within_its_claimed_bounds(dtype):
    """The rounding the scaled-sigmoid rule argues about, at saturated sigmoids and many
    bounds: rising to vmax <= 1, never above 1 nor below vmin; falling to vmax >= 0, never
    below 0 nor above vmin."""
    x = torch.tensor([-1e4, -20.0, 0.0, 20.0, 1e4], dtype=dtype)

    def scaled(vmin: float, vmax: float) -> tuple[Bounds | None, torch.Tensor]:
        op = unary(ops.ScaledSigmoidOp, vmin=vmin, vmax=vmax)
        module = make_parameter_node(op, [(5,)], NodeContext(dtype=dtype))
        return bounds(*chain(op)), module(x)

    rng = np.random.default_rng(0)
    edges = 1 - 2.0 ** -np.arange(1, 60)
    for vmin in map(float, np.concatenate([rng.uniform(0, 1, 1000), edges])):
        for vmax in {1.0, max(vmin, 1 - 1e-9), vmin + (1 - vmin) / 2}:
            b, v = scaled(vmin, vmax)
            assert b == Bounds(vmin, 1.0) and (v <= 1).all(), (vmin, vmax, v.max().item())
            assert (v >= torch.tensor(vmin, dtype=dtype)).all()
        for vmax in (0.0, 1e-30, vmin / 2):
            b, v = scaled(vmin, vmax)
            assert b == Bounds(0.0, vmin) and (v >= 0).all(), (vmin, vmax, v.min().item())


# ---------------------------------------------------------------------------------------------
# Soundness on random chains


def _applicable(shape: tuple[int, ...]) -> list[tuple[ops.ParamOp, int]]:
    """(op, arity) pairs that fit a value of `shape`; binary ops read the value twice. The
    bounds are the thresholds that the needs compare with (0, 1, float32's smallest normal
    number), values near them and around them, subnormal ones and backwards ones."""
    small = len(shape) == 3 and shape[1] * shape[2] <= 16
    steps: list[tuple[ops.ParamOp, int]] = [
        (unary(cls), 1)
        for cls in (ops.SoftmaxOp, ops.LogSoftmaxOp, ops.ExpOp, ops.LogOp, ops.SigmoidOp)
    ]
    steps.append((unary(ops.SoftplusOp), 1))
    lows = (None, -1.0, 0.0, 1e-40, TINY32, 1e-18, 0.1, 0.5, 1.0)
    for lo, hi in itertools.product(lows, (None, -0.5, 0.0, 0.3, 1.0, 2.0)):
        if lo is not None or hi is not None:  # torch.clamp needs a bound
            steps.append((unary(ops.ClampOp, vmin=lo, vmax=hi), 1))
    for lo in (-1.0, 0.0, TINY32, 1e-4, 0.1, 0.3, 1 / 3, 0.7, 1.0, 2.0):
        for hi in (-1.0, 0.0, 1e-20, 0.3, 1 - 2**-30, 1.0, 10.0):
            steps.append((unary(ops.ScaledSigmoidOp, vmin=lo, vmax=hi), 1))
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
    scale=st.sampled_from([1.0, 50.0, 1000.0]),  # saturate sigmoids, underflow exps
    dtype=st.sampled_from([torch.float64, torch.float32]),
    seed=st.integers(0, 2**16),
)
def test_values_never_leave_their_proven_bounds(data, mean, std, scale, dtype, seed):
    """Computed by the torch backend in either dtype, a value is on the proven side of each
    threshold that needs compare bounds with (and non-negative where its sign says so);
    NaN is outside what bounds promise."""
    graph = Graph()
    node = tensor(graph, initializer=NormalInitializer(mean * scale, std * scale))
    chain = [node]
    for _ in range(data.draw(st.integers(1, 6), label="length")):
        op, arity = data.draw(st.sampled_from(_applicable(graph.op(node).shape)), label="op")
        node = apply(graph, op, *[node] * arity)
        chain.append(node)

    thresholds = (0.0, 1.0, float(torch.finfo(dtype).tiny))
    values: dict[int, torch.Tensor] = {}
    known: dict[int, Bounds | None] = {}
    for n in chain:
        op = graph.op(n)
        inputs = [values[p] for p in graph.inputs(n)]
        shapes = [tuple(t.shape) for t in inputs]
        module = make_parameter_node(op, shapes, NodeContext(dtype=dtype, seed=seed))
        values[n] = module(*inputs).detach()
        v = values[n][~values[n].isnan()]
        if sign(graph, n, known) == Sign.NONNEGATIVE:
            assert not (v < 0).any(), f"%{n} {op.name}: {values[n].min()}"
        b = bounds(graph, n, known)
        for t in thresholds if b is not None else ():
            assert b.lo < t or (v >= t).all(), f"%{n} {op!r} >= {t}: {v.min().item()!r}"
            assert b.hi > t or (v <= t).all(), f"%{n} {op!r} <= {t}: {v.max().item()!r}"
