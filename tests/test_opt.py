"""`cirkit-opt` beyond the FileCheck files (tests/ir): output files, stdin, exit codes, the
console script and `python -m`, and that its output reads back to the same IR."""

from __future__ import annotations

import io
import runpy
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from cirkit_ir.ir import parse_ir, print_ir
from cirkit_ir.opt import main

IR_DIR = Path(__file__).parent / "ir"
FUSE = IR_DIR / "fuse.ir"


def test_output_file_and_stdin(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.ir"
    assert main(["-p", "fold", str(FUSE), "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(sys, "stdin", io.StringIO(FUSE.read_text()))
    assert main(["-p", "fold"]) == 0
    assert capsys.readouterr().out == out.read_text()
    monkeypatch.setattr(sys, "stdin", io.StringIO(FUSE.read_text()))
    assert main(["-p", "fold", "-"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_output_reads_back_and_is_a_fixed_point(tmp_path, capsys):
    """Printing is canonical: cirkit-opt on its own output (no passes) prints it again."""
    assert main(["-p", "fold,lower-semiring,fuse", str(FUSE)]) == 0
    first = capsys.readouterr().out
    (tmp_path / "again.ir").write_text(first)
    assert main([str(tmp_path / "again.ir")]) == 0
    assert capsys.readouterr().out == first
    assert print_ir(parse_ir(first), locations=True) == first


def test_errors_exit_1_and_write_no_output_file(tmp_path, capsys):
    out = tmp_path / "out.ir"
    bad = tmp_path / "bad.ir"
    bad.write_text("graph {num_variables=1}\n%0 = tensor() : 1x\n")
    assert main([str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:2:")
    assert ": error: " in err and err.rstrip().endswith("^")
    assert not out.exists()
    assert main(["-p", "fold,", str(FUSE)]) == 1
    assert "error: " in capsys.readouterr().err
    assert main(["-p", "nope", str(FUSE)]) == 1
    assert capsys.readouterr().err.startswith("cirkit-opt: error: unknown pass 'nope'")
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "missing.ir")])
    assert exit_.value.code == 1
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--emit=pdf", str(FUSE)])
    assert exit_.value.code == 2  # argparse's usage error


def test_python_dash_m_and_console_script(monkeypatch, capsys):
    """`python -m cirkit_ir.opt` runs the module as __main__ (run here with runpy, which is
    what -m does, without starting another Python); the console script names the same
    entry point."""
    monkeypatch.setattr(sys, "argv", ["cirkit_ir.opt", "-p", "fuse", str(FUSE)])
    monkeypatch.delitem(sys.modules, "cirkit_ir.opt")  # as in a fresh `python -m`
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("cirkit_ir.opt", run_name="__main__", alter_sys=True)
    assert exit_.value.code == 0
    assert "tucker(" in capsys.readouterr().out
    (script,) = entry_points(group="console_scripts", name="cirkit-opt")
    assert script.value == "cirkit_ir.opt:entry_point"
