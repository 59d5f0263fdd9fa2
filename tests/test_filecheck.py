"""FileCheck tests of passes and of `cirkit-opt`: every `tests/ir/*.ir` file, run as lit would.

A file holds IR (or nothing, for flags that need no input) and lit-style lines:

    // RUN: cirkit-opt -p fold %s | filecheck %s
    // RUN: not cirkit-opt %s 2>&1 | filecheck %s --check-prefix=ERR
    // CHECK: %3 = dense(...

Each RUN line is one `cirkit-opt` command (`%s`: this file), optionally with `not` (it must
exit 1), `2>&1` (check stderr too), and piped into `filecheck` with its options. The commands
run in this process (`cirkit_ir.opt.main`, no shell, no Python start-up per line) and the
checks run with the `filecheck` package (LLVM FileCheck's syntax and messages).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from filecheck.matcher import Matcher
from filecheck.options import Options

from cirkit_ir.opt import main as cirkit_opt

IR_DIR = Path(__file__).parent / "ir"
_RUN = re.compile(r"^//\s*RUN:\s*(.*)$", re.M)


def _run_lines(path: Path) -> list[str]:
    return [m.group(1).strip() for m in _RUN.finditer(path.read_text())]


def _check(path: Path, command: str, tmp_path: Path) -> None:
    left, bar, right = command.partition("|")
    words = shlex.split(left.replace("%s", shlex.quote(str(path))))
    expect_failure = words[:1] == ["not"]
    words = words[1:] if expect_failure else words
    merge = "2>&1" in words
    words = [w for w in words if w != "2>&1"]
    assert words[0] == "cirkit-opt", f"{path.name}: RUN lines run cirkit-opt, got {command!r}"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err if not merge else out):
        try:
            code = cirkit_opt(words[1:])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    assert code == (1 if expect_failure else 0), (
        f"{path.name}: `{command}` exited with {code}\n{out.getvalue()}{err.getvalue()}"
    )
    if not bar:
        return
    checker = shlex.split(right.replace("%s", shlex.quote(str(path))))
    assert checker[0] == "filecheck", f"{path.name}: pipe into filecheck, got {right!r}"
    produced = tmp_path / "output.txt"
    produced.write_text(out.getvalue())
    options: dict[str, object] = {}
    for word in checker[2:]:
        key, _, value = word.lstrip("-").partition("=")
        options[key.replace("-", "_")] = value or True
    if "check_prefix" in options:
        options["check_prefixes"] = options.pop("check_prefix")
    report = io.StringIO()
    opts = Options(match_filename=checker[1], input_file=str(produced), **options)
    with contextlib.redirect_stdout(report), contextlib.redirect_stderr(report):
        status = Matcher.from_opts(opts).run()
    assert status == 0, f"{path.name}: `{command}`\n{report.getvalue()}"


CASES = [
    pytest.param(path, line, id=f"{path.stem}:{i}")
    for path in sorted(IR_DIR.glob("*.ir"))
    for i, line in enumerate(_run_lines(path))
]


@pytest.mark.parametrize("path, command", CASES)
def test_ir_file(path: Path, command: str, tmp_path: Path) -> None:
    _check(path, command, tmp_path)


def test_every_registered_pass_has_a_file() -> None:
    """Each pass the library registers is run by some RUN line (a new pass needs its FileCheck
    test); passes that other tests register are theirs."""
    from cirkit_ir.passes import registered_passes

    runs = " ".join(line for path in IR_DIR.glob("*.ir") for line in _run_lines(path))
    builtin = [
        n for n, cls in registered_passes().items() if cls.__module__.startswith("cirkit_ir.")
    ]
    missing = [name for name in builtin if not re.search(rf"\b{name}\b", runs)]
    assert not missing, f"passes with no FileCheck test in tests/ir: {missing}"


def test_a_failing_check_fails(tmp_path: Path) -> None:
    """The runner really checks: a wrong CHECK line is reported."""
    bad = tmp_path / "bad.ir"
    bad.write_text(
        "// RUN: cirkit-opt --no-verify-each %s | filecheck %s\n// CHECK: no-such-op\n"
        "graph {num_variables=1}\nreturn\n"
    )
    with pytest.raises(AssertionError, match="no-such-op"):
        _check(bad, _run_lines(bad)[0], tmp_path)
