"""The Triton kernels: the fused Tucker layer agrees with the eager layer (values and
gradients, float32 and float64, `gradcheck` in float64), whole circuits compiled with
kernels='triton' compute what the eager ones do, and a circuit annotated for Triton computes
eagerly where Triton is missing.

On a machine with a CUDA GPU they run there; elsewhere in Triton's interpreter, on CPU
tensors (`TRITON_INTERPRET=1`, set before the kernels are first imported). They skip where
Triton is not installed (a CPU-only torch without the dev extra).
"""

from __future__ import annotations

import os

import pytest
import torch
from ir_cases import seed_like

GPU = torch.cuda.is_available()
if not GPU:  # before Triton is imported: it reads the setting once
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from cirkit_ir.backends.torch import codegen, semirings, triton_kernels  # noqa: E402
from cirkit_ir.backends.torch.kernels import EAGER, TRITON  # noqa: E402
from cirkit_ir.backends.torch.layers.sums import SoftmaxWeights, TorchTuckerLayer  # noqa: E402
from cirkit_ir.backends.torch.semirings import SEMIRINGS  # noqa: E402
from cirkit_ir.backends.torch.triton_kernels import tucker as triton_tucker  # noqa: E402
from cirkit_ir.backends.torch.triton_kernels.tucker import (  # noqa: E402
    TritonTuckerLayer,
    tucker2,
)
from cirkit_ir.ir import print_ir  # noqa: E402
from cirkit_ir.passes import SelectKernels  # noqa: E402
from cirkit_ir.pipeline import PipelineContext  # noqa: E402

DEVICE = "cuda" if GPU else "cpu"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:triton")  # its interpreter
LSE = SEMIRINGS["lse-sum"]


