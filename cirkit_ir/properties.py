"""Structural properties, exact, for symbolic circuits, region graphs and IR graphs.

One algorithm reads one small view of a structure (`ScopeView`): its nodes in topological
order, each node's kind (sum, product or other), its children and its scope. Adapters turn a
symbolic `Circuit`, a `RegionGraph` or an IR `Graph` (folded or not: a node of the view is
one fold) into that view; `scope_view.register(MyStructure)` adds one for a structure of
your own. The names and meanings are libcirkit's:

- smooth: every sum's children have the sum's scope;
- decomposable: every product's children have pairwise disjoint scopes covering its scope;
- structured decomposable: smooth, decomposable, and each scope is factorized one way only
  (children with an empty scope, such as evidence or constants, are not part of a
  factorization, and a product with fewer than two non-empty children factorizes nothing);
- omni-compatible: smooth, decomposable and every factorization splits its scope into single
  variables, so any decomposable circuit over the same variables can be rearranged to it;
- compatible (two circuits): both smooth and decomposable, and every scope that either
  factorizes is factorized the same one way by the other.
"""

from __future__ import annotations

import enum
import functools
from collections import defaultdict
from collections.abc import Hashable, Mapping

import attrs

from cirkit_ir.errors import OptionError

Variables = frozenset[int]
Factorization = tuple[Variables, ...]


class NodeKind(enum.Enum):
    SUM = "sum"
    PRODUCT = "product"
    OTHER = "other"  # inputs, constants, evidence, ops with no scope constraint


@attrs.frozen
class StructuralProperties:
    """The structural properties of a circuit (libcirkit's names)."""

    smooth: bool
    decomposable: bool
    structured_decomposable: bool
    omni_compatible: bool


@attrs.frozen(eq=False)
class ScopeView:
    """What the properties are computed from: per node, its kind, children and scope.

    Nodes are any hashable values, listed in `order` (children before parents).
    """

    order: tuple[Hashable, ...]
    kinds: Mapping[Hashable, NodeKind]
    children: Mapping[Hashable, tuple[Hashable, ...]]
    scopes: Mapping[Hashable, Variables]

    @property
    def scope(self) -> Variables:
        return frozenset().union(*self.scopes.values())


@functools.singledispatch
def scope_view(structure: object) -> ScopeView:
    """The view of `structure` (a symbolic circuit, a region graph, an IR graph, a compiled
    circuit, or anything registered with `scope_view.register`)."""
    raise OptionError(
        f"structural properties are defined on symbolic circuits, region graphs, IR graphs and"
        f" compiled circuits, got {type(structure).__name__}; register an adapter with"
        " cirkit_ir.properties.scope_view.register"
    )


@scope_view.register(ScopeView)
def _(view: ScopeView) -> ScopeView:
    return view


# -- the algorithm ---------------------------------------------------------------------------------


def _view(structure: object) -> ScopeView:
    return scope_view(structure)


def is_smooth(structure: object) -> bool:
    view = _view(structure)
    return all(
        view.scopes[child] == view.scopes[node]
        for node in view.order
        if view.kinds[node] is NodeKind.SUM
        for child in view.children[node]
    )


def is_decomposable(structure: object) -> bool:
    view = _view(structure)
    for node in view.order:
        if view.kinds[node] is not NodeKind.PRODUCT:
            continue
        scopes = [view.scopes[child] for child in view.children[node]]
        covered = frozenset().union(*scopes)
        if sum(map(len, scopes)) != len(covered) or covered != view.scopes[node]:
            return False
    return True


def scope_factorizations(structure: object) -> dict[Variables, set[Factorization]]:
    """Scope -> the ways products split it (non-empty child scopes, sorted), for products
    with at least two non-empty children."""
    view = _view(structure)
    found: dict[Variables, set[Factorization]] = defaultdict(set)
    for node in view.order:
        if view.kinds[node] is not NodeKind.PRODUCT:
            continue
        parts = tuple(sorted((s for c in view.children[node] if (s := view.scopes[c])), key=sorted))
        if len(parts) > 1:
            found[view.scopes[node]].add(parts)
    return dict(found)


def _smooth_and_decomposable(view: ScopeView) -> bool:
    return is_smooth(view) and is_decomposable(view)


def is_structured_decomposable(structure: object) -> bool:
    view = _view(structure)
    if not _smooth_and_decomposable(view):
        return False
    return all(len(ways) == 1 for ways in scope_factorizations(view).values())


