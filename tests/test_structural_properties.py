"""Structural properties (`cirkit_ir.properties`): hand-built circuits with a known answer, and
the same answer from a circuit's region graph, its IR (folded or not) and its compiled form."""

from __future__ import annotations

import pytest

from cirkit_ir.errors import OptionError
from cirkit_ir.ir import lower
from cirkit_ir.passes import PassManager
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.properties import (
    NodeKind,
    ScopeView,
    StructuralProperties,
    are_compatible,
    is_omni_compatible,
    is_structured_decomposable,
    scope_factorizations,
    structural_properties,
)
from cirkit_ir.region_graph import linear_tree, poon_domingos, quad_tree, random_binary_tree
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import PartitionNode, RegionNode
from cirkit_ir.symbolic import (
    CategoricalLayer,
    Circuit,
    ConstantInitializer,
    DenseLayer,
    EvidenceLayer,
    HadamardLayer,
    KroneckerLayer,
    MixingLayer,
    TensorParameter,
)
from cirkit_ir.templates.from_region_graph import circuit_from_region_graph

ALL = StructuralProperties(True, True, True, True)


def cat(variable: int, units: int = 2) -> CategoricalLayer:
    return CategoricalLayer([variable], units, num_categories=3)


def vtree_circuit() -> Circuit:
    """((x0 x1) x2): structured-decomposable, not omni-compatible."""
    x, y, z = cat(0), cat(1), cat(2)
    p = HadamardLayer(2, 2)
    d = DenseLayer(2, 2)
    q = HadamardLayer(2, 2)
    root = DenseLayer(2, 1)
    return Circuit([x, y, z, p, d, q, root], {p: [x, y], d: [p], q: [d, z], root: [q]}, [root])


def mixture_of_factorized() -> Circuit:
    """Two fully factorized products over x0, x1, x2, mixed: omni-compatible."""
    products = []
    layers: list = []
    wiring: dict = {}
    for _ in range(2):
        leaves = [cat(v) for v in range(3)]
        product = HadamardLayer(2, 3)
        layers += [*leaves, product]
        wiring[product] = leaves
        products.append(product)
    root = MixingLayer(2, 2)
    out = DenseLayer(2, 1)
    wiring.update({root: products, out: [root]})
    return Circuit([*layers, root, out], wiring, [out])


def two_splits() -> Circuit:
    """{0,1,2} split as ({0,1},{2}) and as ({0},{1,2}): decomposable, not structured."""
    x, y, z = cat(0), cat(1), cat(2)
    p1, p2 = KroneckerLayer(2, 2), KroneckerLayer(2, 2)
    q1, q2 = KroneckerLayer(4, 2), KroneckerLayer(4, 2)
    dz, dx = DenseLayer(2, 4), DenseLayer(2, 4)
    root = MixingLayer(16, 2)
    return Circuit(
        [x, y, z, p1, p2, dz, dx, q1, q2, root],
        {p1: [x, y], p2: [y, z], dz: [z], dx: [x], q1: [p1, dz], q2: [dx, p2], root: [q1, q2]},
        [root],
    )


def with_evidence() -> Circuit:
    """A product of (x0 x1) with evidence on x2, beside (x0 x1): one factorization of {0,1}."""
    x, y, z = cat(0), cat(1), cat(2)
    evidence = EvidenceLayer(z, TensorParameter((1,), ConstantInitializer(1.0), learnable=False))
    p = HadamardLayer(2, 2)
    d = DenseLayer(2, 2)
    q = HadamardLayer(2, 2)
    root = MixingLayer(2, 2)
    return Circuit(
        [x, y, evidence, p, d, q, root], {p: [x, y], d: [p], q: [d, evidence], root: [q, d]}, [root]
    )


