"""Torch backend: every evaluation path computes the same function.

Layers take different paths for speed and memory: with or without gradients (custom
backward of the binary Tucker layer), with the parameter cache (eval mode) or a parameter
stream, a Tucker contraction by blocks of folds with its softmax weights normalized block
by block, and small or large packed results. Each path is checked against the float64
reference evaluator, and paths are forced by shrinking their size thresholds.
"""

from __future__ import annotations

import math

import pytest
import torch
from ir_cases import seed_like

from cirkit_ir.backends.torch import semirings
from cirkit_ir.backends.torch.layers import sums
from cirkit_ir.backends.torch.layers.sums import SoftmaxWeights
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.reference import evaluate

SEMIRINGS = ("sum-product", "lse-sum", "complex-lse-sum")
FLAGS = ((False, False), (True, False), (True, True))


def image_circuit(sum_product: str = "tucker", units: int = 3):
    return seed_like(num_input_units=units, sum_product_layer=sum_product, num_sum_units=units)


def compile_circuit(sc, semiring="lse-sum", fold=True, optimize=True, dtype=torch.float64):
    ctx = PipelineContext(semiring=semiring, fold=fold, optimize=optimize, dtype=dtype)
    return ctx.compile(sc, seed=7)


@pytest.fixture(scope="module")
def batch():
    return torch.randint(256, (6, 1, 16), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of one or two folds, softmax weights always deferred, packed results always
    written in place: the paths large circuits take, on small ones."""
    monkeypatch.setattr(sums, "BLOCK_MIN_BYTES", 1)
    monkeypatch.setattr(sums, "BLOCK_MAX_BYTES", 2 * 4 * 9 * 6 * 8)
    monkeypatch.setattr(sums, "DEFER_SOFTMAX_BYTES", 0)
    monkeypatch.setattr(semirings, "SMALL", 0)


def outputs_of_every_path(circuit, x):
    """The outputs with gradients, without (training mode: the parameter stream), and
    from the cache (eval mode, twice)."""
    circuit.train()
    with_grad = circuit(x).detach()
    with torch.no_grad():
        streamed = circuit(x)
        circuit.eval()
        cached = circuit(x)
        cached_again = circuit(x)
    circuit.train()
    return with_grad, streamed, cached, cached_again


def as_log(out: torch.Tensor, semiring: str) -> torch.Tensor:
    if semiring == "sum-product":
        return out.log()
    return out.real


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize(("fold", "optimize"), FLAGS)
@pytest.mark.parametrize("sum_product", ["tucker", "cp"])
@pytest.mark.parametrize("blocks", [False, True])
def test_every_path_matches_the_reference(
    request, batch, semiring, fold, optimize, sum_product, blocks
):
    if blocks:
        request.getfixturevalue("tiny_blocks")
    sc = image_circuit(sum_product)
    circuit = compile_circuit(sc, semiring, fold, optimize)
    expected = evaluate(sc, batch, circuit.symbolic_state())
    for out in outputs_of_every_path(circuit, batch):
        torch.testing.assert_close(as_log(out, semiring), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
def test_blocked_tucker_gradients_match_the_reference(tiny_blocks, batch, semiring):
    """The binary Tucker layer's own backward, by blocks of folds, against autograd through
    the reference evaluator."""
    sc = image_circuit("tucker")
    circuit = compile_circuit(sc, semiring)
    assert any(isinstance(layer, sums.TorchTuckerLayer) for layer in circuit.layers)
    circuit.zero_grad()
    circuit(batch).real.sum().backward()
    state = {k: v.clone().requires_grad_(True) for k, v in circuit.symbolic_state().items()}
    evaluate(sc, batch, state).sum().backward()
    # Every symbolic tensor's gradient is the sum over the folds that hold it.
    got = {source: torch.zeros_like(value) for source, value in state.items()}
    for leaf in circuit._leaves:
        for fold, source in enumerate(leaf.sources):
            got[source] += leaf.value.grad[fold].real
    for source, grad in got.items():
        torch.testing.assert_close(grad, state[source].grad, rtol=1e-8, atol=1e-10)


def test_tucker_gradcheck_by_blocks(tiny_blocks):
    semiring = semirings.SEMIRINGS["lse-sum"]
    generator = torch.Generator().manual_seed(0)
    f, k, o, b = 5, 3, 2, 4
    logs = torch.randn(f, 2, k, b, dtype=torch.float64, generator=generator) * 3
    w = torch.rand(f, o, k * k, dtype=torch.float64, generator=generator)
    layer = sums.TorchTuckerLayer(
        num_folds=f, arity=2, num_input_units=k, num_output_units=o, semiring=semiring
    )

    def call(logs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return semiring.unpack(layer.evaluate(semiring.pack(logs, 2), w), 1)

    assert torch.autograd.gradcheck(call, (logs.requires_grad_(), w.requires_grad_()))


def test_parameter_values_are_tensors_even_where_the_stream_defers(tiny_blocks, batch):
    circuit = compile_circuit(image_circuit("tucker"))
    with torch.no_grad():
        prepared = circuit.parameter_values()
        streamed = list(circuit.parameter_stream())
    assert all(isinstance(t, torch.Tensor) for values in prepared for t in values)
    assert any(isinstance(t, SoftmaxWeights) for values in streamed for t in values)


def test_far_below_float_range_on_every_path(tiny_blocks):
    """Log-likelihoods near -5000 in float32 are exact on the blocked paths too."""
    sc = image_circuit("tucker", units=2)
    circuit = compile_circuit(sc, dtype=torch.float32)
    state = circuit.symbolic_state()
    for value in state.values():
        if value.dim() == 3 and value.shape[-1] == 256:  # categorical logits (K, C, N)
            value[:, :, 1:] = -400.0
            value[:, :, 0] = 0.0
    circuit.load_symbolic_state(state)
    x = torch.ones(3, 1, 16, dtype=torch.long)  # every pixel at a category of prob ~e^-400
    expected = evaluate(sc, x, {k: v.double() for k, v in circuit.symbolic_state().items()})
    assert (expected < -5000).all()
    for out in outputs_of_every_path(circuit, x):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=0)
    assert not math.isnan(float(circuit(x).detach().sum()))
