"""`PassManager`: runs a pipeline of passes over a graph, with instruments.

    pm = PassManager.parse("lower-semiring{semiring=lse-sum},fuse,fold", timing=True)
    graph = pm.run(graph)
    print(pm.timing_report())

Each pass runs with a `PassContext` that the manager makes: analyses cached for the run and
dropped when a pass changes the graph, counters, and a result, all kept in `pm.records` (one
`PassRecord` per pass execution). Nested pipelines (`PipelinePass`) run their passes through
the manager, so those are instrumented and recorded too. Verification after every pass turns a
wrong rewrite into an error naming the pass; `DEFAULT_VERIFY` says whether it is on unless
asked (`PipelineContext` reads the same constant).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

import attrs

from cirkit_ir.errors import ConvergenceError, OptionError, StructureError
from cirkit_ir.gc_pause import gc_paused
from cirkit_ir.ir.graph import Graph
from cirkit_ir.passes.instruments import (
    OpStatistics,
    PassInstrument,
    PassStatistics,
    PassStep,
    PassTiming,
    PrintIR,
    VerifyEach,
    selected_passes,
    statistics_block,
)
from cirkit_ir.passes.pass_base import AnalysisCache, Pass, PassContext, RunPasses, run_pass
from cirkit_ir.passes.pipeline_parser import parse_pipeline
from cirkit_ir.passes.registry import check_pass_names

DEFAULT_VERIFY = False
"""Whether `PassManager` and `PipelineContext` verify the IR after every pass unless told.

Off: verifying after each pass costs more than the passes of a compilation, and the final IR
is verified by `PipelineContext` either way. Turn it on (`verify=True`) to find which pass
breaks the IR."""

_OPTIONS = (
    "verify",
    "print_ir_before",
    "print_ir_after",
    "print_ir_to",
    "print_ir_only_changed",
    "statistics",
    "fixed_point",
    "max_iterations",
    "instruments",
    "pause_gc",
)
"""The constructor options that `PassManager.configure` may set (not `passes`, methods or
private state, which a stray keyword would otherwise overwrite)."""


_FLAGS = ("verify", "print_ir_only_changed", "statistics", "fixed_point", "pause_gc")


def check_option(key: str, value: object) -> object:
    """`value`, or an `OptionError` for a value the option cannot take (it would fail, or be
    read wrongly, only once the pipeline runs). `print_ir_to` is checked where it is opened.
    A one-shot iterator of names or instruments comes back as a tuple, read once here."""
    if key in ("print_ir_before", "print_ir_after", "instruments") and isinstance(value, Iterator):
        value = tuple(value)
    if key in _FLAGS and not isinstance(value, bool):
        raise OptionError(f"PassManager {key} must be True or False, got {value!r}")
    if key in ("print_ir_before", "print_ir_after") and not (
        isinstance(value, bool | str)
        or (isinstance(value, Iterable) and all(isinstance(v, str) for v in value))  # type: ignore[union-attr]
    ):
        raise OptionError(
            f"PassManager {key} takes a pass name, a list of pass names, 'all' or a bool;"
            f" got {value!r}"
        )
    if key in ("print_ir_before", "print_ir_after"):
        names = selected_passes(value)  # type: ignore[arg-type]
        check_pass_names(() if isinstance(names, bool) else names, key)
    if key == "max_iterations" and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise OptionError(f"PassManager max_iterations must be an int >= 1, got {value!r}")
    if key == "instruments" and (
        isinstance(value, PassInstrument) or not isinstance(value, Iterable)
    ):
        raise OptionError(f"PassManager instruments must be a list of instruments, got {value!r}")
    if key == "instruments":
        value = tuple(value)  # type: ignore[arg-type]
        for item in value:
            if not isinstance(item, PassInstrument):
                raise OptionError(
                    f"PassManager instruments must be PassInstrument objects, got"
                    f" {type(item).__name__} {item!r}"
                )
    if key == "print_ir_to" and not (
        value is None
        or isinstance(value, str | os.PathLike)
        or callable(getattr(value, "write", None))
    ):
        raise OptionError(
            f"PassManager print_ir_to takes a text stream, a directory path or None, got"
            f" {type(value).__name__} {value!r}"
        )
    return value


@attrs.frozen
class PassRecord:
    """One pass execution in a run: whether it changed the graph, its own wall time, its
    counters (`context.statistics`) and the result it published, if any."""

    step: PassStep
    changed: bool
    seconds: float
    statistics: dict[str, int]
    result: object = None
    published: bool = False

    @property
    def name(self) -> str:
        """The pass's path: `fuse`, or `fixed-point/fuse` inside a nested pipeline."""
        return self.step.name


