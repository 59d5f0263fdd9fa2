"""Writing your own pass: a rewrite pattern, a pass that applies it, and a pipeline that runs it.

Categorical inputs usually read `softmax(logits)` as their probabilities. A categorical op can
read the logits directly (`param='logits'`) and normalize them itself, which saves a softmax
per forward pass and is more accurate in log space. The pattern below does that rewrite; the
pass applies it to a fixed point; `register_pass` makes it available by name in pipelines.

Run it with `python examples/custom_pass.py`.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from cirkit_ir.ir import Graph, lower
from cirkit_ir.ir.ops import CategoricalOp, Op, SoftmaxOp
from cirkit_ir.passes import (
    Pass,
    PassManager,
    PatternRewriter,
    RewritePattern,
    apply_patterns_greedily,
    register_pass,
)
from cirkit_ir.templates import circuit_templates


class CategoricalReadsLogits(RewritePattern):
    """categorical[probs=softmax(x, axis=-1)] -> categorical[logits=x]."""

    op_types: ClassVar[tuple[type[Op], ...]] = (CategoricalOp,)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        op = graph.op(node)
        assert isinstance(op, CategoricalOp)
        if op.param != "probs":
            return False
        edge = rewriter.operand(node, "probs")  # the one edge feeding the slot, if just one
        if edge is None:
            return False
        softmax, fold_map = edge
        softmax_op = graph.op(softmax)
        if not isinstance(softmax_op, SoftmaxOp) or softmax_op.axis != -1:
            return False
        if not rewriter.used_only_by(softmax, node):
            return False
        # What feeds the softmax, seen through the edge's fold map (right on folded graphs).
        logits = [
            (producer, fold_map.compose(inner)) for producer, inner in rewriter.edges(softmax, 0)
        ]
        rewriter.set_operands(node, "probs", [])
        rewriter.replace_op(node, op.replace(param="logits"))
        rewriter.set_operands(node, "logits", logits)
        rewriter.erase_op(softmax)
        return True


@register_pass("categorical-logits")
@attrs.frozen
class CategoricalLogits(Pass):
    """Makes categorical inputs read logits instead of softmax probabilities."""

    max_iterations: int = 10

    def apply(self, graph: Graph) -> bool:
        return apply_patterns_greedily(graph, [CategoricalReadsLogits()], self.max_iterations)


def main() -> None:
    circuit = circuit_templates.image_data(
        (1, 2, 2),
        region_graph="quad-tree-4",
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
    )
    pipeline = "fold,categorical-logits{max-iterations=5},lower-semiring{semiring=lse-sum}"
    pm = PassManager.parse(
        pipeline, print_ir_before="categorical-logits", print_ir_after="categorical-logits"
    )
    print(f"pipeline: {pm}\n")
    graph = pm.run(lower(circuit))
    op = graph.op(graph.circuit_ops()[0])
    print(f"the {op.name} op now reads {op.param_slots[0]!r} ({op.num_folds} folds)\n")
    print(pm.timing_report())


if __name__ == "__main__":
    main()
