"""Sign analysis: which parameter ops provably compute non-negative real values.

Real logs ('lse-sum') need sum weights and linear input parameters (probabilities,
tables) to be non-negative: one negative value makes a likelihood negative and its log NaN.
A value is not known until it is computed (parameters are trained and loaded), so the
backend checks those parameters at every forward, except where this analysis proves that
the check cannot fail: weights under a softmax, exp, sigmoid, ...

The analysis is sound, not complete: `Sign.NONNEGATIVE` is a proof, anything else a maybe.
Every tensor leaf counts as possibly negative, learnable or not, whatever its initializer:
training, `load_state_dict` and `load_symbolic_state` all write new values into leaves.
"""

from __future__ import annotations

import enum

from cirkit_ir.errors import VerificationError
from cirkit_ir.ir import ops
from cirkit_ir.ir.graph import Graph


class Sign(enum.IntEnum):
    """What is known of an op's values, from most to least: larger means less known, so the
    least known of several operands is their `max`."""

    NONNEGATIVE = 0  # real and >= 0 (NaN only from a NaN operand)
    REAL = 1  # real, of any sign
    ANY = 2  # possibly complex


# Ops whose values are in [0, inf) for any real operand.
_NONNEGATIVE_OF_REAL = (ops.SoftmaxOp, ops.ExpOp, ops.SigmoidOp, ops.SoftplusOp)
# Ops whose values are real for real operands, of any sign (logs).
_REAL_OF_REAL = (ops.LogSoftmaxOp, ops.LogOp)
# Ops that keep what is known of their operands: sums and products of them (and zeros) are
# non-negative when they are, real when they are; so are log-sum-exps (lse(x) >= max(x)).
_CLOSED = (ops.MixingWeightOp, ops.KroneckerParamOp, ops.MatMulOp, ops.StackOp, ops.ReduceOp)


def _at_least_zero(*bounds: float | None) -> bool:
    return all(b is not None and b >= 0 for b in bounds)  # NaN bounds compare false


def _sign(op: ops.Op, operands: Sign) -> Sign:
    """The sign of `op`'s values given the least known of its operands' (NONNEGATIVE when it
    has none)."""
    if isinstance(op, ops.TensorOp):
        return Sign.REAL if op.tensor_dtype == "real" else Sign.ANY
    if operands == Sign.ANY:
        return Sign.ANY  # of complex values, even an exp or a softmax is complex
    if isinstance(op, _NONNEGATIVE_OF_REAL):
        return Sign.NONNEGATIVE
    if isinstance(op, _REAL_OF_REAL):
        return Sign.REAL
    if isinstance(op, _CLOSED):
        return operands
    if isinstance(op, ops.ClampOp):
        # torch.clamp gives vmax everywhere when vmax < vmin: both bounds matter.
        if _at_least_zero(op.vmin) and (op.vmax is None or _at_least_zero(op.vmax)):
            return Sign.NONNEGATIVE
        return Sign.REAL
    if isinstance(op, ops.ScaledSigmoidOp):
        # Values lie between vmin and vmax, whichever is larger.
        return Sign.NONNEGATIVE if _at_least_zero(op.vmin, op.vmax) else Sign.REAL
    return Sign.ANY  # an op this analysis does not know


def sign(graph: Graph, node: int, known: dict[int, Sign] | None = None) -> Sign:
    """What is known of the values of parameter op `node` in `graph`.

    `known` memoizes signs across calls on one graph (pass the same dict to each call);
    a circuit op (or anything but a parameter op) is `Sign.ANY`.
    """
    known = {} if known is None else known
    if node in known:
        return known[node]
    # The adjacency dicts themselves (this runs for every weight of an unfolded circuit).
    nodes, pred = graph.nx._node, graph.nx._pred
    # Operands before their users, on an explicit stack: chains of matmuls (fused dense
    # layers) can be longer than Python's recursion limit.
    stack = [node]
    expanded: set[int] = set()
    while stack:
        n = stack[-1]
        if n in known:
            stack.pop()
            continue
        op = nodes[n]["op"]
        if not isinstance(op, ops.ParamOp):
            known[stack.pop()] = Sign.ANY
            continue
        operands = pred[n]
        pending = [p for p in operands if p not in known]
        if pending:
            if n in expanded:  # its operands are back before it was: they depend on it
                raise VerificationError(f"parameter op %{n} depends on itself (a cycle)", n)
            expanded.add(n)
            stack.extend(pending)
            continue
        stack.pop()
        known[n] = _sign(op, max(map(known.__getitem__, operands), default=Sign.NONNEGATIVE))
    return known[node]


def nonnegative(graph: Graph, node: int, known: dict[int, Sign] | None = None) -> bool:
    """Whether parameter op `node`'s values are provably non-negative reals (see `sign`)."""
    return sign(graph, node, known) == Sign.NONNEGATIVE
