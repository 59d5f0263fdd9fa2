"""What a pass may ask of the pass manager: cached analyses, published results, counters."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest
from test_pass_manager import small

from cirkit_ir.errors import OptionError
from cirkit_ir.ir import Graph
from cirkit_ir.ir.ops import CircuitOp
from cirkit_ir.passes import (
    FixedPoint,
    Fold,
    Pass,
    PassContext,
    PassManager,
    register_pass,
)


class OpCensus:
    """An analysis: op counts by name. `built` logs the graph size at every construction."""

    built: ClassVar[list[int]] = []

    def __init__(self, graph: Graph) -> None:
        OpCensus.built.append(len(graph))
        self.counts = graph.op_counts()


@pytest.fixture(autouse=True)
def _fresh_census() -> None:
    OpCensus.built.clear()


@register_pass("test-census")
@attrs.frozen
class Census(Pass):
    """An analysis pass: publishes the op counts, changes nothing."""

    def run(self, graph: Graph, context: PassContext) -> bool:
        context.publish(context.analysis(OpCensus).counts)
        return False


@register_pass("test-census-reader")
@attrs.frozen
class CensusReader(Pass):
    """Reads the census from the cache and publishes the analysis object itself."""

    def run(self, graph: Graph, context: PassContext) -> bool:
        census = context.analysis(OpCensus)
        context.publish(census)
        return False


@register_pass("test-retag")
@attrs.frozen
class Retag(Pass):
    """Sets the semiring of every circuit op, counting them; op counts stay as they were, and
    the pass says so."""

    preserves: ClassVar[tuple[type, ...]] = (OpCensus,)
    semiring: str = "sum-product"

    def run(self, graph: Graph, context: PassContext) -> bool:
        for node in graph.circuit_ops():
            op = graph.op(node)
            assert isinstance(op, CircuitOp)
            if op.semiring != self.semiring:
                graph.replace_op(node, op.replace(semiring=self.semiring))
                context.statistics["retagged"] += 1
        context.statistics["visited"] += len(graph.circuit_ops())
        return context.statistics["retagged"] > 0


def test_an_analysis_pass_publishes_and_a_later_pass_reads_the_cache() -> None:
    graph = small()
    before = graph.op_counts()
    pm = PassManager.parse("test-census,dce,test-census-reader")
    pm.run(graph)
    assert pm.results["test-census"] == before
    # dce changed nothing, so the reader got the census the first pass computed.
    assert OpCensus.built == [len(graph)]
    assert pm.results["test-census-reader"].counts == before
    assert [r.changed for r in pm.records] == [False, False, False]
    assert "dce" not in pm.results  # it published nothing


def test_a_changing_pass_invalidates_analyses() -> None:
    graph = small()
    unfolded = graph.op_counts()
    pm = PassManager.parse("test-census,fold,test-census")
    pm.run(graph)
    assert OpCensus.built == [sum(unfolded.values()), len(graph)]
    first, fold, last = pm.records
    assert fold.changed and not first.changed and not last.changed
    assert first.result == unfolded and last.result == graph.op_counts() != unfolded
    assert pm.results["test-census"] == graph.op_counts()  # the latest publication


def test_a_pass_keeps_the_analyses_it_preserves() -> None:
    graph = small()
    pm = PassManager.parse("test-census,test-retag,test-census-reader")
    pm.run(graph)
    assert pm.records[1].changed
    assert len(OpCensus.built) == 1  # retag declared the census preserved
    assert pm.results["test-census-reader"].counts == graph.op_counts()
    # lower-semiring retags as well, but declares nothing: the census is computed again.
    OpCensus.built.clear()
    PassManager.parse("test-census,lower-semiring{semiring=sum-product},test-census").run(small())
    assert len(OpCensus.built) == 2


def test_publishing_is_not_a_change() -> None:
    pm = PassManager.parse("fixed-point{max-iterations=1}(test-census)")
    pm.run(small())  # one round that changes nothing: no ConvergenceError
    assert [(r.name, r.changed) for r in pm.records] == [
        ("fixed-point/test-census", False),
        ("fixed-point", False),
    ]
    assert pm.results == {"fixed-point/test-census": small().op_counts()}
    pm = PassManager.parse("test-census,fold", fixed_point=True, max_iterations=2)
    pm.run(small())  # round 1 folds, round 2 changes nothing
    assert [r.name for r in pm.records] == ["test-census", "fold"] * 2


def test_counters_are_kept_per_pass_execution_and_reported() -> None:
    graph = small()
    circuit_ops = len(graph.circuit_ops())
    pm = PassManager.parse(
        "test-retag,fold,test-retag{semiring=lse-sum},test-census", statistics=True
    )
    pm.run(graph)
    first, fold, second, census = pm.records
    assert fold.statistics["folded ops made"] > 0  # built-in passes count too
    assert first.statistics == {"retagged": circuit_ops, "visited": circuit_ops}
    folded = len(graph.circuit_ops())
    assert second.statistics == {"retagged": folded, "visited": folded}
    assert census.statistics == {}
    report = pm.statistics_report()
    block = report.split("\n3. ")[1].split("\n4. ")[0].splitlines()
    assert block[0].startswith("test-retag: ")  # the op-count block, then the counters
    assert block[-2:] == [f"     (S) {folded:>7} retagged", f"     (S) {folded:>7} visited"]
    assert f"(S) {circuit_ops:>7} retagged" in report.split("\n2. ")[0]
    # Without op counts, the report still has the counters (and only passes that count).
    pm = PassManager.parse("lower-semiring,test-retag")
    pm.run(small())
    assert pm.statistics_report().splitlines()[0] == "2. test-retag"


def test_the_statistics_report_says_how_to_get_statistics() -> None:
    pm = PassManager.parse("lower-semiring")  # a pass that counts nothing
    pm.run(small())
    assert "statistics=True" in pm.statistics_report()
    assert "context.statistics" in pm.statistics_report()


def test_passes_that_run_applied_directly() -> None:
    graph = small()
    assert Retag().apply(graph) is True
    assert Retag().apply(graph) is False
    assert Census().apply(graph) is False
    # A nested pipeline applied directly shares one analysis cache between its passes too.
    OpCensus.built.clear()
    assert FixedPoint(passes=(Census(), Retag("lse-sum"), CensusReader())).apply(graph) is True
    assert len(OpCensus.built) == 1  # retag changes the graph and preserves the census

    class Neither(Pass):
        pass

    with pytest.raises(NotImplementedError, match="Neither implements neither apply"):
        Neither().apply(graph)


def test_passes_run_on_another_graph_get_analyses_of_their_own() -> None:
    @register_pass("test-census-of-a-fold")
    @attrs.frozen
    class CensusOfAFold(Pass):
        """Publishes the census of a folded copy, leaving the graph alone."""

        def run(self, graph: Graph, context: PassContext) -> bool:
            copy = graph.clone()
            context.run_pipeline([Fold()], copy)
            context.publish(context.analysis(OpCensus).counts)
            return False

    graph = small()
    pm = PassManager.parse("test-census,test-census-of-a-fold")
    pm.run(graph)
    assert pm.results["test-census-of-a-fold"] == graph.op_counts()
    assert len(OpCensus.built) == 1  # folding the copy left the graph's census valid
    assert [r.name for r in pm.records] == [
        "test-census",
        "test-census-of-a-fold/fold",
        "test-census-of-a-fold",
    ]


def test_analysis_mistakes_raise_option_errors() -> None:
    @register_pass("test-bad-analysis")
    @attrs.frozen
    class BadAnalysis(Pass):
        def run(self, graph: Graph, context: PassContext) -> bool:
            context.analysis(OpCensus(graph))  # type: ignore[arg-type]  # an instance
            return False

    with pytest.raises(OptionError, match="context.analysis takes an analysis class"):
        PassManager.parse("test-bad-analysis").run(small())
    with pytest.raises(OptionError, match="preserves must be a tuple of analysis classes"):

        @register_pass("test-bad-preserves")
        class BadPreserves(Pass):
            preserves = OpCensus  # type: ignore[assignment]  # not a tuple
