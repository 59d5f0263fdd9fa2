"""Writing your own passes: a rewrite pattern, and a pass that rewrites held weights.

1. `categorical-logits`: categorical inputs usually read `softmax(logits)` as their
   probabilities. A categorical op can read the logits directly (`param='logits'`) and
   normalize them itself, which saves a softmax per forward pass and is more accurate in log
   space. The pattern below does that rewrite; the pass applies it to a fixed point;
   `register_pass` makes it available by name in pipelines.
2. `prune-weights{threshold=...}`: a graph may hold the values of its tensors (a compiled
   circuit's `circuit.graph` holds its trained parameters). This pass zeroes every sum weight
   below `threshold` by setting its logit to -inf, reports how many it pruned (a statistic and
   a published result), and the pruned graph is compiled again; the reference evaluator,
   given the pruned values, agrees with it.

Run it with `python examples/custom_pass.py`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from cirkit_ir import reference
from cirkit_ir.ir import Graph, lower
from cirkit_ir.ir.ops import CategoricalOp, CircuitOp, Op, SoftmaxOp, TensorOp
from cirkit_ir.passes import (
    Pass,
    PassContext,
    PassManager,
    PatternRewriter,
    RewritePattern,
    apply_patterns_greedily,
    register_pass,
)
from cirkit_ir.pipeline import PipelineContext
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


@register_pass("prune-weights")
@attrs.frozen
class PruneWeights(Pass):
    """Zeroes the sum weights below `threshold` (softmax-normalized weights whose logits the
    graph holds): their logits become -inf, so the rest renormalize. The largest weight of
    each row is kept, so no sum loses all its inputs."""

    threshold: float = 0.01

    def run(self, graph: Graph, context: PassContext) -> bool:
        pruned = 0
        for node, op in list(graph.ops()):
            if not isinstance(op, CircuitOp) or op.arity == 0:
                continue  # inputs: their non-negative slots are probabilities, not weights
            for slot in op.nonnegative_slots:  # sum weights
                for softmax, _ in graph.slot_edges(node, slot):
                    pruned += self._prune(graph, softmax)
        context.statistics["pruned weights"] += pruned
        context.publish(pruned)
        return pruned > 0

    def _prune(self, graph: Graph, softmax: int) -> int:
        """Prunes the logits under one softmax op; how many weights it zeroed."""
        op = graph.op(softmax)
        if not isinstance(op, SoftmaxOp):
            return 0
        (leaf,) = graph.producers(softmax)
        logits = graph.tensor_value(leaf) if isinstance(graph.op(leaf), TensorOp) else None
        if logits is None:  # not a tensor, or no value held: nothing to read
            return 0
        weights = torch.softmax(logits, op.axis)
        largest = weights == weights.amax(op.axis, keepdim=True)
        doomed = (weights < self.threshold) & ~largest & torch.isfinite(logits)
        if not bool(doomed.any()):
            return 0
        graph.set_tensor_value(leaf, logits.masked_fill(doomed, -math.inf))
        return int(doomed.sum())


def prune_a_trained_circuit() -> None:
    """Compiles a circuit, prunes its held weights, compiles the pruned graph again."""
    symbolic = circuit_templates.image_data(
        (1, 4, 4),
        region_graph="quad-tree-4",
        input_layer="categorical",
        num_input_units=4,
        sum_product_layer="tucker",
        num_sum_units=4,
    )
    ctx = PipelineContext(semiring="lse-sum", fold=True, optimize=True, seed=1)
    circuit = ctx.compile(symbolic)  # stands for a trained circuit
    graph = circuit.graph  # the final IR, holding the circuit's parameter values
    pm = PassManager.parse("prune-weights{threshold=0.05}", statistics=True)
    pm.run(graph)
    print(f"pruned {pm.results['prune-weights']} sum weights below 0.05")
    print(pm.statistics_report())

    pruned = ctx.compile(graph)  # the same pipeline again: values come from the graph
    x = torch.randint(0, 256, (32, 1, 16))
    expected = reference.evaluate(symbolic, x, graph.values)  # the pruned weights' values
    error = (pruned(x).double() - expected).abs().max().item()
    print(f"pruned circuit vs the reference on the pruned weights: max error {error:.2e}")
    assert error < 1e-3, error
    change = (pruned(x) - circuit(x)).abs().max().item()
    print(f"pruning changed log-likelihoods by up to {change:.3f} nats")


def main() -> None:
    prune_a_trained_circuit()
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
