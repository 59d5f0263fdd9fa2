"""The pass manager: pipeline strings, the registry, instruments and fixed points."""

from __future__ import annotations

import inspect
import io
import re
from functools import lru_cache
from typing import ClassVar

import attrs
import pytest
from ir_cases import seed_like

from cirkit_ir.errors import (
    ConvergenceError,
    OptionError,
    PipelineSyntaxError,
    UnknownPassError,
    VerificationError,
)
from cirkit_ir.ir import Graph, lower, parse_ir, print_ir
from cirkit_ir.ir.ops import CircuitOp, DenseOp, Op
from cirkit_ir.passes import (
    DEFAULT_VERIFY,
    FixedPoint,
    Fold,
    Fuse,
    LowerSemiring,
    Pass,
    PassInstrument,
    PassManager,
    PatternRewriter,
    RewritePattern,
    Semiring,
    apply_patterns_greedily,
    get_pass,
    ir_dump_header,
    parse_pipeline,
    register_pass,
    registered_passes,
)
from cirkit_ir.pipeline import PipelineContext


@lru_cache(maxsize=1)
def _small() -> Graph:
    return lower(seed_like(num_input_units=2, num_sum_units=2))


def small() -> Graph:
    return _small().clone()


# -- passes registered by this file -------------------------------------------------------------


@register_pass("test-count-ops")
@attrs.frozen
class CountOps(Pass):
    """Records the op count; changes nothing. Options of every supported type."""

    label: str = "count"
    times: int = 1
    scale: float = 1.0
    loud: bool = False
    semiring: Semiring = Semiring.LSE_SUM
    seen: list = attrs.field(factory=list, eq=False, init=False, repr=False)

    def apply(self, graph: Graph) -> bool:
        self.seen.append(len(graph))
        return False


@register_pass("test-break-ir")
class BreakIR(Pass):
    """Not an attrs class: register_pass makes it one. Cuts the weight of a dense op."""

    def apply(self, graph: Graph) -> bool:
        node = next(n for n in graph.circuit_ops() if isinstance(graph.op(n), DenseOp))
        graph.disconnect(graph.params(node)["weight"], node)
        return True


@register_pass("test-countdown")
@attrs.frozen
class Countdown(Pass):
    """Reports a change the first `n` times it runs (per pass object)."""

    n: int = 2
    runs: list = attrs.field(factory=list, eq=False, init=False, repr=False)

    def apply(self, graph: Graph) -> bool:
        self.runs.append(1)
        return len(self.runs) <= self.n


# -- parsing and printing -----------------------------------------------------------------------


def test_parse_builds_passes_with_typed_options() -> None:
    passes = parse_pipeline(
        "lower-semiring{semiring=complex-lse-sum}, fuse{max-iterations=3} ,fold,"
        ' test-count-ops{label="a b,c", times=0x10 scale=2.5 loud=yes semiring=sum-product}'
    )
    assert passes[0] == LowerSemiring(semiring="complex-lse-sum")
    assert passes[0].semiring is Semiring.COMPLEX_LSE_SUM
    assert passes[1] == Fuse(max_iterations=3)
    assert passes[2] == Fold()
    count = passes[3]
    assert isinstance(count, CountOps)
    assert (count.label, count.times, count.scale, count.loud) == ("a b,c", 16, 2.5, True)
    assert count.semiring is Semiring.SUM_PRODUCT


def test_str_is_canonical_and_parses_back() -> None:
    pm = PassManager.parse("lower-semiring,fuse,fold")
    assert str(pm) == "lower-semiring{semiring=lse-sum},fuse{max-iterations=10},fold"
    assert str(PassManager.parse(str(pm))) == str(pm)
    nested = PassManager.parse("fixed-point{max_iterations=4}( fuse , test-count-ops{label=x})")
    text = str(nested)
    assert text == (
        "fixed-point{max-iterations=4}(fuse{max-iterations=10},"
        "test-count-ops{label=x,times=1,scale=1.0,loud=false,semiring=lse-sum})"
    )
    assert str(PassManager.parse(text)) == text
    assert PassManager.parse("").passes == [] and str(PassManager.parse("  ")) == ""


def test_pass_manager_accepts_objects_and_strings() -> None:
    pm = PassManager([LowerSemiring("sum-product"), "fold"]).add(Fuse()).add("dce")
    assert [p.name for p in pm.passes] == ["lower-semiring", "fold", "fuse", "dce"]
    assert pm.passes[0] == LowerSemiring(Semiring.SUM_PRODUCT)
    with pytest.raises(OptionError, match="PassManager.add takes a Pass or a pipeline string"):
        pm.add(3)  # type: ignore[arg-type]


