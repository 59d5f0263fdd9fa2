"""Sign and range analysis: what values parameter ops provably compute, and what values the
parameter slots of circuit ops need.

Some parameters have a domain: real logs ('lse-sum') need sum weights and linear input
parameters (probabilities, tables) non-negative (one negative value makes a likelihood
negative and its log NaN), a binomial needs its `probs` in [0, 1], a gaussian needs a
positive `stddev` (`slot_needs`). A value is not known until it is computed (parameters are
trained and loaded), so the backend checks those parameters at every forward, except where
this analysis proves that the check cannot fail: weights under a softmax, probs under a
sigmoid, a stddev under a scaled sigmoid with a positive lower bound, ...

The analysis is sound, not complete: `Bounds` are a proof, a wider or missing bound a maybe.
Every tensor leaf counts as any real (or complex) value, learnable or not, whatever its
initializer: training, `load_state_dict` and `load_symbolic_state` all write new values into
leaves. Bounds say nothing of NaN: NaN operands, or infinities that overflow made
(softmax([inf, inf])), may give NaN.

Floating point. The bounds hold for the values torch computes, not only for exact reals, but
only against thresholds that float32 and float64 represent exactly: `Need` compares them with
0, 1 and the dtype's smallest normal number, nothing else. Rounding to nearest is monotone,
so a value between exact bounds stays on the same side of such a threshold once rounded;
where torch rounds more than once (a scaled sigmoid), the rule says why its bound still
holds. Positivity is what floats make hard: exp(x) and softplus(x) are > 0 for every real x
but underflow to exactly 0 for x below about -104 (float32) or -745 (float64), which makes
a gaussian's density NaN; so they prove >= 0, never > 0. Only a lower bound that a clamp or
a scaled sigmoid sets, a normal number, proves a value > 0 (`Need.POSITIVE`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any

import attrs

from cirkit_ir.errors import VerificationError
from cirkit_ir.ir import ops
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.op_def import Need


@attrs.frozen
class Bounds:
    """Every value v an op computes has `lo` <= v <= `hi` (or is NaN, see the module), in the
    sense above: v >= t for every threshold t <= lo, v <= t for every t >= hi."""

    lo: float = -math.inf
    hi: float = math.inf


REAL = Bounds()  # any real value
NONNEGATIVE = Bounds(0.0)
UNIT = Bounds(0.0, 1.0)  # probabilities


class Sign(enum.IntEnum):
    """What is known of the sign of an op's values (from its `bounds`), from most to least."""

    NONNEGATIVE = 0  # real and >= 0 (see `Bounds` for NaN)
    REAL = 1  # real, of any sign
    ANY = 2  # possibly complex


def _hull(*bounds: Bounds) -> Bounds:
    if len(bounds) == 1:
        return bounds[0]
    return Bounds(min(b.lo for b in bounds), max(b.hi for b in bounds))


def _product(x: Bounds) -> Bounds:
    """Products of values in `x`. Exact bounds (0.1 * 10 = 1) would be wrong once each
    factor is rounded (float32(0.1) * 10 < 1), so only the thresholds 0 and 1 are kept:
    fl(a * b) <= a <= 1 for a, b in [0, 1]."""
    if x.lo < 0:
        return REAL
    return UNIT if x.hi <= 1 else NONNEGATIVE


def _sum(x: Bounds) -> Bounds:
    """Sums of values in `x` (of any count: above 1 even for probabilities)."""
    return NONNEGATIVE if x.lo >= 0 else REAL


def _clamp(op: ops.ClampOp, x: Bounds) -> Bounds:
    """torch.clamp(x, vmin, vmax) = min(max(x, vmin), vmax): monotone in x, so the image of
    [lo, hi] is [f(lo), f(hi)] (vmax everywhere when vmax < vmin). Its values are x itself or
    a rounded bound, on the same side of any threshold as the bound."""
    if any(v is not None and math.isnan(v) for v in (op.vmin, op.vmax)):
        return REAL

    def f(v: float) -> float:
        v = v if op.vmin is None else max(v, op.vmin)
        return v if op.vmax is None else min(v, op.vmax)

    return Bounds(f(x.lo), f(x.hi))


def _scaled_sigmoid(op: ops.ScaledSigmoidOp) -> Bounds:
    """sigmoid(x) * (vmax - vmin) + vmin, between vmin and vmax up to rounding.

    Rising (vmin <= vmax): vmin plus a non-negative product, so >= vmin once rounded; the top
    value rounds to at most 1 when vmax <= 1 (each term's rounding error is below half an
    ulp of 1), but may pass a larger vmax by an ulp, so only 1 is claimed. Falling: vmin plus
    a non-positive product, so <= vmin; its bottom value may round below vmax (vmin = 1,
    vmax = 1e-20 gives 0), but (vmax - vmin) rounds to no less than -vmin, so >= 0 when
    vmax >= 0. An infinite bound gives 0 * inf = NaN for a saturated sigmoid: no proof.
    """
    vmin, vmax = op.vmin, op.vmax
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        return REAL
    if vmin <= vmax:
        return Bounds(vmin, 1.0 if vmax <= 1 else math.inf)
    return Bounds(0.0 if vmax >= 0 else -math.inf, vmin)


