"""`dce`: dead-code elimination, dropping every op from which no output can be reached."""

from __future__ import annotations

import attrs

from cirkit_ir.ir.graph import Graph
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass


@register_pass("dce")
@attrs.frozen
class DeadCodeElimination(Pass):
    """Erases ops that no output reads, directly or through other ops (parameters included)."""

    def run(self, graph: Graph, context: PassContext) -> bool:
        erased = graph.erase_unused()
        context.statistics["erased ops"] += erased
        return erased > 0