def _caret_column(error: PipelineSyntaxError) -> int:
    """The column of the caret in the message (under the two-space-indented pipeline)."""
    last = str(error).splitlines()[-1]
    return len(last) - 1 - 2


@pytest.mark.parametrize(
    ("pipeline", "position", "words"),
    [
        ("fold,,fuse", 5, "expected a pass name"),
        ("fold,", 5, "after ','"),
        ("fold fuse", 5, "expected ','"),
        ("fold{", 5, "'}' to close"),
        ("lower-semiring{semiring}", 23, "expected '='"),
        ("lower-semiring{semiring=}", 24, "expected a value"),
        ("lower-semiring{semiring=lse-sum", 31, "'}' to close"),
        ("lower-semiring{semiring=lse-sum;}", 31, "expected ',' or '}'"),
        ("fold{}(fuse", 11, "')' to close"),
        ("fold,3d", 5, "must start with a letter"),
        ('fold{x="abc}', 7, "unterminated string"),
        ("fold)", 4, "expected ','"),
    ],
)
def test_syntax_errors_point_at_the_column(pipeline: str, position: int, words: str) -> None:
    with pytest.raises(PipelineSyntaxError) as info:
        PassManager.parse(pipeline)
    assert info.value.position == position, str(info.value)
    assert words in str(info.value)
    assert _caret_column(info.value) == position
    assert pipeline in str(info.value)


def test_unknown_pass_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownPassError) as info:
        PassManager.parse("lower-semiring, fsue ,fold")
    assert info.value.position == 16
    message = str(info.value)
    assert "unknown pass 'fsue'" in message
    for name in ("fold", "fuse", "lower-semiring", "dce", "canonicalize", "test-count-ops"):
        assert name in message
    assert isinstance(info.value, PipelineSyntaxError)


def test_unknown_option_lists_the_options() -> None:
    with pytest.raises(PipelineSyntaxError) as info:
        PassManager.parse("fold,lower-semiring{ring=lse-sum}")
    assert info.value.position == 20
    assert "unknown option 'ring' for pass 'lower-semiring'; its options are: semiring" in str(
        info.value
    )
    with pytest.raises(PipelineSyntaxError, match="takes no options") as info:
        PassManager.parse("fold{depth=2}")
    assert info.value.position == 5


@pytest.mark.parametrize(
    ("pipeline", "position", "words"),
    [
        ("lower-semiring{semiring=min-sum}", 24, "'sum-product', 'lse-sum', 'complex-lse-sum'"),
        ("fuse{max-iterations=ten}", 20, "expected an int"),
        ("fuse{max-iterations=0}", 20, "at least 1"),
        ("test-count-ops{loud=maybe}", 20, "expected a bool"),
        ("test-count-ops{scale=fast}", 21, "expected a float"),
        ("test-count-ops{times=1,times=2}", 23, "given twice"),
        ("fold(fuse)", 4, "does not take a nested pipeline"),
        ("fixed-point", 11, "runs a nested pipeline"),
    ],
)
def test_bad_option_values(pipeline: str, position: int, words: str) -> None:
    with pytest.raises(PipelineSyntaxError) as info:
        PassManager.parse(pipeline)
    assert info.value.position == position, str(info.value)
    assert words in str(info.value)


def test_bad_options_in_python_raise_option_errors() -> None:
    with pytest.raises(OptionError, match="semiring"):
        LowerSemiring(semiring="tropical")
    with pytest.raises(OptionError):
        Fuse(max_iterations=0)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"passes": 3}, OptionError, "PassManager takes a list of passes"),
        ({"passes": [3]}, OptionError, "PassManager.add takes a Pass or a pipeline string"),
        ({"verify": "no"}, OptionError, "PassManager verify must be True or False, got 'no'"),
        ({"max_iterations": 0}, OptionError, "max_iterations must be an int >= 1, got 0"),
        ({"print_ir_after": 3}, OptionError, "print_ir_after takes a pass name, a list of"),
        ({"instruments": 3}, OptionError, "instruments must be a list of instruments, got 3"),
    ],
)
def test_bad_pass_manager_options(options, error, message) -> None:
    with pytest.raises(error, match=message):
        PassManager(**options)


def test_pipelines_are_strings() -> None:
    with pytest.raises(PipelineSyntaxError, match="a pipeline is a string of pass names"):
        PassManager.parse(None)  # type: ignore[arg-type]
    assert [p.name for p in PassManager("fold,dce").passes] == ["fold", "dce"]
    pm = PassManager(print_ir_after=(name for name in ["fold"]))  # a one-shot iterator
    assert pm.print_ir_after == ("fold",)


