"""Turning a region graph into a symbolic circuit.

Every region becomes a block of units, every partition a product of its input regions'
blocks followed (or preceded) by sums, and every region with several partitions a mixture of
them. What is built, in region-graph terms:

* a **leaf region** gets one input layer per variable (from `input_factory`), multiplied by a
  hadamard layer when the region has more than one variable;
* a **partition** gets a sum-product block that depends on `sum_product`:

  - ``'tucker'``: a kronecker layer over the input regions (K ** arity units), then a dense
    layer to the parent region's units;
  - ``'cp'``: a dense layer per input region (to `num_sum_units`), then a hadamard layer.
    At a root region the hadamard is followed by one more dense layer to `num_classes` units;
  - ``'cp-t'``: a hadamard layer over the input regions, then a dense layer to the parent
    region's units;

* a **region with several partitions** gets a mixing layer over its partitions' blocks.
  With ``use_mixing_weights=False`` the region instead computes a full dense sum over the
  concatenation of its partitions' outputs, as cirkit does: here that sum is written as a
  dense layer (units x units) per partition followed by the mixing layer, which computes
  exactly ``sum_h W_h x_h``; under a softmax the dense rows and the mixing weights together
  range over the same row-normalized matrices ``[W_1 ... W_H]`` as cirkit's single weight.

Root regions (regions that no partition reads) have `num_classes` units, other inner regions
`num_sum_units`, and leaf regions `num_input_units`. A root that is a leaf region (a
one-variable graph) gets a dense layer from its input units to `num_classes`.

Kronecker and hadamard layers need inputs of equal units. When a partition mixes a leaf region
(`num_input_units`) with an inner one (`num_sum_units`) and the two differ, the leaf's block is
first mapped to `num_sum_units` by a dense layer (cirkit raises an error in that case).

Layers are listed in the region graph's topological order (a partition's layers when the
partition is reached, a region's mixing layer when the region is), so the list is the same
from run to run; folding later groups layers by depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cirkit_ir.errors import OptionError
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import PartitionNode, RegionNode
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.layers import (
    DenseLayer,
    HadamardLayer,
    InputLayer,
    KroneckerLayer,
    Layer,
    MixingLayer,
)
from cirkit_ir.symbolic.parameters import ParameterNode
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.validators import a_or_an, short_repr

InputFactory = Callable[[Scope, int], InputLayer]
"""Builds the input layer of one variable: ``factory(Scope([v]), num_units)``."""

WeightFactory = Callable[[tuple[int, ...]], ParameterNode]
"""Builds a sum layer's weight parameter graph of a given shape."""

SUM_PRODUCT_LAYERS: tuple[str, ...] = ("tucker", "cp", "cp-t")


