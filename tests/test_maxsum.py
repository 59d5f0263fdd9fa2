"""The fused max-sum Tucker kernels (`native/maxsum.cpp`) that MAP runs on: the same values
and the same picks, bit for bit, as the eager top-down rule, on every path of the kernels
(small and large layers, partial batch tiles, ties, -inf, unvisited units, strided folds);
and MAP through them equals MAP where the extension cannot build (the eager fallback), on
tiny circuits of every sum layer type, folded and fused. The brute-force checks of MAP
(tests/test_queries.py) run through the kernels wherever they build.
"""

from __future__ import annotations

import pytest
import torch
from ir_cases import seed_like

from cirkit_ir.backends.torch import native
from cirkit_ir.backends.torch import topdown as td
from cirkit_ir.backends.torch.native import maxsum
from cirkit_ir.backends.torch.queries import MAPQuery
from cirkit_ir.pipeline import PipelineContext


@pytest.fixture(scope="module")
def built():
    if native.load() is None:
        pytest.skip("the native extension cannot be built on this machine")


def _eager(x, logw, units):
    """The eager rule's upward values and top-down slots (what the kernels replace)."""
    rule = td.TuckerRule()
    up = td._WeightedSum.up(rule, None, x, logw, td.amax)
    down = td.TopDownRule.choose(rule, None, x, logw, units, td.ArgMax())
    return up, down


def _case(f, k, o, b, dtype, kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, f, k, b, generator=g, dtype=dtype).transpose(0, 1)  # as gathered
    logw = torch.randn(f, o, k * k, generator=g, dtype=dtype)
    units = torch.randint(-1, o, (f, b), generator=g)
    if kind == "ties":  # many equal scores: the first index must win
        x, logw = x.round(), logw.round()
    if kind == "inf":  # -inf scores, and a fold whose every score is -inf
        x = x.masked_fill(torch.rand(x.shape, generator=g, dtype=dtype) < 0.3, -torch.inf)
        logw = logw.masked_fill(torch.rand(logw.shape, generator=g, dtype=dtype) < 0.3, -torch.inf)
        x[0, 0] = -torch.inf
    return x, logw, units


# (K, O, B): K*K <= 256 runs tiles of columns (O <= 16 floats permute, O > 16 gather),
# K*K > 256 runs a column at a time; B not a multiple of 16 leaves a partial tile.
SHAPES = [(1, 1, 5), (2, 3, 17), (3, 16, 33), (4, 17, 16), (16, 5, 20), (17, 3, 19)]


@pytest.mark.parametrize(("k", "o", "b"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["random", "ties", "inf"])
def test_kernels_equal_the_eager_rule(built, k, o, b, dtype, kind):
    x, logw, units = _case(3, k, o, b, dtype, kind)
    want_up, want_down = _eager(x, logw, units)
    got_up = maxsum.tucker_max(x, logw)
    got_down = maxsum.tucker_argmax(x, logw, units)
    assert got_up is not None and got_down is not None
    assert torch.equal(got_up, want_up)
    assert torch.equal(got_down, want_down)
    assert bool((got_down.transpose(1, 2)[units < 0] == -1).all())


def test_kernels_decline_what_they_do_not_cover(built):
    x, logw, units = _case(2, 3, 2, 5, torch.float32, "random")
    assert maxsum.tucker_max(x, logw.double()) is None  # mixed dtypes
    assert maxsum.tucker_max(x.half(), logw.half()) is None
    three = torch.cat([x, x[:, :1]], 1)  # a ternary layer
    assert maxsum.tucker_argmax(three, logw[..., :1].expand(-1, -1, 27), units) is None


def _compile(symbolic, fold, dtype, optimize=True):
    ctx = PipelineContext("torch", "lse-sum", fold=fold, optimize=optimize, dtype=dtype)
    return ctx.compile(symbolic, seed=0)


def _queries(circuit):
    g = torch.Generator().manual_seed(3)
    d = circuit.num_variables
    x = torch.randint(0, 256, (6, 1, d), generator=g)
    evidence = torch.rand(6, d, generator=g) < 0.5
    summed = torch.rand(6, d, generator=g) < 0.3
    query = MAPQuery(circuit)
    return [
        query(),
        query(x, evidence_mask=evidence),
        query(x, evidence_mask=evidence, integrate_vars=summed),
    ]


def _without_native(monkeypatch):
    """From here on the extension 'cannot build': `native.load()` warns and returns None."""

    def broken_build():
        raise OSError("no C++ compiler")

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", broken_build)
    with pytest.warns(RuntimeWarning, match="eager kernels"):
        assert native.load() is None


# (layer, units, fold, optimize): fused Tucker layers folded and one fold each, the same
# unfused (kronecker + dense), cp and cp-t (eager rules around the kernels' absence), and
# 17 units (the kernels' one-column-at-a-time path).
CIRCUITS = [
    ("tucker", 3, True, True),
    ("tucker", 3, False, True),
    ("tucker", 3, False, False),
    ("cp", 3, True, True),
    ("cp-t", 3, True, True),
    ("tucker", 17, True, True),
]


@pytest.mark.parametrize(("layer", "units", "fold", "optimize"), CIRCUITS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_map_through_the_kernels_equals_the_fallback(
    built, monkeypatch, layer, units, fold, optimize, dtype
):
    shape = (1, 2, 2) if units > 8 else (1, 4, 4)
    symbolic = seed_like(shape, sum_product_layer=layer, num_input_units=units, num_sum_units=units)
    circuit = _compile(symbolic, fold, dtype, optimize)
    calls = []
    kernel = maxsum.tucker_max
    monkeypatch.setattr(maxsum, "tucker_max", lambda *a: calls.append(1) or kernel(*a))
    fast = _queries(circuit)
    if layer == "tucker" and optimize:
        assert calls, "the Tucker layers did not run through the kernel"
    _without_native(monkeypatch)
    slow = _queries(circuit)
    for (value, state), (want_value, want_state) in zip(fast, slow, strict=True):
        assert torch.equal(value, want_value)
        assert torch.equal(state, want_state)


def test_map_without_the_extension_attains_its_value(monkeypatch):
    """Where nothing can be built, MAP computes eagerly: the state attains the value."""
    _without_native(monkeypatch)
    symbolic = seed_like((1, 4, 4), num_input_units=3, num_sum_units=3)
    circuit = _compile(symbolic, True, torch.float64)
    value, state = MAPQuery(circuit)()
    assert maxsum.tucker_max(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1)) is None
    assert torch.isfinite(value).all()
    assert circuit(state)[0, 0, 0].item() >= value.item() - 1e-9
