"""lower-semiring, dce, canonicalize, the pattern-rewrite driver and the default pipeline."""

from __future__ import annotations

from typing import ClassVar

import pytest

from cirkit_ir.errors import ConvergenceError
from cirkit_ir.ir import Graph
from cirkit_ir.ir.ops import ExpOp, HadamardOp, LogOp, Op
from cirkit_ir.ir.parser import parse_ir
from cirkit_ir.ir.printer import print_ir
from cirkit_ir.ir.verify import verify
from cirkit_ir.passes import (
    Canonicalize,
    DeadCodeElimination,
    LowerSemiring,
    PassManager,
    PatternRewriter,
    RewritePattern,
    apply_patterns_greedily,
    default_pipeline,
)

CAT = "num_channels=1, num_units=2, num_categories=3"
LSE = "semiring=lse-sum"
H6 = "units=2, num_inputs=6"


def apply(pass_, text: str) -> tuple[Graph, bool]:
    graph = parse_ir(text)
    changed = pass_.apply(graph)
    verify(graph)
    return graph, changed


# -- lower-semiring -----------------------------------------------------------------------------

LINEAR = f"""
%t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
%s = softmax(%t) {{axis=-1}} : 2x2x1x3
%c = categorical() [probs=%s] {{variables=0:2, {CAT}}} : 2x?x2
%g = tensor() {{initializer=normal(), sources=[2]}} : 1x2x1x3
%c2 = categorical() [logits=%g] {{variables=[2], {CAT}, param=logits}} : 1x?x2
%h = hadamard(%c[0], %c[1], %c2) {{units=2, num_inputs=3}} : 1x?x2
return %h
"""


def test_lower_semiring_tags_every_circuit_op_and_nothing_else() -> None:
    graph, changed = apply(LowerSemiring(), LINEAR)
    assert changed
    expected = f"""
    %t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
    %s = softmax(%t) {{axis=-1}} : 2x2x1x3
    %c = categorical() [probs=%s] {{variables=0:2, {CAT}, {LSE}}} : 2x?x2
    %g = tensor() {{initializer=normal(), sources=[2]}} : 1x2x1x3
    %c2 = categorical() [logits=%g] {{variables=[2], {CAT}, param=logits, {LSE}}} : 1x?x2
    %h = hadamard(%c[0], %c[1], %c2) {{units=2, num_inputs=3, {LSE}}} : 1x?x2
    return %h
    """
    assert graph == parse_ir(expected)
    assert LowerSemiring().apply(graph) is False  # already lowered


def test_sum_product_keeps_probabilities() -> None:
    graph, _ = apply(LowerSemiring("sum-product"), LINEAR)
    assert [graph.op(n).name for n in graph.param_ops()] == ["tensor", "softmax", "tensor"]
    assert {graph.op(n).semiring for n in graph.circuit_ops()} == {"sum-product"}


@pytest.mark.parametrize("fuse", [False, True])
def test_relowering_only_retags(fuse: bool) -> None:
    graph = parse_ir(LINEAR)
    reference = print_ir(graph)
    PassManager.parse("lower-semiring,fuse" if fuse else "lower-semiring").run(graph)
    PassManager.parse("lower-semiring{semiring=complex-lse-sum}").run(graph)
    assert {graph.op(n).semiring for n in graph.circuit_ops()} == {"complex-lse-sum"}
    PassManager.parse("lower-semiring{semiring=sum-product}").run(graph)
    assert print_ir(graph).replace(", semiring=sum-product", "") == reference


def test_log_probabilities_stay_as_written() -> None:
    text = f"""
    %t = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
    %l = log-softmax(%t) {{axis=-1}} : 1x2x1x3
    %c0 = categorical() [log_probs=%l] {{variables=[0], {CAT}, param=log_probs}} : 1x?x2
    %c1 = categorical() [log_probs=%l] {{variables=[1], {CAT}, param=log_probs}} : 1x?x2
    %h = hadamard(%c0, %c1) {{units=2, num_inputs=2}} : 1x?x2
    return %h
    """
    graph, _ = apply(LowerSemiring("sum-product"), text)
    assert [graph.op(n).name for n in graph.param_ops()] == ["tensor", "log-softmax"]
    assert {graph.op(n).param for n in graph.circuit_ops()[:2]} == {"log_probs"}


# -- dce and canonicalize -----------------------------------------------------------------------


def test_dce_drops_what_no_output_reaches() -> None:
    text = f"""
    %t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
    %c = categorical() [probs=%t] {{variables=0:2, {CAT}}} : 2x?x2
    %w = tensor() {{initializer=normal(), sources=[2]}} : 1x2x2
    %s = softmax(%w) {{axis=-1}} : 1x2x2
    %dead = dense(%c[0]) [weight=%s] {{in_units=2, out_units=2}} : 1x?x2
    %h = hadamard(%c[0], %c[1]) {{units=2, num_inputs=2}} : 1x?x2
    return %h
    """
    graph, changed = apply(DeadCodeElimination(), text)
    assert changed and len(graph) == 3
    assert DeadCodeElimination().apply(graph) is False


