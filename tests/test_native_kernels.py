"""The native (C++) kernels: the fused Tucker layer agrees with the eager layer and the
reference (values and gradients), the kernel choice shows in `circuit.code`, and a machine
where the extension cannot build compiles with the eager kernels after one warning.

The extension builds once per machine (cached on disk, see `backends.torch.native`) and
loads once per session; the native tests skip when it cannot build here.
"""

from __future__ import annotations

import pytest
import torch
from ir_cases import seed_like

from cirkit_ir import reference
from cirkit_ir.backends.torch import native, semirings
from cirkit_ir.backends.torch.layers.sums import SoftmaxWeights, TorchTuckerLayer
from cirkit_ir.backends.torch.native.tucker import NativeTuckerLayer, _FusedTucker2
from cirkit_ir.backends.torch.semirings import SEMIRINGS
from cirkit_ir.errors import CompilationError, OptionError
from cirkit_ir.pipeline import PipelineContext


@pytest.fixture(scope="module")
def built():
    if native.load() is None:
        pytest.skip("the native extension cannot be built on this machine")


def _packed(f: int, k: int, b: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random packed lse-sum inputs (F, 2, K + 1, B): normalized values and a scale row."""
    g = torch.Generator().manual_seed(seed)
    logs = torch.randn((f, 2, k, b), generator=g, dtype=dtype) * 3
    return SEMIRINGS["lse-sum"].pack_log(logs, 2)


def _layers(f: int, k: int, o: int):
    s = SEMIRINGS["lse-sum"]
    args = dict(num_folds=f, arity=2, num_input_units=k, num_output_units=o, semiring=s)
    return TorchTuckerLayer(**args), NativeTuckerLayer(**args)


# K=2, 4, 16 take the kernel's plain loops; K=32 its GEMM tiles (O * K * K > 4096); B=300
# leaves a partial tile.
@pytest.mark.parametrize("k,o", [(2, 3), (4, 4), (16, 5), (32, 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_tucker_matches_eager(built, k, o, dtype):
    f, b = 3, 300
    eager, fused = _layers(f, k, o)
    x = _packed(f, k, b, dtype)
    w = torch.softmax(torch.randn((f, o, k * k), dtype=dtype), -1)
    s = SEMIRINGS["lse-sum"]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    with torch.no_grad():
        want, got = s.unpack(eager.evaluate(x, w), 1), s.unpack(fused.evaluate(x, w), 1)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)

    # Gradients of a loss on the unpacked logs, w.r.t. the inputs' values and the weights.
    probe = torch.randn(f, o, b, dtype=dtype)
    # The kernel's own backward, called directly: the layer keeps the eager backward for
    # large layers (O * K * K > SMALL_WORK), where it measured faster.
    grads = []
    for layer in (eager.evaluate, _FusedTucker2.apply):
        xv, wv = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        loss = (s.unpack(layer(xv, wv), 1) * probe).sum()
        grads.append(torch.autograd.grad(loss, (xv, wv)))
    # Sums of up to B * K terms, added in another order: float32 keeps ~3e-4 of the largest.
    gtol = 1e-3 if dtype == torch.float32 else 1e-10
    for want_g, got_g in zip(grads[0], grads[1], strict=True):
        scale = float(want_g.abs().max())
        torch.testing.assert_close(got_g, want_g, rtol=gtol, atol=gtol * scale)


@pytest.mark.parametrize("axis", [1, 2])
def test_fused_tucker_normalizes_deferred_softmax_weights(built, axis):
    """Large weights without gradients arrive as logits (`SoftmaxWeights`), normalized a
    block of folds at a time."""
    f, k, o, b = 5, 4, 3, 9
    eager, fused = _layers(f, k, o)
    x = _packed(f, k, b, torch.float64)
    logits = torch.randn((f, o, k * k), dtype=torch.float64)
    s = SEMIRINGS["lse-sum"]
    with torch.no_grad():
        want = eager.evaluate(x, torch.softmax(logits, axis))
        got = fused.evaluate(x, SoftmaxWeights(logits, axis, s))
    torch.testing.assert_close(s.unpack(got, 1), s.unpack(want, 1), rtol=1e-12, atol=1e-12)


def _compile(circuit, **options):
    ctx = PipelineContext(
        "torch", "lse-sum", fold=options.pop("fold", True), optimize=True, **options
    )
    return ctx.compile(circuit, seed=0)


def _data(circuit, batch: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (batch, circuit.num_channels, circuit.num_variables), generator=g)


@pytest.mark.parametrize("layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_circuit_native_matches_eager_and_reference(built, layer, fold, dtype):
    circuit = seed_like((1, 4, 4), sum_product_layer=layer, num_input_units=3, num_sum_units=3)
    x = _data(circuit)
    fused = _compile(circuit, fold=fold, dtype=dtype, kernels="native")
    eager = _compile(circuit, fold=fold, dtype=dtype, kernels="eager")
    if layer == "tucker":
        assert any(isinstance(m, NativeTuckerLayer) for m in fused.layers)
        assert "[native kernel]" in fused.code
    assert not any(isinstance(m, NativeTuckerLayer) for m in eager.layers)
    assert "[native kernel]" not in eager.code
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(fused(x), eager(x), rtol=tol, atol=tol)
    reference.assert_matches(fused(x), circuit, x, fused.symbolic_state(), "lse-sum", tol)


def test_auto_picks_the_native_kernel_where_it_measured_faster(built):
    """'auto': small folded layers stay eager; one-fold layers and GEMM-sized ones are native."""
    small = seed_like((1, 4, 4), num_input_units=3, num_sum_units=3)
    folded, unfolded = _compile(small), _compile(small, fold=False)
    assert not any(isinstance(m, NativeTuckerLayer) for m in folded.layers)
    assert all(isinstance(m, NativeTuckerLayer) for m in unfolded.layers if "Tucker" in repr(m))
    assert any(isinstance(m, NativeTuckerLayer) for m in unfolded.layers)
    large = seed_like((1, 4, 4), num_input_units=17, num_sum_units=17)  # 17 * 17^2 > 4096
    assert any(isinstance(m, NativeTuckerLayer) for m in _compile(large).layers)


def test_circuit_gradients_match_eager(built):
    circuit = seed_like((1, 4, 4), num_input_units=3, num_sum_units=3)
    x = _data(circuit)
    grads = []
    for kernels in ("native", "eager"):
        compiled = _compile(circuit, dtype=torch.float64, kernels=kernels)
        compiled(x).sum().backward()
        grads.append({n: p.grad for n, p in compiled.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12)


def test_gradcheck_float64(built):
    """gradcheck of the fused layer's log outputs w.r.t. its input values and weights (the
    inputs' scale rows are constants, as in the packed form; values need not be normalized:
    log(y / m) + log m does not depend on the divisor)."""
    f, k, o, b = 2, 3, 2, 4
    _, fused = _layers(f, k, o)
    g = torch.Generator().manual_seed(3)
    values = torch.rand((f, 2, k, b), generator=g, dtype=torch.float64) + 0.1
    scales = torch.randn((f, 2, 1, b), generator=g, dtype=torch.float64)
    w = torch.rand((f, o, k * k), generator=g, dtype=torch.float64) + 0.1
    s = SEMIRINGS["lse-sum"]

    def call(v, wv):
        return s.unpack(fused.evaluate(torch.cat([v, scales], 2), wv), 1)

    inputs = (values.requires_grad_(True), w.requires_grad_(True))
    assert torch.autograd.gradcheck(call, inputs)


def test_other_semirings_take_eager_layers(built):
    circuit = seed_like((1, 4, 4), num_input_units=2, num_sum_units=2)
    for semiring in ("sum-product", "complex-lse-sum"):
        ctx = PipelineContext("torch", semiring, fold=True, optimize=True)
        compiled = ctx.compile(circuit, seed=0)
        assert not any(isinstance(m, NativeTuckerLayer) for m in compiled.layers)


def test_bfloat16_contraction_is_close(built):
    # 17 units: O * K * K = 4913 > SMALL_WORK, the kernel's GEMM tiles (bfloat16 acts there).
    circuit = seed_like((1, 4, 4), num_input_units=17, num_sum_units=17)
    x = _data(circuit, batch=16)
    exact = _compile(circuit)
    low = _compile(circuit, contraction_dtype="bfloat16")
    with torch.no_grad():
        a, b = exact(x), low(x)
    # Log-likelihoods of 16 pixels: bfloat16 keeps ~3 digits per layer.
    assert float(((a - b).abs() / a.abs()).max()) < 1e-2
    assert not torch.equal(a, b)


def test_options_are_checked():
    with pytest.raises(OptionError):
        PipelineContext(kernels="fast")
    with pytest.raises(OptionError):
        PipelineContext(contraction_dtype="float16")


def test_failed_build_falls_back_to_eager(monkeypatch):
    """CI on a machine without a compiler: one warning, then the eager kernels."""

    def broken_build():
        raise OSError("no C++ compiler")

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", broken_build)
    circuit = seed_like((1, 4, 4), num_input_units=2, num_sum_units=2)
    x = _data(circuit)
    with pytest.warns(RuntimeWarning, match="eager kernels"):
        compiled = _compile(circuit, fold=False)  # one-fold layers: 'auto' wants the kernel
    assert not any(isinstance(m, NativeTuckerLayer) for m in compiled.layers)
    assert "[native kernel]" not in compiled.code
    reference.assert_matches(compiled(x), circuit, x, compiled.symbolic_state(), "lse-sum", 1e-4)
    with pytest.raises(CompilationError, match="could not be built"):
        _compile(circuit, kernels="native")


@pytest.mark.parametrize("grad", [False, True])
def test_fused_tucker_reports_its_raw_sums_to_the_underflow_watch(built, grad):
    """The kernel normalizes its own sums, so it hands their smallest raw values to the
    watch (the eager layer's figures): the columns where a unit underflowed are then
    recomputed exactly whichever kernel ran (`TorchCircuit.forward`)."""
    f, k, o, b = 2, 4, 3, 16
    eager, fused = _layers(f, k, o)
    x = _packed(f, k, b, torch.float32)
    logits = torch.randn((f, o, k * k))
    logits[..., 0] = -200.0  # a weight of exp(-200): its raw sums are tiny
    w = torch.softmax(logits, -1)
    found = []
    for layer in (eager, fused):
        previous = semirings.start_watch(b)
        with torch.set_grad_enabled(grad):
            layer.evaluate(x.clone().requires_grad_(grad), w.clone().requires_grad_(grad))
        found.append(semirings.stop_watch(previous))
    assert found[1] is not None, "the native layer reported nothing to the watch"
    torch.testing.assert_close(found[1], found[0], rtol=1e-4, atol=0)
