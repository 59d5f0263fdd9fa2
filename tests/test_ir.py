"""The Graph API, lowering, the chain matcher and the Graphviz export."""

from __future__ import annotations

import shutil

import pytest
from ir_cases import folded_graph, four_variable_circuit, hadamard_circuit, tiny_circuit

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.ir import FoldMap, Graph, lower, match_chain, print_ir, render, to_dot, verify
from cirkit_ir.ir import ops as o
from cirkit_ir.symbolic import (
    CategoricalLayer,
    Circuit,
    DenseLayer,
    KroneckerLayer,
    NormalInitializer,
    SoftmaxParameter,
    TensorParameter,
)

# -- Graph API ---------------------------------------------------------------------------------


def _by_name(graph: Graph, name: str) -> list[int]:
    return [n for n in graph.topological_order() if graph.op(n).name == name]


def test_operands_inputs_params_and_uses():
    g = lower(tiny_circuit())
    (kron,) = _by_name(g, "kronecker")
    (dense,) = _by_name(g, "dense")
    x0, x1 = _by_name(g, "categorical")
    assert g.inputs(kron) == [x0, x1]
    assert [e.slot for e in g.operands(dense)] == [0, "weight"]
    weight = g.params(dense)["weight"]
    assert isinstance(g.op(weight), o.SoftmaxOp)
    assert g.users(kron) == [dense]
    assert [(u.consumer, u.slot) for u in g.uses(x1)] == [(kron, 1)]
    assert g.outputs == [(dense, 0)]
    assert g.depths() == {x0: 0, x1: 0, kron: 1, dense: 2}
    assert g.param_graph(dense) == [g.inputs(weight)[0], weight]


def test_inputs_refuses_a_slot_with_several_producers():
    g = folded_graph()
    (kron,) = _by_name(g, "kronecker")
    with pytest.raises(StructureError, match="slot 0 of %.* has 2 producers"):
        g.inputs(kron)


def test_insert_an_op_between_two_ops():
    g = lower(tiny_circuit())
    (kron,) = _by_name(g, "kronecker")
    (dense,) = _by_name(g, "dense")
    leaf = g.add_op(
        o.TensorOp(NormalInitializer(), shape=(1, 4, 4), sources=(99,)),
    )
    weight = g.add_op(o.SoftmaxOp(shape=(1, 4, 4)), inputs=[leaf])
    inserted = g.add_op(o.DenseOp(4, 4), inputs=[kron], params={"weight": weight})
    g.replace_all_uses(kron, inserted)
    assert g.inputs(inserted) == [kron]  # the new op keeps reading the old one
    assert g.inputs(dense) == [inserted]
    assert g.users(kron) == [inserted]
    verify(g)


def test_replace_all_uses_moves_edges_and_outputs():
    g = lower(tiny_circuit())
    x0, x1 = _by_name(g, "categorical")
    (kron,) = _by_name(g, "kronecker")
    (dense,) = _by_name(g, "dense")
    g.replace_all_uses(x0, x1)
    assert g.inputs(kron) == [x1, x1]
    assert g.users(x0) == []
    g.replace_all_uses(dense, kron)
    assert g.outputs == [(kron, 0)]
    g.replace_all_uses(kron, kron)  # a no-op, not an erasure
    assert g.outputs == [(kron, 0)]


