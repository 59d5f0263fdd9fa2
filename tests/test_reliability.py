"""Reliability (issue 17): no silent NaN, exact float32 log-likelihoods, finite gradients,
generated code Python can compile, a parser and verifier that refuse hostile text quickly,
options checked where they are given. One test per defect the issue lists."""

from __future__ import annotations

import gc
import linecache
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ir_cases import seed_like, tiny_circuit

from cirkit_ir import errors, reference
from cirkit_ir.errors import IRParseError, NumericalError, OptionError, VerificationError
from cirkit_ir.ir import lower, verify
from cirkit_ir.ir.parser import parse_ir
from cirkit_ir.ir.printer import print_ir
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    CategoricalLayer,
    Circuit,
    ConstantTensorInitializer,
    DenseLayer,
    KroneckerLayer,
)
from cirkit_ir.symbolic.parameters import SoftmaxParameter, TensorParameter
from cirkit_ir.templates.parameterization import Parameterization

X = torch.randint(256, (8, 1, 16), generator=torch.Generator().manual_seed(0))


def _ctx(**kw) -> PipelineContext:
    kw = {"semiring": "lse-sum", "fold": True, "optimize": True, **kw}
    return PipelineContext(backend="torch", **kw)


# -- 1. no silent NaN ----------------------------------------------------------------------------


def test_exp_weight_overflow_names_layer_parameter_fold_index():
    circuit = _ctx().compile(seed_like(sum_weight_param="exp"), seed=0)
    with torch.no_grad():
        dict(circuit.named_parameters())["layers.1.weight.0.value"][0, 0, 5] = 89.0
    with pytest.raises(NumericalError, match=r"layers\[1\].*'weight'.*inf.*fold 0, index \(0, 5\)"):
        circuit(X)


def test_softmax_of_huge_normal_draws_is_diagnosed():
    weights = Parameterization(
        activation="softmax", initialization="normal", initialization_kwargs={"stddev": 1e308}
    )
    circuit = _ctx().compile(seed_like(sum_weight_param=weights), seed=0)
    with pytest.raises(NumericalError, match="'weight' evaluates to nan"):
        circuit(X)


def test_embedding_table_under_exp():
    params = {"weight": Parameterization(activation="exp")}
    circuit = _ctx().compile(seed_like(input_layer="embedding", input_params=params), seed=0)
    with torch.no_grad():
        next(iter(circuit.parameters())).fill_(89.0)  # exp(89) is inf in float32
    with pytest.raises(NumericalError, match=r"embedding layer .*'weight'"):
        circuit(X)
    with torch.no_grad():
        next(iter(circuit.parameters())).fill_(float("nan"))
    with pytest.raises(NumericalError, match=r"layers\.0\.weight.*holds NaN"):
        circuit(X)


@pytest.mark.parametrize("flags", [(False, False), (True, True)])
def test_loaded_state_with_nan_names_the_tensor(flags):
    circuit = _ctx(fold=flags[0], optimize=flags[1]).compile(seed_like(), seed=0)
    state = {k: v.clone() for k, v in circuit.state_dict().items()}
    name = list(state)[-1]
    state[name].view(-1)[1] = float("nan")
    circuit.load_state_dict(state)
    with pytest.raises(NumericalError, match=rf"{name}.*holds NaN"):
        circuit(X)


def test_sgd_step_that_diverges_stops_with_the_error():
    circuit = _ctx().compile(seed_like(sum_weight_param="exp"), seed=0)
    optimizer = torch.optim.SGD(circuit.parameters(), lr=1e6)
    with pytest.raises(NumericalError):
        for _ in range(5):
            optimizer.zero_grad()
            (-circuit(X).mean()).backward()
            optimizer.step()


def test_nan_check_can_be_switched_off():
    circuit = _ctx().compile(seed_like(sum_weight_param="exp"), seed=0)
    with torch.no_grad():
        next(iter(circuit.parameters())).fill_(float("nan"))
    circuit.check_nan = False
    assert torch.isnan(circuit(X)).all()
    assert issubclass(NumericalError, errors.CirkitIRError)


# -- 2. exact float32 log-likelihoods -------------------------------------------------------------


def _far_apart() -> Circuit:
    """One categorical (2 units) into one dense with weight logits [-200, 0]: at x = 0 the
    second unit's probability is exp(-110) relative to the first's, whose weight is exp(-200)."""
    logits = ConstantTensorInitializer([[[0.0, -300.0]], [[-110.0, 0.0]]])
    cat = CategoricalLayer(
        (0,),
        2,
        num_categories=2,
        probs=SoftmaxParameter(TensorParameter((2, 1, 2), initializer=logits)),
    )
    weight = TensorParameter((1, 2), initializer=ConstantTensorInitializer([[-200.0, 0.0]]))
    dense = DenseLayer(2, 1, weight=SoftmaxParameter(weight))
    return Circuit([cat, dense], {dense: [cat]}, [dense])


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("flags", [(False, False), (True, True)])
def test_a_unit_whose_neighbour_underflowed_does_not_vanish(semiring, flags):
    circuit = _far_apart()
    compiled = _ctx(semiring=semiring, fold=flags[0], optimize=flags[1]).compile(circuit, seed=0)
    x = torch.tensor([[0], [1]])
    expected = reference.evaluate(circuit, x.unsqueeze(1), values=compiled.symbolic_state())
    assert expected.flatten()[0].real == pytest.approx(-110.0, abs=1e-6)
    out = compiled(x)
    assert torch.allclose(out.real.double().flatten(), expected.real.flatten(), atol=1e-4)


