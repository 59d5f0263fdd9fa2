"""What keeps compilation fast, pinned down: the shortcuts must give the results of the slow
paths they replace, and compiled graphs must not turn into cyclic garbage."""

from __future__ import annotations

import gc

import networkx as nx
import pytest
from ir_cases import seed_like

from cirkit_ir.backends.torch import codegen
from cirkit_ir.gc_pause import gc_paused
from cirkit_ir.ir import lower, ops
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.verify import verify
from cirkit_ir.passes import PassManager, default_pipeline


@pytest.fixture(scope="module")
def circuit():
    return seed_like(num_input_units=2, num_sum_units=2)


@pytest.mark.parametrize(("fold", "optimize"), [(False, False), (True, True), (False, True)])
def test_topological_order_is_the_lexicographic_one(circuit, fold, optimize):
    graph = lower(circuit)
    PassManager.parse(default_pipeline("lse-sum", fold, optimize)).run(graph)
    assert graph.topological_order() == list(nx.lexicographical_topological_sort(graph.nx))


def test_lowering_numbers_sources_as_tensor_parameters_lists_them(circuit):
    graph = lower(circuit)
    leaves = circuit.tensor_parameters()
    tensors = [n for n in graph if isinstance(graph.op(n), ops.TensorOp)]
    assert len(tensors) == len(leaves)
    for node in tensors:
        (source,) = graph.op(node).sources
        layer = circuit.layers[graph.location(node).layers[0]]
        assert any(leaves[source] in root.nodes() for root in layer.params.values())


def test_identity_fold_maps_are_shared_values():
    assert FoldMap.identity(3) is FoldMap.identity(3)
    assert FoldMap.identity(3) == FoldMap(range(3), range(3))


@pytest.mark.parametrize(("fold", "optimize"), [(False, False), (True, True), (False, True)])
def test_compiled_graphs_are_freed_by_reference_counting(circuit, fold, optimize):
    """A dropped graph must not wait for the cyclic garbage collector: on a large circuit
    that costs tens of milliseconds per compilation (networkx's cached views, a pass
    holding itself, ... all make cycles)."""
    gc.collect()
    with gc_paused():
        graph = lower(circuit)
        PassManager.parse(default_pipeline("lse-sum", fold, optimize)).run(graph)
        verify(graph)
        codegen(graph)
        gc.collect()  # what compiling left behind (a few objects of torch's and networkx's)
        del graph
        assert gc.collect() == 0


def test_gc_paused_turns_the_collector_off_and_back_on():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_gc_paused_leaves_a_disabled_collector_disabled():
    """Nested (or under a caller that turned it off), the block must not turn it back on."""
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
        with gc_paused(), gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_paused_turns_the_collector_back_on_after_an_exception():
    with pytest.raises(RuntimeError, match="inside"), gc_paused():
        raise RuntimeError("inside")
    assert gc.isenabled()


def test_gc_paused_can_be_asked_not_to_pause():
    with gc_paused(pause=False):
        assert gc.isenabled()
    assert gc.isenabled()


def test_compiling_leaves_the_collector_as_it_found_it(circuit):
    for collecting in (True, False):
        (gc.enable if collecting else gc.disable)()
        try:
            graph = lower(circuit)
            PassManager.parse(default_pipeline("lse-sum", True, True)).run(graph)
            codegen(graph)
            assert gc.isenabled() == collecting
        finally:
            gc.enable()
