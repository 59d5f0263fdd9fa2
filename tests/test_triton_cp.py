"""The Triton CP kernels: the fused CP layer agrees with the eager layer (values and
gradients, float32 and float64, padded tiles, strided inputs and weights, `gradcheck` in
float64), hands the underflow watch the eager layer's figures, and whole CP circuits compiled
with kernels='triton' compute what the eager ones do.

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
from cirkit_ir.backends.torch.kernels import EAGER, TRITON, choose_layer_kernel  # noqa: E402
from cirkit_ir.backends.torch.layers.sums import TorchCPLayer  # noqa: E402
from cirkit_ir.backends.torch.semirings import SEMIRINGS  # noqa: E402
from cirkit_ir.backends.torch.triton_kernels import cp as triton_cp  # noqa: E402
from cirkit_ir.backends.torch.triton_kernels.cp import MAX_UNITS, TritonCPLayer, cp  # noqa: E402
from cirkit_ir.ir import print_ir  # noqa: E402
from cirkit_ir.ir.ops import CPOp  # noqa: E402
from cirkit_ir.passes import SelectKernels  # noqa: E402
from cirkit_ir.pipeline import PipelineContext  # noqa: E402

DEVICE = "cuda" if GPU else "cpu"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:triton")  # its interpreter
LSE = SEMIRINGS["lse-sum"]


def _packed(f: int, h: int, k: int, b: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random packed lse-sum inputs (F, H, K + 1, B), laid out as a fold gather leaves them
    (the input axis outermost), so that the kernels read strided folds."""
    g = torch.Generator().manual_seed(seed)
    logs = torch.randn((h, f, k, b), generator=g, dtype=dtype) * 3
    return LSE.pack_log(logs, 2).transpose(0, 1).to(DEVICE)


def _weights(f: int, h: int, k: int, o: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    """Normalized weights as the eager layer prepares them, (F * H, O, K)."""
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn((f * h, o, k), generator=g, dtype=dtype), -1).to(DEVICE)


def _layers(f: int, h: int, k: int, o: int):
    args = dict(num_folds=f, arity=h, num_input_units=k, num_output_units=o, semiring=LSE)
    return TorchCPLayer(**args), TritonCPLayer(**args)


def _values_and_grads(evaluate, x: torch.Tensor, w: torch.Tensor, probe: torch.Tensor):
    """The unpacked logs without gradients, and the gradients of a probe of them w.r.t. the
    inputs (values and scales) and the weights."""
    with torch.no_grad():
        values = LSE.unpack(evaluate(x, w), 1)
    xv, wv = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    loss = (LSE.unpack(evaluate(xv, wv), 1) * probe).sum()
    return values, torch.autograd.grad(loss, (xv, wv))


def _assert_agree(got, want, dtype: torch.dtype) -> None:
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got[0], want[0], rtol=tol, atol=tol)
    gtol = 1e-4 if dtype == torch.float32 else 1e-10
    for got_g, want_g in zip(got[1], want[1], strict=True):
        scale = float(want_g.abs().max())
        torch.testing.assert_close(got_g, want_g, rtol=gtol, atol=gtol * scale)