def test_peaked_tucker_parameters_are_exact_in_float32():
    circuit = seed_like()  # the 4x4 quad-graph tucker circuit
    compiled = _ctx().compile(circuit, seed=0)
    with torch.no_grad():
        for p in compiled.parameters():
            p.mul_(100.0)
    x = torch.randint(256, (32, 1, 16), generator=torch.Generator().manual_seed(0))
    expected = reference.evaluate(circuit, x, values=compiled.symbolic_state()).flatten()
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            out = compiled(x).flatten().double()
        assert torch.isfinite(out).all()
        assert torch.allclose(out, expected, rtol=1e-5, atol=1e-3)


def test_reference_takes_the_log_softmax_not_the_log_of_a_softmax():
    circuit = _far_apart()
    values = {
        0: torch.tensor([[[0.0, -300.0]], [[-1000.0, 0.0]]]),
        1: torch.tensor([[-800.0, 0.0]]),
    }
    out = reference.evaluate(circuit, torch.tensor([[[0]]]), values=values)
    assert out.item() == pytest.approx(-800.0)  # exp(-800) * 1 + 1 * exp(-1000); float64 softmax: 0


# -- 3. finite gradients next to a zero-probability sample ---------------------------------------


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("flags", [(False, False), (True, True)])
def test_gradients_finite_beside_a_sample_of_probability_zero(semiring, flags):
    table = ConstantTensorInitializer([[[0.5, 0.5, 0.0]], [[0.3, 0.7, 0.0]]])
    cat = CategoricalLayer(
        (0,), 2, num_categories=3, probs=TensorParameter((2, 1, 3), initializer=table)
    )
    other = CategoricalLayer((1,), 2, num_categories=3)
    kron, dense = KroneckerLayer(2, 2), DenseLayer(4, 1)
    circuit = Circuit([cat, other, kron, dense], {kron: [cat, other], dense: [kron]}, [dense])
    compiled = _ctx(semiring=semiring, fold=flags[0], optimize=flags[1]).compile(circuit, seed=0)

    def grads(x: torch.Tensor) -> list[torch.Tensor]:
        compiled.zero_grad()
        out = compiled(x).real.flatten()
        out[0].backward()
        return [p.grad.clone() for p in compiled.parameters()]

    both = grads(torch.tensor([[0, 1], [2, 0]]))  # the second sample has probability 0
    alone = grads(torch.tensor([[0, 1]]))
    for g, h in zip(both, alone, strict=True):
        assert torch.isfinite(g).all()
        assert torch.allclose(g, h, atol=1e-6)


# -- 4. generated code and its memory -------------------------------------------------------------


def _stack(depth: int) -> Circuit:
    prev = CategoricalLayer((0,), 2, num_categories=2)
    layers, wiring = [prev], {}
    for i in range(depth):
        dense = DenseLayer(2, 2 if i < depth - 1 else 1)
        layers.append(dense)
        wiring[dense] = [prev]
        prev = dense
    return Circuit(layers, wiring, [prev])


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("optimize", [False, True])
def test_a_thousand_stacked_dense_layers_compile(fold, optimize):
    circuit = _stack(1000)
    compiled = _ctx(fold=fold, optimize=optimize).compile(circuit, seed=0)
    out = compiled(torch.tensor([[0], [1]])).flatten()
    assert torch.allclose(out.exp().sum(), torch.tensor(1.0), atol=1e-4)


def test_generated_source_released_with_the_circuit():
    before = {k for k in linecache.cache if k.startswith("<cirkit-ir")}
    circuit = _ctx().compile(tiny_circuit(), seed=0)
    assert {k for k in linecache.cache if k.startswith("<cirkit-ir")} - before
    del circuit
    gc.collect()
    assert not {k for k in linecache.cache if k.startswith("<cirkit-ir")} - before


# -- 5. parser and verifier -----------------------------------------------------------------------

TINY = print_ir(lower(tiny_circuit()))


def _parse_and_verify(text: str) -> None:
    start = time.perf_counter()
    try:
        verify(parse_ir(text))
    finally:
        assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "old, new",
    [
        ("sources=[0]", "sources=[100000000000]"),
        ("sources=[0]", "sources=[99999999999999999999999]"),
        ("1x2x1x2\n%1", "1000000000x2x1x2\n%1"),
        ("1x?x4", "1000000000x?x4"),
        ("axis=-1} : 1x2x1x2\n%2", "axis=-99} : 1x2x1x2\n%2"),
        (
            "num_units=2, num_categories=2, param=probs} : 1x?x2\n%3",
            "num_units=\u0662, num_categories=2, param=probs} : 1x?x2\n%3",
        ),
        ("return %9", "return"),
        ("in_units=2, num_inputs=2}", "in_units=2, num_inputs=1000000000}"),
        ("sources=[1]", "sources=[0]"),  # a shared source with another shape... same here
    ],
)
def test_hostile_ir_is_refused_quickly(old, new):
    assert old in TINY
    text = TINY.replace(old, new, 1)
    try:
        _parse_and_verify(text)
    except (IRParseError, VerificationError):
        pass


