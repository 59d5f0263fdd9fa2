"""`fold`: grouping by depth and signature, canonical fold order, parameters alongside."""

from __future__ import annotations

import re

import pytest

from cirkit_ir.ir import Graph, lower
from cirkit_ir.ir.parser import parse_ir
from cirkit_ir.ir.printer import canonical_text, print_ir
from cirkit_ir.ir.verify import verify
from cirkit_ir.passes import Fold, PassManager
from cirkit_ir.templates import circuit_templates

SEED_FOLDED = ["categorical"] + ["kronecker", "dense", "kronecker", "dense", "mixing"] * 5
SEED_FUSED = ["categorical"] + ["tucker", "tucker", "mixing"] * 5


def names(graph: Graph) -> list[str]:
    return [graph.op(n).name for n in graph.circuit_ops()]


def run(pipeline: str, graph: Graph) -> Graph:
    return PassManager.parse(pipeline).run(graph)


# -- the seed circuit ---------------------------------------------------------------------------


def test_seed_folds_to_26_ops(seed_graph: Graph) -> None:
    graph = run("lower-semiring,fold", seed_graph.clone())
    assert names(graph) == SEED_FOLDED
    first = graph.op(graph.circuit_ops()[0])
    assert first.num_folds == 784
    assert first.variables == tuple(range(784))  # type: ignore[attr-defined]
    folds = [graph.op(n).num_folds for n in graph.circuit_ops()]
    assert folds[:6] == [784, 784, 784, 392, 392, 196]
    assert all(graph.op(n).semiring == "lse-sum" for n in graph.circuit_ops())
    # Every parameter chain folded with its ops: one tensor per folded op with weights.
    tensors = [graph.op(n) for n in graph.param_ops() if graph.op(n).name == "tensor"]
    assert len(tensors) == 1 + 2 * 5 + 5
    assert sorted(s for t in tensors for s in t.sources) == list(range(2603))


def test_seed_fold_and_fuse_commute(seed_graph: Graph) -> None:
    fused_first = run("lower-semiring,fuse,fold", seed_graph.clone())
    folded_first = run("lower-semiring,fold,fuse", seed_graph.clone())
    assert names(fused_first) == names(folded_first) == SEED_FUSED
    assert fused_first == folded_first
    assert canonical_text(fused_first) == canonical_text(folded_first)


def test_fold_is_idempotent_on_the_seed(seed_graph: Graph) -> None:
    graph = run("lower-semiring,fold", seed_graph.clone())
    text = print_ir(graph)
    assert Fold().apply(graph) is False
    assert print_ir(graph) == text


def test_fold_result_does_not_depend_on_node_ids(seed_graph: Graph) -> None:
    graph = seed_graph.clone()
    shuffled = parse_ir(_reversed_definitions(print_ir(graph)))
    assert run("fold", graph) == run("fold", shuffled)


def _reversed_definitions(text: str) -> str:
    """The same graph with its values defined in another (still valid) order, and renamed
    (`%v12` rather than `%12`: the parser then numbers nodes in the new order)."""
    text = re.sub(r"%(\d+)", r"%v\1", text)
    header = [line for line in text.splitlines() if line.startswith("graph")]
    lines = [line for line in text.splitlines() if line.startswith("%")]
    ret = [line for line in text.splitlines() if line.startswith("return")]
    uses = {line.split(" = ")[0]: set(re.findall(r"%v\d+", line.split(" = ")[1])) for line in lines}
    by_name = {line.split(" = ")[0]: line for line in lines}
    placed: list[str] = []
    defined: set[str] = set()
    pending = [line.split(" = ")[0] for line in reversed(lines)]
    while pending:
        ready = [name for name in pending if uses[name] <= defined]
        for name in ready:
            placed.append(by_name[name])
            defined.add(name)
            pending.remove(name)
    assert placed != lines
    return "\n".join(header + placed + ret) + "\n"


# -- small graphs, IR text in and out -----------------------------------------------------------

CATEGORICAL = "num_channels=1, num_units=2, num_categories=3"
CAT4 = "num_channels=1, num_units=2, num_categories=4"

