"""Building circuits layer by layer, and rebuilding one with some layers replaced."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.layers import Layer

L = TypeVar("L", bound=Layer)


class CircuitBuilder:
    """Accumulates layers in the order they are added and the ordered inputs of each."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.in_layers: dict[Layer, list[Layer]] = {}

    def add(self, layer: L, inputs: Sequence[Layer] = ()) -> L:
        self.layers.append(layer)
        self.in_layers[layer] = list(inputs)
        return layer

    def build(self, outputs: Sequence[Layer]) -> Circuit:
        return Circuit(self.layers, self.in_layers, outputs)


Replacement = Callable[[Layer, tuple[Layer, ...], CircuitBuilder], Layer | None]
"""``replace(layer, inputs, builder)``: adds to `builder` the layers that stand for `layer`
reading `inputs` (the stand-ins of its inputs) and returns the one giving its units, or
returns None to keep `layer` as it is."""


def rebuild(circuit: Circuit, replace: Replacement) -> Circuit:
    """A copy of `circuit` in which `replace` may stand in for each layer (see `Replacement`).

    Layers are visited in topological order, so a replacement sees its inputs' stand-ins.
    Kept layers are the same objects (their parameters stay shared), and a circuit in which
    nothing is replaced lists its tensor parameters in the same order (the same source ids).
    """
    builder = CircuitBuilder()
    stand_in: dict[Layer, Layer] = {}
    for layer in circuit.topological_ordering():
        inputs = tuple(stand_in[child] for child in circuit.layer_inputs(layer))
        replaced = replace(layer, inputs, builder)
        stand_in[layer] = replaced if replaced is not None else builder.add(layer, inputs)
    return builder.build([stand_in[layer] for layer in circuit.outputs])
