"""Rendering Graphviz text to files: the one place that runs the `dot` program.

Region graphs, symbolic circuits and IR graphs each write their own dot text (`to_dot`); this
module turns any of them into a picture.
"""

from __future__ import annotations

import shutil
import subprocess
from os import PathLike
from pathlib import Path

from cirkit_ir.errors import OptionError

FORMATS = ("svg", "png", "pdf", "dot")
"""Output formats; `dot` writes the text itself, the others run Graphviz."""


def render(dot_text: str, path: str | PathLike[str], format: str | None = None) -> Path:
    """Draws `dot_text` into `path`, in `format` (default: the file's suffix)."""
    target = Path(path)
    chosen = (format or target.suffix.lstrip(".")).lower()
    if chosen not in FORMATS:
        raise OptionError.choose("drawing format (file suffix)", chosen, FORMATS)
    if chosen == "dot":
        target.write_text(dot_text, encoding="utf-8")
        return target
    program = shutil.which("dot")
    if program is None:
        raise FileNotFoundError(
            "the Graphviz program 'dot' is not installed (or not on PATH); install Graphviz"
            " (e.g. `apt-get install graphviz`), or save to a '.dot' file and render it elsewhere"
        )
    result = subprocess.run(
        [program, f"-T{chosen}", "-o", str(target)],
        input=dot_text,
        text=True,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dot failed (exit {result.returncode}): {result.stderr.strip()}")
    return target