def not_smooth_not_decomposable() -> Circuit:
    a, a2, b = cat(0), cat(0), cat(1)
    overlapping = HadamardLayer(2, 2)
    mixed = MixingLayer(2, 2)
    return Circuit([a, a2, b, overlapping, mixed], {overlapping: [a, a2], mixed: [a, b]}, [mixed])


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (vtree_circuit, StructuralProperties(True, True, True, False)),
        (mixture_of_factorized, ALL),
        (two_splits, StructuralProperties(True, True, False, False)),
        (with_evidence, ALL),
        (not_smooth_not_decomposable, StructuralProperties(False, False, False, False)),
    ],
)
def test_hand_built_circuits(build, expected: StructuralProperties) -> None:
    circuit = build()
    assert circuit.properties == expected
    assert circuit.is_structured_decomposable == expected.structured_decomposable
    assert circuit.is_omni_compatible == expected.omni_compatible
    graph = lower(circuit)
    assert structural_properties(graph) == expected
    PassManager.parse("fold").run(graph)
    assert structural_properties(graph) == expected


def test_evidence_is_not_a_second_split() -> None:
    assert scope_factorizations(with_evidence()) == {
        frozenset({0, 1}): {(frozenset({0}), frozenset({1}))}
    }


def test_a_view_of_ones_own_structure() -> None:
    """A product whose children leave a variable of its scope uncovered is not decomposable
    (region graphs refuse such partitions when built; a view of one's own may have them)."""
    kinds = {"x": NodeKind.OTHER, "p": NodeKind.PRODUCT}
    view = ScopeView(("x", "p"), kinds, {"x": (), "p": ("x",)}, {"x": {0}, "p": {0, 1}})
    assert structural_properties(view) == StructuralProperties(True, False, False, False)


def rg_circuit(region_graph: RegionGraph) -> Circuit:
    return circuit_from_region_graph(
        region_graph,
        input_factory=lambda scope, units: CategoricalLayer(scope, units, num_categories=2),
        sum_product="cp",
        num_input_units=2,
        num_sum_units=2,
    )


@pytest.mark.parametrize(
    ("region_graph", "structured"),
    [
        (quad_tree((4, 4), 2), True),
        (linear_tree(4), True),
        (random_binary_tree(5, num_repetitions=1), True),
        (poon_domingos((2, 3), delta=1), False),
        (random_binary_tree(5, num_repetitions=2, seed=3), False),
    ],
)
def test_region_graph_symbolic_ir_and_compiled_agree(region_graph, structured: bool) -> None:
    circuit = rg_circuit(region_graph)
    expected = StructuralProperties(True, True, structured, False)
    assert region_graph.properties == expected
    assert circuit.properties == expected
    compiled = PipelineContext(semiring="lse-sum", fold=True, optimize=True).compile(circuit)
    assert compiled.properties == expected
    assert are_compatible(circuit, circuit) == structured


def test_fully_factorized_region_graph_is_omni_compatible() -> None:
    leaves = [RegionNode([v]) for v in range(3)]
    partition = PartitionNode([0, 1, 2])
    root = RegionNode([0, 1, 2])
    graph = RegionGraph([*leaves, partition, root], {partition: leaves, root: [partition]}, [root])
    assert graph.properties == ALL
    assert is_omni_compatible(rg_circuit(graph))


def test_compatibility() -> None:
    small = rg_circuit(quad_tree((2, 2), 2))
    same_tree = rg_circuit(quad_tree((2, 2), 2))
    assert are_compatible(small, same_tree) and are_compatible(same_tree, small)
    other_tree = rg_circuit(random_binary_tree(4, seed=1))
    factorized = mixture_of_factorized()
    # Scopes factorized differently (or not at all by one side) decide.
    assert are_compatible(small, other_tree) == (
        scope_factorizations(small) == scope_factorizations(other_tree)
    )
    assert not are_compatible(vtree_circuit(), factorized)
    assert are_compatible(with_evidence(), lower(with_evidence()))
    assert not are_compatible(two_splits(), two_splits())
    assert not are_compatible(not_smooth_not_decomposable(), vtree_circuit())


def test_unknown_structure_is_an_option_error() -> None:
    with pytest.raises(OptionError, match="register an adapter"):
        is_structured_decomposable([1, 2, 3])
