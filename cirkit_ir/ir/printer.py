"""The text form of the IR: a header, one line per op, and the outputs.

A dump reads::

    graph {num_variables=784, num_channels=1}
    %3 = dense(%2) [weight=%1] {in_units=16, out_units=4, semiring=lse-sum} : 784x?x4
    |    |     |    |           |                                             |
    |    |     |    |           attributes (fields of the op)                 result type
    |    |     |    named parameter slots
    |    |     numbered operand slots 0, 1, ... (circuit values or parameter operands)
    |    op name
    the value's name: its node id, the name errors and generated code use too
    return %9, %12[3]

The header declares the data the circuit reads; the last line lists the outputs as (value,
fold) pairs. `semiring=` and `kernel=` end an op's attributes once `lower-semiring` and
`select-kernels` have set them (`kernel=native`: the backend computes the op with its native
kernel; no `kernel=`: with the eager one). With `locations=True`, each op line ends with
where the op came from, `loc(layers=0:784)` or `loc(layers=[17], slot=weight)` (see
`Location`); the parser always accepts them. Tensor values that a graph holds are not
text: `cirkit_ir.save` writes them beside it.

Operands name their producer and, when the graph is folded, which producer folds they read:

- ``%7`` reads every fold of %7, in order;
- ``%7[0:392]`` reads folds 0..391 of %7 (any `format_indices` list: ``5``, ``0:10:2``,
  ``3,1,2``);
- ``%7[0:392] ++ %8[4,0]`` concatenates pieces: the first piece feeds consumer folds 0..391,
  the next one the 2 folds after them, and so on (the usual shape after folding);
- ``%7[3,1 -> 0,5]`` is the explicit form, used for every piece of a slot whose consumer folds
  are not covered in order: producer folds 3, 1 feed consumer folds 0, 5;
- ``_`` marks a numbered slot with no operand (only a broken graph has one).

Lines come in a canonical order that ignores node ids: a post-order depth-first walk from the
outputs (in output order), visiting operands by slot (numbered slots, then parameter slots in
the op's order; several edges of one slot by consumer fold), so producers come right before
their first user and a dense op's weight graph right before the op. Ops that no output reads
follow, ordered by a structural digest. `canonical_text` also renumbers the values in that
order, so two graphs built in different orders but equal in structure give the same canonical
text, which is what `Graph.__eq__` compares.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from functools import lru_cache

import attrs

from cirkit_ir.ir.fold_map import FoldMap, format_indices
from cirkit_ir.ir.graph import Graph, Location, Slot
from cirkit_ir.ir.ops import CircuitOp, Op, ParamOp
from cirkit_ir.symbolic.initializers import Initializer

Edge = tuple[Slot, int, FoldMap]  # (slot, producer, fold map)

_BARE_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
RESERVED_WORDS = frozenset({"none", "true", "false", "inf", "nan", "_", "return"})
CONCAT = " ++ "

# Fields that the result type already says: the fold count of inner / constant ops and the
# shape of parameter ops.
_TYPE_FIELDS = frozenset({"num_folds", "shape"})
# Circuit op fields that a pass sets (`lower-semiring`, `select-kernels`), in print order.
_LATE_FIELDS = ("semiring", "kernel")


# -- values ------------------------------------------------------------------------------------


def format_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


def format_index_list(indices: tuple[int, ...]) -> str:
    """Index tuples as attribute values: never a bare int, so `[5]` is not read back as 5."""
    return f"[{indices[0]}]" if len(indices) == 1 else format_indices(indices)


def inner_indices(indices: tuple[int, ...]) -> str:
    """Index tuples inside operand brackets, where no list brackets are needed."""
    text = format_indices(indices)
    return text[1:-1] if text.startswith("[") else text


def format_value(value: object, is_float: bool = False) -> str:
    """One attribute value; `is_float` prints ints of float-typed fields as floats."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return format_float(value) if is_float else str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        if _BARE_STRING.match(value) and value not in RESERVED_WORDS:
            return value
        return json.dumps(value)
    if isinstance(value, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return format_index_list(value)
    if isinstance(value, Initializer):
        return f"{value.name}({_format_fields(value)})"
    if isinstance(value, Op):
        return f"{value.name}{{{_format_fields(value)}}}"
    raise TypeError(f"the IR text form cannot print {type(value).__name__} value {value!r}")


def _is_float_field(field: attrs.Attribute) -> bool:
    return "float" in str(field.type)


def _field_name(field: attrs.Attribute) -> str:
    return getattr(field, "alias", None) or field.name


def _format_fields(obj: object, skip: frozenset[str] = frozenset()) -> str:
    """`name=value, ...` over an attrs object's fields; the fields that passes set late
    (`_LATE_FIELDS`: the semiring, the kernel) go last when set and are left out when not."""
    parts = []
    late: dict[str, object] = {}
    for field in attrs.fields(type(obj)):
        name = _field_name(field)
        if name in skip:
            continue
        value = getattr(obj, field.name)
        if name in _LATE_FIELDS:
            late[name] = value
            continue
        parts.append(f"{name}={format_value(value, _is_float_field(field))}")
    for name in _LATE_FIELDS:
        if late.get(name) is not None:
            parts.append(f"{name}={format_value(late[name])}")
    return ", ".join(parts)


@lru_cache(maxsize=16384)
def op_text(op: Op) -> tuple[str, str, str]:
    """(name, ' {attributes}' or '', result type) of an op; ops are immutable, so cached."""
    fields = _format_fields(op, _TYPE_FIELDS)
    return op.name, f" {{{fields}}}" if fields else "", str(op.result_type)


# -- canonical order ---------------------------------------------------------------------------


def sorted_edges(graph: Graph, node: int) -> list[Edge]:
    """A node's incoming edges in canonical order: numbered slots, then parameter slots in the
    op's order (unknown names last, by name), several edges of one slot by consumer folds."""
    edges: list[Edge] = [
        (slot, producer, fold_map) for producer, slot, fold_map in graph.in_edges(node)
    ]
    if len(edges) <= 1:
        return edges
    op = graph.nx.nodes[node].get("op")
    names = {name: i for i, name in enumerate(getattr(op, "param_slots", ()))}
    big = len(names)

    def key(edge: Edge) -> tuple:
        slot, _, fold_map = edge
        if isinstance(slot, int):
            slot_key: tuple = (0, slot, "")
        else:
            slot_key = (1, names.get(slot, big), str(slot))
        return (slot_key, fold_map.consumer, fold_map.producer)

    edges.sort(key=key)
    return edges


def _digest(graph: Graph, nodes: Iterable[int], edges: dict[int, list[Edge]]) -> dict[int, bytes]:
    """A structural digest per node (its op and its operands' digests), for dead roots."""
    digests: dict[int, bytes] = {}
    for node in _postorder(graph, nodes, edges, set()):
        h = hashlib.blake2b(digest_size=16)
        op = graph.nx.nodes[node].get("op")
        h.update(repr(op_text(op) if op is not None else None).encode())
        for slot, producer, fold_map in edges[node]:
            h.update(repr((slot, fold_map.consumer, fold_map.producer)).encode())
            h.update(digests.get(producer, b"cycle"))
        digests[node] = h.digest()
    return digests


def _postorder(
    graph: Graph, roots: Iterable[int], edges: dict[int, list[Edge]], seen: set[int]
) -> list[int]:
    """Iterative depth-first post-order from `roots`, operands in canonical order.

    `seen` is shared between calls: nodes already placed are skipped, as are back edges.
    """
    order: list[int] = []
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(_edges(graph, root, edges)))]
        while stack:
            node, it = stack[-1]
            for _, producer, _ in it:
                if producer not in seen:
                    seen.add(producer)
                    stack.append((producer, iter(_edges(graph, producer, edges))))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def _edges(graph: Graph, node: int, edges: dict[int, list[Edge]]) -> list[Edge]:
    found = edges.get(node)
    if found is None:
        found = edges[node] = sorted_edges(graph, node)
    return found


