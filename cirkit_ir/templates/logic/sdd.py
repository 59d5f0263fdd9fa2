"""Sentential decision diagrams, read from the SDD library's text format (no pysdd needed).

The format, one node per line, children before parents (ids from 0)::

    c a comment
    sdd <number of nodes>
    F <id>                                   the constant False
    T <id>                                   the constant True
    L <id> <vtree> <literal>                 a literal: v (variable v - 1 is true), -v (false)
    D <id> <vtree> <k> {<prime> <sub>}*k     OR over k elements (prime AND sub)

The root is the node that no other node reads (the SDD library numbers it 0).
"""

from __future__ import annotations

from os import PathLike

from cirkit_ir.errors import StructureError
from cirkit_ir.templates.logic.graph import (
    BottomNode,
    ConjunctionNode,
    DisjunctionNode,
    LiteralNode,
    LogicalCircuit,
    LogicalCircuitNode,
    NegatedLiteralNode,
    TopNode,
)

__all__ = ["SDD"]

# The number of integers after each tag; None: a decomposition, whose k gives its length.
_ARGUMENTS: dict[str, int | None] = {"sdd": 1, "F": 1, "T": 1, "L": 3, "D": None}


class SDD(LogicalCircuit):
    """An SDD as a logic circuit: decompositions are disjunctions of (prime AND sub)."""

    @staticmethod
    def load(filename: str | PathLike[str]) -> SDD:
        """Reads an SDD file (see the module for the format), as libcirkit's `SDD.load`.

        Raises:
            StructureError: a malformed line (the message gives its number), a node read
                before it is defined, or no single root.
        """
        with open(filename, encoding="utf-8") as file:
            return SDD.from_text(file.read(), source=str(filename))

    @staticmethod
    def from_text(text: str, source: str = "<text>") -> SDD:
        """Reads an SDD from the text of an SDD file."""
        nodes: dict[int, LogicalCircuitNode] = {}
        in_nodes: dict[LogicalCircuitNode, list[LogicalCircuitNode]] = {}
        read: set[int] = set()

        def error(number: int, message: str) -> StructureError:
            return StructureError(f"{source}, line {number}: {message}")

        def node(number: int, node_id: int) -> LogicalCircuitNode:
            if node_id not in nodes:
                raise error(number, f"node {node_id} is read before it is defined")
            read.add(node_id)
            return nodes[node_id]

        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0] == "c":
                continue
            tag, *rest = fields
            if tag not in _ARGUMENTS:
                raise error(number, f"unknown line type {tag!r}; expected c, sdd, F, T, L or D")
            try:
                args = [int(field) for field in rest]
            except ValueError:
                raise error(
                    number, f"expected integers after {tag!r}, got {line.strip()!r}"
                ) from None
            expected = _ARGUMENTS[tag]
            if expected is None:  # a decomposition: id, vtree, k, then k (prime, sub) pairs
                expected = 3 + 2 * args[2] if len(args) >= 3 and args[2] > 0 else 3
            if len(args) != expected:
                raise error(number, f"a {tag!r} line takes {expected} integers, got {len(args)}")
            if tag == "sdd":
                continue
            node_id = args[0]
            if node_id in nodes:
                raise error(number, f"node {node_id} is defined twice")
            if tag == "F":
                nodes[node_id] = BottomNode()
            elif tag == "T":
                nodes[node_id] = TopNode()
            elif tag == "L":
                literal = args[2]
                if literal == 0:
                    raise error(number, "literal 0; literals are v or -v for variables v >= 1")
                kind = LiteralNode if literal > 0 else NegatedLiteralNode
                nodes[node_id] = kind(abs(literal) - 1)
            else:
                elements = []
                for prime, sub in zip(args[3::2], args[4::2], strict=True):
                    element = ConjunctionNode()
                    in_nodes[element] = [node(number, prime), node(number, sub)]
                    elements.append(element)
                nodes[node_id] = DisjunctionNode()
                in_nodes[nodes[node_id]] = elements

        roots = [node_id for node_id in nodes if node_id not in read]
        if len(roots) != 1:
            raise StructureError(
                f"{source}: an SDD has one root (a node no other node reads), found"
                f" {len(roots)}: {sorted(roots)[:10]}"
            )
        elements = [n for n in in_nodes if isinstance(n, ConjunctionNode)]
        return SDD([*nodes.values(), *elements], in_nodes, [nodes[roots[0]]])
