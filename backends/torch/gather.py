"""Fold gathers: building an op's folded input from its producers' folds.

A folded op reads, for every operand slot and fold, one fold of some producer (the IR's fold
maps). `plan_gather` turns that table into one Python expression over the producers' tensors
(fold axis first), choosing the cheapest form that is exact:

- a view (slice, or `unflatten` + `transpose`) when the folds are a strided range of one
  producer: no copy at all;
- `torch.stack` of slices when every slot is such a range: one copy;
- one `index_select` (after one `torch.cat` when there are several producers): one copy.

The expression is emitted into the generated forward (so a user reads exactly how each input
is built) and evaluated by `GatherPlan.apply` where no generated code runs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import attrs
import torch
from torch import Tensor

from cirkit_ir.errors import CompilationError

Key = Hashable
Entry = tuple[Key, int]  # (producer, producer fold)


@attrs.frozen
class GatherPlan:
    """`template` is an expression with `{p}` fields for producers and `{index}` for the index.

    `index` (int64) is the fold index that the expression selects with, or None for views.
    """

    template: str
    producers: tuple[Key, ...]
    index: Tensor | None = attrs.field(default=None, eq=False)
    copies: bool = True

    def expression(self, name_of: Callable[[Key], str], index_name: str = "index") -> str:
        names = {f"p{i}": name_of(p) for i, p in enumerate(self.producers)}
        return self.template.format(index=index_name, **names)

    def apply(self, value_of: Callable[[Key], Tensor], index: Tensor | None = None) -> Tensor:
        """Evaluates the plan on tensors (the slow path, for code that is not generated)."""
        scope: dict[str, object] = {f"p{i}": value_of(p) for i, p in enumerate(self.producers)}
        scope["index"] = self.index if index is None else index
        return eval(
            self.expression(lambda p: f"p{self.producers.index(p)}"), {"torch": torch}, scope
        )


def _slice(field: str, start: int, step: int, count: int, folds: int) -> str:
    if start == 0 and step == 1 and count == folds:
        return field
    stop = start + (count - 1) * step + 1
    return f"{field}[{start}:{stop}]" if step == 1 else f"{field}[{start}:{stop}:{step}]"


def _as_range(folds: Sequence[int]) -> tuple[int, int] | None:
    """(start, step) when `folds` is a strictly increasing arithmetic progression."""
    if len(folds) == 1:
        return folds[0], 1
    step = folds[1] - folds[0]
    if step <= 0 or any(b - a != step for a, b in zip(folds, folds[1:], strict=False)):
        return None
    return folds[0], step


def plan_gather(
    slots: Sequence[Sequence[Entry]], folds_of: Mapping[Key, int], stacked: bool
) -> GatherPlan:
    """The cheapest exact gather for `slots[slot][fold] = (producer, producer fold)`.

    With `stacked`, the result is (folds, arity, ...) (a circuit op's input); otherwise there
    must be one slot and the result is (folds, ...) (a parameter operand or the outputs).
    """
    arity, folds = len(slots), len(slots[0])
    if not stacked and arity != 1:
        raise ValueError("an unstacked gather has exactly one slot")
    producers = tuple(dict.fromkeys(p for slot in slots for p, _ in slot))
    field = {p: f"{{p{i}}}" for i, p in enumerate(producers)}

    # Each slot from a strided range of one producer: views.
    ranges = []
    for slot in slots:
        owners = {p for p, _ in slot}
        span = _as_range([f for _, f in slot]) if len(owners) == 1 else None
        ranges.append(None if span is None else (slot[0][0], *span))
    if all(r is not None for r in ranges):
        parts = [_slice(field[p], start, step, folds, folds_of[p]) for p, start, step in ranges]
        if not stacked:
            return GatherPlan(parts[0], producers, copies=False)
        if arity == 1:
            return GatherPlan(f"{parts[0]}.unsqueeze(1)", producers, copies=False)
        same = len(producers) == 1 and all(step == 1 for _, _, step in ranges)
        starts = [start for _, start, _ in ranges]
        p = producers[0]
        if same and all(s == starts[0] + a * folds for a, s in enumerate(starts)):
            whole = _slice(field[p], starts[0], 1, arity * folds, folds_of[p])
            template = f"{whole}.unflatten(0, ({arity}, {folds})).transpose(0, 1)"
            return GatherPlan(template, producers, copies=False)
        if (
            len(producers) == 1
            and all(step == arity for _, _, step in ranges)
            and all(s == starts[0] + a for a, s in enumerate(starts))
        ):
            whole = _slice(field[p], starts[0], 1, arity * folds, folds_of[p])
            return GatherPlan(f"{whole}.unflatten(0, ({folds}, {arity}))", producers, copies=False)
        return GatherPlan(f"torch.stack([{', '.join(parts)}], 1)", producers)

    # Otherwise one index_select, slot-major so that each slot is a contiguous block.
    lo = {p: min(f for slot in slots for q, f in slot if q == p) for p in producers}
    hi = {p: max(f for slot in slots for q, f in slot if q == p) for p in producers}
    offset, pieces, total = {}, [], 0
    for p in producers:
        offset[p] = total
        total += hi[p] - lo[p] + 1
        pieces.append(_slice(field[p], lo[p], 1, hi[p] - lo[p] + 1, folds_of[p]))
    source = pieces[0] if len(pieces) == 1 else f"torch.cat([{', '.join(pieces)}])"
    index = torch.tensor(
        [offset[p] + f - lo[p] for slot in slots for p, f in slot], dtype=torch.long
    )
    template = f"{source}.index_select(0, {{index}})"
    if stacked:
        template += f".unflatten(0, ({arity}, {folds})).transpose(0, 1)"
    return GatherPlan(template, producers, index)


def slot_entries(
    edges: Sequence[tuple[Key, Sequence[int], Sequence[int]]], folds: int, what: str
) -> list[Entry]:
    """Per consumer fold, its (producer, producer fold), from (producer, consumer folds,
    producer folds) edges; every fold must be covered exactly once."""
    table: list[Entry | None] = [None] * folds
    for producer, consumer_folds, producer_folds in edges:
        for c, f in zip(consumer_folds, producer_folds, strict=True):
            if not 0 <= c < folds:
                raise CompilationError(f"{what}: fold map names fold {c} of {folds}")
            if table[c] is not None:
                raise CompilationError(f"{what}: fold {c} is fed twice")
            table[c] = (producer, f)
    missing = [c for c, e in enumerate(table) if e is None]
    if missing:
        raise CompilationError(f"{what}: no producer feeds fold(s) {missing[:8]}")
    return table  # type: ignore[return-value]