def check_positive_int(value: object, what: str) -> int:
    """`value` if it is a positive int, else an OptionError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise OptionError(f"{what} must be a positive integer, got {value!r}")
    return value


class _Builder:
    """Accumulates layers in creation order and the ordered inputs of each."""

    def __init__(self, sum_weight_factory: WeightFactory | None) -> None:
        self.layers: list[Layer] = []
        self.in_layers: dict[Layer, list[Layer]] = {}
        self._weight_factory = sum_weight_factory

    def add(self, layer: Layer, inputs: Sequence[Layer] = ()) -> Layer:
        self.layers.append(layer)
        self.in_layers[layer] = list(inputs)
        return layer

    def _weight(self, shape: tuple[int, int]) -> ParameterNode | None:
        if self._weight_factory is None:
            return None
        weight = self._weight_factory(shape)
        if not isinstance(weight, ParameterNode) or weight.shape != shape:
            got = (
                f"shape {weight.shape}"
                if isinstance(weight, ParameterNode)
                else a_or_an(type(weight).__name__)
            )
            raise OptionError(
                f"sum_weight_factory{shape} returned {got}; it must return a parameter graph"
                f" (a ParameterNode) of the shape it is given, {shape}"
            )
        return weight

    def dense(self, child: Layer, num_units: int) -> Layer:
        in_units = child.num_output_units
        layer = DenseLayer(in_units, num_units, weight=self._weight((num_units, in_units)))
        return self.add(layer, [child])

    def mixing(self, children: Sequence[Layer]) -> Layer:
        units = children[0].num_output_units
        arity = len(children)
        return self.add(MixingLayer(units, arity, weight=self._weight((units, arity))), children)

    def hadamard(self, children: Sequence[Layer]) -> Layer:
        return self.add(HadamardLayer(children[0].num_output_units, len(children)), children)

    def kronecker(self, children: Sequence[Layer]) -> Layer:
        return self.add(KroneckerLayer(children[0].num_output_units, len(children)), children)


def circuit_from_region_graph(
    region_graph: RegionGraph,
    *,
    input_factory: InputFactory | Mapping[int, InputFactory],
    sum_product: str,
    num_input_units: int,
    num_sum_units: int,
    num_classes: int = 1,
    sum_weight_factory: WeightFactory | None = None,
    use_mixing_weights: bool = True,
) -> Circuit:
    """Build the symbolic circuit that `region_graph` describes (see the module docstring).

    Args:
        region_graph: the structure: which variables each block of units models.
        input_factory: builds a one-variable input layer, ``factory(scope, num_units)``; or a
            mapping from each variable id to its own factory (e.g. per table column).
        sum_product: 'tucker', 'cp' or 'cp-t'.
        num_input_units: the units of every input layer.
        num_sum_units: the units of every inner region.
        num_classes: the units of the root regions (the circuit's outputs).
        sum_weight_factory: builds the weight of each dense and mixing layer from its shape,
            (out, in) or (units, arity); None keeps each layer's default (softmax over normal
            draws).
        use_mixing_weights: mix a region's partitions unit by unit (True), or with a full
            dense sum over their concatenated outputs (False).

    Returns:
        A circuit with one output layer per root region, in `region_graph.outputs` order.

    Raises:
        OptionError: a bad option or unit count, or an input factory missing for a variable.
    """
    if not isinstance(region_graph, RegionGraph):
        raise OptionError(
            f"expected a RegionGraph, got {type(region_graph).__name__}; build one with an"
            " algorithm of cirkit_ir.region_graph"
        )
    if sum_product not in SUM_PRODUCT_LAYERS:
        raise OptionError.choose("sum-product layer", sum_product, SUM_PRODUCT_LAYERS)
    check_positive_int(num_input_units, "num_input_units")
    check_positive_int(num_sum_units, "num_sum_units")
    check_positive_int(num_classes, "num_classes")
    if not isinstance(use_mixing_weights, bool):
        raise OptionError(f"use_mixing_weights must be True or False, got {use_mixing_weights!r}")
    if isinstance(input_factory, Mapping):
        missing = [v for v in region_graph.scope if v not in input_factory]
        if missing:
            raise OptionError(
                f"no input layer factory for variable(s) {missing}; give one for every variable"
            )
        factories: Mapping[int, InputFactory] = input_factory
        factory_of: Callable[[int], InputFactory] = factories.__getitem__
    elif callable(input_factory):
        single: InputFactory = input_factory

        def factory_of(variable: int) -> InputFactory:
            return single
    else:
        raise OptionError(
            f"input_factory must be a callable or a mapping of variable -> callable,"
            f" got {input_factory!r}"
        )

    builder = _Builder(sum_weight_factory)
    block: dict[RegionNode | PartitionNode, Layer] = {}

    def is_root(region: RegionNode) -> bool:
        return not region_graph.node_outputs(region)

    def region_units(region: RegionNode) -> int:
        return num_classes if is_root(region) else num_sum_units

    def leaf_block(region: RegionNode) -> Layer:
        inputs = [builder.add(factory_of(v)(Scope([v]), num_input_units)) for v in region.scope]
        for variable, layer in zip(region.scope, inputs, strict=True):
            if not isinstance(layer, InputLayer) or layer.scope != Scope([variable]):
                raise OptionError(
                    f"the input factory of variable {variable} returned {short_repr(layer)};"
                    f" it must return an input layer over Scope([{variable}]), the scope it is"
                    " given"
                )
            if layer.num_output_units != num_input_units:
                raise OptionError(
                    f"the input factory built {type(layer).__name__} with"
                    f" {layer.num_output_units} units, expected {num_input_units}"
                )
        out = inputs[0] if len(inputs) == 1 else builder.hadamard(inputs)
        if is_root(region):
            out = builder.dense(out, num_classes)
        return out

    def equal_units(children: list[Layer]) -> list[Layer]:
        if len({c.num_output_units for c in children}) == 1:
            return children
        return [
            c if c.num_output_units == num_sum_units else builder.dense(c, num_sum_units)
            for c in children
        ]

    def partition_block(partition: PartitionNode) -> Layer:
        parent = region_graph.partition_output(partition)
        children = [block[r] for r in region_graph.region_inputs(partition)]
        units = region_units(parent)
        if sum_product == "tucker":
            return builder.dense(builder.kronecker(equal_units(children)), units)
        if sum_product == "cp-t":
            return builder.dense(builder.hadamard(equal_units(children)), units)
        denses = [builder.dense(c, num_sum_units) for c in children]
        product = builder.hadamard(denses)
        return builder.dense(product, num_classes) if is_root(parent) else product

    for node in region_graph.topological_ordering():
        if isinstance(node, PartitionNode):
            block[node] = partition_block(node)
            continue
        partitions = region_graph.partition_inputs(node)
        if not partitions:
            block[node] = leaf_block(node)
        elif len(partitions) == 1:
            block[node] = block[partitions[0]]
        else:
            mixed = [block[p] for p in partitions]
            if not use_mixing_weights:
                mixed = [builder.dense(m, m.num_output_units) for m in mixed]
            block[node] = builder.mixing(mixed)

    outputs = [block[region] for region in region_graph.outputs]
    return Circuit(builder.layers, builder.in_layers, outputs)
