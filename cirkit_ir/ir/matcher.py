"""Matching short chains of ops, producer first, for rewrite patterns such as fusion.

`match_chain(graph, node, (KroneckerOp, DenseOp))` finds a dense op whose only numbered
operand is a kronecker op used by nothing else: the shape that fuses into a tucker op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import Op

Matcher = type | tuple[type, ...] | Callable[[Op], bool]
"""An op class, a tuple of classes (any of them), or a predicate on the op."""


def matches(op: Op, pattern: Matcher) -> bool:
    """Whether `op` fits one element of a chain pattern."""
    if isinstance(pattern, type | tuple):
        return isinstance(op, pattern)
    return bool(pattern(op))


def single_operand(graph: Graph, node: int) -> int | None:
    """The producer of a node's only numbered-slot edge, or None if there is not exactly one."""
    found = None
    for producer, slot, _ in graph.in_edges(node):
        if isinstance(slot, int):
            if found is not None:
                return None
            found = producer
    return found


def match_chain(
    graph: Graph, node: int, pattern: Sequence[Matcher], single_use: bool = True
) -> list[int] | None:
    """The nodes of a chain ending at `node` that fits `pattern` (producer first), or None.

    Walking back from `node`, each op must fit its pattern element and read exactly one
    numbered operand, whose producer fits the previous element. With `single_use` (the
    default) every op of the chain but the last must have that next op as its only user.
    """
    if not pattern or not matches(graph.op(node), pattern[-1]):
        return None
    chain = [node]
    for element in reversed(pattern[:-1]):
        producer = single_operand(graph, chain[-1])
        if producer is None or not matches(graph.op(producer), element):
            return None
        if single_use and not (
            graph.has_one_use(producer) and graph.used_only_by(producer, chain[-1])
        ):
            return None
        chain.append(producer)
    chain.reverse()
    return chain