def canonical_order(graph: Graph, edges: dict[int, list[Edge]] | None = None) -> list[int]:
    """Every node, producers first, in the canonical order described in the module docstring."""
    edges = {} if edges is None else edges
    seen: set[int] = set()
    roots = [node for node, _ in graph.outputs if node in graph]
    order = _postorder(graph, roots, edges, seen)
    if len(order) < len(graph):
        dead = [n for n in graph if n not in seen and not graph.users(n)]
        if dead:
            digests = _digest(graph, dead, edges)
            dead.sort(key=lambda n: digests[n])
            order += _postorder(graph, dead, edges, seen)
        # What is left lies on cycles that no output reads; order it by digest too.
        rest = [n for n in graph if n not in seen]
        if rest:
            digests = _digest(graph, rest, edges)
            rest.sort(key=lambda n: digests[n])
            order += _postorder(graph, rest, edges, seen)
    return order


def canonical_numbering(graph: Graph) -> dict[int, int]:
    """node id -> its position in the canonical order (the names of `canonical_text`)."""
    return {node: i for i, node in enumerate(canonical_order(graph))}


# -- lines -------------------------------------------------------------------------------------


def _folds_of(graph: Graph, node: int) -> int | None:
    op = graph.nx.nodes[node].get("op")
    try:
        return op.num_folds if op is not None else None
    except Exception:  # a broken op still prints
        return None


