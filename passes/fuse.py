"""`fuse`: rewrite patterns that merge ops into cheaper fused ones.

Circuit rules (the intermediate ops must have no other user, so nothing is computed twice):

- kronecker then dense       -> tucker (weight: the dense's weight)
- hadamard then dense        -> cp-t   (weight: the dense's weight)
- a dense per hadamard input -> cp     (weight: a stack of the dense weights)
- dense then dense           -> dense  (weight: matmul(W2, W1))
- hadamard / kronecker of one input, mixing of one input with softmax weights -> removed

Parameter rules: log(softmax) -> log-softmax, exp(log x) -> x, log(exp x) -> x, and
exp(log-softmax) -> softmax.

Every rule keeps the consumer's node, folds and fold order, and composes the fold maps of the
edges it skips (`FoldMap.compose`). On folded graphs a slot may be fed by several producers
(one per group it reads); a rule applies when all of them qualify, and a folded producer may
feed several slots of its one user (a folded dense group feeding both inputs of a folded
hadamard, say), so that folding first and fusing after gives the same graph as the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.fold_map import through
from cirkit_ir.ir.graph import Edge, Graph, Ref, Slot
from cirkit_ir.ir.ops import (
    CPOp,
    CPTOp,
    DenseOp,
    ExpOp,
    HadamardOp,
    InnerOp,
    KroneckerOp,
    LogOp,
    LogSoftmaxOp,
    MatMulOp,
    MixingOp,
    Op,
    ParamOp,
    SoftmaxOp,
    StackOp,
    TuckerOp,
)
from cirkit_ir.passes.param_stack import ParamStacker
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass
from cirkit_ir.passes.rewriter import PatternRewriter, RewritePattern, apply_patterns_greedily


def producers_of(
    rewriter: PatternRewriter,
    node: int,
    slot: Slot,
    kind: type[Op] | tuple[type[Op], ...],
    alike: Callable[[Op, Op], bool] | None = None,
) -> list[Edge] | None:
    """The edges feeding `slot` if every producer is a `kind` op that only `node` uses (and,
    with `alike`, that agrees with the first producer); None otherwise."""
    edges = rewriter.edges(node, slot)
    if not edges:
        return None
    graph = rewriter.graph
    first = graph.op(edges[0][0])
    for producer, _ in edges:
        op = graph.op(producer)
        if not isinstance(op, kind) or not rewriter.used_only_by(producer, node):
            return None
        if alike is not None and op is not first and not alike(op, first):
            return None
    return edges


def skip(rewriter: PatternRewriter, edges: list[Edge], slot: Slot) -> list[Edge]:
    """What feeds `slot` of each producer in `edges`, seen through the edges' fold maps."""
    found: list[Edge] = []
    for producer, fold_map in edges:
        found.extend(through(rewriter.edges(producer, slot), fold_map))
    return found


def param_refs(rewriter: PatternRewriter, edges: list[Edge], folds: int, slot: Slot) -> list[Ref]:
    """Per consumer fold, the (op, fold) that feeds `slot` of the producer it reads."""
    refs: list[Ref] = [(-1, -1)] * folds
    for producer, fold_map in edges:
        reads = rewriter.graph.reads(producer)[slot]
        for c, p in zip(fold_map.consumer, fold_map.producer, strict=True):
            refs[c] = reads[p]
    return refs


def stack_params(rewriter: PatternRewriter, ref_lists: list[list[Ref]]) -> list[list[Edge]]:
    """Edges giving fold j of list i the value `ref_lists[i][j]`, private chains rebuilt in
    the consumer's fold order (see `param_stack`), so fusing after folding gives the same
    parameters as folding after fusing."""
    stacker = ParamStacker(rewriter.graph)
    result = stacker.stack(ref_lists)
    rewriter.touch(*stacker.created)
    return result


def _erase_all(rewriter: PatternRewriter, edges: list[Edge]) -> None:
    for producer in dict.fromkeys(p for p, _ in edges):
        rewriter.erase_op(producer)


def _same_semiring(a: Op, b: Op) -> bool:
    return getattr(a, "semiring", None) == getattr(b, "semiring", None)


def _equal(a: Op, b: Op) -> bool:
    """Equal but for the fold count: producers that can be skipped together."""
    if isinstance(a, ParamOp):
        return a.replace(shape=b.shape) == b  # type: ignore[union-attr]
    return a.replace(num_folds=b.num_folds) == b


# -- circuit rules ------------------------------------------------------------------------------


