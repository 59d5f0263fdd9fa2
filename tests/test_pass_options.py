"""Pass options: list values, quoting, the printed form parsing back, and types refused at
registration."""

from __future__ import annotations

import enum
import typing
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cirkit_ir.errors import OptionError, PipelineSyntaxError
from cirkit_ir.ir import Graph
from cirkit_ir.passes import (
    Pass,
    PassManager,
    PipelinePass,
    Semiring,
    get_pass,
    parse_pipeline,
    register_pass,
    registered_passes,
)
from cirkit_ir.passes.options import OptionType, option_types


class Colour(enum.Enum):
    RED = "red"
    NONE = "none"  # a member spelled like the none word: printed quoted where None is allowed


@register_pass("test-integrate")
@attrs.frozen
class Integrate(Pass):
    """Options of every shape; the pass changes nothing."""

    variables: tuple[int, ...] = ()
    names: list[str] = attrs.field(factory=list)
    weights: tuple[float, ...] | None = None
    mode: Literal["exact", "approx", 3] = "exact"
    label: str | None = None
    colour: Colour | None = Colour.RED
    semirings: tuple[Semiring, ...] = (Semiring.LSE_SUM,)
    flags: list[bool] | None = None

    def apply(self, graph: Graph) -> bool:
        return False


def one(pipeline: str) -> Pass:
    (p,) = parse_pipeline(pipeline)
    return p


# -- list options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pipeline",
    [
        "test-integrate{variables=1,5}",
        "test-integrate{variables=[1,5]}",
        "test-integrate{variables=[ 1 , 5 ]}",
        "test-integrate{variables=1, 5}",
        "test-integrate{variables=0x1,5 mode=exact}",
        "test-integrate{mode=exact,variables=1,5,label=none}",
    ],
)
def test_list_options_are_written_bare_or_in_brackets(pipeline: str) -> None:
    assert one(pipeline) == Integrate(variables=(1, 5))


def test_a_run_of_values_ends_at_the_next_key() -> None:
    p = one('test-integrate{names=a,"b c",d, variables=7 weights=0.5,-2e3,inf label=x,mode=3}')
    assert p == Integrate(
        variables=(7,),
        names=["a", "b c", "d"],
        weights=(0.5, -2000.0, float("inf")),
        label="x",
        mode=3,
    )
    assert isinstance(p.names, list) and isinstance(p.variables, tuple)


def test_empty_lists_none_and_quoted_none() -> None:
    assert one("test-integrate{variables=[],names=[]}") == Integrate()
    assert one("test-integrate{weights=none,label=null,colour=none}") == Integrate(colour=None)
    assert one('test-integrate{label="none",colour="none",names=[none]}') == Integrate(
        label="none", colour=Colour.NONE, names=["none"]
    )
    assert one("test-integrate{weights=[]}").weights == ()  # type: ignore[attr-defined]


def test_list_options_print_in_brackets_and_parse_back() -> None:
    p = Integrate(
        variables=(1, 5),
        names=["a", "b c", 'say "hi"', ""],
        weights=(),
        label="none",
        colour=Colour.NONE,
        semirings=(Semiring.SUM_PRODUCT, Semiring.COMPLEX_LSE_SUM),
        flags=[True, False],
    )
    text = str(p)
    assert text == (
        'test-integrate{variables=[1,5],names=[a,"b c","say \\"hi\\"",""],weights=[],'
        'mode=exact,label="none",colour="none",semirings=[sum-product,complex-lse-sum],'
        "flags=[true,false]}"
    )
    assert one(text) == p
    assert str(Integrate()) == (
        "test-integrate{variables=[],names=[],weights=none,mode=exact,label=none,colour=red,"
        "semirings=[lse-sum],flags=none}"
    )


def test_line_breaks_in_strings_print_as_escapes() -> None:
    p = Integrate(label="two\nlines\t\x00\u2028\U0001f600 \\")
    text = str(p)
    assert "\n" not in text and "\u2028" not in text
    assert 'label="two\\nlines\\t\\x00\\u2028\U0001f600 \\\\"' in text
    assert one(text) == p
    assert one('test-integrate{label="\\U0001F600\\x41\\q"}') == Integrate(label="\U0001f600Aq")