def test_building_a_graph_with_bad_arguments():
    g = Graph()
    with pytest.raises(OptionError, match="Graph.add_op takes an Op .*, got str"):
        g.add_op("dense")  # type: ignore[arg-type]
    with pytest.raises(StructureError, match=r"%7 \(slot 0 of the new exp\) is not in the graph"):
        g.add_op(o.ExpOp(shape=(1, 2)), inputs=[7])
    leaf = g.add_op(o.TensorOp(NormalInitializer(), shape=(1, 2), sources=(0,)))
    exp = g.add_op(o.ExpOp(shape=(1, 2)), inputs=[leaf])
    with pytest.raises(StructureError, match="%9 is not in the graph"):
        g.connect(leaf, 9, 0, FoldMap.identity())
    with pytest.raises(OptionError, match="Graph.connect takes a FoldMap, got tuple"):
        g.connect(leaf, exp, 1, ((0,), (0,)))  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="a slot is an operand number or a parameter name"):
        g.connect(leaf, exp, 1.0, FoldMap.identity())  # type: ignore[arg-type]
    with pytest.raises(StructureError, match="pairs consumer and producer folds one to one"):
        FoldMap([0, 1], [0])
    with pytest.raises(StructureError, match="a fold map lists fold indices"):
        FoldMap(["a"], [0])


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: o.DenseOp(0, 2), OptionError, "DenseOp.in_units must be a positive int, got 0"),
        (
            lambda: o.DenseOp(2, 2, semiring="min-sum"),
            OptionError,
            "unknown DenseOp.semiring 'min-sum'; expected one of: 'sum-product'",
        ),
        (lambda: o.CategoricalOp((), 1, 2, num_categories=3), StructureError, "at least one"),
        (
            lambda: o.EvidenceOp(o.DenseOp(2, 2)),
            OptionError,
            "EvidenceOp.distribution must be an InputOp, got a DenseOp",
        ),
        (
            lambda: o.TensorOp("normal", shape=(1, 2), sources=(0,)),
            OptionError,
            "TensorOp.initializer must be an Initializer",
        ),
        (
            lambda: o.TensorOp(NormalInitializer(), shape=(2, 2), sources=(0,)),
            StructureError,
            r"1 sources for 2 folds",
        ),
        (lambda: o.SoftmaxOp(axis=1, shape=(1, 2)), OptionError, "axes are negative"),
        (lambda: o.ExpOp(shape="1x2"), OptionError, "expected a tuple of ints"),
    ],
)
def test_bad_op_attributes(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, r"clamp needs vmin or vmax \(or both\), got neither"),
        ({"vmin": 1.0, "vmax": 0.0}, r"clamp needs vmin <= vmax, got vmin=1.0, vmax=0.0"),
        ({"vmin": float("nan")}, r"clamp: vmin must be a number or None, got nan"),
    ],
)
def test_clamp_ops_that_cannot_run_fail_validation(options, message):
    # Built (analyses reason about any clamp), but refused by `validate`, which the parser
    # and the verifier call, before torch would refuse them at the first forward.
    op = o.ClampOp(shape=(1, 2), **options)
    with pytest.raises(OptionError, match=message):
        op.validate()
    o.ClampOp(shape=(1, 2), vmin=0.0).validate()
    o.ClampOp(shape=(1, 2), vmax=0.0).validate()


def test_erase_and_erase_unused():
    g = lower(tiny_circuit())
    x0, _ = _by_name(g, "categorical")
    with pytest.raises(StructureError, match="still used by"):
        g.erase(x0)
    (dense,) = _by_name(g, "dense")
    with pytest.raises(StructureError, match="the outputs"):
        g.erase(dense)
    with pytest.raises(StructureError, match="%999 is not in the graph"):
        g.erase(999)
    dead = g.add_op(o.TensorOp(NormalInitializer(), shape=(1, 2), sources=(7,)))
    g.erase(dead)
    assert dead not in g
    g.add_op(
        o.ExpOp(shape=(1, 2)),
        inputs=[g.add_op(o.TensorOp(NormalInitializer(), shape=(1, 2), sources=(8,)))],
    )
    before = len(g)
    assert g.erase_unused() == 2
    assert len(g) == before - 2
    verify(g)


def test_disconnect_and_replace_op():
    g = lower(tiny_circuit())
    (kron,) = _by_name(g, "kronecker")
    _, x1 = _by_name(g, "categorical")
    g.disconnect(x1, kron, slot=1)
    assert [e.slot for e in g.operands(kron)] == [0]
    g.connect(x1, kron, 1, FoldMap.identity())
    g.replace_op(kron, o.KroneckerOp(2, 2, semiring=None))
    verify(g)


def test_clone_is_independent_and_equal():
    g = lower(four_variable_circuit())
    copy = g.clone()
    assert copy == g
    (mix,) = _by_name(copy, "mixing")
    copy.replace_op(mix, o.MixingOp(2, 2, semiring="lse-sum"))
    assert copy != g
    assert isinstance(g.op(mix), o.MixingOp) and g.op(mix).semiring is None
    copy.set_outputs([mix])
    assert g.outputs != copy.outputs