def test_canonicalize_removes_identities_and_merges_duplicates() -> None:
    text = f"""
    %t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
    %s1 = softmax(%t) {{axis=-1}} : 2x2x1x3
    %s2 = softmax(%t) {{axis=-1}} : 2x2x1x3
    %e = exp(%s2) : 2x2x1x3
    %l = log(%e) : 2x2x1x3
    %c = categorical() [probs=%s1] {{variables=0:2, {CAT}}} : 2x?x2
    %c2 = categorical() [probs=%l] {{variables=2:4, {CAT}}} : 2x?x2
    %u = tensor() {{initializer=normal(), sources=4:6}} : 2x2x1x3
    %v = tensor() {{initializer=normal(), sources=4:6}} : 2x2x1x3
    %c3 = categorical() [probs=%u] {{variables=4:6, {CAT}}} : 2x?x2
    %c4 = categorical() [probs=%v] {{variables=6:8, {CAT}}} : 2x?x2
    %one = hadamard(%c) {{units=2, num_inputs=1}} : 2x?x2
    %h = hadamard(%one[0], %one[1], %c2[0], %c2[1], %c3[0], %c4[1]) {{{H6}}} : 1x?x2
    return %h
    """
    # log(exp(x)) and the one-input hadamard go; the two softmaxes of %t merge; the two
    # tensors with equal attributes do not (they are two parameters); unused ops go.
    expected = f"""
    %t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
    %s = softmax(%t) {{axis=-1}} : 2x2x1x3
    %c = categorical() [probs=%s] {{variables=0:2, {CAT}}} : 2x?x2
    %c2 = categorical() [probs=%s] {{variables=2:4, {CAT}}} : 2x?x2
    %u = tensor() {{initializer=normal(), sources=4:6}} : 2x2x1x3
    %v = tensor() {{initializer=normal(), sources=4:6}} : 2x2x1x3
    %c3 = categorical() [probs=%u] {{variables=4:6, {CAT}}} : 2x?x2
    %c4 = categorical() [probs=%v] {{variables=6:8, {CAT}}} : 2x?x2
    %h = hadamard(%c[0], %c[1], %c2[0], %c2[1], %c3[0], %c4[1]) {{{H6}}} : 1x?x2
    return %h
    """
    graph, changed = apply(Canonicalize(), text)
    assert changed
    assert graph == parse_ir(expected), print_ir(graph)
    assert Canonicalize().apply(graph) is False


# -- the pattern rewriter -----------------------------------------------------------------------


class SwapExpLog(RewritePattern):
    """A deliberately bad pair of patterns: exp <-> log forever."""

    op_types: ClassVar[tuple[type[Op], ...]] = (ExpOp, LogOp)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        op = graph.op(node)
        new = (LogOp if isinstance(op, ExpOp) else ExpOp)(shape=op.shape)  # type: ignore[attr-defined]
        rewriter.replace_op(node, new)
        return True


class DropUnaryHadamard(RewritePattern):
    op_types: ClassVar[tuple[type[Op], ...]] = (HadamardOp,)

    def __init__(self) -> None:
        self.calls = 0

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        self.calls += 1
        if graph.op(node).num_inputs != 1:  # type: ignore[attr-defined]
            return False
        rewriter.bypass(node)
        return True


CHAIN = f"""
%t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
%e = exp(%t) : 2x2x1x3
%c = categorical() [probs=%e] {{variables=0:2, {CAT}}} : 2x?x2
%a = hadamard(%c) {{units=2, num_inputs=1}} : 2x?x2
%b = hadamard(%a[1,0]) {{units=2, num_inputs=1}} : 2x?x2
%d = hadamard(%b) {{units=2, num_inputs=1}} : 2x?x2
return %d[0], %b[1]
"""


def test_greedy_driver_reaches_a_fixed_point_and_composes_maps() -> None:
    graph = parse_ir(CHAIN)
    pattern = DropUnaryHadamard()
    assert apply_patterns_greedily(graph, [pattern]) is True
    verify(graph)
    assert [graph.op(n).name for n in graph.circuit_ops()] == ["categorical"]
    node = graph.circuit_ops()[0]
    assert graph.outputs == [(node, 1), (node, 0)]
    # Only hadamard ops were offered to the pattern: 3 rewrites, no calls on other ops.
    assert pattern.calls == 3
    assert apply_patterns_greedily(graph, [pattern]) is False


def test_greedy_driver_reports_patterns_that_do_not_converge() -> None:
    graph = parse_ir(CHAIN)
    with pytest.raises(ConvergenceError, match="SwapExpLog"):
        apply_patterns_greedily(graph, [SwapExpLog()], max_iterations=3)


# -- the default pipeline -----------------------------------------------------------------------


def test_default_pipeline() -> None:
    assert default_pipeline() == "fold,lower-semiring{semiring=lse-sum},fuse,dce"
    assert default_pipeline("sum-product", fold=False, optimize=False) == (
        "lower-semiring{semiring=sum-product},dce"
    )
    assert default_pipeline("complex-lse-sum", fold=True, optimize=False) == (
        "fold,lower-semiring{semiring=complex-lse-sum},dce"
    )
    for flags in [(True, True), (True, False), (False, True), (False, False)]:
        PassManager.parse(default_pipeline("lse-sum", *flags))


def test_both_pipeline_orders_give_the_seed_structure(seed_graph: Graph) -> None:
    """Fusing then folding and the default (folding first) agree on the seed circuit."""
    results = []
    for pipeline in ("lower-semiring,fuse,fold", default_pipeline()):
        g = seed_graph.clone()
        PassManager.parse(pipeline).run(g)
        assert [g.op(n).name for n in g.circuit_ops()] == ["categorical"] + [
            "tucker",
            "tucker",
            "mixing",
        ] * 5
        results.append(g)
    assert results[0] == results[1]
