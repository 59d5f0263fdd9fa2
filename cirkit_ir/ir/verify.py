"""The verifier: checks that a graph is a well-formed circuit, and names the op at fault.

It runs after every pass, so it reads the networkx adjacency directly and keeps scopes as
integer bit masks (bit v set: variable v is in the scope). Checks, in order:

1. every node holds an op, and the graph is acyclic;
2. per op, its operands: numbered slots exactly 0..arity-1 and parameter slots exactly the op's
   `param_slots` (circuit ops), or slots 0..arity-1 only (parameter ops); each slot reads one
   producer fold per consumer fold (its edges' fold maps cover each consumer fold once, and
   name producer folds that exist);
3. types: circuit operands come from circuit ops with the units and dtype the consumer
   expects; parameter slots and parameter operands come from parameter ops with the expected
   shape (the producer's shape with its fold dimension replaced by the consumer's);
4. the semiring is unset everywhere or the same everywhere; there is at least one output,
   and outputs are circuit op folds; input ops read declared variables and channels;
5. tensors: ops sharing a source agree on its shape and dtype, and held values fit them;
6. scopes (`check_scopes`), from the ops' traits (`cirkit_ir.ir.traits`): `Smooth` ops'
   inputs share one scope per fold, `Decomposable` ops' inputs have disjoint scopes per fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import networkx as nx

from cirkit_ir.errors import CirkitIRError, StructureError, VerificationError
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import CircuitOp, InputOp, Op, ParamOp, TensorOp
from cirkit_ir.ir.traits import Decomposable, ReadsData, Smooth, Unscoped

# Per consumer fold: (producer, producer fold) that a slot reads.
SlotReads = list[tuple[int, int]]


MAX_UNDECLARED_VARIABLES = 1 << 16
"""The largest variable index + 1 a graph without a declared `num_variables` may read: a
scope is a bit set of variables, and variable 10**9 would make every scope a 125 MB int."""


def _name(graph: Graph, node: int) -> str:
    return graph.describe(node)


def _variables(mask: int) -> str:
    found = []
    v = 0
    while mask:
        if mask & 1:
            found.append(v)
        mask >>= 1
        v += 1
    if len(found) > 8:
        return "{" + ", ".join(map(str, found[:8])) + f", ... ({len(found)} variables)}}"
    return "{" + ", ".join(map(str, found)) + "}"


class _Verifier:
    def __init__(self, graph: Graph, pass_name: str | None) -> None:
        self.graph = graph
        self.pass_name = pass_name
        self.nodes = graph.nx.nodes
        self.sources: dict[int, tuple[int, TensorOp]] = {}  # source -> (a node holding it, its op)
        self.first_input: int | None = None  # the input op that undeclared channels follow

    def fail(self, node: int | None, message: str) -> VerificationError:
        where = f"{_name(self.graph, node)}: " if node is not None else ""
        return VerificationError(where + message, node=node, pass_name=self.pass_name)

    def op(self, node: int) -> Op:
        return self.nodes[node]["op"]

    # -- structure ----------------------------------------------------------------------------

    def check_ops(self) -> None:
        for node, data in self.nodes(data=True):
            if not isinstance(data.get("op"), Op):
                raise self.fail(node, f"the node holds no op (found {data.get('op')!r})")

    def order(self) -> list[int]:
        try:
            return self.graph.topological_order()
        except StructureError:
            cycle = nx.find_cycle(self.graph.nx)
            path = " -> ".join(_name(self.graph, u) for u, *_ in cycle)
            raise self.fail(
                cycle[0][0], f"the graph has a cycle: {path} -> %{cycle[0][0]}"
            ) from None

    # -- operands -----------------------------------------------------------------------------

    def slots(self, node: int) -> dict[int | str, list[tuple[int, FoldMap]]]:
        """Incoming edges by slot: (producer, fold map)."""
        by_slot: dict[int | str, list[tuple[int, FoldMap]]] = {}
        # The public edge view, not `Graph.in_edges`: a broken edge may lack its data.
        for producer, _, data in self.graph.nx.in_edges(node, data=True):
            slot, fold_map = data.get("slot"), data.get("fold_map")
            if not isinstance(fold_map, FoldMap) or not isinstance(slot, int | str):
                raise self.fail(
                    node,
                    f"the edge from {_name(self.graph, producer)} has no valid slot and"
                    f" fold map (slot={slot!r}, fold_map={fold_map!r}); use Graph.connect",
                )
            by_slot.setdefault(slot, []).append((producer, fold_map))
        return by_slot

    def reads(
        self, node: int, slot: int | str, edges: Sequence[tuple[int, FoldMap]], folds: int
    ) -> SlotReads:
        """Which (producer, producer fold) each consumer fold of a slot reads; checks the maps."""
        if len(edges) == 1:  # the common case, checked in bulk
            producer, fold_map = edges[0]
            produced = fold_map.producer
            limit = self.op(producer).num_folds
            if fold_map.consumer == _range(folds) and (
                not produced or (min(produced) >= 0 and max(produced) < limit)
            ):
                return [(producer, p) for p in produced]
        table: list[tuple[int, int] | None] = [None] * folds
        for producer, fold_map in edges:
            limit = self.op(producer).num_folds
            for c, p in zip(fold_map.consumer, fold_map.producer, strict=True):
                if not 0 <= c < folds:
                    raise self.fail(
                        node,
                        f"fold map out of range on slot {slot!r}: consumer fold {c}, but the op"
                        f" has {folds} fold(s) (edge from {_name(self.graph, producer)})",
                    )
                if not 0 <= p < limit:
                    raise self.fail(
                        node,
                        f"fold map out of range on slot {slot!r}: producer fold {p} of"
                        f" {_name(self.graph, producer)}, which has {limit} fold(s)",
                    )
                if table[c] is not None:
                    raise self.fail(
                        node, f"duplicated fold: slot {slot!r} reads consumer fold {c} twice"
                    )
                table[c] = (producer, p)
        missing = [c for c, entry in enumerate(table) if entry is None]
        if missing:
            shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
            raise self.fail(
                node,
                f"incomplete fold map: slot {slot!r} does not cover consumer fold(s) {shown}"
                f" of {folds}",
            )
        return table  # type: ignore[return-value]

    def check_circuit_op(self, node: int, op: CircuitOp) -> list[SlotReads]:
        """Checks a circuit op's operands; returns the reads of slots 0..arity-1."""
        try:
            op.validate()
        except CirkitIRError as error:
            raise self.fail(node, str(error)) from None
        by_slot = self.slots(node)
        folds = op.num_folds
        arity = op.arity
        numbered = sorted(s for s in by_slot if isinstance(s, int))
        for s in numbered:
            if not 0 <= s < arity:
                raise self.fail(node, f"extra operand on slot {s}: {op.name} has arity {arity}")
        for s in range(arity):
            if s not in by_slot:
                raise self.fail(node, f"missing operand: slot {s} of {arity} has no producer")
        expected_slots = op.param_slots
        for s in by_slot:
            if isinstance(s, str) and s not in expected_slots:
                raise self.fail(
                    node,
                    f"unknown parameter slot {s!r}; {op.name} has"
                    f" {', '.join(map(repr, expected_slots)) or 'no parameter slots'}",
                )
        shapes = op.param_shapes() if expected_slots else {}
        for name in expected_slots:
            if name not in by_slot:
                raise self.fail(node, f"missing parameter: slot {name!r} is not connected")
            edges = by_slot[name]
            for producer, _ in edges:
                p_op = self.op(producer)
                if not isinstance(p_op, ParamOp):
                    raise self.fail(
                        node,
                        f"parameter slot {name!r} is fed by {_name(self.graph, producer)},"
                        " which is not a parameter op",
                    )
                shape = (folds, *p_op.shape[1:])
                if shape != shapes[name]:
                    raise self.fail(
                        node,
                        f"parameter shape mismatch on slot {name!r}:"
                        f" {_name(self.graph, producer)} gives {_shape(p_op.shape)}, the op"
                        f" expects {_shape(shapes[name])}",
                    )
            self.reads(node, name, edges, folds)
        all_reads = []
        in_units = op.num_input_units
        dtype = op.dtype
        for s in range(arity):
            edges = by_slot[s]
            for producer, _ in edges:
                p_op = self.op(producer)
                if not isinstance(p_op, CircuitOp):
                    raise self.fail(
                        node,
                        f"operand slot {s} is fed by {_name(self.graph, producer)}, which is"
                        " not a circuit op",
                    )
                if p_op.num_output_units != in_units:
                    raise self.fail(
                        node,
                        f"unit mismatch on slot {s}: {op.name} expects {in_units} units,"
                        f" {_name(self.graph, producer)} gives {p_op.num_output_units}",
                    )
                if p_op.dtype != dtype:
                    raise self.fail(
                        node,
                        f"dtype mismatch on slot {s}: {op.name} computes {dtype} values,"
                        f" {_name(self.graph, producer)} gives {p_op.dtype}",
                    )
            all_reads.append(self.reads(node, s, edges, folds))
        return all_reads

    def check_tensor(self, node: int, op: TensorOp) -> None:
        """Ops sharing a source hold one tensor: they agree on its shape and dtype, and a held
        value fits them."""
        entry = op.shape[1:]
        claimed = self.sources
        # Set operations, not a loop per source: a folded tensor has thousands of sources.
        for source in sorted(claimed.keys() & op.sources):  # shared with earlier ops (ties)
            first, other = claimed[source]
            if other.shape[1:] != entry or other.dtype != op.dtype:
                raise self.fail(
                    node,
                    f"source {source} is a {_shape(entry)} {op.dtype} tensor here but a"
                    f" {_shape(other.shape[1:])} {other.dtype} one in"
                    f" {_name(self.graph, first)}; give the new tensor its own source"
                    " (Graph.new_source)",
                )
        claimed.update(dict.fromkeys(op.sources, (node, op)))  # agreeing claims: any will do
        for source in sorted(self.graph.values.keys() & op.sources):
            value = self.graph.values[source]
            if tuple(value.shape) != entry or value.is_complex() != (op.dtype == "complex"):
                raise self.fail(
                    node,
                    f"the value held for source {source} is a {_shape(tuple(value.shape))}"
                    f" {value.dtype} tensor, but the op holds {_shape(entry)} {op.dtype} ones",
                )

    def check_param_op(self, node: int, op: ParamOp) -> None:
        try:
            op.validate()
        except CirkitIRError as error:
            raise self.fail(node, str(error)) from None
        if isinstance(op, TensorOp):
            self.check_tensor(node, op)
        by_slot = self.slots(node)
        arity = op.arity
        for s in by_slot:
            if not isinstance(s, int) or not 0 <= s < arity:
                raise self.fail(node, f"extra operand on slot {s!r}: {op.name} has arity {arity}")
        folds = op.shape[0]
        shapes = []
        for s in range(arity):
            if s not in by_slot:
                raise self.fail(node, f"missing operand: slot {s} of {arity} has no producer")
            edges = by_slot[s]
            shape = None
            for producer, _ in edges:
                p_op = self.op(producer)
                if not isinstance(p_op, ParamOp):
                    raise self.fail(
                        node,
                        f"parameter op reads {_name(self.graph, producer)} on slot {s}, which"
                        " is not a parameter op",
                    )
                this = (folds, *p_op.shape[1:])
                if shape is not None and this != shape:
                    raise self.fail(
                        node, f"the producers of slot {s} disagree on the shape: {this} vs {shape}"
                    )
                shape = this
            self.reads(node, s, edges, folds)
            shapes.append(shape)
        try:
            inferred = tuple(op.infer_shape(shapes))
        except Exception as error:  # a rank the op cannot take
            raise self.fail(
                node,
                f"parameter shape mismatch: {op.name} cannot take operand shapes"
                f" {', '.join(_shape(s) for s in shapes)} ({error})",
            ) from None
        if inferred != op.shape:
            raise self.fail(
                node,
                f"parameter shape mismatch: {op.name} of operand shapes"
                f" {', '.join(_shape(s) for s in shapes)} gives {_shape(inferred)}, but the op"
                f" says {_shape(op.shape)}",
            )

    # -- global checks ------------------------------------------------------------------------

    def check_semirings(self, circuit: list[int]) -> None:
        first: int | None = None
        for node in circuit:
            semiring = self.op(node).semiring
            if first is None:
                first = node
                expected = semiring
            elif semiring != expected:
                raise self.fail(
                    node,
                    f"mixed semirings: the op has semiring {semiring or 'unset'}, but"
                    f" {_name(self.graph, first)} has {expected or 'unset'}",
                )

    def check_outputs(self) -> None:
        if not self.graph.outputs:
            raise self.fail(None, "the graph has no outputs; set them with Graph.set_outputs")
        for i, (node, fold) in enumerate(self.graph.outputs):
            if node not in self.nodes:
                raise self.fail(None, f"bad output {i}: %{node} is not in the graph")
            op = self.op(node)
            if not isinstance(op, CircuitOp):
                raise self.fail(node, f"bad output {i}: the op is not a circuit op")
            if not 0 <= fold < op.num_folds:
                raise self.fail(
                    node, f"bad output {i}: fold {fold} out of range ({op.num_folds} fold(s))"
                )

    def check_data(self, node: int, op: InputOp) -> None:
        """An input op reads declared variables and channels of the batch."""
        variables, channels = self.graph.num_variables, self.graph.num_channels
        if variables is not None and not all(0 <= v < variables for v in op.variables):
            bad = next(v for v in op.variables if not 0 <= v < variables)
            raise self.fail(
                node,
                f"reads variable {bad}, but the graph declares {variables} variables"
                f" (0..{variables - 1})",
            )
        if variables is None and any(not 0 <= v < MAX_UNDECLARED_VARIABLES for v in op.variables):
            bad = next(v for v in op.variables if not 0 <= v < MAX_UNDECLARED_VARIABLES)
            raise self.fail(
                node,
                f"reads variable {bad}: without num_variables in the graph header, variables"
                f" must be in 0..{MAX_UNDECLARED_VARIABLES - 1} (scopes are bit sets of them)",
            )
        if channels is not None and op.num_channels != channels:
            raise self.fail(
                node,
                f"reads {op.num_channels} channel(s), but the graph declares {channels}",
            )
        if self.first_input is None:
            self.first_input = node
        first = self.op(self.first_input)
        if op.num_channels != first.num_channels:  # type: ignore[attr-defined]
            raise self.fail(
                node,
                f"input ops disagree on the number of channels: {_name(self.graph, node)} reads"
                f" {op.num_channels}, {_name(self.graph, self.first_input)} reads"
                f" {first.num_channels}; a batch has one number of channels",  # type: ignore[attr-defined]
            )

    def check_scope(
        self, node: int, op: CircuitOp, reads: list[SlotReads], scopes: dict[int, list[int]]
    ) -> None:
        """Computes the op's scope per fold into `scopes`; checks smoothness, decomposability."""
        if op.has_trait(ReadsData):
            scopes[node] = [1 << v for v in op.variables]  # type: ignore[attr-defined]
            return
        if op.has_trait(Unscoped) or not reads:
            scopes[node] = [0] * op.num_folds
            return
        per_slot = [[scopes[p][f] for p, f in slot_reads] for slot_reads in reads]
        if op.has_trait(Decomposable):
            result = []
            for fold, masks in enumerate(zip(*per_slot, strict=True)):
                seen = 0
                for s, mask in enumerate(masks):
                    if seen & mask:
                        other = next(t for t in range(s) if masks[t] & mask)
                        raise self.fail(
                            node,
                            f"not decomposable at fold {fold}: the inputs on slots {other} and"
                            f" {s} share variables {_variables(masks[other] & mask)}",
                        )
                    seen |= mask
                result.append(seen)
            scopes[node] = result
            return
        if op.has_trait(Smooth):
            first = per_slot[0]
            for s, masks in enumerate(per_slot[1:], start=1):
                if masks != first:
                    fold = next(f for f, a in enumerate(first) if a != masks[f])
                    raise self.fail(
                        node,
                        f"not smooth at fold {fold}: the input on slot 0 has scope"
                        f" {_variables(first[fold])}, the input on slot {s} has"
                        f" {_variables(masks[fold])}",
                    )
            scopes[node] = first
            return
        result = per_slot[0]
        for masks in per_slot[1:]:
            result = [a | b for a, b in zip(result, masks, strict=True)]
        scopes[node] = result

    def run(self, check_scopes: bool) -> None:
        self.check_ops()
        order = self.order()
        circuit: list[int] = []
        scopes: dict[int, list[int]] = {}
        for node in order:
            op = self.op(node)
            if isinstance(op, CircuitOp):
                circuit.append(node)
                if isinstance(op, InputOp):
                    self.check_data(node, op)
                reads = self.check_circuit_op(node, op)
                if check_scopes:
                    self.check_scope(node, op, reads, scopes)
            elif isinstance(op, ParamOp):
                self.check_param_op(node, op)
            else:
                kind = type(op).__name__
                raise self.fail(node, f"{kind} is neither a circuit nor a parameter op")
        self.check_semirings(circuit)
        self.check_outputs()


@lru_cache(maxsize=256)
def _range(n: int) -> tuple[int, ...]:
    return tuple(range(n))


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def verify(graph: Graph, pass_name: str | None = None, check_scopes: bool = True) -> None:
    """Raises `VerificationError` naming the first broken node (and `pass_name`), if any."""
    _Verifier(graph, pass_name).run(check_scopes)
