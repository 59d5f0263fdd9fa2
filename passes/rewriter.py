"""Pattern rewriting: local match-and-rewrite rules applied greedily to a fixed point.

The shape follows MLIR / xDSL: a `RewritePattern` looks at one root op and, if it matches,
rewrites the graph through a `PatternRewriter`, whose helpers record what changed so that the
driver can revisit the ops around it. `apply_patterns_greedily` seeds a worklist with every op
(producers first), applies patterns until the worklist is empty, and sweeps again until a
sweep changes nothing.

Fold maps are handled by the helpers: skipping an op composes the maps on its way
(`FoldMap.compose`), so a pattern written for single-fold ops also works on folded graphs as
long as it reads operands with `edges` / `operand` instead of assuming one edge per slot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import ClassVar

from cirkit_ir.errors import ConvergenceError
from cirkit_ir.ir.fold_map import FoldMap, through
from cirkit_ir.ir.graph import Edge, Graph, Location, Slot
from cirkit_ir.ir.ops import Op


class RewritePattern:
    """A local rewrite rooted at one op.

    `op_types` lists the op classes the root may have (subclasses included); the driver only
    calls `match_and_rewrite` on those (an empty tuple means every op). The method returns
    True if and only if it changed the graph: the driver counts a True as a change whatever
    the pattern did. Changing the graph through `rewriter`'s helpers also revisits the ops
    around the change at once; other changes are seen on the driver's next sweep.
    """

    op_types: ClassVar[tuple[type[Op], ...]] = ()

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


class PatternRewriter:
    """Mutates a graph on behalf of patterns and reports the ops to revisit.

    Every helper keeps fold maps right: edges are merged per (producer, consumer, slot) and
    ordered by consumer fold, so rewrites in any order print the same graph.
    """

    def __init__(self, graph: Graph, worklist: Worklist | None = None) -> None:
        self.graph = graph
        self.worklist = worklist
        self.changed = False

    # -- reading ------------------------------------------------------------------------------

    def edges(self, node: int, slot: Slot) -> list[Edge]:
        """The (producer, fold map) edges feeding `slot` of `node`."""
        return self.graph.slot_edges(node, slot)

    def operand(self, node: int, slot: Slot) -> Edge | None:
        """The single edge feeding `slot`, or None when there are several (or none)."""
        found = self.graph.slot_edges(node, slot)
        return found[0] if len(found) == 1 else None

    def single_use(self, node: int) -> bool:
        """One edge reads `node` and it is not an output (`Graph.has_one_use`)."""
        return self.graph.has_one_use(node)

    def used_only_by(self, node: int, user: int) -> bool:
        """Every edge leaving `node` goes to `user`; not an output (`Graph.used_only_by`)."""
        return self.graph.used_only_by(node, user)

    # -- writing ------------------------------------------------------------------------------

    def touch(self, *nodes: int) -> None:
        """Marks `nodes` changed: the driver visits them and their users again (a pattern
        rooted at a user may match the changed op)."""
        self.changed = True
        worklist = self.worklist
        if worklist is None:
            return
        graph = self.graph
        for node in nodes:
            if node in graph:
                worklist.push(node)
                worklist.extend(graph.users(node))

    def _lost_use(self, producer: int) -> None:
        """`producer` lost a user: it may be dead now, or its remaining user may now be its
        only one (which is what fusion patterns look for), so both are revisited."""
        self.changed = True
        if self.worklist is not None and producer in self.graph:
            self.worklist.push(producer)
            self.worklist.extend(self.graph.users(producer))

    def insert_op(
        self,
        op: Op,
        inputs: Sequence[int] = (),
        params: Mapping[str, int] | None = None,
        location: Location | None = None,
    ) -> int:
        """Adds a new op (identity fold maps to `inputs` and `params`); returns its node."""
        node = self.graph.add_op(op, inputs, params, location)
        self.touch(node)
        return node

    def connect(
        self, producer: int, consumer: int, slot: Slot, fold_map: FoldMap | None = None
    ) -> None:
        """Adds an edge (identity map over the consumer's folds by default), merging it with an
        existing edge from the same producer on the same slot."""
        if fold_map is None:
            fold_map = FoldMap.identity(self.graph.op(consumer).num_folds)
        self.graph.connect(producer, consumer, slot, fold_map)
        self.touch(consumer)

    def set_operands(self, node: int, slot: Slot, edges: Iterable[Edge]) -> None:
        """Makes `edges` the only ones feeding `slot` of `node`."""
        graph = self.graph
        for producer, _ in graph.slot_edges(node, slot):
            graph.disconnect(producer, node, slot)
            self._lost_use(producer)
        for producer, fold_map in edges:
            graph.connect(producer, node, slot, fold_map)
        self.touch(node)

    def replace_op(self, node: int, op: Op) -> None:
        """Swaps the op of `node`, keeping its edges, uses and location."""
        self.graph.replace_op(node, op)
        self.touch(node)

    def erase_op(self, node: int, dead_producers: bool = True) -> None:
        """Erases an unused op; with `dead_producers`, then every producer left unused."""
        graph = self.graph
        stack = [node]
        while stack:
            n = stack.pop()
            if n not in graph or graph.num_uses(n):
                continue
            producers = graph.producers(n)
            graph.erase(n)
            self.changed = True
            for producer in producers:
                self._lost_use(producer)
            if dead_producers:
                stack.extend(producers)

    def replace_all_uses(self, old: int, new: int) -> None:
        """Every use of `old` (edges and outputs) reads `new` instead, with the same maps."""
        graph = self.graph
        users = graph.users(old)
        graph.replace_all_uses(old, new)
        self.touch(new, *users)
        self._lost_use(old)

    def bypass(self, node: int, slot: Slot = 0) -> None:
        """Removes an op that passes `slot` through unchanged (an identity).

        Its users read what feeds `slot` instead (fold maps composed), outputs are renamed
        likewise, and the op is erased with whatever it alone used.
        """
        graph = self.graph
        feeding = graph.slot_edges(node, slot)
        users = graph.users(node)
        for consumer, use_slot, fold_map in graph.out_edges(node):
            graph.disconnect(node, consumer, use_slot)
            for producer, composed in through(feeding, fold_map):
                graph.connect(producer, consumer, use_slot, composed)
        if graph.is_output(node):
            lookup = {
                c: (producer, p)
                for producer, fold_map in feeding
                for c, p in zip(fold_map.consumer, fold_map.producer, strict=True)
            }
            graph.outputs = [lookup[f] if n == node else (n, f) for n, f in graph.outputs]
        self.touch(*users)
        self.erase_op(node)


# -- the driver -------------------------------------------------------------------------------


class Worklist:
    """FIFO of nodes to visit, each at most once in the queue."""

    def __init__(self, nodes: Iterable[int] = ()) -> None:
        self._queue: deque[int] = deque()
        self._queued: set[int] = set()
        self.extend(nodes)

    def push(self, node: int) -> None:
        if node not in self._queued:
            self._queued.add(node)
            self._queue.append(node)

    def extend(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            self.push(node)

    def pop(self) -> int:
        node = self._queue.popleft()
        self._queued.discard(node)
        return node

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __len__(self) -> int:
        return len(self._queue)


class _Dispatch:
    """The patterns that may match each op class, looked up once per class."""

    def __init__(self, patterns: Sequence[RewritePattern]) -> None:
        self.patterns = tuple(patterns)
        self._by_type: dict[type, tuple[RewritePattern, ...]] = {}

    def __call__(self, op_type: type) -> tuple[RewritePattern, ...]:
        found = self._by_type.get(op_type)
        if found is None:
            found = tuple(
                p for p in self.patterns if not p.op_types or issubclass(op_type, p.op_types)
            )
            self._by_type[op_type] = found
        return found


def apply_patterns_greedily(
    graph: Graph,
    patterns: Sequence[RewritePattern],
    max_iterations: int = 10,
    max_rewrites: int | None = None,
    statistics: MutableMapping[str, int] | None = None,
) -> bool:
    """Applies `patterns` until none matches anywhere; True if the graph changed.

    `statistics` (a pass's `context.statistics`) counts the rewrites of each pattern.

    One iteration visits every op (producers first) and, after each rewrite, the ops around
    it; iterations repeat until one changes nothing. A rewrite is a pattern returning True,
    whether or not it used the rewriter's helpers. ConvergenceError if `max_iterations`
    iterations all changed the graph, or one iteration exceeds `max_rewrites` rewrites
    (default: a few per op), which is what patterns that undo each other look like.
    """
    dispatch = _Dispatch(patterns)
    changed = False
    for _ in range(max_iterations):
        # Ops that no pattern can root at (tensors, say) are not even queued.
        worklist = Worklist(n for n in graph.topological_order() if dispatch(type(graph.op(n))))
        rewriter = PatternRewriter(graph, worklist)
        budget = max_rewrites if max_rewrites is not None else 4 * len(graph) + 64
        recent: deque[str] = deque(maxlen=6)
        while worklist:
            node = worklist.pop()
            if node not in graph:
                continue
            for pattern in dispatch(type(graph.op(node))):
                if pattern.match_and_rewrite(graph, node, rewriter):
                    rewriter.changed = True
                    if statistics is not None:
                        statistics[repr(pattern)] = statistics.get(repr(pattern), 0) + 1
                    recent.append(f"{pattern!r} at %{node}")
                    budget -= 1
                    if budget < 0:
                        raise ConvergenceError(
                            "rewrite patterns do not converge: too many rewrites in one sweep"
                            f" (last: {', '.join(recent)}); do two patterns undo each other?"
                        )
                    break
        if not rewriter.changed:
            return changed
        changed = True
    raise ConvergenceError(
        f"rewrite patterns {list(dispatch.patterns)} still changed the graph after"
        f" {max_iterations} iterations; raise max_iterations or check the patterns"
    )