def _packed(f: int, k: int, b: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random packed lse-sum inputs (F, 2, K + 1, B), laid out as a fold gather leaves them
    (the input axis outermost), so that the kernels read strided folds."""
    g = torch.Generator().manual_seed(seed)
    logs = torch.randn((2, f, k, b), generator=g, dtype=dtype) * 3
    return LSE.pack_log(logs, 2).transpose(0, 1).to(DEVICE)


def _layers(f: int, k: int, o: int):
    args = dict(num_folds=f, arity=2, num_input_units=k, num_output_units=o, semiring=LSE)
    return TorchTuckerLayer(**args), TritonTuckerLayer(**args)


def _values_and_grads(evaluate, x: torch.Tensor, w: torch.Tensor, probe: torch.Tensor):
    """The unpacked logs without gradients, and the gradients of a probe of them w.r.t. the
    inputs (values and scales) and the weights."""
    with torch.no_grad():
        values = LSE.unpack(evaluate(x, w), 1)
    xv, wv = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    loss = (LSE.unpack(evaluate(xv, wv), 1) * probe).sum()
    return values, torch.autograd.grad(loss, (xv, wv))


# K=3 and O=1 pad every tile; K=32 loops over 32 blocks of the outer product's rows;
# B=150 leaves a partial block of columns.
@pytest.mark.parametrize("k,o", [(3, 2), (4, 4), (5, 1), (32, 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_tucker_matches_eager(k, o, dtype):
    f, b = 3, 150
    eager, fused = _layers(f, k, o)
    x = _packed(f, k, b, dtype)
    w = torch.softmax(torch.randn((f, o, k * k), dtype=dtype), -1).to(DEVICE)
    probe = torch.randn(f, o, b, dtype=dtype).to(DEVICE)
    want = _values_and_grads(eager.evaluate, x, w, probe)
    got = _values_and_grads(fused.evaluate, x, w, probe)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got[0], want[0], rtol=tol, atol=tol)
    gtol = 1e-4 if dtype == torch.float32 else 1e-10
    for got_g, want_g in zip(got[1], want[1], strict=True):
        scale = float(want_g.abs().max())
        torch.testing.assert_close(got_g, want_g, rtol=gtol, atol=gtol * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_tucker_keeps_an_all_zero_column_exact(dtype):
    """An input whose values are all 0 in a column (probability 0) comes out as log 0 = -inf
    with a finite scale, as in the eager layer, never NaN: the divisors' floor is the
    smallest normal number of the dtype (float64's too, a compile-time constant)."""
    f, k, o, b = 2, 3, 2, 6
    eager, fused = _layers(f, k, o)
    g = torch.Generator().manual_seed(0)
    logs = torch.randn((2, f, k, b), generator=g, dtype=dtype)
    logs[1, :, :, 2] = float("-inf")
    x = LSE.pack_log(logs, 2).transpose(0, 1).to(DEVICE)
    w = torch.softmax(torch.randn((f, o, k * k), dtype=dtype), -1).to(DEVICE)
    with torch.no_grad():
        got, want = fused.evaluate(x, w), eager.evaluate(x, w)
    assert torch.isfinite(got[:, -1]).all()
    assert (LSE.unpack(got, 1)[:, :, 2] == float("-inf")).all()
    torch.testing.assert_close(LSE.unpack(got, 1), LSE.unpack(want, 1), rtol=0, atol=1e-5)


def test_gradcheck_triton_tucker_float64():
    f, k, o, b = 2, 2, 3, 3
    g = torch.Generator().manual_seed(3)
    values = (torch.rand((f, 2, k, b), generator=g, dtype=torch.float64) + 0.1).to(DEVICE)
    scales = torch.randn((f, 2, 1, b), generator=g, dtype=torch.float64).to(DEVICE)
    w = (torch.rand((f, o, k * k), generator=g, dtype=torch.float64) + 0.1).to(DEVICE)

    def call(v, wv):
        return LSE.unpack(tucker2(torch.cat([v, scales], 2), wv), 1)

    assert torch.autograd.gradcheck(call, (values.requires_grad_(True), w.requires_grad_(True)))


@pytest.mark.parametrize("axis", [1, 2])
def test_triton_tucker_normalizes_deferred_softmax_weights(monkeypatch, axis):
    """Large weights without gradients arrive as logits (`SoftmaxWeights`), normalized a
    block of folds at a time (here two folds a block: three blocks, the last partial)."""
    f, k, o, b = 5, 4, 3, 9
    eager, fused = _layers(f, k, o)
    x = _packed(f, k, b, torch.float64)
    logits = torch.randn((f, o, k * k), dtype=torch.float64).to(DEVICE)
    monkeypatch.setattr(triton_tucker, "SOFTMAX_BLOCK_BYTES", 2 * o * k * k * 8)
    with torch.no_grad():
        want = eager.evaluate(x, torch.softmax(logits, axis))
        got = fused.evaluate(x, SoftmaxWeights(logits, axis, LSE))
    torch.testing.assert_close(LSE.unpack(got, 1), LSE.unpack(want, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("grad", [False, True])
def test_triton_tucker_reports_its_raw_sums_to_the_underflow_watch(grad):
    """The kernel normalizes its own sums, so it hands their smallest raw values to the
    watch (the eager layer's figures), and flagged columns are recomputed exactly."""
    f, k, o, b = 2, 4, 3, 16
    eager, fused = _layers(f, k, o)
    x = _packed(f, k, b, torch.float32)
    logits = torch.randn((f, o, k * k))
    logits[..., 0] = -200.0  # a weight of exp(-200): its raw sums are tiny
    w = torch.softmax(logits, -1).to(DEVICE)
    found = []
    for layer in (eager, fused):
        previous = semirings.start_watch(b)
        with torch.set_grad_enabled(grad):
            layer.evaluate(x.clone().requires_grad_(grad), w.clone().requires_grad_(grad))
        found.append(semirings.stop_watch(previous))
    assert found[1] is not None, "the Triton layer reported nothing to the watch"
    torch.testing.assert_close(found[1], found[0], rtol=1e-4, atol=0)


def _data(circuit, batch: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (batch, circuit.num_channels, circuit.num_variables), generator=g)
    return x.to(DEVICE)


def _triton_circuit(circuit, fold: bool):
    """The circuit compiled with kernels='triton' (on CPU: compiled eagerly, then annotated
    for a GPU by `select-kernels` and generated again, the layers running interpreted)."""
    kernels = TRITON if GPU else EAGER  # (eager: no native build on the way)
    ctx = PipelineContext(
        "torch", "lse-sum", fold=fold, optimize=True, device=DEVICE, kernels=kernels
    )
    if GPU:
        return ctx.compile(circuit, seed=0)
    graph = ctx.compile(circuit, seed=0).graph
    SelectKernels(kernels=TRITON, device="cuda").apply(graph)
    return codegen(graph)


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
def test_a_circuit_on_triton_kernels_computes_the_eager_function(fold):
    circuit = seed_like((1, 4, 4), num_input_units=3, num_sum_units=3)
    eager = PipelineContext(
        "torch", "lse-sum", fold=fold, optimize=True, device=DEVICE, kernels=EAGER
    ).compile(circuit, seed=0)
    fused = _triton_circuit(circuit, fold)
    assert "kernel=triton" in print_ir(fused.graph)
    assert "[triton kernel]" in fused.code
    assert any(getattr(m, "kernel", EAGER) == TRITON for m in fused.layers)
    x = _data(circuit)
    torch.testing.assert_close(fused(x), eager(x), rtol=1e-5, atol=1e-5)
    grads = []
    for compiled in (eager, fused):
        compiled.zero_grad()
        compiled(x).sum().backward()
        grads.append([p.grad for p in compiled.parameters()])
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_triton_annotation_computes_eagerly_where_triton_is_missing(monkeypatch):
    """A graph annotated for Triton (a circuit saved on a GPU machine) compiles where Triton
    is missing: its layers are the eager ones."""
    circuit = seed_like((1, 2, 2), region_graph="quad-tree-2", num_input_units=2)
    graph = _triton_circuit(circuit, fold=True).graph
    monkeypatch.setattr(triton_kernels, "available", lambda: False)
    compiled = codegen(graph)
    assert "kernel=triton" in print_ir(compiled.graph)
    assert all(getattr(m, "kernel", EAGER) == EAGER for m in compiled.layers)


INTERPRETER_BF16 = "Triton's interpreter (no GPU here) multiplies bfloat16 matrices wrongly"


@pytest.mark.parametrize(
    "precision",
    ["tf32", pytest.param("bfloat16", marks=pytest.mark.skipif(not GPU, reason=INTERPRETER_BF16))],
)
def test_triton_tucker_lower_precision_products(precision):
    """TF32 where torch's float32 matmuls may use it, bfloat16 when the circuit asks for it
    (`contraction_dtype`, forward only): float32 sums of rounded products, so the logs stay
    within a few 1e-3 of the exact ones."""
    f, k, o, b = 3, 8, 8, 40
    eager, fused = _layers(f, k, o)
    x = _packed(f, k, b, torch.float32)
    w = torch.softmax(torch.randn((f, o, k * k)), -1).to(DEVICE)
    with torch.no_grad():
        want = LSE.unpack(eager.evaluate(x, w), 1)
        if precision == "tf32":
            before = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("high")
            try:
                got = LSE.unpack(fused.evaluate(x, w), 1)
            finally:
                torch.set_float32_matmul_precision(before)
        else:
            fused.contraction_dtype = "bfloat16"
            got = LSE.unpack(fused.evaluate(x, w), 1)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-2)
