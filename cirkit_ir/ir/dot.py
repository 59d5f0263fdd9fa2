"""Graphviz export: a picture of the circuit, one node per op (a folded op is one node).

Nodes are named by their values' names (`%12`, as `print_ir` and errors name them), so a
picture and a dump can be read side by side. Circuit ops are boxes (inputs shaded, outputs
doubled) with their name, folds and units; parameter ops, shown with `params=True`, are
ellipses feeding dashed edges.
"""

from __future__ import annotations

from cirkit_ir.graphviz import render
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import CircuitOp, InputOp, ParamOp
from cirkit_ir.ir.printer import canonical_order


def _quote(text: str) -> str:
    """A dot string literal; newlines become centred line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n") + '"'


def _circuit_label(number: int, op: CircuitOp) -> str:
    units = (
        f"{op.num_output_units} units"
        if op.num_input_units in (0, op.num_output_units)
        else f"{op.num_input_units} -> {op.num_output_units} units"
    )
    folds = f"{op.num_folds} folds" if op.num_folds > 1 else "1 fold"
    return f"%{number} {op.name}\n{folds}, {units}"


def to_dot(graph: Graph, params: bool = False, name: str = "circuit") -> str:
    """Graphviz `dot` text of the graph; data flows bottom to top, inputs at the bottom."""
    order = canonical_order(graph)
    outputs = {node for node, _ in graph.outputs}
    lines = [
        f"digraph {_quote(name)} {{",
        "  rankdir=BT;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    shown = set()
    for node in order:
        op = graph.op(node)
        if isinstance(op, CircuitOp):
            style = ['style="filled"', 'fillcolor="#dde8f5"'] if isinstance(op, InputOp) else []
            if node in outputs:
                style.append("peripheries=2")
            attrs = ", ".join([f"label={_quote(_circuit_label(node, op))}", *style])
        elif params and isinstance(op, ParamOp):
            label = f"%{node} {op.name}\n{op.result_type}"
            attrs = f'label={_quote(label)}, shape=ellipse, color="gray40", fontsize=8'
        else:
            continue
        shown.add(node)
        lines.append(f"  n{node} [{attrs}];")
    edges = [(p, c, slot, fold_map) for c in order for p, slot, fold_map in graph.in_edges(c)]
    for producer, consumer, slot, fold_map in edges:
        if producer not in shown or consumer not in shown:
            continue
        parts = []
        arity = getattr(graph.op(consumer), "arity", 1)
        if isinstance(slot, str) or arity > 1:
            parts.append(str(slot))
        if not fold_map.is_identity(graph.op(consumer).num_folds):
            parts.append(f"{len(fold_map)} folds")
        attrs = [f"label={_quote(' '.join(parts))}"] if parts else []
        if isinstance(slot, str) or isinstance(graph.op(producer), ParamOp):
            attrs += ["style=dashed", 'color="gray40"']
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  n{producer} -> n{consumer}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = ["render", "to_dot"]
