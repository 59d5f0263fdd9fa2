"""Pass instruments: hooks that watch a pipeline run without being part of it.

Like MLIR's PassInstrumentation, an instrument sees every pass before and after it runs
(nested sub-pipelines included) and the graph as it is then. The pass manager times each
instrument separately, so that the timing report can tell pass time from checking time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, ClassVar

import attrs

from cirkit_ir.ir.graph import Graph
from cirkit_ir.passes.pass_base import Pass


@attrs.frozen
class PassStep:
    """One execution of a pass: its running number in the run and where it sits."""

    index: int
    path: tuple[str, ...]
    pass_: Pass

    @property
    def name(self) -> str:
        """The pass's name, prefixed by the enclosing passes': `fixed-point/fuse`."""
        return "/".join(self.path)


class PassInstrument:
    """Base class; every hook does nothing unless overridden."""

    name: ClassVar[str] = "instrument"

    def before_pipeline(self, graph: Graph) -> None:
        """Called once when a run starts."""

    def before_pass(self, step: PassStep, graph: Graph) -> None:
        """Called before a pass runs."""

    def after_pass(self, step: PassStep, graph: Graph, changed: bool, seconds: float) -> None:
        """Called after a pass ran; `seconds` is the pass's own wall time."""

    def after_pipeline(self, graph: Graph) -> None:
        """Called once when a run ends normally."""


# -- verification -------------------------------------------------------------------------------


class VerifyEach(PassInstrument):
    """Verifies the graph after every pass, so that a broken graph names the pass at fault."""

    name: ClassVar[str] = "verify"

    def __init__(self, check_scopes: bool = True) -> None:
        self.check_scopes = check_scopes

    def after_pass(self, step: PassStep, graph: Graph, changed: bool, seconds: float) -> None:
        from cirkit_ir.ir.verify import verify

        verify(graph, pass_name=step.name, check_scopes=self.check_scopes)


# -- printing -------------------------------------------------------------------------------------


def selected_passes(value: str | Iterable[str] | bool | None) -> frozenset[str] | bool:
    """Pass names to print around: a name, names (a list, or one string with commas), 'all'
    (or True) for every pass."""
    if value is True:
        return True
    if not value:
        return frozenset()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = frozenset(value)
    return True if "all" in names else names


def ir_dump_header(when: str, pass_: Pass, name: str | None = None) -> str:
    """The line above an IR dump, MLIR style: `// -----// IR Dump After fold (fold) //----- //`.

    `when` is 'before' or 'after'; then come the pass's pipeline text (which is one line: the
    option printer escapes line breaks) and its name, or `name` (a nested pass's path). IR
    text has no line starting with `//`, so a stream of dumps splits at these lines.
    """
    return (
        f"// -----// IR Dump {when.capitalize()} {pass_.pipeline_text()}"
        f" ({pass_.name if name is None else name}) //----- //"
    )


class PrintIR(PassInstrument):
    """Prints the IR before and/or after chosen passes, to a stream or into a directory.

    `before` / `after` take pass names ('all' for every pass). With `directory`, each dump
    goes to its own file, `NNN-{before|after}-{pass}.ir`, numbered in run order, holding the
    IR alone; otherwise each is written to `stream` (default: sys.stdout at the time of
    printing): its `ir_dump_header` line, the IR as `print_ir` prints it, and a blank line.
    `only_changed` skips the dump after a pass that changed nothing.
    """

    name: ClassVar[str] = "print-ir"

    def __init__(
        self,
        before: str | Iterable[str] | bool = (),
        after: str | Iterable[str] | bool = (),
        *,
        stream: IO[str] | None = None,
        directory: str | os.PathLike[str] | None = None,
        only_changed: bool = False,
        summary: bool = False,
    ) -> None:
        self.before = selected_passes(before)
        self.after = selected_passes(after)
        self.stream = stream
        self.directory = Path(directory) if directory is not None else None
        self.only_changed = only_changed
        self.summary = summary
        self.files: list[Path] = []
        self._count = 0

    def before_pipeline(self, graph: Graph) -> None:
        self._count = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _wants(names: frozenset[str] | bool, step: PassStep) -> bool:
        return names is True or step.pass_.name in names or step.name in names  # type: ignore[operator]

    def before_pass(self, step: PassStep, graph: Graph) -> None:
        if self._wants(self.before, step):
            self._dump("before", step, graph)

    def after_pass(self, step: PassStep, graph: Graph, changed: bool, seconds: float) -> None:
        if self._wants(self.after, step) and (changed or not self.only_changed):
            self._dump("after", step, graph)

    def _dump(self, when: str, step: PassStep, graph: Graph) -> None:
        from cirkit_ir.ir.printer import print_ir

        text = print_ir(graph, summary=self.summary)
        self._count += 1
        if self.directory is not None:
            safe = step.name.replace("/", ".")
            path = self.directory / f"{self._count:03d}-{when}-{safe}.ir"
            path.write_text(text if text.endswith("\n") else text + "\n")
            self.files.append(path)
            return
        stream = self.stream if self.stream is not None else sys.stdout
        body = text if text.endswith("\n") else text + "\n"
        stream.write(f"{ir_dump_header(when, step.pass_, step.name)}\n{body}\n")


