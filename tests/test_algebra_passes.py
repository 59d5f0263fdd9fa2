"""The `integrate` and `evidence` passes against the reference evaluator: brute-force sums
over every assignment of tiny circuits (numerical quadrature for gaussians), folded and
unfolded, in every semiring, and their errors for bad options."""

from __future__ import annotations

import itertools
import math

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cirkit_ir import reference
from cirkit_ir.errors import CompilationError, OptionError, PipelineSyntaxError, PropertyError
from cirkit_ir.ir import Graph, lower
from cirkit_ir.ir.op_def import positive, register_op
from cirkit_ir.ir.ops import InputOp
from cirkit_ir.passes import PassManager, default_pipeline, integral_rule
from cirkit_ir.passes.integrate import constant_tensor
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.region_graph import random_binary_tree
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ConstantInitializer,
    EmbeddingLayer,
    EvidenceLayer,
    ExpParameter,
    GaussianLayer,
    HadamardLayer,
    MixingLayer,
    NormalInitializer,
    TensorParameter,
)
from cirkit_ir.templates.from_region_graph import circuit_from_region_graph


def nonnegative_table(shape: tuple[int, ...]) -> ExpParameter:
    """Unnormalized non-negative tables (every semiring computes with them)."""
    return ExpParameter(TensorParameter(shape, NormalInitializer()))


SEMIRINGS = ("sum-product", "lse-sum", "complex-lse-sum")
STATES = {"categorical": 3, "binomial": 3, "embedding": 3}  # values 0..2
FACTORIES = {
    "categorical": lambda s, k: CategoricalLayer(s, k, num_categories=3),
    "binomial": lambda s, k: BinomialLayer(s, k, total_count=2),
    "embedding": lambda s, k: EmbeddingLayer(s, k, num_states=3, weight_factory=nonnegative_table),
    "gaussian": lambda s, k: GaussianLayer(s, k),
}


def tiny(kind: str, num_variables: int = 3) -> Circuit:
    return circuit_from_region_graph(
        random_binary_tree(num_variables, seed=1),
        input_factory=FACTORIES[kind],
        sum_product="cp",
        num_input_units=2,
        num_sum_units=2,
    )


def compiled_pair(circuit: Circuit, semiring: str, fold: bool, passes: str, before: bool):
    """The circuit compiled as it is, and with `passes` run before (on the unfolded IR) or
    after (on the folded, fused one) its default pipeline; both share parameters."""
    original = PipelineContext(semiring=semiring, fold=fold, optimize=fold, seed=0)
    plain = original.compile(circuit)
    state = plain.symbolic_state()
    default = default_pipeline(semiring, fold=fold, optimize=fold)
    pipeline = f"{passes},{default}" if before else f"{default},{passes}"
    transformed = PipelineContext(semiring=semiring, pipeline=pipeline).compile(
        circuit, parameters=state
    )
    return transformed, state


def log_of(values: torch.Tensor) -> torch.Tensor:
    return values.real if values.is_complex() else values


def brute_force_log(circuit, state, rows: list[list[float]]) -> torch.Tensor:
    """log of the sum of the reference's outputs over `rows`."""
    out = reference.evaluate(circuit, torch.tensor(rows, dtype=torch.float64), state)
    return torch.logsumexp(log_of(out), 0)