def _format_slot(graph: Graph, pieces: list[Edge], number: dict[int, int]) -> str:
    """The pieces of one slot: implicit when they cover consumer folds 0, 1, ... in order."""
    expected = 0
    implicit = True
    for _, _, fold_map in pieces:
        consumer = fold_map.consumer
        if consumer != tuple(range(expected, expected + len(consumer))):
            implicit = False
            break
        expected += len(consumer)
    texts = []
    for _, producer, fold_map in pieces:
        name = f"%{number[producer]}"
        if not implicit:
            texts.append(
                f"{name}[{inner_indices(fold_map.producer)} -> {inner_indices(fold_map.consumer)}]"
            )
        elif fold_map.producer == tuple(range(_folds_of(graph, producer) or 0)):
            texts.append(name)
        else:
            texts.append(f"{name}[{inner_indices(fold_map.producer)}]")
    return CONCAT.join(texts)


def format_line(graph: Graph, node: int, number: dict[int, int], edges: list[Edge]) -> str:
    op = graph.nx.nodes[node].get("op")
    if op is None:
        name, fields, type_text = "<no-op>", "", "?"
    else:
        name, fields, type_text = op_text(op)
    numbered: dict[int, list[Edge]] = {}
    named: dict[str, list[Edge]] = {}
    for edge in edges:
        slot = edge[0]
        target = numbered if isinstance(slot, int) else named
        target.setdefault(slot, []).append(edge)  # type: ignore[arg-type]
    if numbered:
        slots = [
            _format_slot(graph, numbered[s], number) if s in numbered else "_"
            for s in range(max(numbered) + 1)
        ]
        operands = ", ".join(slots)
    else:
        operands = ""
    params = ""
    if named:
        params = (
            " ["
            + ", ".join(
                f"{slot}={_format_slot(graph, pieces, number)}" for slot, pieces in named.items()
            )
            + "]"
        )
    return f"%{number[node]} = {name}({operands}){params}{fields} : {type_text}"


