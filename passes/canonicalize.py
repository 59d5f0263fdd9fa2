"""`canonicalize`: small simplifications that never change what the circuit computes.

- identities go: a product of one input, exp(log x), log(exp x);
- duplicate parameter ops merge: two ops with equal attributes reading the same operands
  (same producers, slots and fold maps) compute the same tensor, so their users can share
  one. Tensor leaves never merge: two leaves are two parameters, even with equal attributes;
- ops that nothing uses are erased.
"""

from __future__ import annotations

import attrs

from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import ParamOp, TensorOp
from cirkit_ir.passes.fuse import RemoveExpLog, RemoveLogExp, RemoveUnaryProduct, positive
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass
from cirkit_ir.passes.rewriter import RewritePattern, apply_patterns_greedily

PATTERNS: tuple[RewritePattern, ...] = (RemoveUnaryProduct(), RemoveExpLog(), RemoveLogExp())


@register_pass("canonicalize")
@attrs.frozen
class Canonicalize(Pass):
    """Removes identity ops, merges duplicate parameter ops, erases unused ops."""

    max_iterations: int = attrs.field(default=10, validator=positive)

    def run(self, graph: Graph, context: PassContext) -> bool:
        stats = context.statistics
        changed = apply_patterns_greedily(graph, PATTERNS, self.max_iterations, statistics=stats)
        changed = merge_duplicate_params(graph) or changed
        erased = graph.erase_unused()
        stats["erased ops"] += erased
        return erased > 0 or changed


def merge_duplicate_params(graph: Graph) -> bool:
    """Merges equal non-leaf parameter ops that read the same operands; True if any merged."""
    seen: dict[tuple, int] = {}
    merged = False
    for node in graph.topological_order():
        op = graph.op(node)
        if not isinstance(op, ParamOp) or isinstance(op, TensorOp):
            continue
        operands = tuple(
            sorted(
                (repr(slot), producer, fold_map.consumer, fold_map.producer)
                for producer, slot, fold_map in graph.in_edges(node)
            )
        )
        key = (op, operands)
        original = seen.setdefault(key, node)
        if original == node:
            continue
        graph.replace_all_uses(node, original)
        graph.erase(node)
        merged = True
    return merged