class _ProductThenDense(RewritePattern):
    """Product ops, then a dense op that alone reads them -> one fused op in the dense's place."""

    op_types: ClassVar[tuple[type[Op], ...]] = (DenseOp,)
    product: ClassVar[type[InnerOp]]

    def fused(self, product: InnerOp, dense: DenseOp) -> InnerOp:
        raise NotImplementedError

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        dense = graph.op(node)
        assert isinstance(dense, DenseOp)
        edges = producers_of(rewriter, node, 0, self.product, _equal)
        if edges is None:
            return False
        product = graph.op(edges[0][0])
        if not _same_semiring(product, dense):
            return False
        operands = {slot: skip(rewriter, edges, slot) for slot in range(product.arity)}
        rewriter.set_operands(node, 0, [])
        rewriter.replace_op(node, self.fused(product, dense))  # type: ignore[arg-type]
        for slot, found in operands.items():
            rewriter.set_operands(node, slot, found)
        _erase_all(rewriter, edges)
        return True


class FuseKroneckerDense(_ProductThenDense):
    """kronecker then dense -> tucker: W (folds, out, in ** arity) is the dense's weight."""

    product = KroneckerOp

    def fused(self, product: KroneckerOp, dense: DenseOp) -> TuckerOp:  # type: ignore[override]
        return TuckerOp(
            product.in_units,
            dense.out_units,
            product.num_inputs,
            num_folds=dense.num_folds,
            semiring=dense.semiring,
        )


class FuseHadamardDense(_ProductThenDense):
    """hadamard then dense -> cp-t: W (folds, out, in) is the dense's weight."""

    product = HadamardOp

    def fused(self, product: HadamardOp, dense: DenseOp) -> CPTOp:  # type: ignore[override]
        return CPTOp(
            product.units,
            dense.out_units,
            product.num_inputs,
            num_folds=dense.num_folds,
            semiring=dense.semiring,
        )


class FuseDenseHadamard(RewritePattern):
    """A dense op per hadamard input (used only there) -> cp, W = stack of the weights."""

    op_types: ClassVar[tuple[type[Op], ...]] = (HadamardOp,)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        hadamard = graph.op(node)
        assert isinstance(hadamard, HadamardOp)
        arity = hadamard.num_inputs
        if arity < 2:
            return False
        per_slot = []
        for slot in range(arity):
            edges = producers_of(rewriter, node, slot, DenseOp, _equal)
            if edges is None:
                return False
            per_slot.append(edges)
        first = graph.op(per_slot[0][0][0])
        assert isinstance(first, DenseOp)
        if first.out_units != hadamard.units or not _same_semiring(first, hadamard):
            return False
        if any(not _equal(graph.op(edges[0][0]), first) for edges in per_slot[1:]):
            return False
        folds = hadamard.num_folds
        stack = rewriter.insert_op(
            StackOp(num_inputs=arity, shape=(folds, arity, first.out_units, first.in_units))
        )
        weights = stack_params(
            rewriter, [param_refs(rewriter, edges, folds, "weight") for edges in per_slot]
        )
        operands = []
        for slot, edges in enumerate(per_slot):
            operands.append(skip(rewriter, edges, 0))
            rewriter.set_operands(stack, slot, weights[slot])
            rewriter.set_operands(node, slot, [])
        cp = CPOp(first.in_units, first.out_units, arity, num_folds=folds, semiring=first.semiring)
        rewriter.replace_op(node, cp)
        for slot, found in enumerate(operands):
            rewriter.set_operands(node, slot, found)
        rewriter.connect(stack, node, "weight")
        for edges in per_slot:
            _erase_all(rewriter, edges)
        return True


class FuseDenseDense(RewritePattern):
    """Dense D1 then dense D2 -> one dense in D2's place, W = matmul(W2, W1)."""

    op_types: ClassVar[tuple[type[Op], ...]] = (DenseOp,)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        outer = graph.op(node)
        assert isinstance(outer, DenseOp)
        edges = producers_of(rewriter, node, 0, DenseOp, _equal)
        if edges is None:
            return False
        inner = graph.op(edges[0][0])
        assert isinstance(inner, DenseOp)
        if not _same_semiring(inner, outer):
            return False
        folds = outer.num_folds
        matmul = rewriter.insert_op(MatMulOp(shape=(folds, outer.out_units, inner.in_units)))
        rewriter.set_operands(matmul, 0, rewriter.edges(node, "weight"))
        inner_weight = stack_params(rewriter, [param_refs(rewriter, edges, folds, "weight")])
        rewriter.set_operands(matmul, 1, inner_weight[0])
        operands = skip(rewriter, edges, 0)
        rewriter.set_operands(node, 0, [])
        rewriter.set_operands(node, "weight", [])
        rewriter.replace_op(node, outer.replace(in_units=inner.in_units))
        rewriter.set_operands(node, 0, operands)
        rewriter.connect(matmul, node, "weight")
        _erase_all(rewriter, edges)
        return True


