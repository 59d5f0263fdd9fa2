"""The native (C++) CP and mixing kernels: each agrees with its eager layer and the reference
(values and gradients, float32 and float64, `gradcheck` in float64), on every template
option, semiring (outside lse-sum the eager layers compute) and fold/optimize flag, and a
machine where the extension cannot build computes them with the eager layers.

The extension builds once per machine (cached on disk, see `backends.torch.native`); these
tests skip when it cannot build here, except the forced-fallback one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ir_cases import seed_like

from cirkit_ir import reference
from cirkit_ir.backends.torch import native, semirings
from cirkit_ir.backends.torch.layers.sums import (
    TorchCPLayer,
    TorchCPTLayer,
    TorchDenseLayer,
    TorchMixingLayer,
)
from cirkit_ir.backends.torch.native.cp import NativeCPLayer, _FusedCP
from cirkit_ir.backends.torch.native.cpt import NativeCPTLayer, NativeDenseLayer
from cirkit_ir.backends.torch.native.mixing import NativeMixingLayer
from cirkit_ir.backends.torch.semirings import SEMIRINGS
from cirkit_ir.errors import CompilationError
from cirkit_ir.pipeline import PipelineContext

LSE = SEMIRINGS["lse-sum"]
NATIVE_LAYERS = (NativeCPLayer, NativeCPTLayer, NativeDenseLayer, NativeMixingLayer)


@pytest.fixture(scope="module")
def built():
    if native.load() is None:
        pytest.skip("the native extension cannot be built on this machine")


def _packed(f: int, h: int, k: int, b: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Random packed lse-sum inputs (F, H, K + 1, B), laid out as a fold gather leaves them
    (the input axis outermost), so that the kernels read strided folds."""
    g = torch.Generator().manual_seed(seed)
    logs = torch.randn((h, f, k, b), generator=g, dtype=dtype) * 3
    return LSE.pack_log(logs, 2).transpose(0, 1)


def _layer_args(f: int, h: int, k: int, o: int) -> dict:
    return dict(num_folds=f, arity=h, num_input_units=k, num_output_units=o, semiring=LSE)


def _values_and_grads(evaluate, x: torch.Tensor, w: torch.Tensor, probe: torch.Tensor):
    """The unpacked logs without gradients, and the gradients of a probe of them w.r.t. the
    inputs' values and the weight tensor `w` (whatever `evaluate` makes of it)."""
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


