"""The verifier: good graphs pass, and each corruption is named with its node and its fault."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from ir_cases import (
    folded_graph,
    four_variable_circuit,
    hadamard_circuit,
    stacked_graph,
    tiny_circuit,
    zoo_graph,
)

from cirkit_ir.errors import VerificationError
from cirkit_ir.ir import FoldMap, Graph, lower, verify
from cirkit_ir.ir import ops as o
from cirkit_ir.symbolic import NormalInitializer


def _one(graph: Graph, name: str, index: int = 0) -> int:
    return [n for n in graph.topological_order() if graph.op(n).name == name][index]


def _tensor(graph: Graph, shape: tuple[int, ...]) -> int:
    sources = [graph.new_source() for _ in range(shape[0])]
    return graph.add_op(o.TensorOp(NormalInitializer(), shape=shape, sources=sources))


# -- good graphs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: lower(tiny_circuit()),
        lambda: lower(four_variable_circuit()),
        lambda: lower(hadamard_circuit()),
        folded_graph,
        stacked_graph,
        zoo_graph,
        lambda: zoo_graph(None),
        lambda: zoo_graph("complex-lse-sum"),
    ],
    ids=[
        "tiny",
        "four",
        "hadamard",
        "folded",
        "stacked",
        "zoo",
        "zoo-unset",
        "zoo-complex",
    ],
)
def test_good_graphs_pass(build: Callable[[], Graph]):
    verify(build())


def test_a_graph_without_outputs_is_rejected():
    with pytest.raises(VerificationError, match="no outputs"):
        verify(Graph())
    graph = lower(four_variable_circuit())
    graph.set_outputs([])
    with pytest.raises(VerificationError, match="no outputs; set them with Graph.set_outputs"):
        verify(graph)


# -- the corruption catalogue ------------------------------------------------------------------
# Each entry: (name, corrupt(graph) -> the node at fault, the op name, a message pattern).


def missing_operand(g: Graph) -> int:
    kron = _one(g, "kronecker")
    g.disconnect(g.inputs(kron)[1], kron, slot=1)
    return kron


def extra_operand(g: Graph) -> int:
    dense = _one(g, "dense")
    g.connect(_one(g, "categorical"), dense, 1, FoldMap.identity())
    return dense


def cycle(g: Graph) -> int:
    kron, dense = _one(g, "kronecker"), _one(g, "dense")
    g.connect(dense, kron, 2, FoldMap.identity())
    return -1  # any node of the cycle


def unit_mismatch(g: Graph) -> int:
    kron = _one(g, "kronecker")
    g.replace_op(kron, o.KroneckerOp(3, 2))
    return kron


def dtype_mismatch(g: Graph) -> int:
    kron = _one(g, "kronecker")
    for node in g.circuit_ops():
        g.replace_op(node, g.op(node).replace(semiring="lse-sum"))
    g.replace_op(kron, g.op(kron).replace(semiring="complex-lse-sum"))
    return kron


def param_shape_mismatch(g: Graph) -> int:
    dense = _one(g, "dense")
    g.disconnect(g.params(dense)["weight"], dense)
    g.connect(_tensor(g, (1, 1, 5)), dense, "weight", FoldMap.identity())
    return dense


def param_op_shape_mismatch(g: Graph) -> int:
    softmax = _one(g, "softmax")
    g.replace_op(softmax, o.SoftmaxOp(shape=(1, 3, 3)))
    return softmax


def overlapping_product(g: Graph) -> int:
    kron = _one(g, "kronecker")
    x0, x1 = g.inputs(kron)
    g.disconnect(x1, kron)
    g.connect(x0, kron, 1, FoldMap.identity())
    return kron


def fold_map_out_of_range(g: Graph) -> int:
    kron = _one(g, "kronecker")
    x0 = g.inputs(kron)[0]
    g.disconnect(x0, kron)
    g.connect(x0, kron, 0, FoldMap((0,), (5,)))
    return kron


def consumer_fold_out_of_range(g: Graph) -> int:
    kron = _one(g, "kronecker")
    x0 = g.inputs(kron)[0]
    g.disconnect(x0, kron)
    g.connect(x0, kron, 0, FoldMap((0, 1), (0, 0)))
    return kron


def param_op_reads_circuit_op(g: Graph) -> int:
    softmax = _one(g, "softmax", -1)  # the dense weight's: no cycle through the categorical
    g.disconnect(g.inputs(softmax)[0], softmax)
    g.connect(_one(g, "categorical"), softmax, 0, FoldMap.identity())
    return softmax


def circuit_slot_reads_param_op(g: Graph) -> int:
    kron = _one(g, "kronecker")
    g.disconnect(g.inputs(kron)[1], kron)
    g.connect(_one(g, "softmax"), kron, 1, FoldMap.identity())
    return kron


def param_slot_reads_circuit_op(g: Graph) -> int:
    dense = _one(g, "dense")
    g.disconnect(g.params(dense)["weight"], dense)
    g.connect(_one(g, "categorical"), dense, "weight", FoldMap.identity())
    return dense


def missing_param(g: Graph) -> int:
    dense = _one(g, "dense")
    g.disconnect(g.params(dense)["weight"], dense)
    return dense


def unknown_param_slot(g: Graph) -> int:
    kron = _one(g, "kronecker")
    g.connect(_tensor(g, (1, 2)), kron, "weight", FoldMap.identity())
    return kron


def param_op_missing_operand(g: Graph) -> int:
    softmax = _one(g, "softmax")
    g.disconnect(g.inputs(softmax)[0], softmax)
    return softmax


def param_op_extra_operand(g: Graph) -> int:
    softmax = _one(g, "softmax")
    g.connect(_tensor(g, (1, 2, 1, 2)), softmax, 1, FoldMap.identity())
    return softmax


def clamp_without_bounds(g: Graph) -> int:
    softmax = _one(g, "softmax")
    g.replace_op(softmax, o.ClampOp(shape=g.op(softmax).shape))
    return softmax


def clamp_bounds_crossed(g: Graph) -> int:
    softmax = _one(g, "softmax")
    g.replace_op(softmax, o.ClampOp(shape=g.op(softmax).shape, vmin=1.0, vmax=0.0))
    return softmax


def bad_output_node(g: Graph) -> int:
    g.set_outputs([(12345, 0)])
    return -2  # no node


def output_is_param_op(g: Graph) -> int:
    softmax = _one(g, "softmax")
    g.set_outputs([softmax])
    return softmax


def output_fold_out_of_range(g: Graph) -> int:
    dense = _one(g, "dense")
    g.set_outputs([(dense, 3)])
    return dense


def mixed_semirings(g: Graph) -> int:
    dense = _one(g, "dense")
    g.replace_op(dense, g.op(dense).replace(semiring="lse-sum"))
    return dense


def edge_without_fold_map(g: Graph) -> int:
    kron = _one(g, "kronecker")
    g.nx.add_edge(_one(g, "categorical"), kron, slot=2)  # around the Graph API
    return kron


def node_without_op(g: Graph) -> int:
    g.nx.add_node(777)
    return 777


TINY = [
    ("missing operand", missing_operand, "kronecker", r"missing operand: slot 1 of 2"),
    ("extra operand", extra_operand, "dense", r"extra operand on slot 1: dense has arity 1"),
    ("cycle", cycle, None, r"the graph has a cycle: %\d+ \(\w+\) -> "),
    (
        "unit mismatch",
        unit_mismatch,
        "kronecker",
        r"unit mismatch on slot 0: kronecker expects 3 units, %\d+ \(categorical\) gives 2",
    ),
    (
        "dtype mismatch",
        dtype_mismatch,
        "kronecker",
        r"dtype mismatch on slot 0: kronecker computes complex values, %\d+ \(categorical\)"
        r" gives real",
    ),
    (
        "parameter shape",
        param_shape_mismatch,
        "dense",
        r"parameter shape mismatch on slot 'weight': %\d+ \(tensor\) gives 1x1x5,"
        r" the op expects 1x1x4",
    ),
    (
        "parameter op shape",
        param_op_shape_mismatch,
        "softmax",
        r"parameter shape mismatch: softmax of operand shapes 1x2x1x2 gives 1x2x1x2,"
        r" but the op says 1x3x3",
    ),
    (
        "overlapping product",
        overlapping_product,
        "kronecker",
        r"not decomposable at fold 0: the inputs on slots 0 and 1 share variables \{0\}",
    ),
    (
        "producer fold out of range",
        fold_map_out_of_range,
        "kronecker",
        r"fold map out of range on slot 0: producer fold 5 of %\d+ \(categorical\), which has"
        r" 1 fold",
    ),
    (
        "consumer fold out of range",
        consumer_fold_out_of_range,
        "kronecker",
        r"fold map out of range on slot 0: consumer fold 1, but the op has 1 fold",
    ),
    (
        "parameter op reads a circuit op",
        param_op_reads_circuit_op,
        "softmax",
        r"parameter op reads %\d+ \(categorical\) on slot 0, which is not a parameter op",
    ),
    (
        "circuit slot reads a parameter op",
        circuit_slot_reads_param_op,
        "kronecker",
        r"operand slot 1 is fed by %\d+ \(softmax\), which is not a circuit op",
    ),
    (
        "parameter slot reads a circuit op",
        param_slot_reads_circuit_op,
        "dense",
        r"parameter slot 'weight' is fed by %\d+ \(categorical\), which is not a parameter op",
    ),
    ("missing parameter", missing_param, "dense", r"missing parameter: slot 'weight'"),
    (
        "unknown parameter slot",
        unknown_param_slot,
        "kronecker",
        r"unknown parameter slot 'weight'; kronecker has no parameter slots",
    ),
    (
        "parameter op missing operand",
        param_op_missing_operand,
        "softmax",
        r"missing operand: slot 0 of 1",
    ),
    (
        "parameter op extra operand",
        param_op_extra_operand,
        "softmax",
        r"extra operand on slot 1: softmax has arity 1",
    ),
    (
        "clamp without bounds",
        clamp_without_bounds,
        "clamp",
        r"clamp needs vmin or vmax \(or both\), got neither",
    ),
    ("clamp bounds crossed", clamp_bounds_crossed, "clamp", r"clamp needs vmin <= vmax"),
    ("bad output node", bad_output_node, None, r"bad output 0: %12345 is not in the graph"),
    ("output is a parameter op", output_is_param_op, "softmax", r"bad output 0: .*not a circuit"),
    (
        "output fold out of range",
        output_fold_out_of_range,
        "dense",
        r"bad output 0: fold 3 out of range \(1 fold\(s\)\)",
    ),
    (
        "mixed semirings",
        mixed_semirings,
        None,
        r"mixed semirings: the op has semiring (lse-sum|unset), but %\d+ \(\w+\) has"
        r" (unset|lse-sum)",
    ),
    ("node without op", node_without_op, None, r"%777 \(no op\): the node holds no op"),
    (
        "edge without a fold map",
        edge_without_fold_map,
        "kronecker",
        r"the edge from %\d+ \(categorical\) has no valid slot and fold map \(slot=2,"
        r" fold_map=None\)",
    ),
]


@pytest.mark.parametrize(
    ("corrupt", "op_name", "pattern"), [c[1:] for c in TINY], ids=[c[0] for c in TINY]
)
def test_corruption_is_rejected(corrupt, op_name, pattern):
    g = lower(tiny_circuit())
    verify(g)
    node = corrupt(g)
    with pytest.raises(VerificationError, match=pattern) as info:
        verify(g)
    message = str(info.value)
    if op_name is not None:
        assert message.startswith(f"%{node} ({op_name}): "), message
        assert info.value.node == node
    elif node >= 0:
        assert info.value.node == node


def test_messages_are_distinct():
    patterns = [c[3] for c in TINY]
    assert len(set(patterns)) == len(patterns)
    kinds = {re.split(r"[:(]", p)[0] for p in patterns}
    assert len(kinds) >= 12


def test_non_smooth_mixing():
    g = lower(four_variable_circuit())
    mix = _one(g, "mixing")
    left, right = g.inputs(mix)
    dense = g.inputs(g.inputs(left)[0])[0]  # a dense over two of the four variables
    g.disconnect(right, mix)
    g.connect(dense, mix, 1, FoldMap.identity())
    with pytest.raises(VerificationError, match=r"not smooth at fold 0: the input on slot 0") as e:
        verify(g)
    assert str(e.value).startswith(f"%{mix} (mixing): ")
    assert "has scope {0, 1, 2, 3}, the input on slot 1 has {0, 1}" in str(e.value)
    verify(g, check_scopes=False)


def test_decomposability_of_fused_ops():
    g = zoo_graph()
    cp = _one(g, "cp")
    x = g.inputs(cp)[0]
    g.disconnect(g.inputs(cp)[1], cp)
    g.connect(x, cp, 1, FoldMap.identity())
    with pytest.raises(VerificationError, match=r"\(cp\): not decomposable at fold 0"):
        verify(g)


# -- folded graphs ------------------------------------------------------------------------------


def test_incomplete_fold_map():
    g = folded_graph()
    kron = _one(g, "kronecker")
    cat2 = _one(g, "categorical", 1)
    g.disconnect(cat2, kron, slot=0)
    with pytest.raises(
        VerificationError,
        match=r"\(kronecker\): incomplete fold map: slot 0 does not cover consumer fold\(s\) 1"
        r" of 3",
    ):
        verify(g)


def test_duplicated_fold():
    g = folded_graph()
    kron = _one(g, "kronecker")
    cat2 = _one(g, "categorical", 1)
    g.connect(cat2, kron, 0, FoldMap((0,), (1,)))
    with pytest.raises(
        VerificationError, match=r"\(kronecker\): duplicated fold: slot 0 reads consumer fold 0"
    ):
        verify(g)


def test_folded_scopes_are_checked_per_fold():
    g = folded_graph()
    kron = _one(g, "kronecker")
    cat4 = _one(g, "categorical", 0)
    g.disconnect(cat4, kron, slot=1)
    g.connect(cat4, kron, 1, FoldMap((0, 2), (1, 2)))  # fold 2 now reads variables 2 and 2
    with pytest.raises(VerificationError, match=r"not decomposable at fold 2: .* \{2\}"):
        verify(g)


def test_folded_parameter_shape_uses_the_consumer_folds():
    g = folded_graph()
    dense = _one(g, "dense")
    weight = g.params(dense)["weight"]
    g.disconnect(weight, dense)
    g.connect(weight, dense, "weight", FoldMap((0, 1), (0, 1)))
    with pytest.raises(VerificationError, match=r"incomplete fold map: slot 'weight'"):
        verify(g)
    g.disconnect(weight, dense)
    g.connect(_tensor(g, (5, 2, 4)), dense, "weight", FoldMap((0, 1, 2), (4, 0, 2)))
    verify(g)  # 3 of a 5-fold tensor's folds, permuted: fine


def test_pass_name_is_in_the_message():
    g = lower(tiny_circuit())
    missing_operand(g)
    with pytest.raises(VerificationError, match=r"\(after pass 'fuse'\)$") as info:
        verify(g, pass_name="fuse")
    assert info.value.pass_name == "fuse"