UNFOLDED = f"""
%t0 = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
%c0 = categorical() [probs=%t0] {{variables=[2], {CATEGORICAL}}} : 1x?x2
%t1 = tensor() {{initializer=normal(), sources=[1]}} : 1x2x1x3
%c1 = categorical() [probs=%t1] {{variables=[0], {CATEGORICAL}}} : 1x?x2
%t2 = tensor() {{initializer=normal(), sources=[2]}} : 1x2x1x3
%c2 = categorical() [probs=%t2] {{variables=[1], {CATEGORICAL}}} : 1x?x2
%t3 = tensor() {{initializer=normal(), sources=[3]}} : 1x2x1x3
%c3 = categorical() [probs=%t3] {{variables=[3], {CATEGORICAL}}} : 1x?x2
%k0 = kronecker(%c0, %c1) {{in_units=2, num_inputs=2}} : 1x?x4
%k1 = kronecker(%c2, %c3) {{in_units=2, num_inputs=2}} : 1x?x4
%w0 = tensor() {{initializer=normal(), sources=[4]}} : 1x1x4
%s0 = softmax(%w0) {{axis=-1}} : 1x1x4
%d0 = dense(%k0) [weight=%s0] {{in_units=4, out_units=1}} : 1x?x1
%w1 = tensor() {{initializer=normal(), sources=[5]}} : 1x1x4
%s1 = softmax(%w1) {{axis=-1}} : 1x1x4
%d1 = dense(%k1) [weight=%s1] {{in_units=4, out_units=1}} : 1x?x1
%h = hadamard(%d0, %d1) {{units=1, num_inputs=2}} : 1x?x1
return %h
"""

# Inputs by variable; other ops by the positions of their operands (k1 reads variables 1, 3
# and comes before k0, which reads 2, 0); tensors keep their sources fold by fold.
FOLDED = f"""
%t = tensor() {{initializer=normal(), sources=[1,2,0,3]}} : 4x2x1x3
%c = categorical() [probs=%t] {{variables=0:4, {CATEGORICAL}}} : 4x?x2
%k = kronecker(%c[1,2], %c[3,0]) {{in_units=2, num_inputs=2}} : 2x?x4
%w = tensor() {{initializer=normal(), sources=[5,4]}} : 2x1x4
%s = softmax(%w) {{axis=-1}} : 2x1x4
%d = dense(%k) [weight=%s] {{in_units=4, out_units=1}} : 2x?x1
%h = hadamard(%d[1], %d[0]) {{units=1, num_inputs=2}} : 1x?x1
return %h
"""


def fold(text: str) -> Graph:
    graph = parse_ir(text)
    Fold().apply(graph)
    verify(graph)
    return graph


def test_fold_orders_folds_canonically() -> None:
    assert fold(UNFOLDED) == parse_ir(FOLDED)


def test_fold_of_a_partially_folded_graph() -> None:
    partial = f"""
    %t01 = tensor() {{initializer=normal(), sources=[1,2]}} : 2x2x1x3
    %c01 = categorical() [probs=%t01] {{variables=[0,1], {CATEGORICAL}}} : 2x?x2
    %t0 = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
    %c0 = categorical() [probs=%t0] {{variables=[2], {CATEGORICAL}}} : 1x?x2
    %t3 = tensor() {{initializer=normal(), sources=[3]}} : 1x2x1x3
    %c3 = categorical() [probs=%t3] {{variables=[3], {CATEGORICAL}}} : 1x?x2
    %k1 = kronecker(%c01[1], %c3) {{in_units=2, num_inputs=2}} : 1x?x4
    %k0 = kronecker(%c0, %c01[0]) {{in_units=2, num_inputs=2}} : 1x?x4
    %w = tensor() {{initializer=normal(), sources=[5,4]}} : 2x1x4
    %s = softmax(%w) {{axis=-1}} : 2x1x4
    %d = dense(%k1[0] ++ %k0[0]) [weight=%s] {{in_units=4, out_units=1}} : 2x?x1
    %h = hadamard(%d[1], %d[0]) {{units=1, num_inputs=2}} : 1x?x1
    return %h
    """
    assert fold(partial) == parse_ir(FOLDED)


def test_folding_twice_changes_nothing() -> None:
    graph = fold(UNFOLDED)
    text = print_ir(graph)
    assert Fold().apply(graph) is False
    assert print_ir(graph) == text