class RemoveUnaryProduct(RewritePattern):
    """A hadamard or kronecker product of one input is that input."""

    op_types: ClassVar[tuple[type[Op], ...]] = (HadamardOp, KroneckerOp)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        if graph.op(node).num_inputs != 1:  # type: ignore[attr-defined]
            return False
        rewriter.bypass(node, 0)
        return True


class RemoveTrivialMixing(RewritePattern):
    """A mixing of one input whose weights are a softmax over that one input (all ones)."""

    op_types: ClassVar[tuple[type[Op], ...]] = (MixingOp,)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        if graph.op(node).num_inputs != 1:  # type: ignore[attr-defined]
            return False
        for producer, _ in rewriter.edges(node, "weight"):
            op = graph.op(producer)
            if not isinstance(op, SoftmaxOp) or op.shape[op.axis] != 1:
                return False
        rewriter.bypass(node, 0)
        return True


# -- parameter rules ----------------------------------------------------------------------------


class _UnaryChain(RewritePattern):
    """outer(inner(x)) -> replacement(x), or -> x when `replacement` gives None."""

    inner: ClassVar[type[ParamOp]]

    def replacement(self, outer: ParamOp, inner: ParamOp) -> ParamOp | None:
        return None

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        edges = producers_of(rewriter, node, 0, self.inner, _equal)
        if edges is None:
            return False
        outer = graph.op(node)
        new = self.replacement(outer, graph.op(edges[0][0]))  # type: ignore[arg-type]
        rewriter.set_operands(node, 0, skip(rewriter, edges, 0))
        _erase_all(rewriter, edges)
        if new is None:
            rewriter.bypass(node, 0)
        else:
            rewriter.replace_op(node, new)
        return True


class FuseLogSoftmax(_UnaryChain):
    """log(softmax(x)) -> log-softmax(x), exact where the log of a tiny softmax is not."""

    op_types: ClassVar[tuple[type[Op], ...]] = (LogOp,)
    inner = SoftmaxOp

    def replacement(self, outer: ParamOp, inner: ParamOp) -> ParamOp:
        return LogSoftmaxOp(axis=inner.axis, shape=outer.shape)  # type: ignore[attr-defined]


class FuseExpLogSoftmax(_UnaryChain):
    """exp(log-softmax(x)) -> softmax(x) (what re-lowering to sum-product can leave)."""

    op_types: ClassVar[tuple[type[Op], ...]] = (ExpOp,)
    inner = LogSoftmaxOp

    def replacement(self, outer: ParamOp, inner: ParamOp) -> ParamOp:
        return SoftmaxOp(axis=inner.axis, shape=outer.shape)  # type: ignore[attr-defined]


class RemoveExpLog(_UnaryChain):
    """exp(log(x)) -> x."""

    op_types: ClassVar[tuple[type[Op], ...]] = (ExpOp,)
    inner = LogOp


class RemoveLogExp(_UnaryChain):
    """log(exp(x)) -> x."""

    op_types: ClassVar[tuple[type[Op], ...]] = (LogOp,)
    inner = ExpOp


CIRCUIT_PATTERNS: tuple[RewritePattern, ...] = (
    FuseKroneckerDense(),
    FuseHadamardDense(),
    FuseDenseHadamard(),
    FuseDenseDense(),
    RemoveUnaryProduct(),
    RemoveTrivialMixing(),
)
PARAMETER_PATTERNS: tuple[RewritePattern, ...] = (
    FuseLogSoftmax(),
    FuseExpLogSoftmax(),
    RemoveExpLog(),
    RemoveLogExp(),
)


def positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise OptionError(f"{attribute.name} must be at least 1, got {value}")


@register_pass("fuse")
@attrs.frozen
class Fuse(Pass):
    """Applies the fusion patterns greedily to a fixed point."""

    max_iterations: int = attrs.field(default=10, validator=positive)

    def run(self, graph: Graph, context: PassContext) -> bool:
        """Fuses, counting the rewrites of each rule in `context.statistics`."""
        return apply_patterns_greedily(
            graph,
            CIRCUIT_PATTERNS + PARAMETER_PATTERNS,
            self.max_iterations,
            statistics=context.statistics,
        )