def compiled_log(compiled, row: list[float], semiring: str) -> torch.Tensor:
    out = log_of(compiled(torch.tensor([row], dtype=torch.float32))[0]).double()
    return torch.log(out) if semiring == "sum-product" else out


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("kind", ["categorical", "binomial", "embedding"])
@pytest.mark.parametrize("before", [True, False])
def test_integrate_equals_the_enumerated_sum(kind, semiring, fold, before) -> None:
    circuit = tiny(kind)
    compiled, state = compiled_pair(circuit, semiring, fold, "integrate{variables=[0,2]}", before)
    rows = [[a, 1, c] for a, c in itertools.product(range(STATES[kind]), repeat=2)]
    expected = brute_force_log(circuit, state, rows)
    torch.testing.assert_close(
        compiled_log(compiled, [0, 1, 0], semiring), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_integrating_everything_gives_the_partition_function(semiring) -> None:
    circuit = tiny("embedding")  # unnormalized tables: Z is not 1
    compiled, state = compiled_pair(circuit, semiring, True, "integrate", True)
    rows = [list(r) for r in itertools.product(range(3), repeat=3)]
    expected = brute_force_log(circuit, state, rows)
    assert abs(float(expected)) > 1e-3
    torch.testing.assert_close(
        compiled_log(compiled, [0, 0, 0], semiring), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("fold", [False, True])
def test_integrate_gaussian_matches_quadrature(fold) -> None:
    circuit = tiny("gaussian", 2)
    compiled, state = compiled_pair(circuit, "lse-sum", fold, "integrate{variables=[1]}", True)
    grid = torch.linspace(-30, 30, 20001, dtype=torch.float64)
    rows = torch.stack([torch.full_like(grid, 0.3), grid], 1)
    density = torch.exp(log_of(reference.evaluate(circuit, rows, state))).flatten()
    quadrature = torch.log(torch.trapezoid(density, grid))
    torch.testing.assert_close(
        compiled_log(compiled, [0.3, 0.0], "lse-sum").flatten()[0], quadrature
    )


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("before", [True, False])
def test_evidence_then_integrate_is_a_conditional_sum(semiring, fold, before) -> None:
    circuit = tiny("categorical")
    passes = "evidence{variables=[2,0],values=[1,2]},integrate{variables=[1]}"
    compiled, state = compiled_pair(circuit, semiring, fold, passes, before)
    rows = [[2, b, 1] for b in range(3)]
    expected = brute_force_log(circuit, state, rows)
    # The data no longer matters: evidence fixed 0 and 2, and 1 is integrated out.
    for row in ([0, 0, 0], [1, 2, 2]):
        torch.testing.assert_close(
            compiled_log(compiled, row, semiring), expected, rtol=1e-5, atol=1e-5
        )


def test_passes_print_parse_and_count() -> None:
    manager = PassManager.parse("evidence{variables=[1],values=[2]},integrate{variables=[0]}")
    assert str(manager) == ("evidence{variables=[1],values=[2.0]},integrate{variables=[0]}")
    graph = PipelineContext().lower(tiny("categorical"))
    manager.run(graph)
    counts = graph.op_counts()
    assert counts["evidence"] == counts["constant"] == 1 and counts["categorical"] == 1
    assert manager.statistics_report().count("folds") >= 2


def lowered(kind: str = "categorical") -> Graph:
    return PipelineContext().lower(tiny(kind))


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("integrate{variables=[0,7]}", r"no input over variables \[7\]; its variables are 0..2"),
        ("integrate{variables=[1,1]}", r"variables \[1\] are listed more than once"),
        ("evidence{variables=[0],values=[1,2]}", "1 variables need 1 values, got 2"),
        ("evidence{variables=[0],values=[3]}", "value 3 observed for variable 0 is out of range"),
        ("evidence{variables=[0],values=[-1]}", "out of range: its categorical input accepts"),
        ("evidence{variables=[0],values=[nan]}", "not a finite number"),
        ("evidence{variables=[5],values=[0]}", r"no input over variables \[5\]"),
    ],
)
def test_bad_options_are_option_errors(pipeline, message) -> None:
    graph = lowered()
    before = graph.clone()
    with pytest.raises(OptionError, match=message):
        PassManager.parse(pipeline).run(graph)
    assert graph == before  # nothing built half-way


def test_an_unknown_option_is_a_pipeline_error() -> None:
    with pytest.raises(PipelineSyntaxError):
        PassManager.parse("integrate{scope=[0]}")


def test_integrate_refuses_non_decomposable_circuits() -> None:
    a, b = CategoricalLayer([0], 2, num_categories=3), CategoricalLayer([0], 2, num_categories=3)
    c = CategoricalLayer([0], 2, num_categories=3)
    product, root = HadamardLayer(2, 2), MixingLayer(2, 2)
    circuit = Circuit([a, b, c, product, root], {product: [a, b], root: [product, c]}, [root])
    graph = lower(circuit)
    with pytest.raises(PropertyError, match="not decomposable"):
        PassManager.parse("integrate").run(graph)


def complex_tensor(shape: tuple[int, ...]) -> TensorParameter:
    return TensorParameter(shape, NormalInitializer(), tensor_dtype="complex")


