"""The examples' quick runs, as a user would start them (a fresh process each, in a scratch
directory): they must finish and write what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "script, written",
    [
        ("queries.py", "bench-results/queries"),
        ("learning_a_circuit.py", "learning_curves.png"),
        ("gaussian_mixture.py", "gaussian_mixture.png"),
        ("classifier.py", None),
    ],
)
def test_quick_run(tmp_path, script, written):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    if written is not None:
        assert (tmp_path / written).exists(), f"{script} did not write {written}"