# -- the registry -------------------------------------------------------------------------------


def test_registry() -> None:
    assert get_pass("fold") is Fold
    assert get_pass("test-count-ops") is CountOps
    assert BreakIR.name == "test-break-ir" and attrs.has(BreakIR)
    assert {"fold", "fuse", "lower-semiring", "dce", "canonicalize", "fixed-point"} <= set(
        registered_passes()
    )
    with pytest.raises(UnknownPassError, match="no pass named 'nope'; registered passes: .*fold"):
        get_pass("nope")
    with pytest.raises(OptionError, match="already registered"):

        @register_pass("fold")
        class Other(Pass):
            pass

    with pytest.raises(OptionError, match="pass names"):
        register_pass("bad name")
    with pytest.raises(OptionError, match="decorates Pass subclasses, got <class 'int'>"):
        register_pass("not-a-pass")(int)  # type: ignore[arg-type]


def test_a_pass_registered_here_runs_by_name() -> None:
    pm = PassManager.parse("test-count-ops{label=before},fold,test-count-ops{label=after}")
    graph = pm.run(small())
    before, after = pm.passes[0], pm.passes[2]
    assert isinstance(before, CountOps) and isinstance(after, CountOps)
    assert before.seen[0] > after.seen[0] == len(graph)


# -- instruments --------------------------------------------------------------------------------


def test_print_ir_before_and_after_a_named_pass() -> None:
    from cirkit_ir.ir.printer import print_ir

    stream = io.StringIO()
    pm = PassManager.parse(
        "lower-semiring,fold,dce",
        print_ir_before="fold",
        print_ir_after=["fold"],
        print_ir_to=stream,
    )
    graph = pm.run(small())
    text = stream.getvalue()
    assert text.count("// -----// IR Dump") == 2
    assert "IR Dump Before fold (fold)" in text and "IR Dump After fold (fold)" in text
    assert text.rstrip().endswith(print_ir(graph).rstrip())
    assert "lower-semiring" not in text.replace("semiring=lse-sum", "")


def test_ir_dumps_in_a_stream_split_at_their_headers_and_parse_back() -> None:
    stream = io.StringIO()
    pm = PassManager.parse(
        "fold,lower-semiring,fixed-point(fuse),dce",
        print_ir_before="fold",
        print_ir_after="all",
        print_ir_to=stream,
    )
    graph = pm.run(small())
    text = stream.getvalue()
    fuse = "fuse{max-iterations=10}"
    assert [line for line in text.splitlines() if line.startswith("//")] == [
        "// -----// IR Dump Before fold (fold) //----- //",
        "// -----// IR Dump After fold (fold) //----- //",
        "// -----// IR Dump After lower-semiring{semiring=lse-sum} (lower-semiring) //----- //",
        f"// -----// IR Dump After {fuse} (fixed-point/fuse) //----- //",  # fuses
        f"// -----// IR Dump After {fuse} (fixed-point/fuse) //----- //",  # settles
        f"// -----// IR Dump After fixed-point{{max-iterations=10}}({fuse}) (fixed-point)"
        " //----- //",
        "// -----// IR Dump After dce (dce) //----- //",
    ]
    bodies = re.split(r"^//.*\n", text, flags=re.MULTILINE)
    assert bodies[0] == ""
    for body in bodies[1:]:  # each dump is print_ir's text as it is, then a blank line
        assert body.endswith("\n\n")
        assert print_ir(parse_ir(body)) == body[:-1]
    assert bodies[1][:-1] == print_ir(small())
    assert bodies[-1][:-1] == print_ir(graph)


def test_the_dump_header_is_one_function() -> None:
    assert ir_dump_header("after", Fold()) == "// -----// IR Dump After fold (fold) //----- //"
    assert ir_dump_header("before", Fuse(3), "fixed-point/fuse") == (
        "// -----// IR Dump Before fuse{max-iterations=3} (fixed-point/fuse) //----- //"
    )
    # An option holding a line break is escaped: the header stays one line.
    header = ir_dump_header("after", CountOps(label="a\nb"))
    assert len(header.splitlines()) == 1 and 'label="a\\nb"' in header


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("print_ir_after", "fsue", "'fsue', which is not a registered pass; did you mean 'fuse'?"),
        ("print_ir_before", ["fold", "lower-semring"], "did you mean 'lower-semiring'?"),
        ("print_ir_after", "fold, dcee", "did you mean 'dce'?"),
        ("print_ir_after", "fixed-point/fsue", "did you mean 'fuse'?"),
        ("print_ir_before", "al", "did you mean 'all'?"),
        ("print_ir_before", "zzzz", "registered passes: canonicalize, conjugate, dce"),
    ],
)
def test_misspelt_pass_names_to_print_around_are_option_errors(key, value, words) -> None:
    for make in (
        lambda: PassManager(**{key: value}),
        lambda: PassManager().configure(**{key: value}),
        lambda: PipelineContext(**{key: value}),
    ):
        with pytest.raises(OptionError, match=re.escape(words)):
            make()


