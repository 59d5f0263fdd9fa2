"""`conjugate`: the circuit computing the complex conjugate of the original.

Every op of a circuit (sums, products, table lookups) and every built-in parameter op (exp,
log, softmax, products, ...) commutes with complex conjugation, so conjugating the circuit's
function conjugates its complex tensors: each gets a `conj` op that all its readers read
instead. The tensors stay shared, so training the conjugate trains the original. A circuit
without complex tensors is its own conjugate and is left unchanged.
"""

from __future__ import annotations

import attrs

from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import ConjugateOp, TensorOp
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass


@register_pass("conjugate")
@attrs.frozen
class Conjugate(Pass):
    """Conjugates every complex tensor, for all of its readers."""

    def run(self, graph: Graph, context: PassContext) -> bool:
        complex_tensors = [
            node
            for node, op in graph.ops()
            if isinstance(op, TensorOp) and op.dtype == "complex" and graph.users(node)
        ]
        for node in complex_tensors:
            op = graph.op(node)
            conj = graph.add_op(ConjugateOp(shape=op.shape), [node])  # type: ignore[attr-defined]
            graph.replace_all_uses(node, conj)
        context.statistics["tensors conjugated"] += len(complex_tensors)
        return bool(complex_tensors)
