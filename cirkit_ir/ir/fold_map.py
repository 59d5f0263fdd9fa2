"""Fold maps: which producer folds feed which consumer folds along one edge.

A folded op with F folds reads, on each operand slot, one producer fold per consumer fold.
Those may come from several producers: each edge then covers a subset of the consumer folds.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import attrs

from cirkit_ir.errors import StructureError


def _int_tuple(values: Sequence[int]) -> tuple[int, ...]:
    try:
        return tuple(map(int, values))  # map, not a generator: this runs for every new edge
    except (TypeError, ValueError):
        raise StructureError(f"a fold map lists fold indices (ints), got {values!r}") from None


_IDENTITIES: dict[int, FoldMap] = {}
"""`FoldMap.identity(n)` by n: fold maps are immutable, so every identity edge shares one."""


@attrs.frozen
class FoldMap:
    """consumer[i] is fed by producer fold producer[i]; both are fold indices."""

    consumer: tuple[int, ...] = attrs.field(converter=_int_tuple)
    producer: tuple[int, ...] = attrs.field(converter=_int_tuple)

    def __attrs_post_init__(self) -> None:
        if len(self.consumer) != len(self.producer):
            raise StructureError(
                f"a fold map pairs consumer and producer folds one to one, got"
                f" {len(self.consumer)} and {len(self.producer)}"
            )

    @classmethod
    def identity(cls, folds: int = 1) -> FoldMap:
        found = _IDENTITIES.get(folds)
        if found is None:
            found = _IDENTITIES[folds] = cls(range(folds), range(folds))
        return found

    def is_identity(self, folds: int | None = None) -> bool:
        n = len(self.consumer)
        return (folds is None or folds == n) and self.consumer == self.producer == tuple(range(n))

    def __len__(self) -> int:
        return len(self.consumer)

    def sorted(self) -> FoldMap:
        """The same pairs, ordered by consumer fold (one canonical spelling per edge)."""
        consumer = self.consumer
        if all(map(operator.lt, consumer, consumer[1:])):  # already ordered (the common case)
            return self
        pairs = sorted(zip(consumer, self.producer, strict=True))
        return FoldMap([c for c, _ in pairs], [p for _, p in pairs])

    def compose(self, inner: FoldMap) -> FoldMap:
        """self after inner: consumer folds of self fed through inner's producer folds.

        `inner` maps this edge's producer folds to their own producers; the result skips the
        middle op (used when a pass removes an op between two others).
        """
        lookup = dict(zip(inner.consumer, inner.producer, strict=True))
        pairs = [
            (c, lookup[p]) for c, p in zip(self.consumer, self.producer, strict=True) if p in lookup
        ]
        return FoldMap([c for c, _ in pairs], [p for _, p in pairs])


def through(edges: Sequence[tuple[int, FoldMap]], fold_map: FoldMap) -> list[tuple[int, FoldMap]]:
    """`edges` (producer, fold map) feeding some op X, as seen by a consumer that reads X
    through `fold_map`.

    Used to skip X: the consumer then reads X's producers directly. Edges that feed none of
    the folds the consumer reads are dropped.
    """
    result = []
    identity = fold_map.consumer == fold_map.producer
    for producer, inner in edges:
        if identity and inner.consumer == fold_map.consumer:
            result.append((producer, inner))  # the common case: nothing to compose
            continue
        composed = fold_map.compose(inner)
        if len(composed):
            result.append((producer, composed.sorted()))
    return result


def format_indices(indices: Sequence[int]) -> str:
    """Compact text for an index list: `0:784` for ranges, `0:10:2` with steps, else a list."""
    n = len(indices)
    if n == 0:
        return "[]"
    if n == 1:
        return str(indices[0])
    step = indices[1] - indices[0]
    if step > 0 and all(indices[i + 1] - indices[i] == step for i in range(n - 1)):
        stop = indices[-1] + step
        return f"{indices[0]}:{stop}" if step == 1 else f"{indices[0]}:{stop}:{step}"
    return "[" + ",".join(map(str, indices)) + "]"


def parse_indices(text: str) -> tuple[int, ...]:
    """The inverse of `format_indices`."""
    text = text.strip()
    if text.startswith("["):
        body = text[1:-1].strip()
        return tuple(int(t) for t in body.split(",")) if body else ()
    if ":" in text:
        parts = [int(t) for t in text.split(":")]
        return tuple(range(*parts))
    return (int(text),)
