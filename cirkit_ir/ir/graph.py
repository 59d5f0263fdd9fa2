"""`Graph`: the IR container, a thin typed layer over a networkx MultiDiGraph.

Nodes are integer ids with an `op` attribute (an immutable `Op`). An edge runs from a producer
to a consumer and carries `slot` (an int for a circuit operand or a parameter op's operand, a
string for a circuit op's parameter) and `fold_map` (which producer folds feed which consumer
folds). `outputs` lists the circuit's outputs as (node, fold) pairs.

Passes read and rewrite graphs only through this API; `graph.nx` is there for analyses.

The methods here read networkx's adjacency dicts (`_node`, `_succ`, `_pred`) directly: they
run thousands of times per compilation.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import attrs
import networkx as nx

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.ops import CircuitOp, Op, ParamOp

Slot = int | str


@attrs.frozen
class Operand:
    """One incoming edge as a pass sees it."""

    producer: int
    slot: Slot
    fold_map: FoldMap


@attrs.frozen
class Use:
    """One outgoing edge as a pass sees it."""

    consumer: int
    slot: Slot
    fold_map: FoldMap


def _slot_order(op: Op) -> Callable[[Slot], tuple[int, int]]:
    """Numbered slots first, then named parameter slots in the op's declared order."""
    names = {name: i for i, name in enumerate(getattr(op, "param_slots", ()))}
    return lambda s: (0, s) if isinstance(s, int) else (1, names.get(s, len(names)))


class _MultiDiGraph(nx.MultiDiGraph):
    """`nx.MultiDiGraph` whose edge and degree views are made on each use, not cached.

    networkx caches these views on the graph, and each view points back at the graph: a
    reference cycle. A graph that was once asked for, say, `in_degree` (`nx.topological_sort`
    asks) then outlives its last reference until the cyclic garbage collector finds it, which
    for the thousands of ops of a lowered circuit costs tens of milliseconds, where reference
    counting frees it for nothing. A view costs a microsecond to make.
    """

    edges = property(nx.MultiDiGraph.edges.func)
    out_edges = property(nx.MultiDiGraph.out_edges.func)
    in_edges = property(nx.MultiDiGraph.in_edges.func)
    degree = property(nx.MultiDiGraph.degree.func)
    out_degree = property(nx.MultiDiGraph.out_degree.func)
    in_degree = property(nx.MultiDiGraph.in_degree.func)


