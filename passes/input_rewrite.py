"""Replacing some folds of an input op by another op: what integrate, evidence and
differentiate have in common.

A folded input op may read many variables, only some of which a transform touches. The
touched folds move to a new op (built by the caller, fold j of it standing for touched fold
j, in order); the others stay in the input op, renumbered. Every consumer and output is
rewired fold by fold, so the pass works on folded and unfolded graphs alike, and a later
`fold` regroups what was split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph, Location, Slot
from cirkit_ir.ir.ops import CircuitOp

Build = Callable[[Graph, int, tuple[int, ...]], int]
"""(graph, input node, touched folds) -> the new op standing for those folds."""


def restrict(fold_map: FoldMap, folds: Sequence[int]) -> FoldMap:
    """The pairs of `fold_map` whose consumer fold is in `folds`, consumers renumbered to
    their positions in `folds`."""
    position = {f: j for j, f in enumerate(folds)}
    pairs = [
        (position[c], p)
        for c, p in zip(fold_map.consumer, fold_map.producer, strict=True)
        if c in position
    ]
    return FoldMap([c for c, _ in pairs], [p for _, p in pairs]).sorted()


def copy_param_edges(graph: Graph, source: int, target: int, folds: Sequence[int]) -> None:
    """`target` reads, on each parameter slot of `source`, what folds `folds` of `source`
    read (`target` fold j = `source` fold folds[j])."""
    for producer, slot, fold_map in graph.in_edges(source):
        if isinstance(slot, str):
            kept = restrict(fold_map, folds)
            if len(kept):
                graph.connect(producer, target, slot, kept)


def sub_location(graph: Graph, node: int, folds: Sequence[int]) -> Location | None:
    return Location.concat([(graph.location(node), f) for f in folds])


def replace_input_folds(graph: Graph, node: int, touched: Sequence[int], build: Build) -> int:
    """Replaces folds `touched` of input op `node` by `build(graph, node, touched)`; returns
    the new node. The untouched folds stay in a (re-made) input op."""
    op = graph.op(node)
    assert isinstance(op, CircuitOp)
    touched = tuple(touched)
    new = build(graph, node, touched)
    if len(touched) == op.num_folds:
        graph.replace_all_uses(node, new)
        graph.remove_ops([node])
        return new
    moved = set(touched)
    rest = tuple(f for f in range(op.num_folds) if f not in moved)
    kept = graph.add_op(
        op.folded([(op, f) for f in rest]), location=sub_location(graph, node, rest)
    )
    copy_param_edges(graph, node, kept, rest)
    index_in = {f: (new, j) for j, f in enumerate(touched)}
    index_in.update({f: (kept, j) for j, f in enumerate(rest)})
    for consumer, slot, fold_map in graph.out_edges(node):
        graph.disconnect(node, consumer, slot)
        _rewire(graph, consumer, slot, fold_map, index_in)
    graph.outputs = [index_in[f] if n == node else (n, f) for n, f in graph.outputs]
    graph.remove_ops([node])
    return new


def _rewire(
    graph: Graph,
    consumer: int,
    slot: Slot,
    fold_map: FoldMap,
    index_in: dict[int, tuple[int, int]],
) -> None:
    by_producer: dict[int, tuple[list[int], list[int]]] = {}
    for c, p in zip(fold_map.consumer, fold_map.producer, strict=True):
        producer, fold = index_in[p]
        consumers, producers = by_producer.setdefault(producer, ([], []))
        consumers.append(c)
        producers.append(fold)
    for producer, (consumers, producers) in by_producer.items():
        graph.connect(producer, consumer, slot, FoldMap(consumers, producers))