@pytest.mark.parametrize("fold", [False, True])
def test_conjugate_computes_the_complex_conjugate(fold) -> None:
    circuit = circuit_from_region_graph(
        random_binary_tree(3, seed=1),
        input_factory=lambda s, k: EmbeddingLayer(
            s, k, num_states=3, weight_factory=complex_tensor
        ),
        sum_product="cp",
        num_input_units=2,
        num_sum_units=2,
        sum_weight_factory=complex_tensor,
    )
    generator = torch.Generator().manual_seed(0)
    state = {
        source: torch.randn(value.shape, dtype=torch.complex64, generator=generator)
        for source, value in PipelineContext(semiring="complex-lse-sum", seed=0)
        .compile(circuit)
        .symbolic_state()
        .items()
    }
    x = torch.tensor(list(itertools.product(range(3), repeat=3)))
    outputs = {}
    for passes in ("", "conjugate"):
        pipeline = default_pipeline("complex-lse-sum", fold=fold, optimize=fold)
        pipeline = f"{passes},{pipeline}" if passes else pipeline
        compiled = PipelineContext(semiring="complex-lse-sum", pipeline=pipeline).compile(
            circuit, parameters=state
        )
        outputs[passes] = torch.exp(compiled(x).to(torch.complex128))
    assert outputs[""].imag.abs().max() > 1e-3  # really complex
    torch.testing.assert_close(outputs["conjugate"], outputs[""].conj(), rtol=1e-4, atol=1e-6)


def test_conjugate_leaves_real_circuits_alone() -> None:
    graph = lowered()
    before = graph.clone()
    PassManager.parse("conjugate").run(graph)
    assert graph == before


def reference_linear(circuit, state, rows: torch.Tensor) -> torch.Tensor:
    return torch.exp(reference.evaluate(circuit, rows, state).to(torch.complex128)).real


@pytest.mark.parametrize("semiring", ["sum-product", "complex-lse-sum"])
@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("variables", [(1,), (0, 1)])
def test_differentiate_equals_a_finite_difference(semiring, fold, variables) -> None:
    circuit = tiny("gaussian", 2)
    passes = "differentiate{variables=[" + ",".join(map(str, variables)) + "]}"
    compiled, state = compiled_pair(circuit, semiring, fold, passes, True)
    point, h = torch.tensor([0.4, -0.7], dtype=torch.float64), 1e-4
    # Central differences in each differentiated variable (a mixed partial for two).
    rows, weights = [], []
    for signs in itertools.product((1, -1), repeat=len(variables)):
        row = point.clone()
        for v, s in zip(variables, signs, strict=True):
            row[v] += s * h
        rows.append(row)
        weights.append(torch.tensor(signs).prod() / (2 * h) ** len(variables))
    values = reference_linear(circuit, state, torch.stack(rows)).flatten()
    expected = (values * torch.stack(weights).double()).sum()
    out = compiled(point.float().unsqueeze(0)).to(torch.complex128)
    actual = out if semiring == "sum-product" else torch.exp(out)
    assert abs(float(expected)) > 1e-5
    torch.testing.assert_close(actual.real.flatten()[0], expected, rtol=1e-3, atol=1e-6)


def test_differentiate_refuses_discrete_inputs_and_lse_sum() -> None:
    with pytest.raises(PropertyError, match="has no derivative"):
        PassManager.parse("differentiate{variables=[0]}").run(lowered("categorical"))
    with pytest.raises(CompilationError, match="signed values"):
        PipelineContext(
            semiring="lse-sum", pipeline="differentiate,lower-semiring{semiring=lse-sum}"
        ).compile(tiny("gaussian", 2))


def observed(circuit: Circuit, values: list[int]) -> Circuit:
    """`circuit` with every input layer replaced by an evidence layer (variable v observed
    as values[v])."""
    sub = {
        layer: EvidenceLayer(
            layer,
            TensorParameter(
                (1,), ConstantInitializer(float(values[next(iter(layer.scope))])), learnable=False
            ),
        )
        for layer in circuit.input_layers
    }
    return Circuit(
        [sub.get(x, x) for x in circuit.layers],
        {sub.get(x, x): [sub.get(y, y) for y in circuit.layer_inputs(x)] for x in circuit.layers},
        [sub.get(o, o) for o in circuit.outputs],
    )


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_evidence_over_different_variables_folds_into_one_op(semiring) -> None:
    circuit = observed(tiny("categorical", 4), [2, 0, 1, 2])
    compiled = PipelineContext(semiring=semiring, fold=True, optimize=True, seed=0).compile(circuit)
    graph = compiled.graph
    counts = graph.op_counts()
    assert counts["evidence"] == 1
    fixed = [op for _, op in graph.ops() if op.name == "tensor" and not op.learnable]
    assert len(fixed) == 1 and fixed[0].num_folds == 4  # the observations, stacked
    expected = reference.evaluate(circuit, torch.zeros(1, 0), compiled.symbolic_state())
    actual = log_of(compiled(torch.zeros(1, 1, 0))).double()
    if semiring == "sum-product":
        actual = torch.log(actual)
    torch.testing.assert_close(actual, log_of(expected))