# (K, O, H): K=3 and O=2 pad every tile; a third input; K=33 takes two blocks of the sums'
# inner dimension, O=20 pads the units' tile. B=150 leaves a partial block of columns.
@pytest.mark.parametrize("k,o,h", [(3, 2, 2), (5, 4, 3), (33, 20, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_cp_matches_eager(k, o, h, dtype):
    f, b = 3, 150
    eager, fused = _layers(f, h, k, o)
    x = _packed(f, h, k, b, dtype)
    w = _weights(f, h, k, o, dtype)
    probe = torch.randn(f, o, b, dtype=dtype).to(DEVICE)
    want = _values_and_grads(eager.evaluate, x, w, probe)
    _assert_agree(_values_and_grads(fused.evaluate, x, w, probe), want, dtype)


def test_triton_cp_reads_strided_weights_in_place():
    """Weights with any strides (here each (O, K) matrix transposed in memory) give the same
    values and gradients as contiguous ones."""
    f, h, k, o, b = 2, 2, 5, 3, 20
    x = _packed(f, h, k, b, torch.float64)
    w = _weights(f, h, k, o, torch.float64).view(f, h, o, k)
    strided = w.transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided.is_contiguous()
    probe = torch.randn(f, o, b, dtype=torch.float64).to(DEVICE)

    def evaluate(xv, wv):
        return cp(xv, wv)

    want = _values_and_grads(evaluate, x, w, probe)
    _assert_agree(_values_and_grads(evaluate, x, strided, probe), want, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_cp_keeps_an_all_zero_column_exact(dtype):
    """An input whose values are all 0 in a column (probability 0) comes out as log 0 = -inf
    with a finite scale, as in the eager layer, never NaN: the divisors' floor is the
    smallest normal number of the dtype (float64's too)."""
    f, h, k, o, b = 2, 2, 3, 2, 6
    eager, fused = _layers(f, h, k, o)
    g = torch.Generator().manual_seed(0)
    logs = torch.randn((h, f, k, b), generator=g, dtype=dtype)
    logs[1, :, :, 2] = float("-inf")
    x = LSE.pack_log(logs, 2).transpose(0, 1).to(DEVICE)
    w = _weights(f, h, k, o, dtype)
    with torch.no_grad():
        got, want = fused.evaluate(x, w), eager.evaluate(x, w)
    assert torch.isfinite(got[:, -1]).all()
    assert (LSE.unpack(got, 1)[:, :, 2] == float("-inf")).all()
    torch.testing.assert_close(LSE.unpack(got, 1), LSE.unpack(want, 1), rtol=0, atol=1e-5)


def test_gradcheck_triton_cp_float64():
    """Gradients to the values rows and the weights (the scale rows held fixed: they carry
    none), three inputs so that each input's gradient multiplies the two others. One fold
    and two columns: the interpreter runs each of gradcheck's ~50 forwards in ~30 ms."""
    f, h, k, o, b = 1, 3, 2, 2, 2
    g = torch.Generator().manual_seed(3)
    values = (torch.rand((f, h, k, b), generator=g, dtype=torch.float64) + 0.1).to(DEVICE)
    scales = torch.randn((f, h, 1, b), generator=g, dtype=torch.float64).to(DEVICE)
    w = (torch.rand((f * h, o, k), generator=g, dtype=torch.float64) + 0.1).to(DEVICE)

    def call(v, wv):
        return LSE.unpack(cp(torch.cat([v, scales], 2), wv.view(f, h, o, k)), 1)

    assert torch.autograd.gradcheck(call, (values.requires_grad_(True), w.requires_grad_(True)))


@pytest.mark.parametrize("grad", [False, True])
def test_triton_cp_reports_its_raw_sums_to_the_underflow_watch(grad):
    """The kernel normalizes its own sums and product, so it hands their smallest raw values
    to the watch (the eager layer's figures), and flagged columns are recomputed exactly."""
    f, h, k, b = 2, 2, 4, 16
    eager, fused = _layers(f, h, k, k)
    logs = torch.randn((h, f, k, b), generator=torch.Generator().manual_seed(0))
    logs[0, :, 1] = -75.0  # the first input's unit 1 is exp(-75) below its largest
    logs[1, :, 1] = 10.0  # the second's is its largest
    x = LSE.pack_log(logs, 2).transpose(0, 1).to(DEVICE)
    logits = torch.randn((f * h, k, k))
    logits[:, 0] = -200.0
    logits[:, 0, 1] = 0.0  # unit 0 sums unit 1 alone: raw sums and products below UNDERFLOW
    w = torch.softmax(logits, -1).to(DEVICE)
    found = []
    for layer in (eager, fused):
        previous = semirings.start_watch(b)
        with torch.set_grad_enabled(grad):
            layer.evaluate(x.clone().requires_grad_(grad), w.clone().requires_grad_(grad))
        found.append(semirings.stop_watch(previous))
    assert found[1] is not None, "the Triton layer reported nothing to the watch"
    assert float(found[0].min()) < semirings.UNDERFLOW  # the case flags columns
    torch.testing.assert_close(found[1], found[0], rtol=1e-4, atol=0)


def test_triton_cp_computes_eagerly_where_the_kernels_do_not_apply(monkeypatch):
    """Other semirings, and CPU tensors outside Triton's interpreter, take the eager layer's
    path (the kernels are never called)."""

    def no_kernels():
        raise AssertionError("the Triton kernels were called")

    monkeypatch.setattr(triton_cp, "_jit", no_kernels)
    f, h, k, o, b = 2, 2, 3, 2, 5
    x = _packed(f, h, k, b, torch.float64)
    w = _weights(f, h, k, o, torch.float64)
    complex_lse = SEMIRINGS["complex-lse-sum"]
    args = dict(num_folds=f, arity=h, num_input_units=k, num_output_units=o)
    eager, fused = (
        TorchCPLayer(**args, semiring=complex_lse),
        TritonCPLayer(**args, semiring=complex_lse),
    )
    xc, wc = complex_lse.pack_log(LSE.unpack(x, 2), 2), complex_lse.weights(w)
    torch.testing.assert_close(fused.evaluate(xc, wc), eager.evaluate(xc, wc), rtol=0, atol=0)
    monkeypatch.setattr(triton_kernels, "interpreting", lambda: False)
    eager, fused = _layers(f, h, k, o)
    x, w = x.cpu(), w.cpu()
    torch.testing.assert_close(fused.evaluate(x, w), eager.evaluate(x, w), rtol=0, atol=0)


def test_select_kernels_takes_triton_cp_on_cuda_within_its_limits():
    """kernels='triton' takes the Triton CP kernel on CUDA ('auto' does not yet: it has not
    been timed on a GPU); outside lse-sum or beyond `MAX_UNITS` output units the op computes
    eagerly."""
    op = CPOp(in_units=4, out_units=4, num_inputs=2)
    assert choose_layer_kernel(op, "lse-sum", "auto", device="cuda") == EAGER
    assert choose_layer_kernel(op, "lse-sum", "triton", device="cuda") == TRITON
    assert choose_layer_kernel(op, "complex-lse-sum", "triton", device="cuda") == EAGER
    wide = CPOp(in_units=4, out_units=MAX_UNITS + 1, num_inputs=2)
    assert choose_layer_kernel(wide, "lse-sum", "triton", device="cuda") == EAGER


def _data(circuit, batch: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (batch, circuit.num_channels, circuit.num_variables), generator=g)
    return x.to(DEVICE)


def _triton_circuit(circuit, fold: bool):
    """The circuit compiled with kernels='triton' (on CPU: compiled with the eager kernels, so
    that the native extension is not built, then annotated for a GPU by `select-kernels` and
    generated again, the layers running interpreted)."""
    if GPU:
        return PipelineContext(
            "torch", "lse-sum", fold=fold, optimize=True, device=DEVICE, kernels=TRITON
        ).compile(circuit, seed=0)
    ctx = PipelineContext("torch", "lse-sum", fold=fold, optimize=True, kernels=EAGER)
    graph = ctx.compile(circuit, seed=0).graph
    SelectKernels(kernels=TRITON, device="cuda").apply(graph)
    return codegen(graph)


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "folded"])
def test_a_cp_circuit_on_triton_kernels_computes_the_eager_function(fold):
    circuit = seed_like((1, 4, 4), sum_product_layer="cp", num_input_units=3, num_sum_units=3)
    eager = PipelineContext(
        "torch", "lse-sum", fold=fold, optimize=True, device=DEVICE, kernels=EAGER
    ).compile(circuit, seed=0)
    fused = _triton_circuit(circuit, fold)
    assert "kernel=triton" in print_ir(fused.graph)
    assert "[triton kernel]" in fused.code
    assert any(isinstance(m, TritonCPLayer) for m in fused.layers)
    x = _data(circuit)
    torch.testing.assert_close(fused(x), eager(x), rtol=1e-5, atol=1e-5)
    grads = []
    for compiled in (eager, fused):
        compiled.zero_grad()
        compiled(x).sum().backward()
        grads.append([p.grad for p in compiled.parameters()])
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
