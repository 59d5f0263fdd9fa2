"""Graphviz drawings of region graphs, for looking at what a template builds."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

from cirkit_ir import graphviz
from cirkit_ir.symbolic.scope import Scope

if TYPE_CHECKING:
    from cirkit_ir.region_graph.graph import RegionGraph

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
    """Draws the graph into `path`, in the format its suffix names (svg, png, pdf, dot)."""
    graphviz.render(to_dot(graph), path)