def test_pass_names_to_print_around() -> None:
    for value in ("all", True, "fold,fuse", ["fixed-point/fuse", "test-count-ops"], ()):
        assert PassManager(print_ir_after=value).print_ir_after == value
        assert PipelineContext(print_ir_before=value).print_ir_before == value


def test_pass_manager_and_pipeline_context_share_the_verify_default() -> None:
    assert inspect.signature(PassManager).parameters["verify"].default is DEFAULT_VERIFY
    assert attrs.fields(PipelineContext).verify.default is DEFAULT_VERIFY
    assert PassManager().verify is PipelineContext().pass_manager().verify is DEFAULT_VERIFY


def test_print_ir_after_all_into_a_directory(tmp_path) -> None:
    pm = PassManager.parse(
        "lower-semiring,fold,fuse,dce",
        print_ir_before="all",
        print_ir_after=True,
        print_ir_to=tmp_path / "dumps",
        print_ir_only_changed=True,
    )
    pm.run(small())
    names = sorted(p.name for p in (tmp_path / "dumps").iterdir())
    # dce changes nothing here, so there is no dump after it.
    assert names == [
        "001-before-lower-semiring.ir",
        "002-after-lower-semiring.ir",
        "003-before-fold.ir",
        "004-after-fold.ir",
        "005-before-fuse.ir",
        "006-after-fuse.ir",
        "007-before-dce.ir",
    ]
    assert "tucker" in (tmp_path / "dumps" / "006-after-fuse.ir").read_text()
    assert "tucker" not in (tmp_path / "dumps" / "005-before-fuse.ir").read_text()


def test_timing_report_is_a_table_of_passes() -> None:
    pm = PassManager.parse("lower-semiring,fixed-point(fuse,fold),dce", verify=True)
    pm.run(small())
    report = pm.timing_report()
    lines = report.splitlines()
    assert "Pass execution timing report" in lines[1]
    assert "Total execution time:" in report
    rows = [line.split(maxsplit=3) for line in lines[6:]]
    names = [row[3].strip() for row in rows]
    assert names[:6] == ["lower-semiring", "fixed-point", "fuse", "fold", "dce", "(verify)"]
    assert names[-1] == "Total"
    runs = {row[3].strip(): row[2] for row in rows}
    assert runs["fuse"] == runs["fold"] == "2"  # the fixed point ran its passes twice
    assert runs["fixed-point"] == runs["dce"] == "1"
    assert "    fuse" in lines[8]  # nested passes are indented
    seconds = {row[3].strip(): float(row[0]) for row in rows}
    top = seconds["lower-semiring"] + seconds["fixed-point"] + seconds["dce"]
    assert seconds["Total"] >= top + seconds["(verify)"] - 1e-3
    assert seconds["fixed-point"] >= seconds["fuse"] + seconds["fold"] - 1e-3


def test_statistics_count_ops_around_each_pass() -> None:
    pm = PassManager.parse("lower-semiring,fold", statistics=True, verify=False)
    graph = small()
    before = graph.op_counts()
    pm.run(graph)
    semiring, fold = pm.pass_statistics
    assert semiring.before == before
    assert semiring.after == before  # lower-semiring retags ops, it adds or drops none
    assert fold.before == semiring.after and fold.after == graph.op_counts()
    assert fold.after["categorical"] == 1 and fold.delta()["categorical"] == 1 - 16
    report = pm.statistics_report()
    assert "2. fold:" in report and "categorical" in report and "(-15)" in report
    assert "statistics=True" in PassManager().statistics_report()


def test_verification_names_the_pass_that_broke_the_ir() -> None:
    with pytest.raises(VerificationError) as info:
        PassManager.parse("lower-semiring,test-break-ir,fold", verify=True).run(small())
    assert info.value.pass_name == "test-break-ir"
    assert "test-break-ir" in str(info.value)
    # Without verification the broken graph goes through unnoticed.
    PassManager.parse("test-break-ir", verify=False).run(small())