def test_evidence_benchmark_quick_run() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / "evidence_benchmark.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, check=True
    )
    assert "the evidence pass computes the data circuit's value at x: True" in done.stdout
    assert "EvidenceLayer inputs" in done.stdout and "evidence ops 1" in done.stdout


@settings(max_examples=12, deadline=None)
@given(
    num_variables=st.integers(2, 4),
    seed=st.integers(0, 100),
    kind=st.sampled_from(["categorical", "binomial", "embedding"]),
    semiring=st.sampled_from(SEMIRINGS),
    fold=st.booleans(),
    before=st.booleans(),
    data=st.data(),
)
def test_integrate_and_evidence_on_random_circuits(
    num_variables, seed, kind, semiring, fold, before, data
) -> None:
    """Random trees and repetitions; some variables observed, some integrated, the rest
    read from the data: the compiled value is the reference's sum over the integrated ones."""
    region_graph = random_binary_tree(num_variables, num_repetitions=2, seed=seed)
    circuit = circuit_from_region_graph(
        region_graph,
        input_factory=FACTORIES[kind],
        sum_product=data.draw(st.sampled_from(["cp", "cp-t", "tucker"])),
        num_input_units=2,
        num_sum_units=2,
    )
    roles = data.draw(
        st.lists(st.sampled_from("oid"), min_size=num_variables, max_size=num_variables)
    )
    row = data.draw(st.lists(st.integers(0, 2), min_size=num_variables, max_size=num_variables))
    observed = [v for v, r in enumerate(roles) if r == "o"]
    integrated = [v for v, r in enumerate(roles) if r == "i"]
    passes = []
    if observed:
        values = ",".join(str(row[v]) for v in observed)
        passes.append(f"evidence{{variables=[{','.join(map(str, observed))}],values=[{values}]}}")
    if integrated:
        passes.append(f"integrate{{variables=[{','.join(map(str, integrated))}]}}")
    if not passes:
        passes = ["integrate{variables=[0]}"]
        integrated = [0]
    compiled, state = compiled_pair(circuit, semiring, fold, ",".join(passes), before)
    rows = []
    for values in itertools.product(range(3), repeat=len(integrated)):
        full = list(row)
        for v, value in zip(integrated, values, strict=True):
            full[v] = value
        rows.append(full)
    expected = brute_force_log(circuit, state, rows)
    torch.testing.assert_close(
        compiled_log(compiled, row, semiring), expected, rtol=1e-4, atol=1e-4
    )


@register_op
@attrs.frozen
class CountOp(InputOp):
    """A user's input op: 1 for each of `num_states` states (no torch kernel needed once
    integrated: its integral, registered below, is `num_states`)."""

    name = "test-count"
    num_states: int = positive()

    def max_value(self) -> int:
        return self.num_states - 1


@integral_rule(CountOp)
def _count_integral(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
    op = graph.op(node)
    return constant_tensor(graph, (len(folds), op.num_units), float(op.num_states))


def test_a_users_op_registers_its_own_integral() -> None:
    circuit = tiny("categorical")
    context = PipelineContext(semiring="lse-sum", seed=0)
    state = context.compile(circuit).symbolic_state()
    graph = context.lower(circuit)
    (node,) = [n for n, op in graph.ops() if op.name == "categorical" and op.variables == (1,)]
    op = graph.op(node)
    for producer, slot, _ in graph.in_edges(node):
        graph.disconnect(producer, node, slot)
    graph.replace_op(node, CountOp(op.variables, 1, op.num_units, num_states=3))
    PassManager.parse("integrate{variables=[1]}").run(graph)
    assert "test-count" not in graph.op_counts()
    compiled = PipelineContext(semiring="lse-sum", fold=True).compile(graph, parameters=state)
    expected = brute_force_log(circuit, state, [[2, b, 0] for b in range(3)]) + math.log(3)
    torch.testing.assert_close(compiled_log(compiled, [2, 0, 0], "lse-sum"), expected)