def is_omni_compatible(structure: object) -> bool:
    view = _view(structure)
    if not _smooth_and_decomposable(view):
        return False
    return all(
        all(len(part) == 1 for part in way)
        for ways in scope_factorizations(view).values()
        for way in ways
    )


def are_compatible(first: object, second: object) -> bool:
    """Whether two circuits can be multiplied layer by layer (same factorization of every
    scope either of them factorizes). Compatibility is symmetric."""
    views = _view(first), _view(second)
    if not all(_smooth_and_decomposable(v) for v in views):
        return False
    one, other = (scope_factorizations(v) for v in views)
    for scope in one.keys() | other.keys():
        ways = one.get(scope, set()) | other.get(scope, set())
        if len(ways) != 1:
            return False
    return True


def structural_properties(structure: object) -> StructuralProperties:
    view = _view(structure)
    return StructuralProperties(
        smooth=is_smooth(view),
        decomposable=is_decomposable(view),
        structured_decomposable=is_structured_decomposable(view),
        omni_compatible=is_omni_compatible(view),
    )


# -- adapters -----------------------------------------------------------------------------------


def _register_adapters() -> None:
    """Adapters for the library's structures (imported here: they import this module)."""
    from cirkit_ir.ir.graph import Graph
    from cirkit_ir.region_graph.graph import RegionGraph
    from cirkit_ir.symbolic.circuit import Circuit
    from cirkit_ir.symbolic.layers import SUM_LAYERS, ProductLayer

    @scope_view.register(Circuit)
    def _circuit(circuit: Circuit) -> ScopeView:
        order = tuple(circuit.topological_ordering())
        scopes = circuit.scopes
        kinds = {
            layer: NodeKind.SUM
            if isinstance(layer, SUM_LAYERS)
            else NodeKind.PRODUCT
            if isinstance(layer, ProductLayer)
            else NodeKind.OTHER
            for layer in order
        }
        return ScopeView(
            order,
            kinds,
            circuit.layers_inputs,
            {layer: scopes[layer].variables for layer in order},
        )

    @scope_view.register(RegionGraph)
    def _region_graph(graph: RegionGraph) -> ScopeView:
        from cirkit_ir.region_graph.nodes import PartitionNode

        order = tuple(graph.topological_ordering())
        kinds = {
            node: NodeKind.PRODUCT
            if isinstance(node, PartitionNode)
            else NodeKind.SUM
            if graph.node_inputs(node)
            else NodeKind.OTHER
            for node in order
        }
        children = {node: tuple(graph.node_inputs(node)) for node in order}
        return ScopeView(order, kinds, children, {node: node.scope.variables for node in order})

    @scope_view.register(Graph)
    def _ir_graph(graph: Graph) -> ScopeView:
        return _ir_view(graph)


def _ir_view(graph: object) -> ScopeView:
    """One view node per (op, fold) of the circuit ops, kinds and scopes from the traits."""
    from cirkit_ir.ir.ops import CircuitOp
    from cirkit_ir.ir.traits import Decomposable, ReadsData, Smooth, Unscoped

    order: list[Hashable] = []
    kinds: dict[Hashable, NodeKind] = {}
    children: dict[Hashable, tuple[Hashable, ...]] = {}
    scopes: dict[Hashable, Variables] = {}
    empty: Variables = frozenset()
    for node in graph.topological_order():  # type: ignore[attr-defined]
        op = graph.op(node)  # type: ignore[attr-defined]
        if not isinstance(op, CircuitOp):
            continue
        kind = (
            NodeKind.SUM
            if op.has_trait(Smooth)
            else NodeKind.PRODUCT
            if op.has_trait(Decomposable)
            else NodeKind.OTHER
        )
        reads = graph.reads(node) if op.arity else {}  # type: ignore[attr-defined]
        for fold in range(op.num_folds):
            key = (node, fold)
            order.append(key)
            kinds[key] = kind
            if op.has_trait(ReadsData):
                kids: tuple[Hashable, ...] = ()
                scopes[key] = frozenset((op.variables[fold],))  # type: ignore[attr-defined]
            elif op.has_trait(Unscoped):
                kids = ()
                scopes[key] = empty
            else:
                kids = tuple(reads[slot][fold] for slot in range(op.arity))
                scopes[key] = frozenset().union(*(scopes[k] for k in kids))
            children[key] = kids
    return ScopeView(tuple(order), kinds, children, scopes)


_register_adapters()
