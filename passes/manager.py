"""`PassManager`: runs a pipeline of passes over a graph, with instruments.

    pm = PassManager.parse("lower-semiring{semiring=lse-sum},fuse,fold", timing=True)
    graph = pm.run(graph)
    print(pm.timing_report())

Verification after every pass is on by default (it is what turns a wrong rewrite into an
error naming the pass). Passes that are `PipelinePass`es run their nested passes through the
manager, so those are instrumented too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from cirkit_ir.errors import ConvergenceError, OptionError
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
)
from cirkit_ir.passes.pass_base import Pass, PipelinePass, RunPasses
from cirkit_ir.passes.pipeline_parser import parse_pipeline

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


def _check_option(key: str, value: object) -> object:
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
    if key == "max_iterations" and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise OptionError(f"PassManager max_iterations must be an int >= 1, got {value!r}")
    if key == "instruments" and (
        isinstance(value, PassInstrument) or not isinstance(value, Iterable)
    ):
        raise OptionError(f"PassManager instruments must be a list of instruments, got {value!r}")
    return value


class PassManager:
    """A pipeline of passes and the instruments that watch it run.

    Args:
        passes: pass objects, or pipeline strings parsed and appended in order; or a single
            pipeline string.
        verify: verify the graph after every pass (VerificationError names the pass).
        print_ir_before / print_ir_after: pass names (or 'all') to print the IR around.
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
        verify: bool = True,
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
            _check_option(key, value)
        print_ir_before = _check_option("print_ir_before", print_ir_before)  # type: ignore[assignment]
        print_ir_after = _check_option("print_ir_after", print_ir_after)  # type: ignore[assignment]
        instruments = _check_option("instruments", instruments)  # type: ignore[assignment]
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
        self._stats: OpStatistics | None = None
        self._active: list[PassInstrument] = []
        self._overhead = 0.0
        self._count = 0

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def parse(cls, pipeline: str, **options: object) -> PassManager:
        """A manager for a pipeline string; keyword options as for the constructor."""
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
            setattr(self, key, _check_option(key, value))
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
        """Runs every pass on `graph`, in place, and returns it."""
        self._active = self._instruments()
        self._overhead = 0.0
        self._count = 0
        with gc_paused(self.pause_gc):
            self._call("before_pipeline", graph)
            if self.fixed_point:
                run_to_fixed_point(
                    self.passes, graph, self._run_passes, self.max_iterations, "pipeline"
                )
            else:
                self._run_passes(self.passes, graph)
            self._call("after_pipeline", graph)
        return graph

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

    def _run_passes(self, passes: Sequence[Pass], graph: Graph, path: tuple[str, ...] = ()) -> bool:
        changed = False
        for p in passes:
            changed = self._run_one(p, graph, path) or changed
        return changed

    def _run_one(self, p: Pass, graph: Graph, path: tuple[str, ...]) -> bool:
        self._count += 1
        step = PassStep(self._count, (*path, p.name), p)
        self._call("before_pass", step, graph)
        overhead_before = self._overhead
        start = time.perf_counter()
        if isinstance(p, PipelinePass):
            changed = p.run_nested(graph, lambda ps, g: self._run_passes(ps, g, step.path))
        else:
            changed = bool(p.apply(graph))
        seconds = time.perf_counter() - start - (self._overhead - overhead_before)
        self._call("after_pass", step, graph, changed, seconds)
        return changed

    # -- reports ------------------------------------------------------------------------------

    def timing_report(self) -> str:
        """Wall time per pass of the last run, as a table."""
        return self.timing.report()

    @property
    def pass_statistics(self) -> list[PassStatistics]:
        """Op counts around each pass of the last run (needs `statistics=True`)."""
        return list(self._stats.records) if self._stats is not None else []

    def statistics_report(self) -> str:
        if self._stats is None:
            return "no statistics: create the PassManager with statistics=True"
        return self._stats.report()


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
