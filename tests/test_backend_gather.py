"""Fold gathers: the planned expression equals a naive per-fold gather, and views are used
where the fold maps allow them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cirkit_ir.backends.torch.gather import plan_gather, slot_entries
from cirkit_ir.errors import CompilationError

FOLDS = {"a": 6, "b": 4}
VALUES = {p: torch.randn(n, 3, 2) for p, n in FOLDS.items()}


def naive(slots, stacked):
    per_slot = [torch.stack([VALUES[p][f] for p, f in slot]) for slot in slots]
    return torch.stack(per_slot, 1) if stacked else per_slot[0]


def run(slots, stacked=True):
    plan = plan_gather(slots, FOLDS, stacked)
    out = plan.apply(VALUES.__getitem__)
    torch.testing.assert_close(out, naive(slots, stacked), rtol=0, atol=0)
    return plan


@pytest.mark.parametrize(
    ("slots", "template"),
    [
        ([[("a", f) for f in range(6)]], "{p0}.unsqueeze(1)"),
        ([[("a", f) for f in (1, 2, 3)]], "{p0}[1:4].unsqueeze(1)"),
        ([[("a", f) for f in (0, 2, 4)]], "{p0}[0:5:2].unsqueeze(1)"),
        (
            [[("a", f) for f in (0, 1, 2)], [("a", f) for f in (3, 4, 5)]],
            "{p0}.unflatten(0, (2, 3)).transpose(0, 1)",
        ),
        (
            [[("a", f) for f in (0, 2, 4)], [("a", f) for f in (1, 3, 5)]],
            "{p0}.unflatten(0, (3, 2))",
        ),
        (
            [[("a", f) for f in (1, 2)], [("a", f) for f in (3, 4)]],
            "{p0}[1:5].unflatten(0, (2, 2)).transpose(0, 1)",
        ),
    ],
)
def test_views(slots, template):
    plan = run(slots)
    assert plan.template == template and not plan.copies and plan.index is None
    out = plan.apply(VALUES.__getitem__)
    assert out.untyped_storage().data_ptr() == VALUES["a"].untyped_storage().data_ptr()


def test_stack_of_slices_and_index_select():
    plan = run([[("a", 0), ("a", 1)], [("b", 2), ("b", 3)]])
    assert plan.template.startswith("torch.stack(") and plan.index is None
    plan = run([[("a", 3), ("a", 0)], [("a", 5), ("a", 5)]])
    assert plan.template == "{p0}.index_select(0, {index}).unflatten(0, (2, 2)).transpose(0, 1)"
    assert plan.index.tolist() == [3, 0, 5, 5]  # slot-major
    plan = run([[("a", 4), ("b", 1)], [("b", 0), ("a", 5)]])
    assert plan.template.startswith("torch.cat([{p0}[4:6], {p1}[0:2]])")


def test_unstacked_gathers():
    plan = run([[("b", f) for f in range(4)]], stacked=False)
    assert plan.template == "{p0}"
    run([[("a", 5), ("b", 0), ("a", 1)]], stacked=False)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_fold_maps(data):
    folds = data.draw(st.integers(1, 5))
    arity = data.draw(st.integers(1, 3))
    entry = st.one_of(
        st.tuples(st.just("a"), st.integers(0, FOLDS["a"] - 1)),
        st.tuples(st.just("b"), st.integers(0, FOLDS["b"] - 1)),
    )
    slots = [data.draw(st.lists(entry, min_size=folds, max_size=folds)) for _ in range(arity)]
    run(slots, stacked=True)
    run(slots[:1], stacked=False)


def test_slot_entries_checks_coverage():
    assert slot_entries([("a", [1], [4]), ("b", [0], [2])], 2, "op") == [("b", 2), ("a", 4)]
    with pytest.raises(CompilationError, match="fed twice"):
        slot_entries([("a", [0], [0]), ("b", [0], [1])], 1, "op")
    with pytest.raises(CompilationError, match="no producer"):
        slot_entries([("a", [0], [0])], 2, "op")
    with pytest.raises(CompilationError, match="names fold"):
        slot_entries([("a", [3], [0])], 2, "op")
