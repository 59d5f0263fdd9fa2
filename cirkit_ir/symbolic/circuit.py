"""A symbolic circuit: layers wired into a DAG, with the structural properties queries need."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.symbolic.layers import (
    SUM_LAYERS,
    ConstantLayer,
    EvidenceLayer,
    InputLayer,
    Layer,
    MixingLayer,
    ProductLayer,
    SumLayer,
)
from cirkit_ir.symbolic.parameters import TensorParameter
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.validators import a_or_an, short_repr


def _describe(layer: Layer, index: int) -> str:
    return f"layer #{index} ({type(layer).__name__})"


def _layer_list(layers: object, what: str) -> list[Layer]:
    """`layers` as a list, if it is a collection of layers (a lone layer or a layer's
    name is a common slip, and would fail later, far from here)."""
    if isinstance(layers, Layer | str) or not isinstance(layers, Iterable):
        raise OptionError(
            f"{what} must be a list of layers, got {type(layers).__name__}"
            f" {short_repr(layers)}" + ("; wrap it in a list" if isinstance(layers, Layer) else "")
        )
    listed = list(layers)
    for i, layer in enumerate(listed):
        if not isinstance(layer, Layer):
            raise OptionError(
                f"{what}[{i}] is {a_or_an(type(layer).__name__)} ({short_repr(layer)}), not a Layer"
            )
    return listed


class Circuit:
    """Layers, the ordered inputs of each, and the output layers.

    Construction checks that the wiring is well typed (arity, units) and acyclic and that the
    input layers agree on the number of channels, and raises `StructureError` naming the
    offending layer (`OptionError` when an argument is not a list or mapping of layers).
    The layer order given is kept: it is the order that lowering and printing follow.
    """

    def __init__(
        self,
        layers: Iterable[Layer],
        in_layers: Mapping[Layer, Sequence[Layer]],
        outputs: Sequence[Layer],
    ) -> None:
        self._layers: list[Layer] = _layer_list(layers, "layers")
        self._index: dict[Layer, int] = {layer: i for i, layer in enumerate(self._layers)}
        if len(self._index) != len(self._layers):
            raise StructureError("a layer appears twice in the circuit's layer list")
        self._in_layers = self._wiring(in_layers)
        self._outputs: tuple[Layer, ...] = tuple(_layer_list(outputs, "outputs"))
        self._check_wiring()
        self._num_channels = self._check_channels()
        self._order = self._topological_sort()

    # -- construction checks --------------------------------------------------------------------

    def _wiring(self, in_layers: object) -> dict[Layer, tuple[Layer, ...]]:
        """Each listed layer's inputs, as a tuple. A key that is not in the layer list is an
        error: its wiring would be dropped without a word."""
        if not isinstance(in_layers, Mapping):
            raise OptionError(
                "in_layers must map each layer to the list of layers it reads, got"
                f" {type(in_layers).__name__} {short_repr(in_layers)}"
            )
        for layer in in_layers:
            if layer not in self._index:
                raise StructureError(
                    f"in_layers gives the inputs of a {type(layer).__name__} that is not in the"
                    " layer list; add it to the layers"
                )
        wiring: dict[Layer, tuple[Layer, ...]] = {}
        for i, layer in enumerate(self._layers):
            inputs = in_layers.get(layer, ())
            # Only the container is checked here: `_check_wiring` finds inputs that are not
            # layers of the circuit.
            if isinstance(inputs, Layer | str) or not isinstance(inputs, Iterable):
                raise OptionError(
                    f"in_layers[{_describe(layer, i)}] must be a list of layers, got"
                    f" {type(inputs).__name__} {short_repr(inputs)}"
                )
            wiring[layer] = tuple(inputs)
        return wiring

    def _check_wiring(self) -> None:
        for layer, inputs in self._in_layers.items():
            name = _describe(layer, self._index[layer])
            for child in inputs:
                if child not in self._index:
                    raise StructureError(
                        f"{name} reads a layer that is not in the circuit: {type(child).__name__};"
                        " add it to the layer list"
                    )
            reads_no_layer = isinstance(layer, InputLayer | ConstantLayer | EvidenceLayer)
            expected = 0 if reads_no_layer else layer.arity
            if len(inputs) != expected:
                raise StructureError(
                    f"{name} has arity {expected} but {len(inputs)} input layer(s)"
                )
            for position, child in enumerate(inputs):
                if child.num_output_units != layer.num_input_units:
                    raise StructureError(
                        f"{name} expects {layer.num_input_units} units on input {position}, but"
                        f" {_describe(child, self._index[child])} gives {child.num_output_units}"
                    )
        if not self._outputs:
            raise StructureError("a circuit needs at least one output layer")
        for layer in self._outputs:
            if layer not in self._index:
                raise StructureError(f"output {type(layer).__name__} is not in the layer list")

    def _check_channels(self) -> int:
        """The channels of the data, which every input layer reads: a batch is (B, C, D)
        with one C. (Evidence layers read their own observation, not the batch.)"""
        first: InputLayer | None = None
        for layer in self._layers:
            if not isinstance(layer, InputLayer):
                continue
            if first is None:
                first = layer
            elif layer.num_channels != first.num_channels:
                raise StructureError(
                    f"{_describe(layer, self._index[layer])} reads {layer.num_channels}"
                    f" channel(s), but {_describe(first, self._index[first])} reads"
                    f" {first.num_channels}: input layers read the same (batch, channels,"
                    " variables) data, so give them all the same num_channels"
                )
        return 1 if first is None else first.num_channels

    def _topological_sort(self) -> list[Layer]:
        """Inputs before users; among ready layers, the given layer order (stable)."""
        pending = {layer: len(set(inputs)) for layer, inputs in self._in_layers.items()}
        users: dict[Layer, list[Layer]] = {layer: [] for layer in self._layers}
        for layer, inputs in self._in_layers.items():
            for child in dict.fromkeys(inputs):
                users[child].append(layer)
        ready = [self._index[layer] for layer, n in pending.items() if n == 0]
        heapq.heapify(ready)
        order: list[Layer] = []
        while ready:
            layer = self._layers[heapq.heappop(ready)]
            order.append(layer)
            for user in users[layer]:
                pending[user] -= 1
                if pending[user] == 0:
                    heapq.heappush(ready, self._index[user])
        if len(order) != len(self._layers):
            stuck = next(layer for layer in self._layers if pending[layer] > 0)
            raise StructureError(
                f"the circuit has a cycle through {_describe(stuck, self._index[stuck])}"
            )
        self._users = users
        return order

    # -- structure --------------------------------------------------------------------------------

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def outputs(self) -> tuple[Layer, ...]:
        return self._outputs

    @property
    def inputs(self) -> list[Layer]:
        """The layers that read no other layer (input, constant and evidence layers)."""
        return [layer for layer in self._layers if not self._in_layers[layer]]

    # cirkit's graph accessors: a circuit is a graph whose nodes are its layers.

    @property
    def nodes(self) -> list[Layer]:
        """The layers (cirkit's name for them as graph nodes)."""
        return self.layers

    @property
    def layers_inputs(self) -> dict[Layer, tuple[Layer, ...]]:
        """Each layer's ordered inputs."""
        return dict(self._in_layers)

    @property
    def layers_outputs(self) -> dict[Layer, list[Layer]]:
        """The layers that read each layer."""
        return {layer: list(users) for layer, users in self._users.items()}

    nodes_inputs = layers_inputs
    nodes_outputs = layers_outputs

    @property
    def input_layers(self) -> list[InputLayer]:
        return [layer for layer in self._layers if isinstance(layer, InputLayer)]

    @property
    def sum_layers(self) -> list[SumLayer | MixingLayer]:
        return [layer for layer in self._layers if isinstance(layer, SUM_LAYERS)]

    @property
    def product_layers(self) -> list[ProductLayer]:
        return [layer for layer in self._layers if isinstance(layer, ProductLayer)]

    @property
    def inner_layers(self) -> list[Layer]:
        return [layer for layer in self._layers if isinstance(layer, SUM_LAYERS + (ProductLayer,))]

    def layer_inputs(self, layer: Layer) -> tuple[Layer, ...]:
        try:
            return self._in_layers[layer]
        except KeyError:
            raise self._not_mine(layer) from None

    def layer_outputs(self, layer: Layer) -> list[Layer]:
        try:
            return list(self._users[layer])
        except KeyError:
            raise self._not_mine(layer) from None

    node_inputs = layer_inputs
    node_outputs = layer_outputs

    def layer_index(self, layer: Layer) -> int:
        try:
            return self._index[layer]
        except KeyError:
            raise self._not_mine(layer) from None

    @staticmethod
    def _not_mine(layer: object) -> StructureError:
        return StructureError(
            f"{short_repr(layer)} is not a layer of this circuit; ask about layers from"
            " circuit.layers"
        )

    def topological_ordering(self) -> Iterator[Layer]:
        return iter(self._order)

    @cached_property
    def depths(self) -> dict[Layer, int]:
        """Longest path (in layers) from any input layer; inputs have depth 0."""
        depth: dict[Layer, int] = {}
        for layer in self._order:
            inputs = self._in_layers[layer]
            depth[layer] = 1 + max(depth[c] for c in inputs) if inputs else 0
        return depth

    def layerwise_topological_ordering(self) -> list[list[Layer]]:
        """Layers grouped by depth (longest path from the inputs), in topological order."""
        levels: list[list[Layer]] = [[] for _ in range(max(self.depths.values()) + 1)]
        for layer in self._order:
            levels[self.depths[layer]].append(layer)
        return levels

    @property
    def num_channels(self) -> int:
        """The channels of every input layer (1 if there is none)."""
        return self._num_channels

    # -- scopes and properties --------------------------------------------------------------------

    @cached_property
    def scopes(self) -> dict[Layer, Scope]:
        scopes: dict[Layer, Scope] = {}
        for layer in self._order:
            inputs = self._in_layers[layer]
            if isinstance(layer, InputLayer):
                scopes[layer] = layer.scope
            elif not inputs:
                scopes[layer] = Scope(())
            else:
                scopes[layer] = Scope.union(*(scopes[c] for c in inputs))
        return scopes

    def layer_scope(self, layer: Layer) -> Scope:
        try:
            return self.scopes[layer]
        except KeyError:
            raise self._not_mine(layer) from None

    @property
    def scope(self) -> Scope:
        return Scope.union(*(self.scopes[o] for o in self._outputs))

    @property
    def num_variables(self) -> int:
        """The number of variables, counting every id below the largest one used."""
        scope = self.scope
        return max(scope.variables) + 1 if len(scope) else 0

    def smoothness_violation(self) -> Layer | None:
        """The first sum layer whose inputs have different scopes, or None."""
        for layer in self._order:
            if isinstance(layer, SUM_LAYERS):
                scopes = {self.scopes[c] for c in self._in_layers[layer]}
                if len(scopes) > 1:
                    return layer
        return None

    def decomposability_violation(self) -> Layer | None:
        """The first product layer whose inputs overlap in scope, or None."""
        for layer in self._order:
            if isinstance(layer, ProductLayer):
                seen: set[int] = set()
                for child in self._in_layers[layer]:
                    variables = self.scopes[child].variables
                    if not seen.isdisjoint(variables):
                        return layer
                    seen |= variables
        return None

    @cached_property
    def is_smooth(self) -> bool:
        return self.smoothness_violation() is None

    @cached_property
    def is_decomposable(self) -> bool:
        return self.decomposability_violation() is None

    @cached_property
    def is_structured_decomposable(self) -> bool:
        """Smooth, decomposable, and every scope factorized one way (`cirkit_ir.properties`)."""
        from cirkit_ir.properties import is_structured_decomposable

        return is_structured_decomposable(self)

    @cached_property
    def is_omni_compatible(self) -> bool:
        """Compatible with any decomposable circuit over its variables: every product splits
        its scope into single variables (`cirkit_ir.properties`)."""
        from cirkit_ir.properties import is_omni_compatible

        return is_omni_compatible(self)

    @cached_property
    def properties(self):  # -> cirkit_ir.properties.StructuralProperties
        """Smooth, decomposable, structured-decomposable, omni-compatible (libcirkit's names)."""
        from cirkit_ir.properties import structural_properties

        return structural_properties(self)

    def tensor_parameters(self) -> list[TensorParameter]:
        """Every tensor leaf once, in a stable order: layers topologically, then their
        parameter slots, then each parameter graph inputs-first.

        A leaf's index here is its *source id*: lowering tags the IR tensors with it, and a
        compiled circuit's `symbolic_state()` is keyed by it.
        """
        leaves: dict[int, TensorParameter] = {}
        for layer in self._order:
            for root in layer.params.values():
                for node in root.nodes():
                    if isinstance(node, TensorParameter):
                        leaves.setdefault(id(node), node)
        return list(leaves.values())

    # -- summaries ---------------------------------------------------------------------------------

    def layer_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self._layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.layer_counts().items())
        return (
            f"Circuit({len(self._layers)} layers: {counts}; {len(self.scope)} variables,"
            f" {len(self._outputs)} output(s))"
        )
