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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph, Slot
from cirkit_ir.ir.ops import Op, ParamOp, TensorOp
from cirkit_ir.passes.edges import Edge, signature

Ref: TypeAlias = tuple[int, int]
"""(node, fold)."""

Reads = Callable[[int], dict[Slot, list[Ref]]]


def fold_reads(graph: Graph, node: int) -> dict[Slot, list[Ref]]:
    """Per slot, per fold of `node`: the (producer, producer fold) it reads."""
    found: dict[Slot, list[Ref]] = {}
    folds = 0
    for producer, keyed in graph.nx._pred[node].items():
        for data in keyed.values():
            fold_map = data["fold_map"]
            consumer = fold_map.consumer
            if consumer == (0,):
                folds = folds or num_folds(graph.nx._node[node]["op"])
                if folds == 1:
                    found[data["slot"]] = [(producer, fold_map.producer[0])]
                    continue
            per_fold = found.get(data["slot"])
            if per_fold is None:
                folds = folds or num_folds(graph.nx._node[node]["op"])
                per_fold = found[data["slot"]] = [(-1, -1)] * folds
            for c, p in zip(consumer, fold_map.producer, strict=True):
                per_fold[c] = (producer, p)
    return found


def num_folds(op: Op) -> int:
    """Fold count, without building a result type for parameter ops."""
    return op.shape[0] if isinstance(op, ParamOp) else op.num_folds


def fold_param_op(parts: list[tuple[ParamOp, int]]) -> ParamOp:
    """The parameter op whose fold j is fold `parts[j][1]` of `parts[j][0]`."""
    first = parts[0][0]
    shape = (len(parts), *first.shape[1:])
    if isinstance(first, TensorOp):
        sources = [op.sources[f] for op, f in parts]  # type: ignore[attr-defined]
        return first.replace(shape=shape, sources=sources)  # type: ignore[return-value]
    return first.replace(shape=shape)  # type: ignore[return-value]


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
        self.reads: Reads = reads if reads is not None else (lambda n: fold_reads(graph, n))
        self.replaced: list[int] = []
        self.created: list[int] = []

    def stack(self, ref_lists: list[list[Ref]]) -> list[list[Edge]]:
        """For each list, the edges giving consumer fold j the value `refs[j]`."""
        if len(ref_lists) == 1:
            refs = ref_lists[0]
            producer = refs[0][0]
            if all(p == producer and q == j for j, (p, q) in enumerate(refs)):
                if num_folds(self.graph.op(producer)) == len(refs):
                    return [[(producer, FoldMap.identity(len(refs)))]]
        every = [ref for refs in ref_lists for ref in refs]
        producers = list(dict.fromkeys(p for p, _ in every))
        if not self._private(every, producers):
            return [gather(refs) for refs in ref_lists]
        nodes = self.graph.nx._node
        self.replaced.extend(producers)
        result = []
        new_nodes = []
        for refs in ref_lists:
            op = fold_param_op([(nodes[p]["op"], q) for p, q in refs])
            new_nodes.append(self.graph.add_op(op))
            self.created.append(new_nodes[-1])
            result.append([(new_nodes[-1], FoldMap.identity(len(refs)))])
        first = nodes[producers[0]]["op"]
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
        nodes = self.graph.nx._node
        succ = self.graph.nx._succ
        counts: dict[int, int] = dict.fromkeys(producers, 0)
        for p, _ in refs:
            counts[p] += 1
        first = signature(nodes[producers[0]]["op"])
        for p in producers:
            op = nodes[p]["op"]
            if not isinstance(op, ParamOp):
                return False
            uses = 0
            for keyed in succ[p].values():
                for data in keyed.values():
                    uses += len(data["fold_map"].consumer)
            if uses != counts[p]:
                return False
            if p != producers[0] and signature(op) != first:
                return False
        return True
