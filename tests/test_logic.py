"""`cirkit_ir.templates.logic`: logic circuits and SDDs as circuits that count models.

Every formula here is also a Python predicate; the compiled circuit must be 1 exactly on its
models, and sums over assignments must count them, checked by enumeration.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from cirkit_ir import errors, reference
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    CategoricalLayer,
    ConstantLayer,
    EmbeddingLayer,
    HadamardLayer,
    MixingLayer,
    Scope,
    TensorParameter,
)
from cirkit_ir.symbolic.initializers import ConstantInitializer
from cirkit_ir.templates.logic import (
    SDD,
    BottomNode,
    ConjunctionNode,
    DisjunctionNode,
    LiteralNode,
    LogicalCircuit,
    NegatedLiteralNode,
    TopNode,
)

# (x0 AND x1) OR (NOT x0 AND x2), as the SDD library writes it: root 0, written last.
MUX = """c ids of sdd nodes start at 0
c sdd nodes appear bottom-up, children before parents
sdd 5
L 1 0 1
L 2 2 2
L 3 0 -1
L 4 4 3
D 0 1 2 1 2 3 4
"""

# (x0 OR x1) AND NOT x2, with True and False subs, its root written with id 6.
WITH_CONSTANTS = """sdd 10
L 0 0 1
L 1 2 2
L 2 0 -1
L 3 4 -3
L 8 2 -2
F 4
T 5
D 7 1 2 0 5 2 1
D 9 1 1 2 8
D 6 3 2 7 3 9 4
"""

FLAGS = [("sum-product", False, False), ("lse-sum", False, False), ("lse-sum", True, True)]


def _assignments(num_variables: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0, 1], repeat=num_variables)))


def _values(circuit, semiring: str, fold: bool, optimize: bool, x: torch.Tensor) -> list[float]:
    compiled = PipelineContext("torch", semiring, fold, optimize, dtype=torch.float64).compile(
        circuit
    )
    out = compiled(x).detach().reshape(-1)
    return (out if semiring == "sum-product" else out.exp()).tolist()


def _check_indicator(circuit, predicate: Callable[..., bool], num_variables: int, flags) -> None:
    x = _assignments(num_variables)
    values = _values(circuit, *flags, x)
    assert values == [float(predicate(*row)) for row in x.tolist()]


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("enforce_smoothness", [True, False])
def test_sdd_is_the_indicator_of_its_models(flags, enforce_smoothness):
    sdd = SDD.from_text(MUX)
    circuit = sdd.build_circuit(enforce_smoothness=enforce_smoothness)
    assert circuit.is_smooth == enforce_smoothness
    _check_indicator(circuit, lambda a, b, c: (a and b) or (not a and c), 3, flags)
    constants = SDD.from_text(WITH_CONSTANTS).build_circuit(enforce_smoothness=enforce_smoothness)
    _check_indicator(constants, lambda a, b, c: (a or b) and not c, 3, flags)


def _marginal_literals() -> tuple[Callable, Callable]:
    """Literal layers that are 1 on both values: the circuit then sums over assignments."""

    def factory(scope: Scope, num_units: int):
        ones = TensorParameter((num_units, 1, 2), ConstantInitializer(1.0))
        return EmbeddingLayer(scope, num_units, num_states=2, weight=ones)

    return factory, factory


@pytest.mark.parametrize(
    ("text", "predicate"),
    [
        (MUX, lambda a, b, c: (a and b) or (not a and c)),
        (WITH_CONSTANTS, lambda a, b, c: (a or b) and not c),
    ],
)
def test_models_are_counted(text, predicate):
    count = sum(predicate(*row) for row in itertools.product([0, 1], repeat=3))
    sdd = SDD.from_text(text)
    for enforce in (True, False):  # the compiler smooths what build_circuit left rough
        summed = _values(
            sdd.build_circuit(enforce_smoothness=enforce), "lse-sum", True, True, _assignments(3)
        )
        assert sum(summed) == count
    # With every literal marginalized, a smooth circuit is its model count at any input ...
    circuit = sdd.build_circuit(*_marginal_literals())
    assert _values(circuit, "sum-product", True, True, _assignments(3)[:1]) == [count]
    # ... which a circuit that is not smooth gets wrong: that is what smoothing is for.
    rough = sdd.build_circuit(*_marginal_literals(), enforce_smoothness=False)
    naive = reference.evaluate(rough, _assignments(3)[:1], log_space=False)
    assert float(naive.reshape(())) < count


def test_random_formulas_count_their_models():
    """Disjunctions of disjoint cubes (deterministic and decomposable gates) over 4 variables,
    built node by node and not smooth: each must be its own indicator."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        cubes = []
        for row in torch.randint(0, 3, (4, 4), generator=generator).tolist():
            cube = {v: bool(value) for v, value in enumerate(row) if value != 2}
            if cube and all(any(cube.get(v, b) != b for v, b in other.items()) for other in cubes):
                cubes.append(cube)  # disjoint from the cubes so far: the OR is deterministic
        nodes, in_nodes, conjunctions = [], {}, []
        for cube in cubes:
            literals = [LiteralNode(v) if b else NegatedLiteralNode(v) for v, b in cube.items()]
            conjunction = ConjunctionNode()
            nodes += [*literals, conjunction]
            in_nodes[conjunction] = literals
            conjunctions.append(conjunction)
        root = DisjunctionNode()
        in_nodes[root] = conjunctions
        graph = LogicalCircuit([*nodes, root], in_nodes, [root])

        def predicate(*x, cubes=cubes):
            return any(all(x[v] == b for v, b in cube.items()) for cube in cubes)

        variables = sorted(graph.node_scope(root))
        rows = list(itertools.product([0, 1], repeat=4))
        count = sum(predicate(*row) for row in rows)
        counted = graph.build_circuit(*_marginal_literals())
        x = torch.zeros(1, max(variables) + 1, dtype=torch.long)
        missing = 4 - len(variables)  # variables no cube mentions double the count
        assert _values(counted, "sum-product", False, False, x) == [count / 2**missing]
        for enforce in (True, False):
            circuit = graph.build_circuit(enforce_smoothness=enforce)
            x = torch.tensor([row[: max(variables) + 1] for row in rows])
            values = _values(circuit, "sum-product", True, True, x)
            assert values == [float(predicate(*row)) for row in rows]