def test_fold_keeps_shared_parameters_shared() -> None:
    shared = f"""
    %s = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
    %p = softmax(%s) {{axis=-1}} : 1x2x1x3
    %c1 = categorical() [probs=%p] {{variables=[1], {CATEGORICAL}}} : 1x?x2
    %c0 = categorical() [probs=%p] {{variables=[0], {CATEGORICAL}}} : 1x?x2
    %t = tensor() {{initializer=normal(), sources=[1]}} : 1x2x1x3
    %c2 = categorical() [probs=%t] {{variables=[2], {CATEGORICAL}}} : 1x?x2
    %h = hadamard(%c0, %c1, %c2) {{units=2, num_inputs=3}} : 1x?x2
    return %h
    """
    # Folds 0 and 1 read the one shared softmax (a gather, no copy: the weights stay tied);
    # fold 2 reads its own tensor.
    expected = f"""
    %s = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
    %p = softmax(%s) {{axis=-1}} : 1x2x1x3
    %t = tensor() {{initializer=normal(), sources=[1]}} : 1x2x1x3
    %c = categorical() [probs=%p[0,0] ++ %t] {{variables=0:3, {CATEGORICAL}}} : 3x?x2
    %h = hadamard(%c[0], %c[1], %c[2]) {{units=2, num_inputs=3}} : 1x?x2
    return %h
    """
    assert fold(shared) == parse_ir(expected)


def test_fold_stacks_private_chains_and_gathers_from_shared_leaves() -> None:
    text = f"""
    %s = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
    %p0 = softmax(%s) {{axis=-1}} : 1x2x1x3
    %p1 = softmax(%s) {{axis=-1}} : 1x2x1x3
    %c0 = categorical() [probs=%p0] {{variables=[0], {CATEGORICAL}}} : 1x?x2
    %c1 = categorical() [probs=%p1] {{variables=[1], {CATEGORICAL}}} : 1x?x2
    %h = hadamard(%c0, %c1) {{units=2, num_inputs=2}} : 1x?x2
    return %h
    """
    expected = f"""
    %s = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
    %p = softmax(%s[0,0]) {{axis=-1}} : 2x2x1x3
    %c = categorical() [probs=%p] {{variables=0:2, {CATEGORICAL}}} : 2x?x2
    %h = hadamard(%c[0], %c[1]) {{units=2, num_inputs=2}} : 1x?x2
    return %h
    """
    assert fold(text) == parse_ir(expected)


def test_fold_groups_by_signature_and_remaps_outputs() -> None:
    text = f"""
    %t0 = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
    %c0 = categorical() [probs=%t0] {{variables=[0], {CATEGORICAL}}} : 1x?x2
    %t1 = tensor() {{initializer=normal(), sources=[1]}} : 1x2x1x3
    %c1 = categorical() [probs=%t1] {{variables=[1], {CATEGORICAL}}} : 1x?x2
    %t2 = tensor() {{initializer=normal(), sources=[2]}} : 1x2x1x4
    %c2 = categorical() [probs=%t2] {{variables=[2], {CAT4}}} : 1x?x2
    %w0 = tensor() {{initializer=normal(), sources=[3]}} : 1x2x2
    %d0 = dense(%c2) [weight=%w0] {{in_units=2, out_units=2}} : 1x?x2
    %w1 = tensor() {{initializer=normal(), sources=[4]}} : 1x2x2
    %d1 = dense(%c1) [weight=%w1] {{in_units=2, out_units=2}} : 1x?x2
    %w2 = tensor() {{initializer=normal(), sources=[5]}} : 1x2x2
    %d2 = dense(%c0) [weight=%w2] {{in_units=2, out_units=2}} : 1x?x2
    return %d0, %d1, %d2
    """
    # Two input groups (3 and 4 categories), ordered by their first variable; the dense
    # ops fold in the order of what they read; outputs follow their folds.
    expected = f"""
    %t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
    %c = categorical() [probs=%t] {{variables=0:2, {CATEGORICAL}}} : 2x?x2
    %t2 = tensor() {{initializer=normal(), sources=[2]}} : 1x2x1x4
    %c2 = categorical() [probs=%t2] {{variables=[2], {CAT4}}} : 1x?x2
    %w = tensor() {{initializer=normal(), sources=[5,4,3]}} : 3x2x2
    %d = dense(%c[0:2] ++ %c2) [weight=%w] {{in_units=2, out_units=2}} : 3x?x2
    return %d[2], %d[1], %d[0]
    """
    assert fold(text) == parse_ir(expected)


@pytest.mark.parametrize("layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("region_graph", ["quad-tree-2", "quad-tree-4", "quad-graph"])
def test_fold_and_fuse_commute_on_templates(layer: str, region_graph: str) -> None:
    circuit = circuit_templates.image_data(
        (1, 8, 8),
        region_graph=region_graph,
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer=layer,
        num_sum_units=3,
    )
    fused_first = run("lower-semiring,fuse,fold", lower(circuit))
    folded_first = run("lower-semiring,fold,fuse", lower(circuit))
    assert fused_first == folded_first
    assert "kronecker" not in names(fused_first)
