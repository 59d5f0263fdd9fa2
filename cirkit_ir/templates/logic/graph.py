"""Logic circuits (NNF): literals, conjunctions and disjunctions, and the circuits they give.

A `LogicalCircuit` is a rooted DAG of these nodes; `build_circuit` turns it into a symbolic
circuit that computes its indicator: literals become input layers (by default a categorical
over {0, 1} that is 1 on the literal's value), conjunctions hadamard layers, disjunctions
mixing layers (by default of weights 1). On a decomposable and deterministic circuit (an SDD,
say), the smoothed circuit's sum over all assignments counts the models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property

import attrs

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.symbolic.builder import CircuitBuilder
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import ConstantInitializer, ConstantTensorInitializer
from cirkit_ir.symbolic.layers import (
    CategoricalLayer,
    ConstantLayer,
    HadamardLayer,
    InputLayer,
    Layer,
    MixingLayer,
    ParameterFactory,
)
from cirkit_ir.symbolic.parameters import ParameterNode, TensorParameter
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.templates.utils import InputLayerFactory
from cirkit_ir.validators import a_or_an, is_int, short_repr

__all__ = [
    "BottomNode",
    "ConjunctionNode",
    "DisjunctionNode",
    "LiteralNode",
    "LogicalCircuit",
    "LogicalCircuitNode",
    "LogicalInputNode",
    "NegatedLiteralNode",
    "TopNode",
    "default_literal_input_factory",
]


# ---------------------------------------------------------------------------------------------
# Nodes: compared by identity, like layers.


@attrs.frozen(eq=False)
class LogicalCircuitNode:
    """Base class of the nodes of a logic circuit."""


@attrs.frozen(eq=False)
class TopNode(LogicalCircuitNode):
    """The constant True."""


@attrs.frozen(eq=False)
class BottomNode(LogicalCircuitNode):
    """The constant False."""


def _variable(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not is_int(value) or value < 0:  # type: ignore[operator]
        raise OptionError(
            f"{type(instance).__name__} takes a variable id (an int >= 0), got {value!r}"
        )


@attrs.frozen(eq=False)
class LogicalInputNode(LogicalCircuitNode):
    """A literal over the Boolean variable `literal` (a variable id, from 0)."""

    literal: int = attrs.field(validator=_variable)


@attrs.frozen(eq=False)
class LiteralNode(LogicalInputNode):
    """The variable is true (x = 1)."""


@attrs.frozen(eq=False)
class NegatedLiteralNode(LogicalInputNode):
    """The variable is false (x = 0)."""


@attrs.frozen(eq=False)
class ConjunctionNode(LogicalCircuitNode):
    """The AND of its inputs."""


@attrs.frozen(eq=False)
class DisjunctionNode(LogicalCircuitNode):
    """The OR of its inputs."""


_GATES = (ConjunctionNode, DisjunctionNode)


# ---------------------------------------------------------------------------------------------
# Literal layers


def default_literal_input_factory(negated: bool = False) -> InputLayerFactory:
    """The default input layer of a literal: a categorical over {0, 1} whose probabilities
    are the constants [0, 1] (the literal x) or [1, 0] (its negation ~x)."""
    values = [[1.0, 0.0]] if negated else [[0.0, 1.0]]

    def factory(scope: Scope, num_units: int) -> InputLayer:
        probs = TensorParameter((num_units, 1, 2), ConstantTensorInitializer(values))
        return CategoricalLayer(scope, num_units, num_categories=2, probs=probs)

    return factory


def _unit_weights(shape: tuple[int, ...]) -> ParameterNode:
    return TensorParameter(shape, ConstantInitializer(1.0))


# ---------------------------------------------------------------------------------------------
# The circuit


class LogicalCircuit:
    """A logic circuit: `nodes`, the ordered inputs of each (`in_nodes`), one output.

    Raises:
        StructureError: not one output, a literal or constant with inputs, a gate that is
            not a node of the circuit, or a cycle.
    """

    def __init__(
        self,
        nodes: Sequence[LogicalCircuitNode],
        in_nodes: Mapping[LogicalCircuitNode, Sequence[LogicalCircuitNode]],
        outputs: Sequence[LogicalCircuitNode],
    ) -> None:
        self._nodes = list(nodes)
        for node in self._nodes:
            if not isinstance(node, LogicalCircuitNode):
                raise OptionError(f"{short_repr(node)} is not a LogicalCircuitNode")
        known = set(self._nodes)
        self._in: dict[LogicalCircuitNode, tuple[LogicalCircuitNode, ...]] = {}
        for node in self._nodes:
            inputs = tuple(in_nodes.get(node, ()))
            if inputs and not isinstance(node, _GATES):
                raise StructureError(f"{type(node).__name__} {node!r} takes no inputs")
            for child in inputs:
                if child not in known:
                    raise StructureError(
                        f"{short_repr(child)}, an input of {type(node).__name__}, is not in"
                        " the node list"
                    )
            self._in[node] = inputs
        outputs = list(outputs)
        if len(outputs) != 1 or outputs[0] not in known:
            raise StructureError(
                f"a logic circuit has one output, a node of the circuit; got {outputs!r}"
            )
        self._output = outputs[0]
        self._order = self._post_order()

    def _post_order(self) -> list[LogicalCircuitNode]:
        """The nodes the output reaches, inputs before users (a depth-first post-order)."""
        order: list[LogicalCircuitNode] = []
        state: dict[LogicalCircuitNode, bool] = {}  # False: on the path; True: done
        stack: list[tuple[LogicalCircuitNode, bool]] = [(self._output, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                state[node] = True
                order.append(node)
                continue
            if node in state:
                if not state[node]:
                    raise StructureError(f"the logic circuit has a cycle through {node!r}")
                continue
            state[node] = False
            stack.append((node, True))
            for child in reversed(self._in[node]):
                if state.get(child) is False:
                    raise StructureError(f"the logic circuit has a cycle through {child!r}")
                if child not in state:
                    stack.append((child, False))
        return order

    # -- structure (libcirkit's names) -------------------------------------------------------------

    @property
    def nodes(self) -> list[LogicalCircuitNode]:
        return list(self._nodes)

    @property
    def nodes_inputs(self) -> dict[LogicalCircuitNode, tuple[LogicalCircuitNode, ...]]:
        return dict(self._in)

    def node_inputs(self, node: LogicalCircuitNode) -> tuple[LogicalCircuitNode, ...]:
        return self._in[node]

    @property
    def output(self) -> LogicalCircuitNode:
        return self._output

    @property
    def outputs(self) -> list[LogicalCircuitNode]:
        return [self._output]

    @property
    def inputs(self) -> Iterator[LogicalCircuitNode]:
        """The nodes with no inputs (literals and constants)."""
        return (node for node in self._nodes if not self._in[node])

    def topological_ordering(self) -> Iterator[LogicalCircuitNode]:
        """The nodes the output depends on, inputs first."""
        return iter(self._order)

    @cached_property
    def scopes(self) -> dict[LogicalCircuitNode, Scope]:
        scopes: dict[LogicalCircuitNode, Scope] = {}
        for node in self._order:
            if isinstance(node, LogicalInputNode):
                scopes[node] = Scope([node.literal])
            else:
                scopes[node] = Scope.union(Scope(()), *(scopes[c] for c in self._in[node]))
        return scopes

    def node_scope(self, node: LogicalCircuitNode) -> Scope:
        return self.scopes[node]

    @cached_property
    def num_variables(self) -> int:
        """The number of distinct variables the literals mention."""
        return len({n.literal for n in self._nodes if isinstance(n, LogicalInputNode)})

    def _reset(self, graph: LogicalCircuit) -> None:
        """Becomes `graph` (libcirkit's `prune` and `smooth` work in place)."""
        self.__dict__.clear()
        self.__dict__.update(graph.__dict__)

    # -- rewrites ----------------------------------------------------------------------------------

    def pruned(self) -> LogicalCircuit:
        """The same function without constants: True and False are propagated (a conjunction
        with a False input is False, a disjunction with a True input is True, True inputs of
        conjunctions and False inputs of disjunctions are dropped, a gate left with no input
        is its neutral element), and nodes the output does not reach are dropped. A constant
        function is a lone TopNode or BottomNode."""
        value: dict[LogicalCircuitNode, bool | None] = {}  # True/False: a constant
        kept: dict[LogicalCircuitNode, list[LogicalCircuitNode]] = {}
        for node in self._order:
            if isinstance(node, TopNode | BottomNode):
                value[node] = isinstance(node, TopNode)
                continue
            if not isinstance(node, _GATES):
                value[node] = None
                continue
            absorbing = isinstance(node, DisjunctionNode)  # OR: True absorbs; AND: False
            children = [c for c in self._in[node] if value[c] is not (not absorbing)]
            if any(value[c] is absorbing for c in children):
                value[node] = absorbing
            elif not children:
                value[node] = not absorbing
            else:
                value[node] = None
                kept[node] = children
        root = self._output
        if value[root] is not None:
            constant = TopNode() if value[root] else BottomNode()
            return LogicalCircuit([constant], {}, [constant])
        reached = LogicalCircuit(list(self._order), kept, [root])._order
        return LogicalCircuit(reached, kept, [root])

    def prune(self) -> None:
        """Replaces this circuit by `pruned()` (in place, as libcirkit's `prune`)."""
        self._reset(self.pruned())

    def smoothed(self) -> LogicalCircuit:
        """The same function with every disjunction smooth: an input that lacks variables
        v of its disjunction is replaced by its conjunction with (v OR NOT v) for each."""
        literals: dict[tuple[int, bool], LogicalCircuitNode] = {}
        for node in self._order:
            if isinstance(node, LogicalInputNode):
                literals.setdefault((node.literal, isinstance(node, LiteralNode)), node)
        tautologies: dict[int, DisjunctionNode] = {}
        nodes = list(self._order)
        in_nodes: dict[LogicalCircuitNode, list[LogicalCircuitNode]] = {
            node: list(self._in[node]) for node in nodes
        }

        def add(node: LogicalCircuitNode, inputs: list[LogicalCircuitNode]) -> None:
            nodes.append(node)
            in_nodes[node] = inputs

        def literal(variable: int, positive: bool) -> LogicalCircuitNode:
            if (variable, positive) not in literals:
                node = LiteralNode(variable) if positive else NegatedLiteralNode(variable)
                literals[variable, positive] = node
                add(node, [])
            return literals[variable, positive]

        def tautology(variable: int) -> DisjunctionNode:
            if variable not in tautologies:
                tautologies[variable] = DisjunctionNode()
                add(tautologies[variable], [literal(variable, True), literal(variable, False)])
            return tautologies[variable]

        scopes = self.scopes
        for node in self._order:
            if not isinstance(node, DisjunctionNode):
                continue
            smoothed = []
            for child in self._in[node]:
                missing = scopes[node] - scopes[child]
                if len(missing):
                    conjunction = ConjunctionNode()
                    add(conjunction, [child, *(tautology(v) for v in missing)])
                    child = conjunction
                smoothed.append(child)
            in_nodes[node] = smoothed
        return LogicalCircuit(nodes, in_nodes, [self._output])

    def smooth(self) -> None:
        """Replaces this circuit by `smoothed()` (in place, as libcirkit's `smooth`)."""
        self._reset(self.smoothed())

    # -- the symbolic circuit ----------------------------------------------------------------------

    def build_circuit(
        self,
        literal_input_factory: InputLayerFactory | None = None,
        negated_literal_input_factory: InputLayerFactory | None = None,
        weight_factory: ParameterFactory | None = None,
        enforce_smoothness: bool = True,
    ) -> Circuit:
        """The symbolic circuit of this logic circuit, smoothed (by default) and pruned.

        Args:
            literal_input_factory, negated_literal_input_factory: build the input layer of a
                literal x_v (resp. NOT x_v), called as ``factory(Scope([v]), num_units=1)``;
                give both or neither (`default_literal_input_factory`).
            weight_factory: builds the (1, arity) weight of each disjunction's mixing layer;
                None gives weights of 1.
            enforce_smoothness: smooth the disjunctions first (`smoothed`), so that sums over
                assignments (marginals, model counts) are right. Without it the circuit is
                compiled as it is; the compiler smooths it with layers that are 1 on every
                value of a missing variable, which keeps every value and every such sum.

        A constant function (after pruning) gives a circuit of one `ConstantLayer` (1 or 0).

        Raises:
            OptionError: one literal factory without the other.
        """
        if (literal_input_factory is None) != (negated_literal_input_factory is None):
            raise OptionError(
                "give both literal_input_factory and negated_literal_input_factory, or neither"
            )
        positive = literal_input_factory or default_literal_input_factory(negated=False)
        negative = negated_literal_input_factory or default_literal_input_factory(negated=True)
        weights: Callable[[tuple[int, ...]], ParameterNode] = weight_factory or _unit_weights
        graph = (self.smoothed() if enforce_smoothness else self).pruned()

        builder = CircuitBuilder()
        layer_of: dict[LogicalCircuitNode, Layer] = {}
        for node in graph.topological_ordering():
            inputs = [layer_of[child] for child in graph.node_inputs(node)]
            if isinstance(node, LogicalInputNode):
                factory = positive if isinstance(node, LiteralNode) else negative
                layer = factory(Scope([node.literal]), num_units=1)
                if not isinstance(layer, InputLayer):
                    raise OptionError(
                        f"a literal input factory returned {a_or_an(type(layer).__name__)};"
                        " it must return an input layer"
                    )
                layer_of[node] = builder.add(layer)
            elif isinstance(node, ConjunctionNode):
                layer_of[node] = builder.add(HadamardLayer(1, arity=len(inputs)), inputs)
            elif isinstance(node, DisjunctionNode):
                mixing = MixingLayer(1, len(inputs), weight=weights((1, len(inputs))))
                layer_of[node] = builder.add(mixing, inputs)
            else:  # a constant output
                value = 1.0 if isinstance(node, TopNode) else 0.0
                constant = TensorParameter((1,), ConstantInitializer(value), learnable=False)
                layer_of[node] = builder.add(ConstantLayer(constant))
        return builder.build([layer_of[graph.output]])