def _reduce(op: ops.ReduceOp, x: Bounds) -> Bounds:
    if op.kind == "lse":  # lse(x) = max(x) + log(sum(exp(x - max))) >= max(x) >= lo
        return Bounds(x.lo)
    return _product(x) if op.kind == "prod" else _sum(x)


BoundsRule = Callable[[Any, Bounds], Bounds]
"""A parameter op's bounds given the hull of its operands' bounds (real values only)."""

_RULES: dict[type, BoundsRule] = {}


def bounds_rule(*op_classes: type) -> Callable[[BoundsRule], BoundsRule]:
    """Registers what values parameter ops of these classes compute, given their operands'
    bounds. An op without a rule proves nothing (its values may be anything), which is
    always safe: its users' parameters are then checked at every forward."""

    def register(rule: BoundsRule) -> BoundsRule:
        for cls in op_classes:
            _RULES[cls] = rule
        return rule

    return register


def _fixed(value: Bounds) -> BoundsRule:
    return lambda op, x: value


bounds_rule(ops.SoftmaxOp, ops.SigmoidOp)(_fixed(UNIT))  # each term <= the sum; 1 / (1 + e^-x)
bounds_rule(ops.ExpOp, ops.SoftplusOp)(_fixed(NONNEGATIVE))  # not > 0: underflows (see the module)
bounds_rule(ops.LogSoftmaxOp, ops.LogOp)(_fixed(REAL))
bounds_rule(ops.ClampOp)(_clamp)
bounds_rule(ops.ScaledSigmoidOp)(lambda op, x: _scaled_sigmoid(op))
bounds_rule(ops.StackOp)(lambda op, x: x)
bounds_rule(ops.MixingWeightOp)(lambda op, x: _hull(x, Bounds(0.0, 0.0)))  # the weights, zeros
bounds_rule(ops.KroneckerParamOp)(lambda op, x: _product(x))
bounds_rule(ops.MatMulOp)(lambda op, x: _sum(_product(x)))  # sums of products
bounds_rule(ops.ReduceOp)(_reduce)


def _rule(op: ops.Op) -> BoundsRule | None:
    rule = _RULES.get(type(op))
    if rule is None:
        rule = next((_RULES[c] for c in type(op).__mro__ if c in _RULES), None)
    return rule


def _bounds(op: ops.Op, x: Bounds | None) -> Bounds | None:
    """The bounds of `op`'s values given `x`, the hull of its operands' (None: possibly
    complex, or from an op this analysis does not know). Every rule reading several operands
    holds for any values within their hull."""
    if isinstance(op, ops.TensorOp):
        return REAL if op.tensor_dtype == "real" else None
    if x is None:
        return None  # of complex values, even an exp or a softmax is complex
    rule = _rule(op)
    return None if rule is None else rule(op, x)


def bounds(graph: Graph, node: int, known: dict[int, Bounds | None] | None = None) -> Bounds | None:
    """What is known of the values of parameter op `node` in `graph`: their `Bounds`, or
    None when they may be complex (or come from an op this analysis does not know).

    `known` memoizes results across calls on one graph (pass the same dict to each call);
    a circuit op (or anything but a parameter op) is None.
    """
    known = {} if known is None else known
    if node in known:
        return known[node]
    # Operands before their users, on an explicit stack: chains of matmuls (fused dense
    # layers) can be longer than Python's recursion limit.
    stack = [node]
    expanded: set[int] = set()
    while stack:
        n = stack[-1]
        if n in known:
            stack.pop()
            continue
        op = graph.op(n)
        if not isinstance(op, ops.ParamOp):
            known[stack.pop()] = None
            continue
        operands = graph.producers(n)
        pending = [p for p in operands if p not in known]
        if pending:
            if n in expanded:  # its operands are back before it was: they depend on it
                raise VerificationError(f"parameter op %{n} depends on itself (a cycle)", n)
            expanded.add(n)
            stack.extend(pending)
            continue
        stack.pop()
        inputs = [known[p] for p in operands]
        if any(b is None for b in inputs):
            known[n] = _bounds(op, None)
        else:
            known[n] = _bounds(op, _hull(*inputs) if inputs else REAL)  # type: ignore[arg-type]
    return known[node]


def sign(graph: Graph, node: int, known: dict[int, Bounds | None] | None = None) -> Sign:
    """What is known of the sign of parameter op `node`'s values (see `bounds`)."""
    b = bounds(graph, node, known)
    if b is None:
        return Sign.ANY
    return Sign.NONNEGATIVE if b.lo >= 0 else Sign.REAL


def nonnegative(graph: Graph, node: int, known: dict[int, Bounds | None] | None = None) -> bool:
    """Whether parameter op `node`'s values are provably non-negative reals (see `bounds`)."""
    return sign(graph, node, known) == Sign.NONNEGATIVE


# -- what parameter slots need -------------------------------------------------------------------


def slot_needs(op: ops.CircuitOp, signed_parameters: bool) -> dict[str, Need]:
    """Slot -> what its values must be (`CircuitOp.slot_needs`: from the op's `param_def`s)."""
    return op.slot_needs(signed_parameters)