def test_custom_instruments_see_every_pass() -> None:
    class Recorder(PassInstrument):
        name = "recorder"

        def __init__(self) -> None:
            self.events: list[str] = []

        def before_pass(self, step, graph) -> None:
            self.events.append(f"{step.index}:{step.name}")

        def after_pass(self, step, graph, changed, seconds) -> None:
            self.events.append(f"{step.index}:{changed}")

    recorder = Recorder()
    PassManager.parse("fold,fixed-point(fuse)", instruments=[recorder]).run(small())
    assert recorder.events == [
        "1:fold",
        "1:True",
        "2:fixed-point",
        "3:fixed-point/fuse",
        "3:True",  # fuses kronecker + dense
        "4:fixed-point/fuse",
        "4:False",  # nothing left: the fixed point is reached
        "2:True",
    ]
    pm = PassManager.parse("fold", verify=False).add_instrument(recorder)
    pm.run(small())
    assert "(recorder)" in pm.timing_report()


# -- patterns ---------------------------------------------------------------------------------


class RetagDirectly(RewritePattern):
    """Sets sum-product on circuit ops through `Graph`, not the rewriter, and says so."""

    op_types: ClassVar[tuple[type[Op], ...]] = (CircuitOp,)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        op = graph.op(node)
        assert isinstance(op, CircuitOp)
        if op.semiring == "sum-product":
            return False
        graph.replace_op(node, op.replace(semiring="sum-product"))
        return True


class ClaimsAChange(RewritePattern):
    """Returns True and changes nothing: breaks the contract."""

    op_types: ClassVar[tuple[type[Op], ...]] = (CircuitOp,)

    def match_and_rewrite(self, graph: Graph, node: int, rewriter: PatternRewriter) -> bool:
        return True


def test_a_pattern_returning_true_is_a_change_without_the_rewriter() -> None:
    graph = small()
    assert apply_patterns_greedily(graph, [RetagDirectly()]) is True
    semirings = {graph.op(n).semiring for n in graph.circuit_ops()}  # type: ignore[attr-defined]
    assert semirings == {"sum-product"}
    assert apply_patterns_greedily(graph, [RetagDirectly()]) is False
    # So a pattern must return True only when it changed the graph: one that always does
    # never settles.
    with pytest.raises(ConvergenceError, match="still changed the graph after 3 iterations"):
        apply_patterns_greedily(small(), [ClaimsAChange()], max_iterations=3)


# -- fixed points -------------------------------------------------------------------------------


def test_fixed_point_of_the_whole_pipeline() -> None:
    pm = PassManager.parse("test-countdown{n=2},fold", fixed_point=True, verify=False)
    pm.run(small())
    countdown = pm.passes[0]
    assert isinstance(countdown, Countdown)
    assert len(countdown.runs) == 3  # changed, changed, then a round with no change at all
    with pytest.raises(ConvergenceError, match="after 2 rounds"):
        PassManager.parse("test-countdown{n=5}", fixed_point=True, max_iterations=2).run(small())


def test_nested_fixed_point() -> None:
    pm = PassManager.parse("fixed-point{max-iterations=4}(test-countdown{n=3},fold)")
    pm.run(small())
    nested = pm.passes[0]
    assert isinstance(nested, FixedPoint) and nested.max_iterations == 4
    assert len(nested.passes[0].runs) == 4  # type: ignore[attr-defined]
    with pytest.raises(ConvergenceError, match="fixed-point"):
        PassManager.parse("fixed-point{max-iterations=2}(test-countdown{n=9})").run(small())
    # Run directly, without a manager, the nested passes still run to the fixed point.
    direct = FixedPoint(passes=(Countdown(n=1), Fold()))
    assert direct.apply(small()) is True
    assert str(direct) == "fixed-point{max-iterations=10}(test-countdown{n=1},fold)"


def test_configure_matches_pipeline_context() -> None:
    stream = io.StringIO()
    pm = PassManager.parse("fold").configure(
        verify_each=False,
        print_ir_before=(),
        print_ir_after="fold",
        print_ir_to=stream,
        timing=True,
    )
    assert pm.verify is False
    pm.run(small())
    assert "IR Dump After fold" in stream.getvalue()
    with pytest.raises(OptionError, match="unknown PassManager option 'colour'; expected one of"):
        pm.configure(colour=True)
    with pytest.raises(OptionError, match="unknown PassManager option 'run'"):
        pm.configure(run=None)  # a method, not an option


def test_gc_is_restored_after_a_run() -> None:
    import gc

    assert gc.isenabled()
    with pytest.raises(VerificationError):
        PassManager.parse("test-break-ir", verify=True).run(small())
    assert gc.isenabled()