@pytest.mark.parametrize(
    ("pipeline", "position", "words"),
    [
        ("test-integrate{variables=1,x}", 27, "expected an int, got 'x'"),
        ("test-integrate{variables=[1,2,y]}", 30, "expected an int"),
        ("test-integrate{mode=exact,approx}", 20, "expected one of exact, approx, 3, got the list"),
        ("test-integrate{label=a,b}", 21, "expected str or none, got the list [a,b]"),
        ("test-integrate{label=[a]}", 21, "got the list [a]"),
        ("test-integrate{variables=[1,2}", 29, "expected ',' or ']'"),
        ("test-integrate{variables=[1 2]}", 28, "expected ',' or ']'"),
        ("test-integrate{variables=[1", 27, "expected ']' to close the list"),
        ("test-integrate{variables=[1,", 28, "expected a value for option 'variables'"),
        ("test-integrate{variables=[,1]}", 26, "expected a value for option 'variables'"),
        ('test-integrate{label="\\x4"}', 22, "'\\x' takes 2 hex digits"),
        ('test-integrate{label="\\U00110000"}', 22, "'\\U00110000' is no character"),
        ("test-integrate{flags=[true,maybe]}", 27, "expected a bool"),
    ],
)
def test_bad_list_values_point_at_the_item(pipeline: str, position: int, words: str) -> None:
    with pytest.raises(PipelineSyntaxError) as info:
        parse_pipeline(pipeline)
    assert info.value.position == position, str(info.value)
    assert words in str(info.value)


# -- types a pipeline cannot spell --------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "default", "words"),
    [
        (dict, attrs.Factory(dict), "dict is not a type of option values"),
        (dict[str, int], attrs.Factory(dict), "dict[str, int] is not a type of option values"),
        (list, attrs.Factory(list), "list does not say the type of its items"),
        (tuple[int, int], (0, 0), "fixed-length tuple; use tuple[X, ...]"),
        (int | str, 0, "union of several types"),
        (list[list[int]], attrs.Factory(list), "list[int] is not a type of option values"),
        (Literal["1", 1], 1, "two choices spelled alike"),
        (Any, None, "Any is not a type of option values"),
        (None, None, "an unannotated field is not a type of option values"),
    ],
)
def test_options_that_cannot_round_trip_are_refused(annotation, default, words) -> None:
    cls = attrs.make_class(
        "Stateful", {"state": attrs.field(default=default, type=annotation)}, bases=(Pass,)
    )
    with pytest.raises(OptionError) as info:
        register_pass("test-stateful")(cls)
    message = str(info.value)
    assert "option 'state' of pass Stateful" in message and words in message
    assert "init=False" in message and "context.publish" in message
    assert "test-stateful" not in registered_passes()


def test_state_that_is_not_an_option_is_allowed() -> None:
    @register_pass("test-with-state")
    @attrs.frozen
    class WithState(Pass):
        threshold: float = 0.5
        seen: list = attrs.field(factory=list, init=False, eq=False)

        def apply(self, graph: Graph) -> bool:
            return False

    assert str(WithState()) == "test-with-state{threshold=0.5}"


# -- every registered pass prints as text that parses back --------------------------------------


def _elements(tp: Any) -> st.SearchStrategy[Any]:
    if typing.get_origin(tp) is Literal:
        return st.sampled_from(typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    return {
        bool: st.booleans(),
        int: st.integers(),
        float: st.floats(allow_nan=False),
        str: st.text(),
    }[tp]


def _values(kind: OptionType) -> st.SearchStrategy[Any]:
    values = _elements(kind.element)
    if kind.container is not None:
        values = st.lists(values, max_size=4).map(kind.container)
    return st.none() | values if kind.optional else values


def _passes(cls: type[Pass], depth: int = 0) -> st.SearchStrategy[Pass]:
    """Passes of `cls` with any options (rejected by the pass's own validators or not)."""
    options = st.fixed_dictionaries({n: _values(k) for n, k in option_types(cls).items()})
    if not issubclass(cls, PipelinePass):
        return options.map(lambda o: _make(cls, o)).filter(lambda p: p is not None)
    leaves = [c for c in registered_passes().values() if not issubclass(c, PipelinePass)]
    nested = st.lists(st.sampled_from(leaves).flatmap(_passes), max_size=2 if depth < 1 else 0)
    made = st.tuples(options, nested).map(lambda on: _make(cls, on[0], passes=on[1]))
    return made.filter(lambda p: p is not None)


def _make(cls: type[Pass], options: dict[str, Any], **nested: Any) -> Pass:
    try:
        return cls(**options, **nested)
    except (OptionError, ValueError, TypeError):
        return None  # type: ignore[return-value]  # options the pass rejects


@pytest.mark.parametrize("name", sorted(registered_passes()))
@given(data=st.data())
def test_every_registered_pass_prints_text_that_parses_back(name: str, data) -> None:
    p = data.draw(_passes(get_pass(name)))
    text = str(p)
    assert "\n" not in text
    (back,) = parse_pipeline(text)
    assert back == p and type(back) is type(p)
    assert str(back) == text
    assert str(PassManager.parse(f"{text},{text}")) == f"{text},{text}"
