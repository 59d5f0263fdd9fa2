"""Reliability (issue 17): no silent NaN, exact float32 log-likelihoods, finite gradients,
generated code Python can compile, a parser and verifier that refuse hostile text quickly,
options checked where they are given. One test per defect the issue lists."""

from __future__ import annotations

import gc
import linecache
import time

import pytest
import torch
from ir_cases import seed_like, tiny_circuit

from cirkit_ir import errors
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
