"""`fixed-point(...)`: run a nested sub-pipeline until it stops changing the graph."""

from __future__ import annotations

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.graph import Graph
from cirkit_ir.passes.manager import run_to_fixed_point
from cirkit_ir.passes.pass_base import PipelinePass, RunPasses
from cirkit_ir.passes.registry import register_pass


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise OptionError(f"max_iterations must be at least 1, got {value}")


@register_pass("fixed-point")
@attrs.frozen
class FixedPoint(PipelinePass):
    """Reruns its nested passes until a round changes nothing.

    Written `fixed-point{max-iterations=10}(fuse,canonicalize)`; ConvergenceError after
    `max_iterations` rounds that all changed the graph.
    """

    max_iterations: int = attrs.field(default=10, validator=_positive)

    def run_nested(self, graph: Graph, run: RunPasses) -> bool:
        return run_to_fixed_point(self.passes, graph, run, self.max_iterations, "fixed-point")
