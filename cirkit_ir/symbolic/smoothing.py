"""Smoothing: giving every input of a sum layer the sum's variables, without changing values.

A sum over inputs with different scopes is well defined point by point (libcirkit compiles
it as it is), but the IR's sums are smooth. An input that lacks a variable v of its sum is
multiplied by a layer that is 1 on every value of v: an embedding over v whose table is all
ones, as many states as v takes. The circuit computes the same value at every point, and
sums over v (marginals, model counts) come out right, as with the textbook smoothing
(multiplying by v's indicator sum [v = 0] + [v = 1] + ...).

Only discrete variables have such a layer: a sum missing a continuous variable raises a
`PropertyError` naming it.
"""

from __future__ import annotations

from cirkit_ir.errors import PropertyError
from cirkit_ir.symbolic.builder import CircuitBuilder, rebuild
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import ConstantInitializer
from cirkit_ir.symbolic.layers import SUM_LAYERS, EmbeddingLayer, HadamardLayer, Layer
from cirkit_ir.symbolic.parameters import TensorParameter
from cirkit_ir.symbolic.scope import Scope


def smooth(circuit: Circuit) -> Circuit:
    """`circuit` itself if it is smooth, else a smooth circuit computing the same function
    (see the module).

    Raises:
        PropertyError: a sum layer lacks, in one of its inputs, a variable that no discrete
            input layer reads.
    """
    if circuit.is_smooth:
        return circuit
    return rebuild(circuit, _Smoother(circuit))


class _Smoother:
    """The replacement rule of `rebuild`: sum layers get smoothed inputs; the layers that are
    1 on a variable are made once per (variable, units)."""

    def __init__(self, circuit: Circuit) -> None:
        self.circuit = circuit
        self.states = _num_states(circuit)
        self.ones: dict[tuple[int, int], Layer] = {}

    def __call__(self, layer: Layer, inputs: tuple[Layer, ...], builder: CircuitBuilder):
        if not isinstance(layer, SUM_LAYERS):
            return None
        circuit = self.circuit
        originals = circuit.layer_inputs(layer)
        scope = Scope.union(*(circuit.layer_scope(child) for child in originals))
        smoothed = []
        for slot, (original, child) in enumerate(zip(originals, inputs, strict=True)):
            missing = scope - circuit.layer_scope(original)
            if not len(missing):
                smoothed.append(child)
                continue
            units = child.num_output_units
            factors = [self._one(v, units, builder, layer, slot) for v in missing]
            product = HadamardLayer(units, arity=1 + len(factors))
            smoothed.append(builder.add(product, [child, *factors]))
        return builder.add(layer, smoothed)

    def _one(
        self, variable: int, units: int, builder: CircuitBuilder, layer: Layer, slot: int
    ) -> Layer:
        """The layer of `units` units that is 1 on every value of `variable`."""
        key = (variable, units)
        if key not in self.ones:
            num_states = self.states.get(variable)
            if num_states is None:
                index = self.circuit.layer_index(layer)
                raise PropertyError(
                    f"the circuit is not smooth: layer #{index} ({type(layer).__name__}) sums"
                    f" inputs over different variables, and its input on slot {slot} lacks"
                    f" variable {variable}, which is continuous. The compiler smooths a sum by"
                    " multiplying such an input by a layer that is 1 on every value of the"
                    " missing variable, which only a discrete variable has; make that input"
                    f" cover variable {variable} (e.g. multiply it by a density over it)"
                )
            channels = self.circuit.num_channels
            table = TensorParameter(
                (units, channels, num_states), ConstantInitializer(1.0), learnable=False
            )
            ones = EmbeddingLayer(
                Scope([variable]),
                units,
                num_channels=channels,
                num_states=num_states,
                weight=table,
            )
            self.ones[key] = builder.add(ones)
        return self.ones[key]


def _num_states(circuit: Circuit) -> dict[int, int]:
    """The values each discrete variable takes: the fewest that its input layers accept
    (data outside them is refused anyway). A variable that some continuous layer reads is
    left out."""
    states: dict[int, int] = {}
    continuous: set[int] = set()
    for layer in circuit.input_layers:
        (variable,) = layer.scope
        if layer.max_value is None:
            continuous.add(variable)
        else:
            states[variable] = min(states.get(variable, layer.max_value + 1), layer.max_value + 1)
    return {v: n for v, n in states.items() if v not in continuous}
