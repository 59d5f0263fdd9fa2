"""Graphviz drawings of symbolic circuits: one node per layer, inputs below their users."""

from __future__ import annotations

from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.layers import SUM_LAYERS, InputLayer, ProductLayer

_SHAPES = {InputLayer: "box", SUM_LAYERS: "invtriangle", ProductLayer: "circle"}
_SYMBOLS = {"sum": "+", "dense": "+", "mixing": "+", "hadamard": "⊙", "kronecker": "⊗"}


def _shape(layer: object) -> str:
    for classes, shape in _SHAPES.items():
        if isinstance(layer, classes):
            return shape
    return "box"


def _label(circuit: Circuit, layer: object) -> str:
    units = f"{layer.num_output_units}"  # type: ignore[attr-defined]
    if isinstance(layer, InputLayer):
        variables = ",".join(map(str, layer.scope))
        return f"{layer.kind}\\nx{variables}\\n{units}"
    symbol = _SYMBOLS.get(layer.kind, layer.kind)  # type: ignore[attr-defined]
    return f"{symbol}\\n{units}"


def to_dot(circuit: Circuit) -> str:
    """Graphviz text: inputs as boxes (kind, variable, units), sums as triangles, products as
    circles (⊗ kronecker, ⊙ hadamard), outputs with a double border."""
    names = {layer: f"l{i}" for i, layer in enumerate(circuit.layers)}
    outputs = set(circuit.outputs)
    lines = ["digraph Circuit {", "  rankdir=BT;", "  node [fontsize=10];"]
    for layer in circuit.topological_ordering():
        border = ", peripheries=2" if layer in outputs else ""
        lines.append(
            f'  {names[layer]} [shape={_shape(layer)}, label="{_label(circuit, layer)}"{border}];'
        )
    for layer in circuit.topological_ordering():
        for position, child in enumerate(circuit.layer_inputs(layer)):
            lines.append(f'  {names[child]} -> {names[layer]} [label="{position}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
