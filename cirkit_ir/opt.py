"""`cirkit-opt`: the `mlir-opt` of cirkit-ir. Reads IR text, runs a pass pipeline, prints IR.

    cirkit-opt -p 'fold,lower-semiring{semiring=lse-sum},fuse,dce' circuit.ir
    cirkit-opt --template image_data --template-args '{"image_shape": [1, 4, 4], ...}'
    python -m cirkit_ir.opt --list-passes

Inputs are files (`-` or none: stdin); `--split-input-file` cuts each at `// -----` lines and
processes the pieces independently, joining their outputs with the same marker. The pass
manager's instruments do the reporting (`--print-ir-*`, `--time-passes`, `--pass-statistics`
all write to stderr, as mlir-opt's do); the result goes to stdout or `-o FILE`. Errors are
`file:line:col: error: message`, then the source line and a caret (mlir-opt's layout), and
the exit code is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from cirkit_ir.errors import CirkitIRError, IRParseError

SPLIT_MARKER = "// -----"
_SPLIT = re.compile(r"^//\s*-----\s*$", re.M)
_TEMPLATE_MODULES = (
    "cirkit_ir.templates.circuit_templates",
    "cirkit_ir.templates.pgms",
    "cirkit_ir.templates.tensor_factorizations",
)


class _Failure(Exception):
    """A diagnostic already formatted for stderr."""


# -- the command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from cirkit_ir.ir.types import SEMIRINGS

    p = argparse.ArgumentParser(
        prog="cirkit-opt",
        description="Run cirkit-ir passes over IR text (files or stdin) and print the result.",
    )
    p.add_argument("inputs", nargs="*", default=["-"], help="IR files ('-' or none: stdin)")
    p.add_argument("-p", "--passes", default="", metavar="PIPELINE", help="the pass pipeline")
    p.add_argument("-o", dest="output", metavar="FILE", help="write the result here")
    p.add_argument("--emit", choices=("ir", "torch-source"), default="ir")
    p.add_argument("--split-input-file", action="store_true")
    p.add_argument("--print-ir-before", action="append", default=[], metavar="PASS")
    p.add_argument("--print-ir-after", action="append", default=[], metavar="PASS")
    p.add_argument("--print-ir-after-all", action="store_true")
    p.add_argument(
        "--print-ir-after-change",
        action="store_true",
        help="print after a pass only when it changed the IR (after every pass if none named)",
    )
    p.add_argument(
        "--verify-each",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="verify the input and the IR after every pass (default: on)",
    )
    p.add_argument("--time-passes", action="store_true")
    p.add_argument("--pass-statistics", action="store_true")
    p.add_argument("--list-passes", action="store_true", help="list passes and their options")
    t = p.add_argument_group("templates (instead of input files)")
    t.add_argument("--template", metavar="NAME", help="e.g. image_data, hmm, cp")
    t.add_argument("--template-args", default="{}", metavar="JSON", help="keyword arguments")
    c = p.add_argument_group("compilation flags (PipelineContext's; run before --passes)")
    c.add_argument("--semiring", choices=SEMIRINGS)
    c.add_argument("--fold", action="store_true")
    c.add_argument("--optimize", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list_passes:
        sys.stdout.write(list_passes())
        return 0
    pipeline = _pipeline(args)
    try:  # a bad pipeline is the command line's fault, reported once, before any input
        from cirkit_ir.passes import parse_pipeline

        parse_pipeline(pipeline)
    except CirkitIRError as error:
        print(f"cirkit-opt: error: {error}", file=sys.stderr)
        return 1
    outputs: list[str] = []
    reports: list[str] = []
    failed = False
    for name, text, first_line in _sources(args):
        try:
            output, report = _process(args, pipeline, name, text, first_line)
        except _Failure as failure:
            print(failure, file=sys.stderr)
            failed = True
            continue
        outputs.append(output if output.endswith("\n") else output + "\n")
        reports += report
    result = (SPLIT_MARKER + "\n").join(outputs)
    if args.output and not failed:
        with open(args.output, "w") as f:
            f.write(result)
    else:
        sys.stdout.write(result)
        sys.stdout.flush()
    for report in reports:  # after the output, as mlir-opt prints its reports at exit
        print(report, file=sys.stderr)
    return 1 if failed else 0


def _pipeline(args: argparse.Namespace) -> str:
    from cirkit_ir.passes import default_pipeline

    steps = []
    if args.semiring is not None or args.fold or args.optimize:
        steps.append(default_pipeline(args.semiring or "sum-product", args.fold, args.optimize))
    if args.passes:
        steps.append(args.passes)
    return ",".join(steps)


def _sources(args: argparse.Namespace):
    """(name, text, number of its first line) per input piece."""
    if args.template is not None:
        yield f"<template {args.template}>", None, 1
        return
    for name in args.inputs:
        text = sys.stdin.read() if name == "-" else _read(name)
        shown = "<stdin>" if name == "-" else name
        if not args.split_input_file:
            yield shown, text, 1
            continue
        start, line = 0, 1
        for marker in _SPLIT.finditer(text):
            yield shown, text[start : marker.start()], line
            line += text.count("\n", start, marker.end()) + 1
            start = marker.end() + 1
        yield shown, text[start:], line


def _read(name: str) -> str:
    try:
        with open(name) as f:
            return f.read()
    except OSError as error:
        print(f"cirkit-opt: error: cannot read {name}: {error.strerror}", file=sys.stderr)
        raise SystemExit(1) from None


# -- one input -----------------------------------------------------------------------------------


def _process(
    args: argparse.Namespace, pipeline: str, name: str, text: str | None, first_line: int
) -> tuple[str, list[str]]:
    """(the output, the reports to print after it) for one input."""
    from cirkit_ir.ir import print_ir
    from cirkit_ir.passes import PassManager

    graph = _template_graph(args, name) if text is None else _parse(text, name, first_line)
    if args.verify_each:
        _verify_input(graph, name, text, first_line)
    try:
        after: list[str] | bool = list(args.print_ir_after)
        if args.print_ir_after_all or (args.print_ir_after_change and not after):
            after = True
        manager = PassManager.parse(
            pipeline,
            verify=args.verify_each,
            print_ir_before=list(args.print_ir_before),
            print_ir_after=after,
            print_ir_only_changed=args.print_ir_after_change,
            print_ir_to=sys.stderr,
            statistics=args.pass_statistics,
        )
        graph = manager.run(graph)
        reports = [manager.timing_report()] if args.time_passes else []
        if args.pass_statistics:
            reports.append(manager.statistics_report())
        if args.emit == "torch-source":
            from cirkit_ir.backends.torch import codegen

            return codegen(graph, seed=0, verify=args.verify_each).code, reports
    except CirkitIRError as error:
        raise _Failure(f"{name}: error: {error}") from None
    return print_ir(graph, locations=True), reports


def _verify_input(graph, name: str, text: str | None, first_line: int) -> None:
    """Verifies the input; an error about an op points at the line that defines it."""
    from cirkit_ir.errors import VerificationError
    from cirkit_ir.ir import verify

    try:
        verify(graph)
    except VerificationError as error:
        found = None
        if text is not None and isinstance(error.node, int):
            found = re.search(rf"^([ \t]*)%{error.node}[ \t]*=.*$", text, re.M)
        if found is None:
            raise _Failure(f"{name}: error: {error}") from None
        line = text.count("\n", 0, found.start()) + first_line
        column = len(found.group(1)) + 1
        raise _Failure(
            f"{name}:{line}:{column}: error: {error}\n{found.group(0)}\n{' ' * (column - 1)}^"
        ) from None


def _parse(text: str, name: str, first_line: int):
    from cirkit_ir.ir import parse_ir

    try:
        return parse_ir(text)
    except IRParseError as error:
        raise _Failure(diagnostic(name, text, error, first_line)) from None


def diagnostic(name: str, text: str, error: IRParseError, first_line: int = 1) -> str:
    """`name:line:col: error: message`, the source line and a caret under the column."""
    line = getattr(error, "line", None)
    column = getattr(error, "column", None)
    message = str(error).split("\n", 1)[0]
    if line is None or column is None:
        return f"{name}: error: {message}"
    message = re.sub(r"^line \d+, column \d+: ", "", message)
    source = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
    return (
        f"{name}:{line + first_line - 1}:{column}: error: {message}\n"
        f"{source}\n{' ' * (column - 1)}^"
    )


def _template_graph(args: argparse.Namespace, name: str):
    import importlib

    from cirkit_ir.ir import lower
    from cirkit_ir.symbolic.lowerable import lowerable

    modules = [importlib.import_module(m) for m in _TEMPLATE_MODULES]
    owners = [m for m in modules if args.template in getattr(m, "__all__", ())]
    function = getattr(owners[0], args.template) if args.template in templates() else None
    if function is None:
        known = ", ".join(templates())
        raise _Failure(f"{name}: error: no template named {args.template!r}; known: {known}")
    try:
        kwargs = json.loads(args.template_args)
    except json.JSONDecodeError as error:
        raise _Failure(f"{name}: error: --template-args is not JSON: {error}") from None
    if not isinstance(kwargs, dict):
        raise _Failure(f"{name}: error: --template-args must be a JSON object of keyword args")
    try:
        return lower(lowerable(function(**_tuples(kwargs))))
    except (CirkitIRError, TypeError) as error:
        raise _Failure(f"{name}: error: {error}") from None


def _tuples(value: Any) -> Any:
    """JSON arrays as tuples (templates take shapes as tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def templates() -> list[str]:
    """The names `--template` accepts."""
    import importlib

    names: list[str] = []
    for module in _TEMPLATE_MODULES:
        names += list(getattr(importlib.import_module(module), "__all__", ()))
    return [n for n in names if n.islower()]


# -- --list-passes -------------------------------------------------------------------------------


def list_passes() -> str:
    """Every registered pass: its name, the first line of its docstring, and its options
    with their types and defaults (in pipeline spelling)."""
    import attrs

    from cirkit_ir.passes import registered_passes
    from cirkit_ir.passes.options import format_option, option_types
    from cirkit_ir.passes.pass_base import option_name

    lines = ["Available passes:"]
    for name, cls in registered_passes().items():
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        lines.append(f"  {name}: {' '.join(doc.split())}")
        kinds = option_types(cls)
        for field in cls.option_fields():
            kind = kinds[field.name]
            if field.default is attrs.NOTHING:
                default = "required"
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                default = "default=" + format_option(field.default.factory(), kind)
            else:
                default = "default=" + format_option(field.default, kind)
            lines.append(f"    {option_name(field.name)}: {kind.describe()} ({default})")
    return "\n".join(lines) + "\n"


def entry_point() -> None:
    """The `cirkit-opt` console script."""
    raise SystemExit(main())


if __name__ == "__main__":
    entry_point()