def test_build_circuit_layers():
    circuit = SDD.from_text(MUX).build_circuit(enforce_smoothness=False)
    kinds = [type(layer) for layer in circuit.layers]
    assert kinds.count(CategoricalLayer) == 4 and kinds.count(HadamardLayer) == 2
    (root,) = circuit.outputs
    assert isinstance(root, MixingLayer) and root.weight.shape == (1, 2)
    literal = circuit.layers[0]
    assert literal.num_categories == 2 and literal.num_output_units == 1
    weights = []
    circuit = SDD.from_text(MUX).build_circuit(
        weight_factory=lambda shape: weights.append(shape) or TensorParameter(shape)
    )
    assert weights and all(shape[0] == 1 for shape in weights)


def test_smoothing_adds_tautologies_and_keeps_the_graph():
    sdd = SDD.from_text(MUX)
    smooth = sdd.smoothed()
    for node in smooth.topological_ordering():
        if isinstance(node, DisjunctionNode):
            scopes = {smooth.node_scope(child) for child in smooth.node_inputs(node)}
            assert len(scopes) == 1
    assert len(sdd.nodes) == 7  # not changed: `smooth()` is the in-place form
    sdd.smooth()
    assert len(sdd.nodes) > 7


def test_pruning_propagates_constants():
    top, bottom, x = TopNode(), BottomNode(), LiteralNode(0)
    conjunction, disjunction = ConjunctionNode(), DisjunctionNode()
    graph = LogicalCircuit(
        [top, bottom, x, conjunction, disjunction],
        {conjunction: [x, top], disjunction: [conjunction, bottom]},
        [disjunction],
    )
    pruned = graph.pruned()
    assert set(pruned.nodes) == {x, conjunction, disjunction}
    assert pruned.node_inputs(conjunction) == (x,)
    assert pruned.node_inputs(disjunction) == (conjunction,)
    tautology = LogicalCircuit([x, top, disjunction], {disjunction: [x, top]}, [disjunction])
    assert isinstance(tautology.pruned().output, TopNode)
    (constant,) = tautology.build_circuit(enforce_smoothness=False).layers
    assert isinstance(constant, ConstantLayer)
    empty_and = ConjunctionNode()
    false = LogicalCircuit([empty_and, disjunction], {disjunction: [empty_and]}, [disjunction])
    assert isinstance(false.pruned().output, TopNode)  # an empty AND is True


def test_sdd_from_a_file_and_its_root(tmp_path):
    path = tmp_path / "mux.sdd"
    path.write_text(MUX)
    sdd = SDD.load(path)
    assert isinstance(sdd.output, DisjunctionNode) and sdd.num_variables == 3
    assert isinstance(SDD.from_text(WITH_CONSTANTS).output, DisjunctionNode)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sdd 1\nX 0\n", r"line 2: unknown line type 'X'"),
        ("L 0 0 a\n", r"line 1: expected integers after 'L'"),
        ("L 0 0\n", r"line 1: a 'L' line takes 3 integers, got 2"),
        ("L 0 0 0\n", "literal 0"),
        ("D 0 1 1 1 2\n", "node 1 is read before it is defined"),
        ("L 0 0 1\nL 0 0 2\n", "node 0 is defined twice"),
        ("L 0 0 1\nL 1 0 2\n", "one root .* found 2"),
        ("L 0 0 1\nL 1 0 2\nD 2 0 2 0 1\n", r"line 3: a 'D' line takes 7 integers, got 5"),
    ],
)
def test_malformed_sdd_text(text, match):
    with pytest.raises(errors.StructureError, match=match):
        SDD.from_text(text)


def test_bad_logic_circuits():
    x = LiteralNode(0)
    with pytest.raises(errors.StructureError, match="takes no inputs"):
        LogicalCircuit([x, LiteralNode(1)], {x: [LiteralNode(1)]}, [x])
    a, b = ConjunctionNode(), ConjunctionNode()
    with pytest.raises(errors.StructureError, match="cycle"):
        LogicalCircuit([a, b], {a: [b], b: [a]}, [a])
    with pytest.raises(errors.StructureError, match="one output"):
        LogicalCircuit([x], {}, [x, x])
    with pytest.raises(errors.OptionError, match="variable id"):
        LiteralNode(-1)
    with pytest.raises(errors.OptionError, match="both literal_input_factory"):
        SDD.from_text(MUX).build_circuit(literal_input_factory=_marginal_literals()[0])
