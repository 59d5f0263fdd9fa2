"""The two kinds of region-graph node: regions (sets of variables) and their partitions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

import attrs

from cirkit_ir.errors import StructureError
from cirkit_ir.symbolic.scope import Scope


def _to_scope(variables: Scope | Iterable[int]) -> Scope:
    return variables if isinstance(variables, Scope) else Scope(variables)


def _nonempty(instance: object, attribute: attrs.Attribute[Scope], value: Scope) -> None:
    if not len(value):
        raise StructureError(
            f"a {type(instance).__name__} needs a non-empty scope; give it at least one variable"
        )


def _describe(kind: str, scope: Scope) -> str:
    return kind + "({" + ", ".join(map(str, scope)) + "})"


@attrs.frozen(eq=False, repr=False)
class RegionNode:
    """A set of variables that the circuit models with one block of units.

    Nodes compare by identity: two regions over the same variables are distinct nodes (a
    region graph may repeat a scope, e.g. in several random trees).
    """

    scope: Scope = attrs.field(converter=_to_scope, validator=_nonempty)

    def __repr__(self) -> str:
        return _describe("RegionNode", self.scope)


@attrs.frozen(eq=False, repr=False)
class PartitionNode:
    """One way of splitting a region's variables into disjoint input regions (a product)."""

    scope: Scope = attrs.field(converter=_to_scope, validator=_nonempty)

    def __repr__(self) -> str:
        return _describe("PartitionNode", self.scope)


RegionGraphNode: TypeAlias = RegionNode | PartitionNode
"""Either kind of node; region graphs alternate between the two."""
