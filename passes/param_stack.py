"""Stacking parameter chains: give fold j of a new consumer the value of some (op, fold).

`fold` and `fuse` both move parameters between ops with different fold orders. Reading the
old parameter op through a fold map (a gather) is always correct; but when nothing else reads
it, rebuilding the chain in the consumer's fold order (tensors get their `sources` reordered)
is better: the backend evaluates each parameter op once over contiguous folds, and the result
no longer depends on the order passes ran in.

A chain is rebuilt only when it is private to the requested values: every fold-use of its
producers is among the requested (op, fold) pairs, no pair is requested twice, and the
producers share a signature. Shared parameters stay put and are gathered, so tied weights
remain tied.

Fixed constants (tensors that do not learn, drawn from `ConstantInitializer`s or
`ConstantTensorInitializer`s) stack even when their values differ, as observations do (one
per observed variable): the graph holds each fold's value under its source, so the stacked
tensor is exactly what the separate ones were.
"""

from __future__ import annotations

from collections.abc import Callable

from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Edge, Graph, Location, Ref, Slot
from cirkit_ir.ir.ops import ParamOp, TensorOp
from cirkit_ir.symbolic.initializers import ConstantInitializer, ConstantTensorInitializer

Reads = Callable[[int], dict[Slot, list[Ref]]]


def gather(refs: list[Ref]) -> list[Edge]:
    """Edges reading `refs[j]` into fold j, one per producer."""
    pieces: dict[int, tuple[list[int], list[int]]] = {}
    for j, (producer, q) in enumerate(refs):
        consumer, produced = pieces.setdefault(producer, ([], []))
        consumer.append(j)
        produced.append(q)
    return [(p, FoldMap(c, q)) for p, (c, q) in pieces.items()]


class ParamStacker:
    """Builds the edges that feed requested parameter values, rebuilding private chains.

    `replaced` collects the old parameter ops whose every use was rebuilt: they are unused
    once their old consumers are gone. `created` lists the new ops.
    """

    def __init__(self, graph: Graph, reads: Reads | None = None) -> None:
        self.graph = graph
        self.reads: Reads = reads if reads is not None else graph.reads
        self.replaced: list[int] = []
        self.created: list[int] = []

    def stack(self, ref_lists: list[list[Ref]]) -> list[list[Edge]]:
        """For each list, the edges giving consumer fold j the value `refs[j]`."""
        if len(ref_lists) == 1:
            refs = ref_lists[0]
            producer = refs[0][0]
            if all(p == producer and q == j for j, (p, q) in enumerate(refs)):
                if self.graph.op(producer).num_folds == len(refs):
                    return [[(producer, FoldMap.identity(len(refs)))]]
        every = [ref for refs in ref_lists for ref in refs]
        producers = list(dict.fromkeys(p for p, _ in every))
        if not self._private(every, producers):
            return [gather(refs) for refs in ref_lists]
        graph = self.graph
        self.replaced.extend(producers)
        _hold_constants(graph, producers)
        result = []
        new_nodes = []
        for refs in ref_lists:
            parts = [(graph.op(p), q) for p, q in refs]
            location = Location.concat([(graph.location(p), q) for p, q in refs])
            new_nodes.append(graph.add_op(parts[0][0].folded(parts), location=location))
            self.created.append(new_nodes[-1])
            result.append([(new_nodes[-1], FoldMap.identity(len(refs)))])
        first = graph.op(producers[0])
        for slot in range(first.arity):
            operand_lists = [[self.reads(p)[slot][q] for p, q in refs] for refs in ref_lists]
            for node, edges in zip(new_nodes, self.stack(operand_lists), strict=True):
                for producer, fold_map in edges:
                    self.graph.connect(producer, node, slot, fold_map)
        return result

    def _private(self, refs: list[Ref], producers: list[int]) -> bool:
        """Only `refs` read the producers, each fold once, and the producers fold together."""
        if len(set(refs)) != len(refs):
            return False
        graph = self.graph
        counts: dict[int, int] = dict.fromkeys(producers, 0)
        for p, _ in refs:
            counts[p] += 1
        first_op = graph.op(producers[0])
        first = _stack_signature(first_op)
        for p in producers:
            op = graph.op(p)
            if not isinstance(op, ParamOp):
                return False
            if graph.fold_uses(p) != counts[p]:
                return False
            # Lowering shares equal ops (`lower.shared_op`): the same op, the same signature.
            if op is not first_op and _stack_signature(op) != first:
                return False
        return True


_ANY_CONSTANT = ConstantInitializer(0.0)


def _is_fixed_constant(op: object) -> bool:
    return (
        isinstance(op, TensorOp)
        and not op.learnable
        and isinstance(op.initializer, ConstantInitializer | ConstantTensorInitializer)
    )


def _stack_signature(op: ParamOp) -> tuple[object, ...]:
    """What must agree for ops to stack: the signature, but any constant for fixed ones."""
    if _is_fixed_constant(op):
        return op.replace(initializer=_ANY_CONSTANT).signature  # type: ignore[attr-defined]
    return op.signature


def _hold_constants(graph: Graph, producers: list[int]) -> None:
    """Holds the value of every fold of fixed constants that are about to stack with others
    of another value (the stacked op keeps the first one's initializer)."""
    if not _is_fixed_constant(graph.op(producers[0])):
        return
    ops = [graph.op(p) for p in producers]
    if len({op.initializer for op in ops}) == 1:  # type: ignore[attr-defined]
        return
    import torch

    for op in ops:
        folds = op.initializer.sample(op.shape, torch.float64)  # type: ignore[attr-defined]
        for source, value in zip(op.sources, folds, strict=True):  # type: ignore[attr-defined]
            graph.values.setdefault(source, value)