class PassManager:
    """A pipeline of passes and the instruments that watch it run.

    Args:
        passes: pass objects, or pipeline strings parsed and appended in order; or a single
            pipeline string.
        verify: verify the graph after every pass (VerificationError names the pass); the
            default is `DEFAULT_VERIFY`.
        print_ir_before / print_ir_after: pass names (or 'all') to print the IR around; a
            name that is no registered pass is an OptionError listing close matches.
        print_ir_to: a text stream, or a directory path (one file per dump); default stdout.
        print_ir_only_changed: skip dumps after passes that changed nothing.
        statistics: count ops per type before and after each pass (`statistics_report()`).
        fixed_point: rerun the whole pipeline until a round changes nothing, at most
            `max_iterations` rounds (ConvergenceError beyond).
        instruments: more `PassInstrument`s, called after the built-in ones.
        pause_gc: keep Python's cyclic garbage collector off while the pipeline runs. Passes
            allocate many small objects, and each collection they trigger walks the whole
            (large, acyclic) graph: this alone can double compile time.
    """

    def __init__(
        self,
        passes: Iterable[Pass | str] = (),
        *,
        verify: bool = DEFAULT_VERIFY,
        print_ir_before: str | Iterable[str] | bool = (),
        print_ir_after: str | Iterable[str] | bool = (),
        print_ir_to: IO[str] | str | os.PathLike[str] | None = None,
        print_ir_only_changed: bool = False,
        statistics: bool = False,
        fixed_point: bool = False,
        max_iterations: int = 10,
        instruments: Iterable[PassInstrument] = (),
        pause_gc: bool = True,
    ) -> None:
        self.passes: list[Pass] = []
        if isinstance(passes, Pass) or not isinstance(passes, Iterable):
            raise OptionError(
                f"PassManager takes a list of passes (or one pipeline string), got {passes!r}"
            )
        for p in [passes] if isinstance(passes, str) else passes:
            self.add(p)
        for key, value in (
            ("verify", verify),
            ("print_ir_only_changed", print_ir_only_changed),
            ("statistics", statistics),
            ("fixed_point", fixed_point),
            ("max_iterations", max_iterations),
            ("pause_gc", pause_gc),
        ):
            check_option(key, value)
        print_ir_before = check_option("print_ir_before", print_ir_before)  # type: ignore[assignment]
        print_ir_after = check_option("print_ir_after", print_ir_after)  # type: ignore[assignment]
        instruments = check_option("instruments", instruments)  # type: ignore[assignment]
        check_option("print_ir_to", print_ir_to)
        self.verify = verify
        self.print_ir_before = print_ir_before
        self.print_ir_after = print_ir_after
        self.print_ir_to = print_ir_to
        self.print_ir_only_changed = print_ir_only_changed
        self.statistics = statistics
        self.fixed_point = fixed_point
        self.max_iterations = max_iterations
        self.instruments: list[PassInstrument] = list(instruments)
        self.pause_gc = pause_gc
        self.timing = PassTiming()
        self.records: list[PassRecord] = []  # the last run's, in the order the passes ended
        self._stats: OpStatistics | None = None
        self._active: list[PassInstrument] = []
        self._overhead = 0.0
        self._count = 0

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def parse(cls, pipeline: str, **options: object) -> PassManager:
        """A manager for a pipeline string; keyword options as for the constructor."""
        for key in options:
            if key not in _OPTIONS:
                raise OptionError.choose("PassManager option", key, _OPTIONS)
        return cls(parse_pipeline(pipeline), **options)  # type: ignore[arg-type]

    def add(self, item: Pass | str) -> PassManager:
        """Appends a pass, or the passes of a pipeline string; returns self."""
        if isinstance(item, str):
            self.passes.extend(parse_pipeline(item))
        elif isinstance(item, Pass):
            self.passes.append(item)
        else:
            raise OptionError(
                f"PassManager.add takes a Pass or a pipeline string, got"
                f" {type(item).__name__} {item!r}"
            )
        return self

    def configure(
        self, *, verify_each: bool | None = None, timing: bool = True, **options: object
    ) -> PassManager:
        """Sets constructor options after the fact (`verify_each` is `verify`); returns self.

        Timing is always collected (it costs two clock reads per pass); `timing` is accepted
        for symmetry with `PipelineContext`.
        """
        if verify_each is not None:
            options["verify"] = verify_each
        for key, value in options.items():
            if key not in _OPTIONS:
                raise OptionError.choose("PassManager option", key, (*_OPTIONS, "verify_each"))
            setattr(self, key, check_option(key, value))
        return self

    def add_instrument(self, instrument: PassInstrument) -> PassManager:
        self.instruments.append(instrument)
        return self

    def __str__(self) -> str:
        """The pipeline in canonical text form (every option spelled out)."""
        return ",".join(p.pipeline_text() for p in self.passes)

    def __repr__(self) -> str:
        return f"PassManager({str(self)!r})"

    # -- running ------------------------------------------------------------------------------

    def _instruments(self) -> list[PassInstrument]:
        active: list[PassInstrument] = [self.timing]
        if self.verify:
            active.append(VerifyEach())
        if self.print_ir_before or self.print_ir_after:
            to = self.print_ir_to
            is_dir = isinstance(to, str | os.PathLike)
            active.append(
                PrintIR(
                    self.print_ir_before,
                    self.print_ir_after,
                    stream=None if is_dir else to,  # type: ignore[arg-type]
                    directory=to if is_dir else None,  # type: ignore[arg-type]
                    only_changed=self.print_ir_only_changed,
                )
            )
        self._stats = OpStatistics() if self.statistics else None
        if self._stats is not None:
            active.append(self._stats)
        return active + self.instruments

    def run(self, graph: Graph) -> Graph:
        """Runs every pass on `graph`, in place, and returns it (`records` and `results`
        then describe this run)."""
        self._active = self._instruments()
        self._overhead = 0.0
        self._count = 0
        self.records = []
        analyses = AnalysisCache(graph)
        with gc_paused(self.pause_gc):
            self._call("before_pipeline", graph)
            if self.fixed_point:
                run_to_fixed_point(
                    self.passes,
                    graph,
                    lambda ps, g: self._run_passes(ps, g, analyses, ()),
                    self.max_iterations,
                    "pipeline",
                )
            else:
                self._run_passes(self.passes, graph, analyses, ())
            self._call("after_pipeline", graph)
        return graph

    @property
    def results(self) -> dict[str, object]:
        """What the passes of the last run published (`context.publish`), by pass path
        (`count-ops`, `fixed-point/count-ops`); for a pass that ran more than once, the
        latest. Passes that published nothing are absent."""
        return {r.name: r.result for r in self.records if r.published}

    def _call(self, hook: str, *args: object) -> None:
        for instrument in self._active:
            if instrument is self.timing:
                getattr(instrument, hook)(*args)
                continue
            start = time.perf_counter()
            getattr(instrument, hook)(*args)
            spent = time.perf_counter() - start
            self._overhead += spent
            overhead = self.timing.overhead
            overhead[instrument.name] = overhead.get(instrument.name, 0.0) + spent

    def _run_passes(
        self, passes: Sequence[Pass], graph: Graph, analyses: AnalysisCache, path: tuple[str, ...]
    ) -> bool:
        changed = False
        for p in passes:
            changed = self._run_one(p, graph, analyses, path) or changed
        return changed

    def _run_one(
        self, p: Pass, graph: Graph, analyses: AnalysisCache, path: tuple[str, ...]
    ) -> bool:
        self._count += 1
        step = PassStep(self._count, (*path, p.name), p)
        context = PassContext(analyses, lambda ps, g, a: self._run_passes(ps, g, a, step.path))
        self._call("before_pass", step, graph)
        overhead_before = self._overhead
        start = time.perf_counter()
        try:
            changed = run_pass(p, graph, context)
        except StructureError as error:
            raise self._in_pass(error, step) from None
        seconds = time.perf_counter() - start - (self._overhead - overhead_before)
        self.records.append(
            PassRecord(
                step, changed, seconds, dict(context.statistics), context.result, context.published
            )
        )
        self._call("after_pass", step, graph, changed, seconds)
        return changed

    def _in_pass(self, error: StructureError, step: PassStep) -> StructureError:
        """`error` (a cycle, say) with the pass it surfaced in and the pass before it named."""
        before = f"; the pass before it was '{self.records[-1].name}'" if self.records else ""
        hint = "" if self.verify else " (verify=True checks the graph after every pass)"
        return StructureError(f"{error} (in pass '{step.name}'{before}){hint}")

    # -- reports ------------------------------------------------------------------------------

    def timing_report(self) -> str:
        """Wall time per pass of the last run, as a table."""
        return self.timing.report()

    @property
    def pass_statistics(self) -> list[PassStatistics]:
        """Op counts around each pass of the last run (needs `statistics=True`)."""
        return list(self._stats.records) if self._stats is not None else []

    def statistics_report(self) -> str:
        """Per pass execution of the last run: op counts before and after (with
        `statistics=True`) and the pass's own counters (`context.statistics`)."""
        ops = {r.step: r for r in self.pass_statistics}
        lines = [
            line
            for r in self.records
            if r.step.index in ops or r.statistics
            for line in statistics_block(r.step.index, r.name, ops.get(r.step.index), r.statistics)
        ]
        if not lines:
            return (
                "no statistics: create the PassManager with statistics=True to count ops, and"
                " count in passes with context.statistics"
            )
        return "\n".join(lines)


def run_to_fixed_point(
    passes: Sequence[Pass],
    graph: Graph,
    run: RunPasses,
    max_iterations: int,
    what: str,
) -> bool:
    """Runs `passes` in rounds until a round changes nothing; True if any round changed.

    ConvergenceError when `max_iterations` rounds all changed the graph.
    """
    changed = False
    for _ in range(max_iterations):
        if not run(passes, graph):
            return changed
        changed = True
    names = ",".join(p.pipeline_text() for p in passes)
    raise ConvergenceError(
        f"the {what} '{names}' still changed the graph after {max_iterations} rounds; a pass"
        " may report a change when there is none, or two passes undo each other"
        " (raise max-iterations if the graph really needs more rounds)"
    )