# -- timing ---------------------------------------------------------------------------------------


@attrs.define
class TimingRecord:
    """Wall time of one pass path, summed over its runs (fixed points run passes often)."""

    path: tuple[str, ...]
    seconds: float = 0.0
    runs: int = 0


class PassTiming(PassInstrument):
    """Per-pass wall times, reported as a table (`report()`)."""

    name: ClassVar[str] = "timing"

    def __init__(self) -> None:
        self.records: dict[tuple[str, ...], TimingRecord] = {}
        self.overhead: dict[str, float] = {}
        self.total = 0.0
        self._start = 0.0

    def before_pipeline(self, graph: Graph) -> None:
        self.records.clear()
        self.overhead.clear()
        self._start = time.perf_counter()

    def before_pass(self, step: PassStep, graph: Graph) -> None:
        self.records.setdefault(step.path, TimingRecord(step.path))  # rows in start order

    def after_pass(self, step: PassStep, graph: Graph, changed: bool, seconds: float) -> None:
        record = self.records.setdefault(step.path, TimingRecord(step.path))
        record.seconds += seconds
        record.runs += 1

    def after_pipeline(self, graph: Graph) -> None:
        self.total = time.perf_counter() - self._start

    def report(self) -> str:
        """The table: one row per pass (nested ones indented), then instrument overheads."""
        top = sum(r.seconds for r in self.records.values() if len(r.path) == 1)
        overhead = sum(self.overhead.values())
        total = max(self.total, top + overhead)
        rule = "===" + "-" * 66 + "==="
        lines = [
            rule,
            "Pass execution timing report".center(len(rule)).rstrip(),
            rule,
            f"  Total execution time: {total * 1e3:.3f} ms",
            "",
            f"  {'Wall time (ms)':>14}  {'%':>6}  {'Runs':>5}  Name",
        ]

        def row(seconds: float, runs: str, name: str) -> str:
            share = 100.0 * seconds / total if total > 0 else 0.0
            return f"  {seconds * 1e3:14.3f}  {share:6.1f}  {runs:>5}  {name}"

        for record in self.records.values():
            indent = "  " * (len(record.path) - 1)
            lines.append(row(record.seconds, str(record.runs), indent + record.path[-1]))
        for name, seconds in self.overhead.items():
            lines.append(row(seconds, "-", f"({name})"))
        other = total - top - overhead
        if other > 5e-6:
            lines.append(row(other, "-", "(pass manager)"))
        lines.append(row(total, "-", "Total"))
        return "\n".join(lines)


# -- statistics -----------------------------------------------------------------------------------


@attrs.frozen
class PassStatistics:
    """Op counts by op name before and after one pass execution."""

    step: int
    path: tuple[str, ...]
    before: dict[str, int]
    after: dict[str, int]
    changed: bool

    @property
    def name(self) -> str:
        return "/".join(self.path)

    def delta(self) -> dict[str, int]:
        """after - before per op name (names that did not change count are left out)."""
        names = dict.fromkeys([*self.before, *self.after])
        diff = {n: self.after.get(n, 0) - self.before.get(n, 0) for n in names}
        return {n: d for n, d in diff.items() if d}


class OpStatistics(PassInstrument):
    """Counts ops per op type before and after each pass (`report()` makes a table)."""

    name: ClassVar[str] = "statistics"

    def __init__(self) -> None:
        self.records: list[PassStatistics] = []
        self._before: dict[str, int] = {}

    def before_pipeline(self, graph: Graph) -> None:
        self.records.clear()

    def before_pass(self, step: PassStep, graph: Graph) -> None:
        self._before = graph.op_counts()

    def after_pass(self, step: PassStep, graph: Graph, changed: bool, seconds: float) -> None:
        self.records.append(
            PassStatistics(step.index, step.path, self._before, graph.op_counts(), changed)
        )

    def report(self) -> str:
        """One block per pass execution: every op name with its count before and after."""
        return "\n".join(
            line
            for record in self.records
            for line in statistics_block(record.step, record.name, record, {})
        )


def statistics_block(
    index: int, name: str, ops: PassStatistics | None, counters: Mapping[str, object]
) -> list[str]:
    """The lines of one pass execution in a statistics report: its op counts before and after
    (when counted), then its own counters, MLIR style `(S) 12 rewrites`."""
    if ops is None:
        lines = [f"{index}. {name}"]
    else:
        before, after = sum(ops.before.values()), sum(ops.after.values())
        lines = [f"{index}. {name}: {before} -> {after} ops"]
        for n in sorted(set(ops.before) | set(ops.after)):
            b, a = ops.before.get(n, 0), ops.after.get(n, 0)
            mark = f"  ({a - b:+d})" if a != b else ""
            lines.append(f"     {n:<16} {b:>7} -> {a:<7}{mark}")
    lines.extend(f"     (S) {value:>7} {counter}" for counter, value in counters.items())
    return lines
