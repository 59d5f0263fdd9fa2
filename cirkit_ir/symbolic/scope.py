"""Scopes: the sets of variables that a layer or region is a function of."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

from cirkit_ir.errors import StructureError


def _to_frozenset(variables: Iterable[int]) -> frozenset[int]:
    # map and min, not generators: scopes of big circuits are unions of thousands of variables
    try:
        if isinstance(variables, str | bytes):  # digits would pass as variables one by one
            raise TypeError
        items = frozenset(map(int, variables))
    except (TypeError, ValueError):
        raise StructureError(
            f"a scope is a collection of variable ids (non-negative ints), got {variables!r};"
            " write e.g. Scope([0]) for variable 0"
        ) from None
    if items and min(items) < 0:
        raise StructureError(f"variable ids must be non-negative, got {sorted(items)}")
    return items


@attrs.frozen(order=False, repr=False)
class Scope:
    """An immutable set of variable ids, iterated in increasing order.

    Scopes are hashable and compare by content, so they can key dictionaries and be stored
    in frozen IR ops.
    """

    variables: frozenset[int] = attrs.field(converter=_to_frozenset)

    @classmethod
    def union(cls, *scopes: Scope) -> Scope:
        return cls(frozenset().union(*(s.variables for s in scopes)))

    def __or__(self, other: Scope) -> Scope:
        return Scope(self.variables | other.variables)

    def __and__(self, other: Scope) -> Scope:
        return Scope(self.variables & other.variables)

    def __sub__(self, other: Scope) -> Scope:
        return Scope(self.variables - other.variables)

    def isdisjoint(self, other: Scope) -> bool:
        return self.variables.isdisjoint(other.variables)

    def issubset(self, other: Scope) -> bool:
        return self.variables <= other.variables

    def __contains__(self, variable: object) -> bool:
        return variable in self.variables

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.variables))

    def __len__(self) -> int:
        return len(self.variables)

    def __lt__(self, other: Scope) -> bool:
        """Order scopes by their sorted variable lists, for stable orderings."""
        return tuple(self) < tuple(other)

    def __repr__(self) -> str:
        return "Scope({" + ", ".join(map(str, self)) + "})"