# (K, O, H): plain loops (O * K <= 512), a third input, and the GEMM tiles (32 units);
# B = 300 leaves a partial tile.
@pytest.mark.parametrize("k,o,h", [(3, 2, 2), (4, 4, 3), (32, 32, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_cp_matches_eager(built, k, o, h, dtype):
    f, b = 3, 300
    args = _layer_args(f, h, k, o)
    eager, fused = TorchCPLayer(**args), NativeCPLayer(**args)
    x = _packed(f, h, k, b, dtype)
    w = torch.softmax(torch.randn((f * h, o, k), dtype=dtype), -1)
    probe = torch.randn(f, o, b, dtype=dtype)
    want = _values_and_grads(eager.evaluate, x, w, probe)
    _assert_agree(_values_and_grads(fused.evaluate, x, w, probe), want, dtype)


def _assert_softmax_layers_agree(eager, fused, x, lg, probe, dtype, logits: bool) -> None:
    """Values and gradients (to x and to the logits) of the eager layer, fed softmax(lg), and
    of the native one, fed the logits themselves where `logits` (its in-kernel softmax)."""

    def with_softmax(layer, native_form: bool):
        def evaluate(xv, lgv):
            if native_form and logits:
                return layer.evaluate(xv, *layer.prepare_softmax(lgv, 2))
            return layer.evaluate(xv, *layer.prepare(torch.softmax(lgv, -1)))

        return evaluate

    want = _values_and_grads(with_softmax(eager, False), x, lg, probe)
    _assert_agree(_values_and_grads(with_softmax(fused, True), x, lg, probe), want, dtype)


@pytest.mark.parametrize("k,h", [(3, 2), (4, 3), (32, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logits", [False, True], ids=["weights", "softmax-in-kernel"])
def test_fused_mixing_matches_eager(built, k, h, dtype, logits):
    """With `logits` the weights arrive as the logits of a softmax over the inputs and the
    kernel normalizes them (gradients are the logits')."""
    f, b = 3, 300
    args = _layer_args(f, h, k, k)
    eager, fused = TorchMixingLayer(**args), NativeMixingLayer(**args)
    x = _packed(f, h, k, b, dtype)
    lg = torch.randn((f, k, h), dtype=dtype)
    probe = torch.randn(f, k, b, dtype=dtype)

    _assert_softmax_layers_agree(eager, fused, x, lg, probe, dtype, logits)


@pytest.mark.parametrize("k,o,h", [(3, 2, 2), (4, 4, 3), (32, 32, 2), (4, 3, 1), (32, 32, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logits", [False, True], ids=["weights", "softmax-in-kernel"])
def test_fused_cpt_and_dense_match_eager(built, k, o, h, dtype, logits):
    """CP-T layers (h > 1) and dense layers (h = 1): plain loops (O * K <= 512) and GEMM
    tiles (32 units), with the weights or their softmax's logits."""
    f, b = 3, 300
    args = _layer_args(f, h, k, o)
    if h == 1:
        eager, fused = TorchDenseLayer(**args), NativeDenseLayer(**args)
    else:
        eager, fused = TorchCPTLayer(**args), NativeCPTLayer(**args)
    x = _packed(f, h, k, b, dtype)
    lg = torch.randn((f, o, k), dtype=dtype)
    probe = torch.randn(f, o, b, dtype=dtype)

    _assert_softmax_layers_agree(eager, fused, x, lg, probe, dtype, logits)


def test_gradcheck_cp_float64(built):
    f, h, k, o, b = 2, 2, 3, 2, 4
    fused = NativeCPLayer(**_layer_args(f, h, k, o))
    g = torch.Generator().manual_seed(3)
    values = torch.rand((f, h, k, b), generator=g, dtype=torch.float64) + 0.1
    scales = torch.randn((f, h, 1, b), generator=g, dtype=torch.float64)
    w = torch.rand((f * h, o, k), generator=g, dtype=torch.float64) + 0.1

    def call(v, wv):
        return LSE.unpack(_FusedCP.apply(torch.cat([v, scales], 2), wv.view(f, h, o, k)), 1)

    assert fused.evaluate(torch.cat([values, scales], 2), w).shape == (f, o + 1, b)
    assert torch.autograd.gradcheck(call, (values.requires_grad_(True), w.requires_grad_(True)))


def test_gradcheck_mixing_float64(built):
    """Through the in-kernel softmax: the gradient is the logits'."""
    f, h, k, b = 2, 3, 3, 4
    fused = NativeMixingLayer(**_layer_args(f, h, k, k))
    g = torch.Generator().manual_seed(3)
    values = torch.rand((f, h, k, b), generator=g, dtype=torch.float64) + 0.1
    scales = torch.randn((f, h, 1, b), generator=g, dtype=torch.float64)
    lg = torch.randn((f, k, h), generator=g, dtype=torch.float64)

    def call(v, lgv):
        x = torch.cat([v, scales], 2)
        return LSE.unpack(fused.evaluate(x, *fused.prepare_softmax(lgv, 2)), 1)

    assert torch.autograd.gradcheck(call, (values.requires_grad_(True), lg.requires_grad_(True)))


@pytest.mark.parametrize("h", [1, 2])
def test_gradcheck_cpt_float64(built, h):
    """Through the in-kernel softmax: the gradient is the logits'."""
    f, k, o, b = 2, 3, 2, 4
    layer = NativeDenseLayer if h == 1 else NativeCPTLayer
    fused = layer(**_layer_args(f, h, k, o))
    g = torch.Generator().manual_seed(3)
    values = torch.rand((f, h, k, b), generator=g, dtype=torch.float64) + 0.1
    scales = torch.randn((f, h, 1, b), generator=g, dtype=torch.float64)
    lg = torch.randn((f, o, k), generator=g, dtype=torch.float64)

    def call(v, lgv):
        x = torch.cat([v, scales], 2)
        return LSE.unpack(fused.evaluate(x, *fused.prepare_softmax(lgv, 2)), 1)

    assert torch.autograd.gradcheck(call, (values.requires_grad_(True), lg.requires_grad_(True)))


def _compile(circuit, **options):
    ctx = PipelineContext("torch", options.pop("semiring", "lse-sum"), **options)
    return ctx.compile(circuit, seed=0)


def _data(circuit, batch: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (batch, circuit.num_channels, circuit.num_variables), generator=g)


@pytest.mark.parametrize("layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("fold,optimize", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_circuit_native_matches_eager_and_reference(built, layer, fold, optimize, dtype):
    """Values against the eager kernels and the reference; parameter gradients against the
    eager kernels."""
    circuit = seed_like((1, 4, 4), sum_product_layer=layer, num_input_units=3, num_sum_units=3)
    x = _data(circuit)
    flags = dict(fold=fold, optimize=optimize, dtype=dtype)
    fused, eager = (
        _compile(circuit, kernels="native", **flags),
        _compile(circuit, **flags, kernels="eager"),
    )
    assert any(isinstance(m, NativeMixingLayer) for m in fused.layers)
    if layer == "cp" and optimize:
        assert any(isinstance(m, NativeCPLayer) for m in fused.layers)
    if layer == "cp-t" and optimize:
        assert any(isinstance(m, NativeCPTLayer) for m in fused.layers)
    eager_classes = (TorchCPLayer, TorchCPTLayer, TorchDenseLayer, TorchMixingLayer)
    assert not any(type(m) in eager_classes for m in fused.layers)  # all native
    assert not any(isinstance(m, NATIVE_LAYERS) for m in eager.layers)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    with torch.no_grad():
        torch.testing.assert_close(fused(x), eager(x), rtol=tol, atol=tol)
        reference.assert_matches(fused(x), circuit, x, fused.symbolic_state(), "lse-sum", tol)
    grads = []
    for compiled in (fused, eager):
        compiled(x).sum().backward()
        grads.append({n: p.grad for n, p in compiled.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    gtol = 1e-4 if dtype == torch.float32 else 1e-9
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=gtol, atol=gtol)


@pytest.mark.parametrize("semiring", ["sum-product", "complex-lse-sum"])
def test_other_semirings_take_eager_layers(built, semiring):
    circuit = seed_like((1, 4, 4), sum_product_layer="cp", num_input_units=2, num_sum_units=2)
    compiled = _compile(circuit, semiring=semiring, fold=True, optimize=True, kernels="native")
    assert not any(isinstance(m, NATIVE_LAYERS) for m in compiled.layers)
    eager = _compile(circuit, semiring=semiring, fold=True, optimize=True, kernels="eager")
    x = _data(circuit)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=0, atol=0)


def test_cached_parameters_are_tensors(built):
    """`parameter_values` (the eval-mode cache) hands out tensors, not deferred logits; the
    cached forward still agrees."""
    circuit = seed_like((1, 4, 4), sum_product_layer="cp", num_input_units=2, num_sum_units=2)
    compiled = _compile(circuit, fold=True, optimize=True, kernels="native")
    x = _data(circuit)
    with torch.no_grad():
        want = compiled(x)
        compiled.eval()
        assert all(isinstance(t, torch.Tensor) for p in compiled.parameter_values() for t in p)
        torch.testing.assert_close(compiled(x), want)


def test_failed_build_falls_back_to_eager(monkeypatch):
    """CI on a machine without a compiler: one warning, then the eager kernels."""

    def broken_build():
        raise OSError("no C++ compiler")

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", broken_build)
    circuit = seed_like((1, 4, 4), sum_product_layer="cp", num_input_units=2, num_sum_units=2)
    x = _data(circuit)
    with pytest.warns(RuntimeWarning, match="eager kernels"):
        compiled = _compile(circuit, fold=True, optimize=True)
    assert not any(isinstance(m, NATIVE_LAYERS) for m in compiled.layers)
    assert "[native kernel]" not in compiled.code
    reference.assert_matches(compiled(x), circuit, x, compiled.symbolic_state(), "lse-sum", 1e-4)
    with pytest.raises(CompilationError, match="could not be built"):
        _compile(circuit, fold=True, optimize=True, kernels="native")


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("which", ["cp", "mixing"])
def test_raw_sums_reach_the_underflow_watch(built, grad, which):
    """The kernels normalize their own sums, so they hand their smallest raw values to the
    watch (the eager layers' figures): flagged columns are recomputed exactly."""
    f, h, k, b = 2, 2, 4, 16
    x = _packed(f, h, k, b, torch.float32)
    if which == "cp":
        logits = torch.randn((f * h, k, k))
        logits[..., 0] = -200.0  # a weight of exp(-200): tiny raw sums
        layers = TorchCPLayer(**_layer_args(f, h, k, k)), NativeCPLayer(**_layer_args(f, h, k, k))
    else:
        logits = torch.randn((f, h, k, 1))
        logits[:, 0] = -200.0
        layers = (
            TorchMixingLayer(**_layer_args(f, h, k, k)),
            NativeMixingLayer(**_layer_args(f, h, k, k)),
        )
    w = torch.softmax(logits, -1 if which == "cp" else 1)
    found = []
    for layer in layers:
        previous = semirings.start_watch(b)
        with torch.set_grad_enabled(grad):
            layer.evaluate(x.clone().requires_grad_(grad), w.clone().requires_grad_(grad))
        found.append(semirings.stop_watch(previous))
    assert found[1] is not None, "the native layer reported nothing to the watch"
    torch.testing.assert_close(found[1], found[0], rtol=1e-4, atol=0)


def test_bench_native_quick_run(built):
    """`examples/bench_native.py --quick` runs (and checks auto against eager on the way)."""
    script = Path(__file__).resolve().parent.parent / "examples" / "bench_native.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(script), "--quick"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "speedup" in run.stdout


@pytest.mark.parametrize("units", [3, 23])  # 23 * 23 = 529 > 512: the GEMM-sized layers
def test_auto_picks_where_measured_faster(built, units):
    """'auto': CP and mixing layers native everywhere; dense layers native when small
    (O * K <= 512) or of one fold, eager when folded and GEMM-sized."""
    circuit = seed_like(
        (1, 4, 4), sum_product_layer="cp", num_input_units=units, num_sum_units=units
    )
    compiled = _compile(circuit, fold=True, optimize=True)  # kernels='auto'
    assert any(isinstance(m, NativeCPLayer) for m in compiled.layers)
    assert any(isinstance(m, NativeMixingLayer) for m in compiled.layers)
    assert not any(type(m) in (TorchCPLayer, TorchMixingLayer) for m in compiled.layers)
    dense = [m for m in compiled.layers if isinstance(m, TorchDenseLayer)]
    assert dense
    for m in dense:
        small = m.num_output_units * m.num_input_units <= 512 or m.num_folds == 1
        assert isinstance(m, NativeDenseLayer) == small, (m.num_folds, m.num_input_units)