def test_equality_ignores_node_ids_and_build_order():
    def build(reverse: bool) -> Graph:
        g = Graph()
        cats = []
        for v in (1, 0) if reverse else (0, 1):
            leaf = g.add_op(o.TensorOp(NormalInitializer(), shape=(1, 2, 1, 2), sources=(v,)))
            probs = g.add_op(o.SoftmaxOp(shape=(1, 2, 1, 2)), inputs=[leaf])
            cats.append(
                g.add_op(o.CategoricalOp((v,), 1, 2, num_categories=2), params={"probs": probs})
            )
        if reverse:
            cats.reverse()
        kron = g.add_op(o.KroneckerOp(2, 2), inputs=cats)
        g.set_outputs([kron])
        return g

    a, b = build(False), build(True)
    assert list(a.nx.nodes) != [n for n in b.nx.nodes if b.op(n) == a.op(n)]  # other ids
    assert a == b
    c = build(False)
    kron = _by_name(c, "kronecker")[0]
    x0, x1 = c.inputs(kron)
    c.disconnect(x0, kron)
    c.disconnect(x1, kron)
    c.connect(x1, kron, 0, FoldMap.identity())
    c.connect(x0, kron, 1, FoldMap.identity())
    assert c != a  # operand order is structure


def test_equality_sees_fold_maps_and_outputs():
    a, b = folded_graph(), folded_graph()
    assert a == b
    (had,) = _by_name(b, "hadamard")
    (dense,) = _by_name(b, "dense")
    b.disconnect(dense, had)
    for slot, fold in enumerate((0, 2, 1)):
        b.connect(dense, had, slot, FoldMap((0,), (fold,)))
    assert a != b
    c = folded_graph()
    c.set_outputs([(_by_name(c, "dense")[0], 1)])
    assert a != c


# -- lowering ----------------------------------------------------------------------------------


def test_lowering_counts_and_locations():
    circuit = four_variable_circuit()
    g = lower(circuit)
    assert sum(isinstance(g.op(n), o.CircuitOp) for n in g) == len(circuit.layers)
    assert g.op_counts() == {
        "tensor": 12,
        "softmax": 12,
        "categorical": 4,
        "kronecker": 6,
        "dense": 7,
        "mixing": 1,
    }
    layers = circuit.layers
    for node in g:
        location = g.location(node)
        (index,) = location.layers
        op = g.op(node)
        if isinstance(op, o.CircuitOp):
            assert location.slot is None and layers[index].kind == op.name
        else:  # a parameter op lowered for one of the layer's slots
            assert location.slot in layers[index].params
    sources = sorted(g.op(n).sources[0] for n in g if isinstance(g.op(n), o.TensorOp))
    assert sources == list(range(12))
    (top,) = [n for n, _ in g.outputs]
    assert g.location(top).layers == (circuit.layer_index(circuit.outputs[0]),)
    assert (g.num_variables, g.num_channels) == (4, 1)
    assert all(g.op(n).num_folds == 1 for n in g)
    verify(g)


def test_lowering_keeps_shared_parameters_shared():
    shared = SoftmaxParameter(TensorParameter((2, 1, 2)))
    x0 = CategoricalLayer((0,), 2, num_categories=2, probs=shared)
    x1 = CategoricalLayer((1,), 2, num_categories=2, probs=shared)
    kron = KroneckerLayer(2, 2)
    dense = DenseLayer(4, 1)
    g = lower(Circuit([x0, x1, kron, dense], {kron: [x0, x1], dense: [kron]}, [dense]))
    (probs,) = [n for n in g if g.op(n).name == "softmax" and g.op(n).shape == (1, 2, 1, 2)]
    assert len(g.users(probs)) == 2
    assert g.op_counts()["tensor"] == 2
    verify(g)


def test_lowered_ops_match_layers():
    g = lower(hadamard_circuit())
    (had,) = _by_name(g, "hadamard")
    assert g.op(had) == o.HadamardOp(3, 2)
    assert str(g.op(had).result_type) == "1x?x3"
    verify(g)


