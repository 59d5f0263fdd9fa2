"""Graphviz drawings of region graphs, for looking at what a template builds."""

from __future__ import annotations

import shutil
import subprocess
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from cirkit_ir.errors import OptionError
from cirkit_ir.symbolic.scope import Scope

if TYPE_CHECKING:
    from cirkit_ir.region_graph.graph import RegionGraph

FORMATS = ("svg", "png", "pdf", "dot")
"""File suffixes `render` accepts; each is also the name of a Graphviz output format."""

_MAX_LISTED = 6


def scope_label(scope: Scope) -> str:
    """A short label: every variable for small scopes, first and last ones for large ones."""
    variables = list(scope)
    if len(variables) <= _MAX_LISTED:
        return "{" + ", ".join(map(str, variables)) + "}"
    head = ", ".join(map(str, variables[:3]))
    return f"{{{head}, ..., {variables[-1]}}} ({len(variables)} vars)"


def to_dot(graph: RegionGraph) -> str:
    """Graphviz text with one box per region (r<i>) and one circle per partition (p<i>)."""
    names = {region: f"r{i}" for i, region in enumerate(graph.regions)}
    names.update({partition: f"p{i}" for i, partition in enumerate(graph.partitions)})
    outputs = set(graph.outputs)
    lines = ["digraph RegionGraph {", "  rankdir=BT;"]
    for region in graph.regions:
        style = ", peripheries=2" if region in outputs else ""
        lines.append(f'  {names[region]} [shape=box, label="{scope_label(region.scope)}"{style}];')
    for partition in graph.partitions:
        lines.append(f'  {names[partition]} [shape=circle, label="x"];')
    for node in graph.nodes:
        for input_node in graph.node_inputs(node):
            lines.append(f"  {names[input_node]} -> {names[node]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: RegionGraph, path: str | PathLike[str]) -> None:
    """Run Graphviz's `dot` to draw the graph into `path` (format from its suffix)."""
    target = Path(path)
    suffix = target.suffix.lstrip(".").lower()
    if suffix not in FORMATS:
        raise OptionError.choose("region graph drawing format (file suffix)", suffix, FORMATS)
    text = to_dot(graph)
    if suffix == "dot":
        target.write_text(text, encoding="utf-8")
        return
    executable = shutil.which("dot")
    if executable is None:
        raise FileNotFoundError(
            "Graphviz's 'dot' program was not found on PATH, so the region graph cannot be "
            "drawn; install Graphviz (e.g. 'apt-get install graphviz'), or save to a '.dot' "
            "file and render it elsewhere"
        )
    result = subprocess.run(
        [executable, f"-T{suffix}", "-o", str(target)],
        input=text,
        text=True,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Graphviz 'dot' failed ({result.returncode}): {result.stderr.strip()}")