def test_shared_source_with_different_shapes_is_refused():
    text = TINY.replace("sources=[2]", "sources=[0]")
    with pytest.raises(VerificationError):
        _parse_and_verify(text)


def test_a_huge_variable_without_a_declared_count_is_refused_quickly():
    text = TINY.split("\n", 1)[1].replace("variables=[1]", "variables=[1000000000]")
    with pytest.raises(VerificationError, match="reads variable 1000000000"):
        _parse_and_verify(text)


def test_graph_without_outputs_is_refused():
    with pytest.raises((IRParseError, VerificationError)):
        _parse_and_verify(TINY.replace("return %9", ""))


def test_out_of_range_softmax_axis_is_refused():
    with pytest.raises((IRParseError, VerificationError), match="axis -99 is out of range"):
        _parse_and_verify(TINY.replace("{axis=-1}", "{axis=-99}", 1))


def test_codegen_verifies_its_input():
    from cirkit_ir.backends.torch import codegen
    from cirkit_ir.passes import PassManager, default_pipeline

    graph = parse_ir(TINY)
    PassManager.parse(default_pipeline("lse-sum", fold=False, optimize=False)).run(graph)
    graph.set_outputs([])
    with pytest.raises(VerificationError):
        codegen(graph)


# -- 6. options checked where they are given ---------------------------------------------------


@pytest.mark.parametrize(
    "device", ["xla", "xpu", "hpu", "lazy", "meta", "ipu", "mtia", "ve", "maia"]
)
def test_devices_this_machine_cannot_use_are_refused(device):
    with pytest.raises(OptionError, match="cannot compute on it|not available|not a torch device"):
        PipelineContext(backend="torch", device=device)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"bogus": 1}, "unknown PassManager option 'bogus'"),
        ({"instruments": [1]}, "PassInstrument"),
        ({"print_ir_to": 123}, "print_ir_to"),
    ],
)
def test_pass_manager_options_are_checked(options, match):
    from cirkit_ir.passes import PassManager

    with pytest.raises(OptionError, match=match):
        PassManager.parse("dce", **options)


@pytest.mark.parametrize(
    "cast",
    [
        lambda c: c.half(),
        lambda c: c.bfloat16(),
        lambda c: c.to(torch.bfloat16),
        lambda c: c.to(torch.float16),
        lambda c: c.to(dtype=torch.float16),
        lambda c: c.type(torch.float16),
    ],
)
def test_half_precision_casts_are_refused(cast):
    circuit = _ctx().compile(tiny_circuit(), seed=0)
    x = torch.tensor([[0, 1]])
    before = circuit(x)
    with pytest.raises(OptionError, match="float32 or float64"):
        cast(circuit)
    assert torch.equal(circuit(x), before)  # nothing was cast
    assert circuit.to(torch.float64)(x).dtype == torch.float64  # the wider cast still works


def test_an_error_in_a_pass_names_the_pass_and_the_one_before():
    import attrs

    from cirkit_ir.ir import FoldMap
    from cirkit_ir.passes import Pass, PassManager, register_pass

    @register_pass("test-reliability-make-cycle")
    @attrs.frozen
    class MakeCycle(Pass):
        def apply(self, graph) -> bool:
            order = graph.topological_order()
            graph.nx.add_edge(order[-1], order[2], slot=0, fold_map=FoldMap((0,), (0,)))
            return True

    graph = lower(tiny_circuit())
    with pytest.raises(
        errors.StructureError, match="in pass 'fold'.*'test-reliability-make-cycle'"
    ):
        PassManager.parse("test-reliability-make-cycle,fold").run(graph)
    graph = lower(tiny_circuit())
    with pytest.raises(VerificationError, match="after pass 'test-reliability-make-cycle'"):
        PassManager.parse("test-reliability-make-cycle,fold", verify=True).run(graph)


# -- 5. the parser and verifier under fuzzing ------------------------------------------------------


@settings(max_examples=min(settings().max_examples, 150))
@given(data=st.data())
def test_mutated_ir_parses_verifies_or_fails_with_a_cirkit_error(data):
    from fuzz_ir import mutate, outcome, templates

    texts = templates()
    text = texts[data.draw(st.integers(0, len(texts) - 1))]
    for _ in range(data.draw(st.integers(1, 3))):
        text = mutate(text, lambda n: data.draw(st.integers(0, n - 1)))
    kind, seconds, error = outcome(text)
    assert kind != "other", f"{type(error).__name__}: {error}"
    assert seconds < 1.0


def test_the_fuzz_script_runs(capsys):
    from fuzz_ir import main

    assert main(["--mutants", "200", "--seed", "3"]) == 0
    assert "200 mutants" in capsys.readouterr().out
