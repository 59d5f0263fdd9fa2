"""`Graph`: the IR container, and the one door to the networkx graph beneath it.

Nodes are integer ids, and a node's id is its name: the text form prints node 12 as `%12`,
errors name it `%12`, and the generated code calls its value `h12` (one name per value).
Each node holds an immutable `Op` and, optionally, a `Location` (where it came from). An edge
runs from a producer to a consumer and carries `slot` (an int for a circuit operand or a
parameter op's operand, a string for a circuit op's parameter) and `fold_map` (which producer
folds feed which consumer folds); there is at most one edge per (producer, consumer, slot).
`outputs` lists the circuit's outputs as (node, fold) pairs.

Beside the ops, a graph declares the data it reads (`num_variables`, `num_channels`: the
batch layout of a compiled circuit, whatever ops passes remove) and may hold tensor values
(`values`: source id -> tensor, see `TensorOp`), so that passes can read and rewrite weights.

Passes read and rewrite graphs only through this API (and the pattern rewriter built on it).
`graph.nx` is there for networkx algorithms; the methods here read networkx's adjacency dicts
directly (`_node`, `_succ`, `_pred`): they run thousands of times per compilation, and no
module but this one touches those dicts.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import networkx as nx

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.ops import CircuitOp, Op, ParamOp, TensorOp
from cirkit_ir.ir.traits import ReadsData
from cirkit_ir.validators import is_int

Slot = int | str
Edge = tuple[int, FoldMap]
"""An incoming edge of one slot: (producer, fold map)."""
Ref = tuple[int, int]
"""(node, fold)."""


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


@attrs.frozen
class Location:
    """Where an op came from: for each fold, the index of its symbolic layer in
    `circuit.layers`; for a parameter op, also the parameter slot of that layer it feeds.

    Lowering sets locations, passes carry them (folding concatenates them), and the text form
    prints them on request (`print_ir(graph, locations=True)`) and always parses them.
    """

    layers: tuple[int, ...]  # a tuple of ints (made for every lowered op: not converted)
    slot: str | None = None

    @classmethod
    def concat(cls, parts: Sequence[tuple[Location | None, int]]) -> Location | None:
        """The location of a folded op whose fold j is fold `parts[j][1]` of a located op."""
        first = parts[0][0]
        if first is None:
            return None
        layers = []
        for location, fold in parts:
            if location is None or location.slot != first.slot or fold >= len(location.layers):
                return None
            layers.append(location.layers[fold])
        return cls(tuple(layers), first.slot)


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
    """A circuit and its parameters as one DAG of typed ops.

    `num_variables`, `num_channels`: the data a compiled circuit reads, (B, C, D) batches;
    None until declared (lowering declares them; `declared_variables()` falls back on the
    input ops). `values`: tensor values held for tensor sources (see `TensorOp`).
    """

    def __init__(self, *, num_variables: int | None = None, num_channels: int | None = None):
        self.nx: nx.MultiDiGraph = _MultiDiGraph()
        self._next_id = 0
        self._next_source = 0
        self.outputs: list[Ref] = []
        self.num_variables = num_variables
        self.num_channels = num_channels
        self.values: dict[int, Any] = {}

    # -- building -----------------------------------------------------------------------------

    def add_op(
        self,
        op: Op,
        inputs: Sequence[int] = (),
        params: Mapping[str, int] | None = None,
        location: Location | None = None,
        *,
        node: int | None = None,
    ) -> int:
        """Adds `op` reading `inputs` (slots 0, 1, ...) and `params` (named slots); returns
        its node, a fresh id unless `node` asks for one (the parser keeps printed names).

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
        if node is None:
            node = self._next_id
            self._next_id = node + 1
        elif node in g._node or not is_int(node) or node < 0:
            raise StructureError(f"cannot add an op as %{node}: the name is taken or not an id")
        elif node >= self._next_id:
            self._next_id = node + 1
        if type(op) is TensorOp and len(op.sources) == 1:  # lowering's case, inlined
            if op.sources[0] >= self._next_source:
                self._next_source = op.sources[0] + 1
        elif isinstance(op, TensorOp):
            self._note_sources(op)
        # Lowering adds thousands of ops, and networkx's add_node / add_edge cost more than
        # the rest of lowering: the node and its edges go straight into the graph's
        # dict-of-dicts (node attributes in _node, edges in _succ and _pred, where
        # _succ[u][v] and _pred[v][u] are one dict of edge key -> edge attributes).
        g._node[node] = {"op": op, "location": location}
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
        """Adds an edge: `producer` feeds the consumer folds of `fold_map` on `slot`.

        An edge from the same producer on the same slot is extended instead (its pairs
        merged, ordered by consumer fold), so that a graph has one edge per (producer,
        consumer, slot) however it was built.
        """
        self._check_node(producer)
        self._check_node(consumer)
        if isinstance(slot, bool) or not isinstance(slot, int | str):
            raise OptionError(f"a slot is an operand number or a parameter name, got {slot!r}")
        if not isinstance(fold_map, FoldMap):
            raise OptionError(
                f"Graph.connect takes a FoldMap, got {type(fold_map).__name__}; e.g."
                " FoldMap.identity(folds)"
            )
        keyed = self.nx._succ[producer].get(consumer)
        if keyed:
            for data in keyed.values():
                if data["slot"] == slot:
                    old = data["fold_map"]
                    data["fold_map"] = FoldMap(
                        old.consumer + fold_map.consumer, old.producer + fold_map.producer
                    ).sorted()
                    return
        self._add_edge(producer, consumer, slot, fold_map.sorted())
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
        keyed = self.nx._succ[producer].get(consumer)
        if not keyed:
            return
        for key in [k for k, data in keyed.items() if slot is None or data["slot"] == slot]:
            del keyed[key]
        if not keyed:
            del self.nx._succ[producer][consumer]
            del self.nx._pred[consumer][producer]
        nx._clear_cache(self.nx)

    def set_outputs(self, outputs: Iterable[int | Ref]) -> None:
        self.outputs = [o if isinstance(o, tuple) else (o, 0) for o in outputs]

    # -- reading ops --------------------------------------------------------------------------

    def op(self, node: int) -> Op:
        return self.nx._node[node]["op"]

    def ops(self) -> Iterator[tuple[int, Op]]:
        """(node, op) for every node, in insertion order."""
        return ((n, data["op"]) for n, data in self.nx._node.items())

    def location(self, node: int) -> Location | None:
        """Where the op came from (see `Location`), or None."""
        return self.nx._node[node].get("location")

    def set_location(self, node: int, location: Location | None) -> None:
        self.nx._node[node]["location"] = location

    def describe(self, node: int) -> str:
        """`%12 (dense)`: how errors name a node."""
        data = self.nx._node.get(node)
        op = data.get("op") if data is not None else None
        return f"%{node} ({op.name if isinstance(op, Op) else 'no op'})"

    def __contains__(self, node: object) -> bool:
        return node in self.nx._node

    def __len__(self) -> int:
        return len(self.nx._node)

    def __iter__(self) -> Iterator[int]:
        return iter(self.nx._node)

    # -- reading edges ------------------------------------------------------------------------

    def in_edges(self, node: int) -> list[tuple[int, Slot, FoldMap]]:
        """Every incoming edge as (producer, slot, fold map), in no particular order."""
        return [
            (producer, data["slot"], data["fold_map"])
            for producer, keyed in self.nx._pred[node].items()
            for data in keyed.values()
        ]

    def out_edges(self, node: int) -> list[tuple[int, Slot, FoldMap]]:
        """Every outgoing edge as (consumer, slot, fold map), in no particular order."""
        return [
            (consumer, data["slot"], data["fold_map"])
            for consumer, keyed in self.nx._succ[node].items()
            for data in keyed.values()
        ]

    def slot_edges(self, node: int, slot: Slot) -> list[Edge]:
        """The (producer, fold map) edges feeding `slot` of `node`, by first consumer fold."""
        found = [
            (producer, data["fold_map"])
            for producer, keyed in self.nx._pred[node].items()
            for data in keyed.values()
            if data["slot"] == slot
        ]
        if len(found) > 1:
            found.sort(key=lambda e: (e[1].consumer[:1], e[0]))
        return found

    def operands(self, node: int) -> list[Operand]:
        """Incoming edges, ordered by slot (numbered slots, then parameter slots)."""
        edges = [Operand(p, s, m) for p, s, m in self.in_edges(node)]
        order = _slot_order(self.op(node))
        edges.sort(key=lambda e: (order(e.slot), e.fold_map.consumer[:1], e.producer))
        return edges

    def inputs(self, node: int) -> list[int]:
        """The producer of each numbered slot, in slot order.

        Raises StructureError when a slot is fed by several producers (a folded op); use
        `slot_edges` or `reads` there.
        """
        by_slot: dict[int, list[int]] = {}
        for producer, slot, _ in self.in_edges(node):
            if isinstance(slot, int):
                by_slot.setdefault(slot, []).append(producer)
        producers = []
        for slot in sorted(by_slot):
            if len(by_slot[slot]) != 1:
                raise StructureError(
                    f"slot {slot} of %{node} has {len(by_slot[slot])} producers (a folded op);"
                    " read its edges with Graph.slot_edges"
                )
            producers.append(by_slot[slot][0])
        return producers

    def params(self, node: int) -> dict[str, int]:
        """The producer of each named parameter slot (the first, if several)."""
        found: dict[str, int] = {}
        for e in self.operands(node):
            if isinstance(e.slot, str):
                found.setdefault(e.slot, e.producer)
        return found

    def reads(self, node: int) -> dict[Slot, list[Ref]]:
        """Per slot, per fold of `node`: the (producer, producer fold) it reads."""
        found: dict[Slot, list[Ref]] = {}
        folds = 0
        for producer, keyed in self.nx._pred[node].items():
            for data in keyed.values():
                fold_map = data["fold_map"]
                consumer = fold_map.consumer
                if consumer == (0,):
                    folds = folds or self.nx._node[node]["op"].num_folds
                    if folds == 1:
                        found[data["slot"]] = [(producer, fold_map.producer[0])]
                        continue
                per_fold = found.get(data["slot"])
                if per_fold is None:
                    folds = folds or self.nx._node[node]["op"].num_folds
                    per_fold = found[data["slot"]] = [(-1, -1)] * folds
                for c, p in zip(consumer, fold_map.producer, strict=True):
                    per_fold[c] = (producer, p)
        return found

    def uses(self, node: int) -> list[Use]:
        """Outgoing edges, by consumer (the record form of `out_edges`)."""
        found = [Use(c, s, m) for c, s, m in self.out_edges(node)]
        found.sort(key=lambda u: (u.consumer, str(u.slot), u.fold_map.consumer[:1]))
        return found

    def producers(self, node: int) -> list[int]:
        """Distinct producers of `node`, in no particular order."""
        return list(self.nx._pred[node])

    def users(self, node: int) -> list[int]:
        """Distinct consumers, in id order."""
        return sorted(self.nx._succ[node])

    def num_uses(self, node: int) -> int:
        """Edges leaving `node`, plus one per output that names it."""
        uses = sum(len(keyed) for keyed in self.nx._succ[node].values())
        return uses + sum(1 for n, _ in self.outputs if n == node)

    def has_one_use(self, node: int) -> bool:
        """Exactly one edge reads `node` and it is no output: a rewrite may fold it into
        its user."""
        succ = self.nx._succ[node]
        if len(succ) != 1 or len(next(iter(succ.values()))) != 1:
            return False
        return not self.is_output(node)

    def used_only_by(self, node: int, user: int) -> bool:
        """Every edge leaving `node` goes to `user` (any slots, any folds); no output.

        On folded graphs this is what "single user" means: one folded producer may feed
        several slots (or folds) of one folded consumer.
        """
        succ = self.nx._succ[node]
        return len(succ) == 1 and user in succ and not self.is_output(node)

    def fold_uses(self, node: int) -> int:
        """How many (consumer, fold) pairs read `node` (any fold of it), plus one per output
        that names it: a chain read exactly by the folds a pass rewrites may be rebuilt."""
        uses = 0
        for keyed in self.nx._succ[node].values():
            for data in keyed.values():
                uses += len(data["fold_map"].consumer)
        for n, _ in self.outputs:
            uses += n == node
        return uses

    def is_output(self, node: int) -> bool:
        return any(n == node for n, _ in self.outputs)

    # -- orders and analyses ------------------------------------------------------------------

    def topological_order(self) -> list[int]:
        """Producers before consumers; ties broken by node id, so the order is stable.

        `StructureError` naming a node on a cycle if there is one.
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
            stuck = min(n for n, count in pending.items() if count)
            raise StructureError(f"the graph has a cycle through {self.describe(stuck)}")
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
        """Circuit op depth: the longest path, in circuit ops, from an op without circuit
        operands. Only circuit ops are visited, which keeps this cheap on graphs where
        parameter ops outnumber circuit ops."""
        nodes, pred, succ = self.nx._node, self.nx._pred, self.nx._succ
        pending = {n: 0 for n, data in nodes.items() if isinstance(data["op"], CircuitOp)}
        for node in pending:
            count = 0  # a loop, not sum() over a generator: this runs once per circuit op
            for p in pred[node]:
                if p in pending:
                    count += 1
            pending[node] = count
        depth = {n: 0 for n, count in pending.items() if count == 0}
        order = list(depth)
        for node in order:  # `order` grows while it is walked: a queue without pops
            d = depth[node] + 1
            for user in succ[node]:
                if user in pending:
                    if depth.get(user, -1) < d:
                        depth[user] = d
                    pending[user] -= 1
                    if pending[user] == 0:
                        order.append(user)
        if len(order) != len(pending):
            stuck = min(n for n, count in pending.items() if count)
            raise StructureError(f"the circuit has a cycle through {self.describe(stuck)}")
        return depth

    def param_graph(self, node: int) -> list[int]:
        """The parameter ops that a circuit op's parameters are computed from, in order."""
        pred = self.nx._pred
        seen: set[int] = set()
        stack = [p for p, slot, _ in self.in_edges(node) if isinstance(slot, str)]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(pred[n])
        return [n for n in self.topological_order() if n in seen]

    def live_ops(self) -> set[int]:
        """The ops some output reads, directly or through other ops."""
        pred = self.nx._pred
        live: set[int] = set()
        stack = [n for n, _ in self.outputs if n in pred]
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(pred[n])
        return live

    # -- variables ------------------------------------------------------------------------------

    def declared_variables(self) -> tuple[int, int]:
        """(num_variables, num_channels) of the data: as declared, or else read off the
        input ops (one past the largest variable, the first input's channels)."""
        variables, channels = self.num_variables, self.num_channels
        if variables is None or channels is None:
            largest, first_channels = -1, 1
            for _, op in self.ops():
                if op.has_trait(ReadsData):
                    if largest < 0:
                        first_channels = op.num_channels  # type: ignore[attr-defined]
                    largest = max(largest, *op.variables)  # type: ignore[attr-defined]
            variables = largest + 1 if variables is None else variables
            channels = first_channels if channels is None else channels
        return variables, channels

    # -- values ---------------------------------------------------------------------------------

    def new_source(self) -> int:
        """A source id that no tensor op of this graph uses yet (for a new tensor)."""
        source = self._next_source
        self._next_source += 1
        return source

    def _note_sources(self, op: TensorOp) -> None:
        self._next_source = max(self._next_source, max(op.sources) + 1)

    def tensor_value(self, node: int) -> Any | None:
        """The held value of tensor op `node` (folds stacked), or None if some fold's source
        holds none."""
        import torch

        op = self.op(node)
        if not isinstance(op, TensorOp):
            raise StructureError(f"{self.describe(node)} is not a tensor op")
        try:
            return torch.stack([self.values[s] for s in op.sources])
        except KeyError:
            return None

    def set_tensor_value(self, node: int, value: Any) -> None:
        """Holds `value` (folds first) for tensor op `node`, fold f under its source f."""
        op = self.op(node)
        if not isinstance(op, TensorOp):
            raise StructureError(f"{self.describe(node)} is not a tensor op")
        if tuple(value.shape) != op.shape:
            raise StructureError(
                f"{self.describe(node)} has shape {op.shape}; a value of shape"
                f" {tuple(value.shape)} cannot be held for it"
            )
        for fold, source in enumerate(op.sources):
            self.values[source] = value[fold].detach().clone()

    # -- rewriting ----------------------------------------------------------------------------

    def replace_op(self, node: int, op: Op) -> None:
        """Swaps the op of a node, keeping its edges."""
        if isinstance(op, TensorOp):
            self._note_sources(op)
        self.nx._node[node]["op"] = op

    def replace_all_uses(self, old: int, new: int) -> None:
        """Redirects every use of `old` (edges and outputs) to `new`, keeping slots and maps.

        Uses of `old` by `new` itself stay (so an op inserted after `old` keeps reading it).
        """
        if old == new:
            return
        for consumer, slot, fold_map in self.out_edges(old):
            if consumer != new:
                self.disconnect(old, consumer, slot)
                self.connect(new, consumer, slot, fold_map)
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
        live = self.live_ops()
        dead = [n for n in self.nx._node if n not in live]
        self.remove_ops(dead)
        return len(dead)

    def remove_ops(self, doomed: Iterable[int]) -> None:
        """Removes ops and their edges at once (a pass that replaces many ops: cheaper than
        erasing them one by one; rebuilds the networkx graph when most of it goes)."""
        doomed = set(doomed)
        if not doomed:
            return
        old = self.nx
        if 2 * len(doomed) < len(old._node):
            old.remove_nodes_from(doomed)
            return
        new = type(old)()
        new.graph.update(old.graph)
        new.add_nodes_from((n, d) for n, d in old._node.items() if n not in doomed)
        new.add_edges_from(
            (u, v, k, d)
            for u, nbrs in old._succ.items()
            if u not in doomed
            for v, keyed in nbrs.items()
            if v not in doomed
            for k, d in keyed.items()
        )
        self.nx = new

    def clone(self) -> Graph:
        """An independent copy (ops are immutable and shared; held values are shared too:
        rewrite them by holding new tensors, not in place)."""
        copy = Graph(num_variables=self.num_variables, num_channels=self.num_channels)
        copy.nx = self.nx.copy()
        copy._next_id = self._next_id
        copy._next_source = self._next_source
        copy.outputs = list(self.outputs)
        copy.values = dict(self.values)
        return copy

    # -- comparison and display ---------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Structural equality: the same canonical text (names and held values aside)."""
        if not isinstance(other, Graph):
            return NotImplemented
        from cirkit_ir.ir.printer import canonical_text

        return canonical_text(self) == canonical_text(other)

    __hash__ = None  # type: ignore[assignment]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, op in self.ops():
            counts[op.name] = counts.get(op.name, 0) + 1
        return counts

    def __repr__(self) -> str:
        circuit = sum(isinstance(op, CircuitOp) for _, op in self.ops())
        return f"Graph({circuit} circuit ops, {len(self) - circuit} parameter ops)"
