"""`fold`: stack circuit ops of equal signature at equal depth into one op with many folds.

Depth is the longest path from the inputs (`Graph.depths`). Each (op, fold) of a depth lands
in the group of its op's signature; a group becomes one op whose folds are ordered
canonically, never by node id:

- ops without circuit operands by their variable (inputs) and then by parameter sources;
- other ops by the (group, fold) positions that their operands got, slot by slot.

So the folded graph depends only on the circuit's structure: folding before or after fusion,
or folding a graph twice, gives equal graphs (folding is idempotent; already folded ops are
split into their folds and regrouped, so partially folded graphs fold like unfolded ones).

Parameters fold alongside. A parameter op that only the folded ops read (fold by fold, each
fold once: a private chain such as tensor -> softmax per dense op) is stacked with its peers
when they share a signature, recursively: tensors get their `sources` concatenated in fold
order. Anything else, notably a parameter shared by several ops, is left as it is and read
through fold maps (a gather), so sharing, and thus training semantics, are kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import attrs

from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph, Location, Ref, Slot
from cirkit_ir.ir.ops import CircuitOp, Op, TensorOp
from cirkit_ir.passes.param_stack import ParamStacker
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass


@register_pass("fold")
@attrs.frozen
class Fold(Pass):
    """Groups same-signature circuit ops by depth into folded ops (parameters alongside)."""

    def run(self, graph: Graph, context: PassContext) -> bool:
        """Folds, counting the circuit ops before and the folded ops made."""
        folder = _Folder(graph)
        changed = folder.run()
        context.statistics["circuit ops folded"] += folder.folded_ops
        context.statistics["folded ops made"] += folder.made_ops
        return changed


def _cached_reads(graph: Graph) -> Callable[[int], dict[Slot, list[Ref]]]:
    """`Graph.reads`, cached per node: per slot, per fold of a node, the (producer, producer
    fold) it reads."""
    cache: dict[int, dict[Slot, list[Ref]]] = {}

    def reads(node: int) -> dict[Slot, list[Ref]]:
        found = cache.get(node)
        if found is None:
            found = cache[node] = graph.reads(node)
        return found

    return reads


class _Folder:
    """The state of one fold: positions of every (op, fold), reads, and what to erase."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.reads = _cached_reads(graph)
        self.folded_ops = self.made_ops = 0  # what the statistics report
        self.position: dict[int, list[tuple[int, int]]] = {}
        # `self.reads` is a plain closure, not a bound method: the stacker must not point
        # back at the folder. Such a cycle would keep the unfolded graph (which the folder
        # holds) alive after the pass, for the cyclic garbage collector to find and free:
        # tens of milliseconds, where reference counting frees it for nothing.
        self.params = ParamStacker(graph, self.reads)
        self.op: Callable[[int], Op] = graph.op

    # -- grouping -------------------------------------------------------------------------------

    def run(self) -> bool:
        depth = self.graph.depths()
        levels: dict[int, list[int]] = defaultdict(list)
        for node, d in depth.items():
            levels[d].append(node)
        groups: list[list[Ref]] = []
        position = self.position
        for d in sorted(levels):
            for members in self._group_level(levels[d]):
                index = len(groups)
                for j, (node, f) in enumerate(members):
                    slots = position.get(node)
                    if slots is None:
                        slots = position[node] = [(-1, -1)] * self.op(node).num_folds
                    slots[f] = (index, j)
                groups.append(members)
        trivial = [self._is_trivial(members) for members in groups]
        if all(trivial):
            return False
        self.made_ops = trivial.count(False)
        self.folded_ops = len(
            {n for m, keep in zip(groups, trivial, strict=True) if not keep for n, _ in m}
        )
        self._rebuild(groups, trivial)
        return True

    def _group_level(self, level: list[int]) -> list[list[Ref]]:
        by_signature: dict[object, list[tuple[tuple, int, int]]] = defaultdict(list)
        for node in level:
            op = self.op(node)
            assert isinstance(op, CircuitOp)
            folds = op.num_folds
            arity = op.arity
            if arity:
                reads = self.reads(node)
                slots = [reads[s] for s in range(arity)]
                position = self.position
                if folds == 1:
                    keys = [tuple(position[p][q] for ((p, q),) in slots)]
                else:
                    keys = [
                        tuple(position[p][q] for p, q in (per_fold[f] for per_fold in slots))
                        for f in range(folds)
                    ]
            else:
                keys = [op.fold_key(f) for f in range(folds)]
            entries = by_signature[op.signature]
            for f in range(folds):
                entries.append((keys[f], node, f))
        groups = []
        for entries in by_signature.values():
            entries.sort(key=lambda e: e[0])
            if any(entries[i][0] == entries[i + 1][0] for i in range(len(entries) - 1)):
                entries.sort(key=lambda e: (e[0], self._param_key(e[1], e[2]), e[1], e[2]))
            groups.append(entries)
        groups.sort(key=lambda g: (g[0][0], self._describe(g[0][1])))
        return [[(node, f) for _, node, f in entries] for entries in groups]

    def _describe(self, node: int) -> str:
        """A stable name for a group, to order groups whose first keys tie."""
        op = self.op(node)
        return f"{op.name} {op.signature!r}"

    def _param_key(self, node: int, fold: int) -> tuple:
        """What the parameters of one fold are made of (tensor sources): a tie-breaker."""
        op = self.op(node)
        if isinstance(op, TensorOp):
            return ("tensor", op.sources[fold])
        reads = self.reads(node)
        if isinstance(op, CircuitOp):
            slots: list[int | str] = list(op.param_slots)
        else:
            slots = list(range(op.arity))  # type: ignore[attr-defined]
        return (op.name, *(self._param_key(*reads[s][fold]) for s in slots if s in reads))

    def _is_trivial(self, members: list[Ref]) -> bool:
        node = members[0][0]
        if any(n != node or f != j for j, (n, f) in enumerate(members)):
            return False
        return len(members) == self.op(node).num_folds

    # -- rebuilding -----------------------------------------------------------------------------

    def _rebuild(self, groups: list[list[Ref]], trivial: list[bool]) -> None:
        graph = self.graph
        new_node: list[int] = []
        for members, keep in zip(groups, trivial, strict=True):
            if keep:
                new_node.append(members[0][0])
            else:
                first = self.op(members[0][0])
                op = first.folded([(self.op(n), f) for n, f in members])
                location = Location.concat([(graph.location(n), f) for n, f in members])
                new_node.append(graph.add_op(op, location=location))
        kept = {members[0][0] for members, keep in zip(groups, trivial, strict=True) if keep}
        for index, (members, keep) in enumerate(zip(groups, trivial, strict=True)):
            node = new_node[index]
            op = self.op(node)
            assert isinstance(op, CircuitOp)
            if keep:
                # A kept op's folds keep their positions; only edges from rebuilt ops change.
                reads = self.reads(node)
                operands = [(p, s) for s in range(op.arity) for p, _ in set(reads[s])]
                if all(p in kept for p, _ in operands):
                    continue
                for producer, slot in set(operands):
                    graph.disconnect(producer, node, slot)
            for slot in range(op.arity):
                self._connect_circuit_slot(members, slot, node, new_node)
            if not keep:
                for name in op.param_slots:
                    refs = [self.reads(n)[name][f] for n, f in members]
                    for producer, fold_map in self.params.stack([refs])[0]:
                        graph.connect(producer, node, name, fold_map)
        position = self.position
        graph.outputs = [(new_node[position[n][f][0]], position[n][f][1]) for n, f in graph.outputs]
        # Bulk removal: the folded-away ops and their private parameters are unused now, and
        # erasing thousands of them one by one costs more than the fold itself.
        doomed = set(self.params.replaced)
        doomed.update(n for m, keep in zip(groups, trivial, strict=True) if not keep for n, _ in m)
        graph.remove_ops(doomed)

    def _connect_circuit_slot(
        self, members: list[Ref], slot: int, node: int, new_node: list[int]
    ) -> None:
        pieces: dict[int, tuple[list[int], list[int]]] = {}
        position = self.position
        for j, (member, f) in enumerate(members):
            producer, q = self.reads(member)[slot][f]
            group, fold = position[producer][q]
            consumer, produced = pieces.setdefault(new_node[group], ([], []))
            consumer.append(j)
            produced.append(fold)
        for producer, (consumer, produced) in pieces.items():
            self.graph.connect(producer, node, slot, FoldMap(consumer, produced))
