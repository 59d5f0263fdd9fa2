"""Fast reads and fold-map arithmetic on a graph's edges, for passes.

Passes run on graphs with thousands of ops, so these helpers read the networkx adjacency
dicts directly (`Graph.nx`, which the Graph API leaves open for analyses) instead of building
`Operand` records and sorting them. Writes still go through the `Graph` API.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

import attrs

from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph, Slot
from cirkit_ir.ir.ops import CircuitOp, Op, ParamOp

Edge = tuple[int, FoldMap]
"""An incoming edge of one slot: (producer, fold map)."""


def slot_edges(graph: Graph, node: int, slot: Slot) -> list[Edge]:
    """The edges feeding `slot` of `node`, ordered by their first consumer fold."""
    found = [
        (producer, data["fold_map"])
        for producer, keyed in graph.nx._pred[node].items()
        for data in keyed.values()
        if data["slot"] == slot
    ]
    if len(found) > 1:
        found.sort(key=lambda e: (e[1].consumer[:1], e[0]))
    return found


def in_edges(graph: Graph, node: int) -> list[tuple[int, Slot, FoldMap]]:
    """Every incoming edge as (producer, slot, fold map), unordered."""
    return [
        (producer, data["slot"], data["fold_map"])
        for producer, keyed in graph.nx._pred[node].items()
        for data in keyed.values()
    ]


def out_edges(graph: Graph, node: int) -> list[tuple[int, Slot, FoldMap]]:
    """Every outgoing edge as (consumer, slot, fold map), unordered."""
    return [
        (consumer, data["slot"], data["fold_map"])
        for consumer, keyed in graph.nx._succ[node].items()
        for data in keyed.values()
    ]


def num_uses(graph: Graph, node: int) -> int:
    """Edges leaving `node`, plus one per output that names it."""
    uses = sum(len(keyed) for keyed in graph.nx._succ[node].values())
    return uses + sum(1 for n, _ in graph.outputs if n == node)


def single_use(graph: Graph, node: int) -> bool:
    """Exactly one edge reads `node` and it is not an output: it may be fused away."""
    succ = graph.nx._succ[node]
    if len(succ) != 1 or len(next(iter(succ.values()))) != 1:
        return False
    return not any(n == node for n, _ in graph.outputs)


def sorted_map(fold_map: FoldMap) -> FoldMap:
    """The same pairs, ordered by consumer fold (one canonical spelling per edge)."""
    consumer = fold_map.consumer
    if all(consumer[i] < consumer[i + 1] for i in range(len(consumer) - 1)):
        return fold_map
    pairs = sorted(zip(consumer, fold_map.producer, strict=True))
    return FoldMap([c for c, _ in pairs], [p for _, p in pairs])


def through(edges: Iterable[Edge], fold_map: FoldMap) -> list[Edge]:
    """`edges` (feeding some op X) as seen by a consumer that reads X through `fold_map`.

    Used to skip X: the consumer then reads X's producers directly. Edges that feed none of
    the folds the consumer reads are dropped.
    """
    result = []
    identity = fold_map.consumer == fold_map.producer
    for producer, inner in edges:
        if identity and inner.consumer == fold_map.consumer:
            result.append((producer, inner))  # the common case: nothing to compose
            continue
        composed = fold_map.compose(inner)
        if len(composed):
            result.append((producer, sorted_map(composed)))
    return result


def connect_merged(
    graph: Graph, producer: int, consumer: int, slot: Slot, fold_map: FoldMap
) -> None:
    """Adds an edge, merged into an existing one from the same producer on the same slot.

    One edge per (producer, consumer, slot) keeps the printed form canonical whatever order
    rewrites happened in.
    """
    keyed = graph.nx._succ[producer].get(consumer)
    if keyed:
        for key, data in keyed.items():
            if data["slot"] == slot:
                old = data["fold_map"]
                merged = FoldMap(old.consumer + fold_map.consumer, old.producer + fold_map.producer)
                graph.nx.remove_edge(producer, consumer, key)
                graph.connect(producer, consumer, slot, sorted_map(merged))
                return
    graph.connect(producer, consumer, slot, sorted_map(fold_map))


def topological_order(graph: Graph) -> list[int]:
    """Producers before consumers (Kahn's algorithm, first in first out from the insertion
    order): deterministic, and much cheaper than a lexicographic sort on large graphs."""
    pred = graph.nx._pred
    succ = graph.nx._succ
    pending = {node: len(p) for node, p in pred.items()}
    order = [node for node, n in pending.items() if n == 0]
    for node in order:  # `order` grows while it is walked: a queue without pops
        for user in succ[node]:
            pending[user] -= 1
            if pending[user] == 0:
                order.append(user)
    if len(order) != len(pending):
        raise ValueError("the graph has a cycle")
    return order


def circuit_depths(graph: Graph) -> dict[int, int]:
    """Longest path in circuit ops from an op without circuit operands (`Graph.depths`).

    Only circuit ops are visited (Kahn's algorithm on them alone), which is what keeps this
    cheap on graphs where parameter ops outnumber circuit ops.
    """
    nodes = graph.nx._node
    pred = graph.nx._pred
    succ = graph.nx._succ
    pending = {n: 0 for n, data in nodes.items() if isinstance(data["op"], CircuitOp)}
    for node in pending:
        count = 0  # a loop, not sum() over a generator: this runs once per circuit op
        for p in pred[node]:
            if p in pending:
                count += 1
        pending[node] = count
    ready = [n for n, count in pending.items() if count == 0]
    depth = dict.fromkeys(ready, 0)
    while ready:
        node = ready.pop()
        d = depth[node] + 1
        for user in succ[node]:
            if user in pending:
                if depth.get(user, -1) < d:
                    depth[user] = d
                pending[user] -= 1
                if pending[user] == 0:
                    ready.append(user)
    if any(pending.values()):
        raise ValueError("the circuit has a cycle")
    return depth


_SIGNATURE_GETTERS: dict[type, Callable[[Op], tuple[object, ...]] | None] = {}
_FOLD_FIELDS = frozenset({"num_folds_", "variables", "shape", "sources"})


def _getter(cls: type) -> Callable[[Op], tuple[object, ...]] | None:
    """A C-level attribute getter for the signature fields of `cls` (None: use its own)."""
    if cls.signature not in (CircuitOp.signature, ParamOp.signature):
        return None
    names = [f.name for f in attrs.fields(cls) if f.name not in _FOLD_FIELDS]
    if not names:
        return lambda op: ()
    getter = operator.attrgetter(*names)
    return getter if len(names) > 1 else (lambda op: (getter(op),))


def signature(op: Op) -> tuple[object, ...]:
    """`op.signature`, computed from a per-class attribute getter (it runs once per op).

    Classes that override `signature` keep their own; for the others the fold data
    (`num_folds`, `variables`, the fold dimension of `shape`, `sources`) is left out,
    as `CircuitOp.signature` and `ParamOp.signature` do.
    """
    cls = type(op)
    try:
        getter = _SIGNATURE_GETTERS[cls]
    except KeyError:
        getter = _SIGNATURE_GETTERS[cls] = _getter(cls)
    if getter is None:
        return op.signature
    if isinstance(op, ParamOp):
        return (cls, op.shape[1:], getter(op))
    return (cls, getter(op))