class Graph:
    """A circuit and its parameters as one DAG of typed ops."""

    def __init__(self) -> None:
        self.nx: nx.MultiDiGraph = _MultiDiGraph()
        self._next_id = 0
        self.outputs: list[tuple[int, int]] = []

    # -- building -----------------------------------------------------------------------------

    def add_op(
        self,
        op: Op,
        inputs: Sequence[int] = (),
        params: Mapping[str, int] | None = None,
        origin: object = None,
    ) -> int:
        """Adds `op` reading `inputs` (slots 0, 1, ...) and `params` (named slots).

        Edges get identity fold maps over the op's folds; use `connect` for others.
        """
        if not isinstance(op, Op):
            raise OptionError(
                f"Graph.add_op takes an Op (from cirkit_ir.ir.ops), got {type(op).__name__}"
            )
        g = self.nx
        operands = list(enumerate(inputs))
        if params:
            operands += params.items()
        for slot, producer in operands:
            if producer not in g._node:
                raise StructureError(
                    f"%{producer} (slot {slot!r} of the new {op.name}) is not in the graph; add"
                    " the producer first"
                )
        node = self._next_id
        self._next_id += 1
        # Lowering adds thousands of ops, and networkx's add_node / add_edge cost more than
        # the rest of lowering: the node and its edges go straight into the graph's
        # dict-of-dicts (node attributes in _node, edges in _succ and _pred, where
        # _succ[u][v] and _pred[v][u] are one dict of edge key -> edge attributes).
        g._node[node] = {"op": op, "origin": origin}
        g._succ[node] = {}
        in_edges = g._pred[node] = {}
        identity = FoldMap.identity(op.num_folds)  # one shared, immutable map
        for slot, producer in operands:
            data = {"slot": slot, "fold_map": identity}
            keyed = in_edges.get(producer)
            if keyed is None:
                in_edges[producer] = g._succ[producer][node] = {0: data}
            else:  # the producer feeds several slots: keys 0, 1, ... as networkx numbers them
                keyed[len(keyed)] = data
        nx._clear_cache(g)
        return node

    def connect(self, producer: int, consumer: int, slot: Slot, fold_map: FoldMap) -> None:
        """Adds an edge; several edges may feed one slot, each covering some consumer folds."""
        self._check_node(producer)
        self._check_node(consumer)
        if isinstance(slot, bool) or not isinstance(slot, int | str):
            raise OptionError(f"a slot is an operand number or a parameter name, got {slot!r}")
        if not isinstance(fold_map, FoldMap):
            raise OptionError(
                f"Graph.connect takes a FoldMap, got {type(fold_map).__name__}; e.g."
                " FoldMap.identity(folds)"
            )
        self._add_edge(producer, consumer, slot, fold_map)
        nx._clear_cache(self.nx)

    def _check_node(self, node: int) -> None:
        if node not in self.nx._node:
            raise StructureError(f"%{node} is not in the graph")

    def _add_edge(self, producer: int, consumer: int, slot: Slot, fold_map: FoldMap) -> None:
        """`nx.MultiDiGraph.add_edge` without its generality: both nodes exist, new key."""
        data = {"slot": slot, "fold_map": fold_map}
        keyed = self.nx._succ[producer].get(consumer)
        if keyed is None:
            # succ[producer][consumer] and pred[consumer][producer] are one shared dict.
            self.nx._succ[producer][consumer] = self.nx._pred[consumer][producer] = {0: data}
            return
        key = len(keyed)  # networkx's choice of key: the lowest unused from len(keyed) up
        while key in keyed:
            key += 1
        keyed[key] = data

    def disconnect(self, producer: int, consumer: int, slot: Slot | None = None) -> None:
        """Removes the edges from producer to consumer (on `slot` only, if given)."""
        doomed = [
            key
            for key, data in self.nx.get_edge_data(producer, consumer, default={}).items()
            if slot is None or data["slot"] == slot
        ]
        for key in doomed:
            self.nx.remove_edge(producer, consumer, key)

    def set_outputs(self, outputs: Iterable[int | tuple[int, int]]) -> None:
        self.outputs = [o if isinstance(o, tuple) else (o, 0) for o in outputs]

    # -- reading ------------------------------------------------------------------------------

    def op(self, node: int) -> Op:
        return self.nx._node[node]["op"]

    def origin(self, node: int) -> object:
        """What the op was made from (symbolic layers, per fold), for debugging and tooling."""
        return self.nx._node[node].get("origin")

    def set_origin(self, node: int, origin: object) -> None:
        self.nx._node[node]["origin"] = origin

    def __contains__(self, node: object) -> bool:
        return node in self.nx

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def __iter__(self) -> Iterator[int]:
        return iter(self.nx.nodes)

    def operands(self, node: int) -> list[Operand]:
        """Incoming edges, ordered by slot (numbered slots, then parameter slots)."""
        edges = [
            Operand(producer, data["slot"], data["fold_map"])
            for producer, keyed in self.nx._pred[node].items()
            for data in keyed.values()
        ]
        order = _slot_order(self.op(node))
        edges.sort(key=lambda e: (order(e.slot), e.fold_map.consumer[:1], e.producer))
        return edges

    def inputs(self, node: int) -> list[int]:
        """The producer of each numbered slot, in slot order.

        Raises StructureError when a slot is fed by several producers (a folded op); use
        `operands` there.
        """
        by_slot: dict[int, list[int]] = {}
        for e in self.operands(node):
            if isinstance(e.slot, int):
                by_slot.setdefault(e.slot, []).append(e.producer)
        producers = []
        for slot in sorted(by_slot):
            if len(by_slot[slot]) != 1:
                raise StructureError(
                    f"slot {slot} of %{node} has {len(by_slot[slot])} producers (a folded op);"
                    " read its edges with Graph.operands"
                )
            producers.append(by_slot[slot][0])
        return producers

    def params(self, node: int) -> dict[str, int]:
        """The producer of each named parameter slot."""
        return {e.slot: e.producer for e in self.operands(node) if isinstance(e.slot, str)}

    def uses(self, node: int) -> list[Use]:
        return [
            Use(consumer, data["slot"], data["fold_map"])
            for consumer, keyed in self.nx._succ[node].items()
            for data in keyed.values()
        ]

    def users(self, node: int) -> list[int]:
        """Distinct consumers, in id order."""
        return sorted(set(self.nx.successors(node)))

    def is_output(self, node: int) -> bool:
        return any(n == node for n, _ in self.outputs)

    def topological_order(self) -> list[int]:
        """Producers before consumers; ties broken by node id, so the order is stable.

        This is `nx.lexicographical_topological_sort`, written for integer ids: it runs on
        every compilation over thousands of ops.
        """
        pred = self.nx._pred
        # Ids that grow along every edge (as lowering numbers ops) are their own answer:
        # the smallest id left is always ready.
        if all(p < n for n, producers in pred.items() for p in producers):
            return sorted(pred)
        succ = self.nx._succ
        pending = {n: len(producers) for n, producers in pred.items()}
        ready = [n for n, count in pending.items() if count == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            node = heapq.heappop(ready)
            order.append(node)
            for user in succ[node]:
                pending[user] -= 1
                if pending[user] == 0:
                    heapq.heappush(ready, user)
        if len(order) != len(pending):
            raise nx.NetworkXUnfeasible("the graph has a cycle")
        return order

    def circuit_ops(self) -> list[int]:
        """Circuit op nodes in topological order."""
        nodes = self.nx._node
        return [n for n in self.topological_order() if isinstance(nodes[n]["op"], CircuitOp)]

    def param_ops(self) -> list[int]:
        """Parameter op nodes in topological order."""
        nodes = self.nx._node
        return [n for n in self.topological_order() if isinstance(nodes[n]["op"], ParamOp)]

    def depths(self) -> dict[int, int]:
        """Circuit op depth: the longest path, in circuit ops, from an op with no circuit inputs."""
        depth: dict[int, int] = {}
        for node in self.circuit_ops():
            producers = [e.producer for e in self.operands(node) if isinstance(e.slot, int)]
            depth[node] = 1 + max(depth[p] for p in producers) if producers else 0
        return depth

    def param_graph(self, node: int) -> list[int]:
        """The parameter ops that a circuit op's parameters are computed from, in order."""
        seen: set[int] = set()
        stack = list(self.params(node).values())
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.nx.predecessors(n))
        return [n for n in self.topological_order() if n in seen]

    # -- rewriting ----------------------------------------------------------------------------

    def replace_op(self, node: int, op: Op) -> None:
        """Swaps the op of a node, keeping its edges."""
        self.nx._node[node]["op"] = op

    def replace_all_uses(self, old: int, new: int) -> None:
        """Redirects every use of `old` (edges and outputs) to `new`, keeping slots and maps.

        Uses of `old` by `new` itself stay (so an op inserted after `old` keeps reading it).
        """
        if old == new:
            return
        doomed = []
        for consumer, keyed in list(self.nx._succ[old].items()):
            if consumer != new:
                for key, data in keyed.items():
                    self.nx.add_edge(new, consumer, slot=data["slot"], fold_map=data["fold_map"])
                    doomed.append((old, consumer, key))
        self.nx.remove_edges_from(doomed)
        self.outputs = [(new if n == old else n, f) for n, f in self.outputs]

    def erase(self, node: int) -> None:
        """Removes an op that nothing uses."""
        self._check_node(node)
        if self.nx._succ[node] or self.is_output(node):
            users = ", ".join(f"%{u}" for u in self.users(node)) or "the outputs"
            raise StructureError(
                f"cannot erase %{node}: it is still used by {users}; replace its uses first"
                " (Graph.replace_all_uses)"
            )
        self.nx.remove_node(node)

    def erase_unused(self) -> int:
        """Removes every op from which no output is reachable; returns how many."""
        pred = self.nx._pred
        live: set[int] = set()
        stack = [n for n, _ in self.outputs]
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(pred[n])
        dead = [n for n in pred if n not in live]
        if dead:
            self.nx.remove_nodes_from(dead)
        return len(dead)

    def clone(self) -> Graph:
        """An independent copy (ops are immutable, so they are shared)."""
        copy = Graph()
        copy.nx = self.nx.copy()
        copy._next_id = self._next_id
        copy.outputs = list(self.outputs)
        return copy

    # -- comparison and display ---------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Structural equality: the same canonical text form (node ids do not matter)."""
        if not isinstance(other, Graph):
            return NotImplemented
        from cirkit_ir.ir.printer import print_ir

        return print_ir(self) == print_ir(other)

    __hash__ = None  # type: ignore[assignment]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nx.nodes:
            name = self.op(node).name
            counts[name] = counts.get(name, 0) + 1
        return counts

    def __repr__(self) -> str:
        circuit = sum(isinstance(self.op(n), CircuitOp) for n in self.nx.nodes)
        return f"Graph({circuit} circuit ops, {len(self) - circuit} parameter ops)"