def format_outputs(graph: Graph, number: dict[int, int]) -> str:
    """`return` and the outputs, consecutive folds of one value grouped into one piece."""
    groups: list[tuple[int, list[int]]] = []
    for node, fold in graph.outputs:
        if groups and groups[-1][0] == node:
            groups[-1][1].append(fold)
        else:
            groups.append((node, [fold]))
    texts = []
    for node, folds in groups:
        if node not in number:
            texts.append(f"<missing %{node}>[{inner_indices(tuple(folds))}]")
        elif tuple(folds) == tuple(range(_folds_of(graph, node) or 0)):
            texts.append(f"%{number[node]}")
        else:
            texts.append(f"%{number[node]}[{inner_indices(tuple(folds))}]")
    return "return " + ", ".join(texts) if texts else "return"


def format_location(location: Location) -> str:
    """` loc(layers=..., slot=...)`: where an op came from."""
    slot = "" if location.slot is None else f", slot={format_value(location.slot)}"
    return f" loc(layers={format_index_list(location.layers)}{slot})"


def format_header(graph: Graph) -> str | None:
    """`graph {num_variables=D, num_channels=C}`, or None when the graph declares neither."""
    fields = [
        f"{name}={value}"
        for name, value in (
            ("num_variables", graph.num_variables),
            ("num_channels", graph.num_channels),
        )
        if value is not None
    ]
    return f"graph {{{', '.join(fields)}}}" if fields else None


def _text(graph: Graph, number: dict[int, int] | None, locations: bool) -> str:
    """The lines of the graph; `number` renames nodes (None: their ids name them)."""
    edges: dict[int, list[Edge]] = {}
    order = canonical_order(graph, edges)
    if number is None:
        number = {node: node for node in order}
    elif not number:
        number = {node: i for i, node in enumerate(order)}
    lines = []
    header = format_header(graph)
    if header is not None:
        lines.append(header)
    for node in order:
        line = format_line(graph, node, number, _edges(graph, node, edges))
        location = graph.location(node) if locations else None
        lines.append(line + format_location(location) if location is not None else line)
    lines.append(format_outputs(graph, number))
    return "\n".join(lines) + "\n"


def print_ir(graph: Graph, summary: bool = False, *, locations: bool = False) -> str:
    """The graph as text: the header, one line per op in canonical order, then `return`.

    Values are named by their node ids (the names errors and generated code use).
    `locations=True` ends each line with where the op came from; `summary=True` gives op
    counts per type and per depth instead (for large graphs).
    """
    if summary:
        return summarize(graph)
    return _text(graph, None, locations)


def canonical_text(graph: Graph) -> str:
    """`print_ir` with values renumbered %0, %1, ... in canonical order: equal for graphs
    equal in structure, however their nodes are numbered (what `Graph.__eq__` compares)."""
    return _text(graph, {}, False)


# -- summary -----------------------------------------------------------------------------------


def _counts(names: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name}={n}" for name, n in counts.items()) or "none"


def summarize(graph: Graph) -> str:
    """Op counts per type, and circuit ops (with their folds) per depth."""
    circuit = [n for n, op in graph.ops() if isinstance(op, CircuitOp)]
    params = [n for n, op in graph.ops() if isinstance(op, ParamOp)]
    lines = [
        f"graph: {len(circuit)} circuit ops, {len(params)} parameter ops,"
        f" {len(graph.outputs)} output(s)",
        f"circuit ops: {_counts(sorted(graph.op(n).name for n in circuit))}",
        f"parameter ops: {_counts(sorted(graph.op(n).name for n in params))}",
    ]
    by_depth: dict[int, list[int]] = {}
    for node, depth in graph.depths().items():
        by_depth.setdefault(depth, []).append(node)
    for depth in sorted(by_depth):
        nodes = by_depth[depth]
        folds = sum(graph.op(n).num_folds for n in nodes)
        names = _counts(sorted(graph.op(n).name for n in nodes))
        lines.append(f"depth {depth}: {len(nodes)} ops, {folds} folds ({names})")
    semirings = sorted({graph.op(n).semiring or "unset" for n in circuit})
    lines.append(f"semiring: {', '.join(semirings) or 'unset'}")
    return "\n".join(lines) + "\n"
