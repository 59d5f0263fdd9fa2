"""Packaging: `passes/` and `backends/` install inside `cirkit_ir`, and no package is left out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"passes": "cirkit_ir.passes", "backends": "cirkit_ir.backends"}


def _import_name(folder: Path) -> str:
    parts = folder.relative_to(ROOT).parts
    head = MAPPED.get(parts[0], parts[0])
    return ".".join((head, *parts[1:]))


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        _import_name(init.parent)
        for top in ("cirkit_ir", *MAPPED)
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these are listed but have no folder"
    assert config["package-dir"] == {"cirkit_ir": "cirkit_ir", **{v: k for k, v in MAPPED.items()}}


def test_a_users_own_passes_package_does_not_collide(tmp_path):
    """A project with its own `passes` and `backends` packages compiles circuits as usual."""
    for name in ("passes", "backends"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("MINE = True\n")
    script = (
        "import passes, backends\n"
        "assert passes.MINE and backends.MINE\n"
        "from cirkit_ir.pipeline import PipelineContext\n"
        "from cirkit_ir.templates import circuit_templates\n"
        "c = circuit_templates.image_data((1, 2, 2), region_graph='quad-tree-4',"
        " input_layer='categorical', num_input_units=2, sum_product_layer='cp', num_sum_units=2)\n"
        "import torch\n"
        "out = PipelineContext().compile(c)(torch.randint(256, (3, 1, 4)))\n"
        "assert out.shape == (3, 1, 1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
