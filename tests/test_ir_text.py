"""The IR text form: golden text, round trips, canonical numbering and parse errors."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from ir_cases import (
    folded_graph,
    four_variable_circuit,
    hadamard_circuit,
    stacked_graph,
    tiny_circuit,
    zoo_graph,
)

from cirkit_ir.errors import IRParseError
from cirkit_ir.ir import FoldMap, Graph, lower, parse_ir, print_ir, verify
from cirkit_ir.ir import ops as o
from cirkit_ir.ir.op_def import registered_ops
from cirkit_ir.ir.printer import canonical_text
from cirkit_ir.symbolic import NormalInitializer
from cirkit_ir.symbolic.initializers import INITIALIZERS

TINY_TEXT = """\
graph {num_variables=2, num_channels=1}
%0 = tensor() {initializer=normal(mean=0.0, stddev=1.0), learnable=true, tensor_dtype=real, sources=[0]} : 1x2x1x2
%1 = softmax(%0) {axis=-1} : 1x2x1x2
%2 = categorical() [probs=%1] {variables=[0], num_channels=1, num_units=2, num_categories=2, param=probs} : 1x?x2
%3 = tensor() {initializer=normal(mean=0.0, stddev=1.0), learnable=true, tensor_dtype=real, sources=[1]} : 1x2x1x2
%4 = softmax(%3) {axis=-1} : 1x2x1x2
%5 = categorical() [probs=%4] {variables=[1], num_channels=1, num_units=2, num_categories=2, param=probs} : 1x?x2
%6 = kronecker(%2, %5) {in_units=2, num_inputs=2} : 1x?x4
%7 = tensor() {initializer=normal(mean=0.0, stddev=1.0), learnable=true, tensor_dtype=real, sources=[2]} : 1x1x4
%8 = softmax(%7) {axis=-1} : 1x1x4
%9 = dense(%6) [weight=%8] {in_units=4, out_units=1} : 1x?x1
return %9
"""  # noqa: E501


def test_golden_text_of_a_two_variable_circuit():
    assert print_ir(lower(tiny_circuit())) == TINY_TEXT
    assert print_ir(parse_ir(TINY_TEXT)) == TINY_TEXT
    assert parse_ir(TINY_TEXT) == lower(tiny_circuit())


GRAPHS = {
    "tiny": lambda: lower(tiny_circuit()),
    "four": lambda: lower(four_variable_circuit()),
    "hadamard": lambda: lower(hadamard_circuit()),
    "folded": folded_graph,
    "stacked": stacked_graph,
    "zoo": zoo_graph,
    "zoo-unset": lambda: zoo_graph(None),
    "zoo-sum-product": lambda: zoo_graph("sum-product"),
    "zoo-complex": lambda: zoo_graph("complex-lse-sum"),
    "empty": Graph,
}


@pytest.mark.parametrize("name", GRAPHS)
def test_round_trip(name):
    graph = GRAPHS[name]()
    text = print_ir(graph)
    parsed = parse_ir(text)
    assert print_ir(parsed) == text
    assert parsed == graph
    if graph.outputs:
        verify(parsed)


def test_zoo_has_every_op_and_initializer():
    text = print_ir(zoo_graph())
    names = set(re.findall(r"= ([a-z-]+)\(", text))
    package_ops = {n for n, c in registered_ops().items() if c.__module__.startswith("cirkit_ir")}
    assert names == package_ops  # (examples run in the same session register ops of their own)
    initializers = set(re.findall(r"initializer=([a-z-]+)\(", text))
    assert initializers == set(INITIALIZERS)
    assert "distribution=categorical{variables=[6]" in text
    assert ": 1x?x2xcomplex" in print_ir(zoo_graph("complex-lse-sum"))


def test_folded_text_shows_fold_maps():
    text = print_ir(stacked_graph())
    assert "kronecker(%2[0:4:2] ++ %5[0], %2[1:5:2] ++ %5[1])" in text
    assert "hadamard(%9[0], %9[1], %9[2])" in text
    assert text.endswith("return %10, %9[2,0]\n")
    explicit = print_ir(folded_graph())
    assert "kronecker(%2[0:4:2 -> 0:4:2] ++ %5[0 -> 1], %2[1:5:2 -> 0:4:2] ++ %5[1 -> 1])" in (
        explicit
    )


def test_parsed_fold_maps_match_the_built_ones():
    parsed = parse_ir(print_ir(folded_graph()))
    (kron,) = [n for n in parsed if parsed.op(n).name == "kronecker"]
    maps = sorted((e.slot, e.fold_map.consumer, e.fold_map.producer) for e in parsed.operands(kron))
    assert maps == [
        (0, (0, 2), (0, 2)),
        (0, (1,), (0,)),
        (1, (0, 2), (1, 3)),
        (1, (1,), (1,)),
    ]


def test_special_floats_and_param_attributes_round_trip():
    g = Graph()
    leaf = g.add_op(o.TensorOp(NormalInitializer(-0.5, 1e-3), shape=(2, 3), sources=(4, 9)))
    clamp = g.add_op(o.ClampOp(shape=(2, 3), vmin=float("-inf"), vmax=1e300), inputs=[leaf])
    g.add_op(o.ClampOp(shape=(2, 3), vmin=0, vmax=None), inputs=[clamp])
    text = print_ir(g)
    assert "clamp(%0) {vmin=-inf, vmax=1e+300}" in text
    assert "{vmin=0.0, vmax=none}" in text  # an int given to a float field prints as a float
    assert "normal(mean=-0.5, stddev=0.001)" in text and "sources=4:14:5" in text
    assert print_ir(parse_ir(text)) == text


def test_missing_slot_prints_as_underscore_and_round_trips():
    g = lower(tiny_circuit())
    (kron,) = [n for n in g if g.op(n).name == "kronecker"]
    x0 = g.inputs(kron)[0]
    g.disconnect(x0, kron, slot=0)
    text = print_ir(g)
    assert "kronecker(_, %" in text
    assert print_ir(parse_ir(text)) == text


def test_unused_ops_print_canonically():
    def build(order):
        g = lower(tiny_circuit())
        for shape in order:
            leaf = g.add_op(o.TensorOp(NormalInitializer(), shape=shape, sources=(50,)))
            g.add_op(o.ExpOp(shape=shape), inputs=[leaf])
        return g

    a = build([(1, 2), (1, 3)])
    b = build([(1, 3), (1, 2)])
    assert canonical_text(a) == canonical_text(b)  # the same lines, values named apart
    assert a == b
    assert print_ir(parse_ir(print_ir(a))) == print_ir(a)


def test_hand_written_text_is_canonicalized():
    text = """
    # a hand-written graph: any value names, defined before use, in any order
    %w = tensor() {initializer=constant(value=1.0), learnable=false, tensor_dtype=real, sources=[0]} : 1x1x4
    %b = categorical() [probs=%pb] {variables=[1], num_channels=1, num_units=2, num_categories=2} : 1x?x2
    """  # noqa: E501
    with pytest.raises(IRParseError, match="use of undefined value %pb"):
        parse_ir(text)
    text = """
    # the same circuit as TINY_TEXT, with other names
    graph {num_variables=2, num_channels=1}
    %t9 = tensor() {initializer=normal(), learnable=true, tensor_dtype=real, sources=[2]} : 1x1x4
    %s8 = softmax(%t9) : 1x1x4
    %t7 = tensor() {initializer=normal(stddev=1.0), sources=[1]} : 1x2x1x2
    %s6 = softmax(%t7) {axis=-1} : 1x2x1x2
    %c5 = categorical() [probs=%s6] {variables=[1], num_channels=1, num_units=2, num_categories=2} : 1x?x2
    %t4 = tensor() {initializer=normal(mean=0, stddev=1), sources=[0]} : 1x2x1x2
    %s3 = softmax(%t4) : 1x2x1x2
    %c2 = categorical() [probs=%s3] {variables=0:1, num_channels=1, num_units=2, num_categories=2} : 1x?x2
    %k1 = kronecker(%c2[0], %c5) {in_units=2, num_inputs=2} : 1x?x4   # a comment
    %d0 = dense(%k1[0 -> 0]) [weight=%s8] {in_units=4, out_units=1} : 1x?x1
    return %d0[0]
    """  # noqa: E501
    parsed = parse_ir(text)
    assert canonical_text(parsed) == TINY_TEXT
    assert parsed == parse_ir(TINY_TEXT)
    # names that are not %N get ids in order of definition
    assert [parsed.op(n).name for n in sorted(parsed)][:3] == ["tensor", "softmax", "tensor"]


def test_parse_empty_and_return_only():
    assert len(parse_ir("")) == 0
    assert parse_ir("return\n").outputs == []


ERRORS = [
    ("%0 = foo() : 1x2", 1, 6, r"unknown op 'foo'"),
    ("%0 = tensor() : 1x2", 1, 6, r"cannot build tensor: .*initializer"),
    ("%0 = exp(%1) : 1x2", 1, 10, r"use of undefined value %1"),
    (
        "%0 = tensor() {initializer=normal(), sources=[0]} : 1x2\n%0 = exp(%0) : 1x2",
        2,
        1,
        r"value %0 is defined twice",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0]} : 1x2\n%1 = exp(%0) {axis=-1} : 1x2",
        2,
        15,
        r"exp has no attribute 'axis'",
    ),
    (
        "%0 = constant() {num_units=2} : 1x?x3",
        1,
        33,
        r"the type 1x\?x3 does not match the op, whose type is 1x\?x2",
    ),
    ("%0 = tensor() {initializer=gamma()} : 1x2", 1, 28, r"unknown initializer 'gamma'"),
    ("%0 = tensor() {initializer=normal(), sources=[0]} : 1x?x2", 1, 53, r"without '\?'"),
    ("%0 = tensor() {initializer=normal(), sources=[0]} 1x2", 1, 51, r"expected ':'"),
    ("%0 = tensor() {initializer=normal(), sources=[0]} : wide", 1, 53, r"result type"),
    ("%0 = tensor() {initializer=normal(), sources=[0] : 1x2", 1, 50, r"expected ','"),
    ("%0 = tensor() {initializer=normal(), sources=[0], sources=[0]} : 1x2", 1, 51, "twice"),
    ("%0 tensor()", 1, 4, r"expected '=' after %0"),
    ("dense()", 1, 1, r"expected a definition \(%N = \.\.\.\) or 'return'"),
    ("return %4", 1, 8, r"use of undefined value %4"),
    ("return\nreturn", 2, 1, r"a second return line"),
    (
        "return\n%0 = tensor() {initializer=normal(), sources=[0]} : 1x2",
        2,
        1,
        "definitions must come before the return line",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0,1]} : 2x2\n"
        "%1 = exp(%0[0] ++ %0[1 -> 1]) : 2x2",
        2,
        19,
        r"all implicit .* or all explicit",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0,1]} : 2x2\n%1 = exp(%0[0,1 -> 0]) : 1x2",
        2,
        10,
        r"2 producer folds for 1 consumer folds",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0,1]} : 2x2\n%1 = exp(%0[0 1]) : 1x2",
        2,
        15,
        r"expected '\]' to close the fold list",
    ),
    (
        "%0 = constant() {num_units=2} : 1x?x2 extra",
        1,
        33,
        r"expected a result type",
    ),
    ("%0 = constant() {num_units=2} : 1x?x2)", 1, 33, r"expected a result type"),
    ("%0 = constant() {num_units=@} : 1x?x2", 1, 28, r"expected a value, found '@'"),
    ("%0 = constant() {num_units=2} : 2x3x2", 1, 33, r"FOLDSx\?xUNITS"),
    ("%0 = constant() {num_units=0} : 1x?x0", 1, 6, r"ConstantOp.num_units must be a positive"),
    (
        "%0 = tensor() {initializer=normal(), sources=[0]} : 1x2\n%1 = clamp(%0) : 1x2",
        2,
        6,
        r"cannot build clamp: clamp needs vmin or vmax \(or both\), got neither",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0]} : 1x2\n"
        "%1 = clamp(%0) {vmin=1.0, vmax=0.5} : 1x2",
        2,
        6,
        r"cannot build clamp: clamp needs vmin <= vmax, got vmin=1.0, vmax=0.5",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0]} : 1x2\n%1 = clamp(%0) {vmin=nan} : 1x2",
        2,
        6,
        r"clamp: vmin must be a number or None, got nan",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0]} : 1x2\n"
        "%1 = scaled-sigmoid(%0) {vmin=0.0, vmax=inf} : 1x2",
        2,
        6,
        r"scaled-sigmoid: vmax must be a finite number, got inf",
    ),
    (
        "%0 = tensor() {initializer=normal(), sources=[0]} : 1x2\n%1 = reduce(%0) {kind=max} : 1",
        2,
        6,
        r"unknown ReduceOp.kind 'max'; expected one of: 'sum', 'prod', 'lse'",
    ),
    (
        "%0 = tensor() {initializer=normal(stddev=-1.0), sources=[0]} : 1x2",
        1,
        28,
        r"NormalInitializer.stddev must be a finite number > 0, got -1.0",
    ),
    (
        "%0 = constant() {num_units=2, num_folds=1} : 1x?x2",
        1,
        31,
        r"'num_folds' of constant comes from the result type",
    ),
]


@pytest.mark.parametrize(("text", "line", "column", "pattern"), ERRORS)
def test_parse_errors_name_line_and_column(text, line, column, pattern):
    with pytest.raises(IRParseError, match=pattern) as info:
        parse_ir(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    message = str(info.value)
    assert message.startswith(f"line {line}, column {column}: ")
    caret = message.splitlines()[-1]
    assert caret.index("^") - 2 == column - 1  # the caret sits under the column


# -- templates ---------------------------------------------------------------------------------

circuit_templates = pytest.importorskip(
    "cirkit_ir.templates.circuit_templates", reason="cirkit_ir.templates is not written yet"
)


def test_seed_circuit_lowers_verifies_and_round_trips(seed_graph):
    circuit_ops = seed_graph.circuit_ops()
    assert len(circuit_ops) == 4163
    verify(seed_graph)
    text = print_ir(seed_graph)
    assert len(text.splitlines()) == len(seed_graph) + 2  # the header and the return
    parsed = parse_ir(text)
    assert print_ir(parsed) == text
    summary = print_ir(seed_graph, summary=True)
    assert summary.startswith("graph: 4163 circuit ops,")


SMALL = list(
    itertools.product(
        circuit_templates.IMAGE_REGION_GRAPHS,
        circuit_templates.IMAGE_INPUT_LAYERS,
        circuit_templates.SUM_PRODUCT_LAYERS,
    )
)


@pytest.mark.parametrize(("region_graph", "input_layer", "sum_product"), SMALL)
def test_small_template_circuits_round_trip(region_graph, input_layer, sum_product):
    data = np.random.default_rng(0).integers(0, 256, size=(20, 1, 4, 4))
    circuit = circuit_templates.image_data(
        (1, 4, 4),
        region_graph=region_graph,
        input_layer=input_layer,
        num_input_units=2,
        sum_product_layer=sum_product,
        num_sum_units=3,
        data=data if region_graph == "chow-liu-tree" else None,
    )
    graph = lower(circuit)
    verify(graph)
    text = print_ir(graph)
    parsed = parse_ir(text)
    assert print_ir(parsed) == text
    assert parsed == graph


def test_fold_map_text_uses_format_indices():
    g = Graph()
    leaf = g.add_op(o.TensorOp(NormalInitializer(), shape=(10, 2), sources=range(10)))
    exp = g.add_op(o.ExpOp(shape=(4, 2)))
    g.connect(leaf, exp, 0, FoldMap(range(4), (9, 7, 5, 3)))
    assert "exp(%0[9:1:-2])" not in print_ir(g)  # negative steps print as lists
    assert "exp(%0[9,7,5,3])" in print_ir(g)
    assert print_ir(parse_ir(print_ir(g))) == print_ir(g)
