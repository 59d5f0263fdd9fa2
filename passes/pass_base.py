"""`Pass`: the unit of work of a pipeline, and `PassContext`: what a running pass may ask for.

A pass is a frozen attrs class whose fields are its options, so that a pass object is a value:
it prints back to the pipeline text it was parsed from, compares equal to another with the same
options, and can be shared between pipelines. A simple pass implements `apply(graph) -> bool`
(mutate in place, say whether anything changed: running to a fixed point and keeping analyses
fresh rely on it). A pass that reads analyses, counts what it did or hands a result back
implements `run(graph, context) -> bool` instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.graph import Graph
from cirkit_ir.passes.options import format_option, option_types

A = TypeVar("A")


def option_name(field: str) -> str:
    """The pipeline spelling of an option: fields use underscores, pipelines use dashes."""
    return field.replace("_", "-")


@attrs.frozen
class Pass:
    """Base class of every pass. Subclasses get `name` from `register_pass` and implement
    `apply`, or `run` when they need the context.

    `preserves` lists the analysis classes that stay valid when the pass changes the graph;
    every other cached analysis is dropped after a pass that reports a change.
    """

    name: ClassVar[str] = ""
    preserves: ClassVar[tuple[type, ...]] = ()

    def apply(self, graph: Graph) -> bool:
        """Rewrites `graph` in place; True if and only if anything changed.

        A pass that implements `run` instead can still be applied directly: it then runs with
        a context of its own (fresh analyses; counters and result are dropped).
        """
        if type(self).run is Pass.run:
            raise NotImplementedError(f"{type(self).__name__} implements neither apply() nor run()")
        return bool(self.run(graph, PassContext(AnalysisCache(graph), _run_standalone)))

    def run(self, graph: Graph, context: PassContext) -> bool:
        """What the pass manager calls: `apply(graph)` unless overridden. Override it to use
        `context.analysis(...)`, `context.statistics` or `context.publish(...)`."""
        return self.apply(graph)

    @classmethod
    def option_fields(cls) -> tuple[attrs.Attribute, ...]:
        """The options of the pass: its attrs fields that `__init__` takes."""
        return tuple(f for f in attrs.fields(cls) if f.init and not _is_nested_field(f))

    def pipeline_text(self) -> str:
        """The pass in pipeline syntax, every option spelled out (the canonical form)."""
        kinds = option_types(type(self))
        options = ",".join(
            f"{option_name(f.name)}={format_option(getattr(self, f.name), kinds[f.name])}"
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

    It runs its passes through `context.run_pipeline`, so that under a pass manager they are
    instrumented (timed, verified, printed) and share its analyses like top-level ones.
    """

    passes: tuple[Pass, ...] = attrs.field(
        default=(), converter=tuple, metadata={"nested_pipeline": True}, kw_only=True
    )

    def run(self, graph: Graph, context: PassContext) -> bool:
        return self.run_nested(graph, context.run_pipeline)

    def run_nested(self, graph: Graph, run: RunPasses) -> bool:
        """Runs the nested passes with `run(passes, graph) -> changed`."""
        raise NotImplementedError

    def pipeline_text(self) -> str:
        inner = ",".join(p.pipeline_text() for p in self.passes)
        return f"{super().pipeline_text()}({inner})"


# -- analyses and the context -------------------------------------------------------------------


class AnalysisCache:
    """Analyses of one graph, each computed once (`kind(graph)`) and kept until a pass changes
    the graph without declaring the analysis preserved."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._cached: dict[type, object] = {}

    def get(self, kind: type[A]) -> A:
        if not isinstance(kind, type):
            raise OptionError(
                f"context.analysis takes an analysis class (constructed from the graph),"
                f" got {kind!r}"
            )
        found = self._cached.get(kind)
        if found is None:
            found = self._cached[kind] = kind(self.graph)  # type: ignore[call-arg]
        return found  # type: ignore[return-value]

    def invalidate(self, preserved: tuple[type, ...] = ()) -> None:
        """Drops every analysis but the `preserved` ones (the graph changed)."""
        self._cached = {k: v for k, v in self._cached.items() if k in preserved}


RunWithAnalyses = Callable[[Sequence[Pass], Graph, AnalysisCache], bool]


class PassContext:
    """What a running pass may ask of whoever runs it (a `PassManager`, or `Pass.apply`).

    - `analysis(Kind)`: `Kind(graph)`, computed once and shared by the passes that follow until
      one changes the graph (and does not list `Kind` in its `preserves`);
    - `statistics`: counters, `context.statistics["rewrites"] += 1`, kept per pass execution
      and reported by `PassManager.statistics_report()`;
    - `publish(value)`: the pass's result, read back as `PassManager.results[name]`. Publishing
      is not a change: a pass that only analyses returns False;
    - `run_pipeline(passes, graph)`: runs passes as part of this one (nested pipelines).
    """

    def __init__(self, analyses: AnalysisCache, runner: RunWithAnalyses) -> None:
        self.statistics: Counter[str] = Counter()
        self.result: object = None
        self.published = False
        self._analyses = analyses
        self._runner = runner

    def analysis(self, kind: type[A]) -> A:
        """The analysis `kind` of the graph being run on, cached."""
        return self._analyses.get(kind)

    def publish(self, value: object) -> None:
        """Hands `value` to the pass manager as this pass's result (the last one published
        counts)."""
        self.result = value
        self.published = True

    def run_pipeline(self, passes: Sequence[Pass], graph: Graph) -> bool:
        """Runs `passes` on `graph` (instrumented under a pass manager); True if any changed.

        On the graph being run on, they share its analyses; on another graph (a clone, say),
        they get analyses of their own.
        """
        analyses = self._analyses if graph is self._analyses.graph else AnalysisCache(graph)
        return self._runner(passes, graph, analyses)


def run_pass(p: Pass, graph: Graph, context: PassContext) -> bool:
    """Runs one pass and drops the analyses its change made stale; True if it changed `graph`."""
    changed = bool(p.run(graph, context))
    if changed:
        context._analyses.invalidate(p.preserves)
    return changed


def _run_standalone(passes: Sequence[Pass], graph: Graph, analyses: AnalysisCache) -> bool:
    """Runs nested passes without a pass manager (a `PipelinePass` applied directly)."""
    changed = False
    for p in passes:
        changed = run_pass(p, graph, PassContext(analyses, _run_standalone)) or changed
    return changed
