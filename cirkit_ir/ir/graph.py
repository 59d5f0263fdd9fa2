"""`Graph`: the IR container, a thin typed layer over a networkx MultiDiGraph.

Nodes are integer ids with an `op` attribute (an immutable `Op`). An edge runs from a producer
to a consumer and carries `slot` (an int for a circuit operand or a parameter op's operand, a
string for a circuit op's parameter) and `fold_map` (which producer folds feed which consumer
folds). `outputs` lists the circuit's outputs as (node, fold) pairs.

Passes read and rewrite graphs only through this API; `graph.nx` is there for analyses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import attrs
import networkx as nx

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


class Graph:
    """A circuit and its parameters as one DAG of typed ops."""

    def __init__(self) -> None:
        self.nx: nx.MultiDiGraph = nx.MultiDiGraph()
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
        node = self._next_id
        self._next_id += 1
        self.nx.add_node(node, op=op, origin=origin)
        folds = op.num_folds
        for slot, producer in enumerate(inputs):
            self.connect(producer, node, slot, FoldMap.identity(folds))
        for slot, producer in (params or {}).items():
            self.connect(producer, node, slot, FoldMap.identity(folds))
        return node

    def connect(self, producer: int, consumer: int, slot: Slot, fold_map: FoldMap) -> None:
        """Adds an edge; several edges may feed one slot, each covering some consumer folds."""
        for node in (producer, consumer):
            if node not in self.nx:
                raise KeyError(f"%{node} is not in the graph")
        self.nx.add_edge(producer, consumer, slot=slot, fold_map=fold_map)

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
        return self.nx.nodes[node]["op"]

    def origin(self, node: int) -> object:
        """What the op was made from (symbolic layers, per fold), for debugging and tooling."""
        return self.nx.nodes[node].get("origin")

    def set_origin(self, node: int, origin: object) -> None:
        self.nx.nodes[node]["origin"] = origin

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
            for producer, _, data in self.nx.in_edges(node, data=True)
        ]
        order = _slot_order(self.op(node))
        edges.sort(key=lambda e: (order(e.slot), e.fold_map.consumer[:1], e.producer))
        return edges

    def inputs(self, node: int) -> list[int]:
        """The producer of each numbered slot, in slot order.

        Raises ValueError when a slot is fed by several producers (a folded op); use
        `operands` there.
        """
        by_slot: dict[int, list[int]] = {}
        for e in self.operands(node):
            if isinstance(e.slot, int):
                by_slot.setdefault(e.slot, []).append(e.producer)
        producers = []
        for slot in sorted(by_slot):
            if len(by_slot[slot]) != 1:
                raise ValueError(f"slot {slot} of %{node} has {len(by_slot[slot])} producers")
            producers.append(by_slot[slot][0])
        return producers

    def params(self, node: int) -> dict[str, int]:
        """The producer of each named parameter slot."""
        return {
            e.slot: e.producer for e in self.operands(node) if isinstance(e.slot, str)
        }

    def uses(self, node: int) -> list[Use]:
        return [
            Use(consumer, data["slot"], data["fold_map"])
            for _, consumer, data in self.nx.out_edges(node, data=True)
        ]

    def users(self, node: int) -> list[int]:
        """Distinct consumers, in id order."""
        return sorted(set(self.nx.successors(node)))

    def is_output(self, node: int) -> bool:
        return any(n == node for n, _ in self.outputs)

    def topological_order(self) -> list[int]:
        """Producers before consumers; ties broken by node id, so the order is stable."""
        return list(nx.lexicographical_topological_sort(self.nx))

    def circuit_ops(self) -> list[int]:
        """Circuit op nodes in topological order."""
        return [n for n in self.topological_order() if isinstance(self.op(n), CircuitOp)]

    def param_ops(self) -> list[int]:
        """Parameter op nodes in topological order."""
        return [n for n in self.topological_order() if isinstance(self.op(n), ParamOp)]

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
        self.nx.nodes[node]["op"] = op

    def replace_all_uses(self, old: int, new: int) -> None:
        """Redirects every use of `old` (edges and outputs) to `new`, keeping slots and maps.

        Uses of `old` by `new` itself stay (so an op inserted after `old` keeps reading it).
        """
        if old == new:
            return
        doomed = []
        for _, consumer, key, data in list(self.nx.out_edges(old, keys=True, data=True)):
            if consumer != new:
                self.nx.add_edge(new, consumer, slot=data["slot"], fold_map=data["fold_map"])
                doomed.append((old, consumer, key))
        self.nx.remove_edges_from(doomed)
        self.outputs = [(new if n == old else n, f) for n, f in self.outputs]

    def erase(self, node: int) -> None:
        """Removes an op that nothing uses."""
        if self.nx.out_degree(node) or self.is_output(node):
            users = ", ".join(f"%{u}" for u in self.users(node)) or "the outputs"
            raise ValueError(f"cannot erase %{node}: it is still used by {users}")
        self.nx.remove_node(node)

    def erase_unused(self) -> int:
        """Removes every op from which no output is reachable; returns how many."""
        live: set[int] = set()
        stack = [n for n, _ in self.outputs]
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(self.nx.predecessors(n))
        dead = [n for n in self.nx.nodes if n not in live]
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