# -- matcher -----------------------------------------------------------------------------------


def test_match_chain_kronecker_dense():
    g = lower(tiny_circuit())
    (kron,) = _by_name(g, "kronecker")
    (dense,) = _by_name(g, "dense")
    assert match_chain(g, dense, (o.KroneckerOp, o.DenseOp)) == [kron, dense]
    assert match_chain(g, kron, (o.KroneckerOp, o.DenseOp)) is None
    assert match_chain(g, dense, (o.HadamardOp, o.DenseOp)) is None
    assert match_chain(g, dense, ((o.HadamardOp, o.KroneckerOp), o.DenseOp)) == [kron, dense]
    assert match_chain(g, dense, (lambda op: op.name == "kronecker", o.DenseOp)) == [kron, dense]
    assert match_chain(g, dense, (o.DenseOp,)) == [dense]
    assert match_chain(g, kron, (o.KroneckerOp,)) == [kron]  # arity does not matter at the end


def test_match_chain_needs_a_single_user_and_single_operand():
    g = lower(tiny_circuit())
    (kron,) = _by_name(g, "kronecker")
    (dense,) = _by_name(g, "dense")
    g.set_outputs([dense, kron])  # the kronecker op is an output too
    assert match_chain(g, dense, (o.KroneckerOp, o.DenseOp)) is None
    assert match_chain(g, dense, (o.KroneckerOp, o.DenseOp), single_use=False) == [kron, dense]
    g.set_outputs([dense])
    weight = g.add_op(o.SoftmaxOp(shape=(1, 1, 4)), inputs=[g.params(dense)["weight"]])
    other = g.add_op(o.DenseOp(4, 1), inputs=[kron], params={"weight": weight})
    assert match_chain(g, dense, (o.KroneckerOp, o.DenseOp)) is None
    assert match_chain(g, other, (o.KroneckerOp, o.DenseOp), single_use=False) == [kron, other]
    x0, _ = g.inputs(kron)
    assert match_chain(g, kron, (o.CategoricalOp, o.KroneckerOp)) is None  # two operands


def test_match_chain_of_three():
    g = lower(hadamard_circuit())
    (had,) = _by_name(g, "hadamard")
    (top,) = [n for n, _ in g.outputs]
    assert match_chain(g, top, (o.HadamardOp, o.DenseOp)) == [had, top]
    assert match_chain(g, top, (o.DenseOp, o.HadamardOp, o.DenseOp)) is None
    first = g.inputs(had)[0]
    x0 = g.inputs(first)[0]
    assert match_chain(g, first, (o.CategoricalOp, o.DenseOp)) == [x0, first]


# -- dot ---------------------------------------------------------------------------------------


def test_to_dot_draws_folded_ops_once():
    g = folded_graph()
    text = to_dot(g)
    assert text.startswith('digraph "circuit" {')
    circuit_nodes = [line for line in text.splitlines() if 'label="%' in line]
    assert len(circuit_nodes) == 5  # 2 categorical, kronecker, dense, hadamard
    assert "kronecker\\n3 folds, 2 -> 4 units" in text
    assert "peripheries=2" in text  # the output
    assert "tensor" not in text
    with_params = to_dot(g, params=True)
    assert "softmax\\n3x2x4" in with_params and "style=dashed" in with_params


def test_render_runs_dot_or_names_it(tmp_path, monkeypatch):
    text = to_dot(lower(tiny_circuit()))
    if shutil.which("dot"):
        path = render(text, tmp_path / "tiny.svg")
        assert path.read_text().lstrip().startswith("<?xml")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="Graphviz program 'dot'"):
        render(text, tmp_path / "x.svg")


def test_print_summary_counts_ops_per_type_and_depth():
    text = print_ir(lower(four_variable_circuit()), summary=True)
    assert "graph: 18 circuit ops, 24 parameter ops, 1 output(s)" in text
    assert "circuit ops: categorical=4, dense=7, kronecker=6, mixing=1" in text
    assert "depth 0: 4 ops, 4 folds (categorical=4)" in text
    assert "depth 5: 1 ops, 1 folds (mixing=1)" in text
