"""`Pass`: the unit of work of a pipeline.

A pass is a frozen attrs class whose fields are its options, so that a pass object is a value:
it prints back to the pipeline text it was parsed from, compares equal to another with the same
options, and can be shared between pipelines. `apply` mutates the graph in place and says
whether anything changed, which is what running to a fixed point relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import attrs

from cirkit_ir.ir.graph import Graph
from cirkit_ir.passes.options import format_value


def option_name(field: str) -> str:
    """The pipeline spelling of an option: fields use underscores, pipelines use dashes."""
    return field.replace("_", "-")


@attrs.frozen
class Pass:
    """Base class of every pass. Subclasses set `name` (via `register_pass`) and `apply`."""

    name: ClassVar[str] = ""

    def apply(self, graph: Graph) -> bool:
        """Rewrites `graph` in place; True when anything changed."""
        raise NotImplementedError(f"{type(self).__name__} does not implement apply()")

    @classmethod
    def option_fields(cls) -> tuple[attrs.Attribute, ...]:
        """The options of the pass: its attrs fields that `__init__` takes."""
        return tuple(f for f in attrs.fields(cls) if f.init and not _is_nested_field(f))

    def pipeline_text(self) -> str:
        """The pass in pipeline syntax, every option spelled out (the canonical form)."""
        options = ",".join(
            f"{option_name(f.name)}={format_value(getattr(self, f.name))}"
            for f in self.option_fields()
        )
        return self.name + (f"{{{options}}}" if options else "")

    def __str__(self) -> str:
        return self.pipeline_text()


def _is_nested_field(field: attrs.Attribute) -> bool:
    return field.metadata.get("nested_pipeline", False)


RunPasses = Callable[[Sequence[Pass], Graph], bool]


@attrs.frozen
class PipelinePass(Pass):
    """A pass that runs a nested sub-pipeline, written `name{options}(pass,pass,...)`.

    The pass manager hands it `run` so that the nested passes are instrumented (timed,
    verified, printed) like top-level ones; called directly, it runs them plainly.
    """

    passes: tuple[Pass, ...] = attrs.field(
        default=(), converter=tuple, metadata={"nested_pipeline": True}, kw_only=True
    )

    def apply(self, graph: Graph) -> bool:
        return self.run_nested(graph, _run_plainly)

    def run_nested(self, graph: Graph, run: RunPasses) -> bool:
        """Runs the nested passes with `run(passes, graph) -> changed`."""
        raise NotImplementedError

    def pipeline_text(self) -> str:
        inner = ",".join(p.pipeline_text() for p in self.passes)
        return f"{super().pipeline_text()}({inner})"


def _run_plainly(passes: Sequence[Pass], graph: Graph) -> bool:
    changed = False
    for p in passes:
        changed = p.apply(graph) or changed
    return changed
