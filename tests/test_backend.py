"""Torch backend end to end: compiled circuits from templates through the pass pipeline.

Semirings agree, folding and fusion do not change the function (seeded compilation), deep
circuits stay exact far below float range, the printed format and generated code, symbolic
state, input validation, dtypes, gradients and the parameter cache.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from ir_cases import seed_like

from cirkit_ir.backends.torch import TorchCircuit, codegen
from cirkit_ir.backends.torch.allocator import retain_freed_memory
from cirkit_ir.errors import CompilationError, InputError, OptionError
from cirkit_ir.ir import lower
from cirkit_ir.passes import PassManager
from cirkit_ir.reference import evaluate

PIPELINES = {
    "unfolded": "lower-semiring{{semiring={s}}}",
    "folded": "lower-semiring{{semiring={s}}},fold",
    "fused+folded": "lower-semiring{{semiring={s}}},fuse,fold",
}


def image_circuit(shape=(1, 4, 4), **kwargs):
    """A seed-like circuit with 3 input and 2 sum units: unequal counts catch unit mix-ups."""
    return seed_like(shape, **{"num_input_units": 3, "num_sum_units": 2, **kwargs})


def compile_circuit(sc, semiring="lse-sum", how="fused+folded", **kwargs) -> TorchCircuit:
    graph = PassManager.parse(PIPELINES[how].format(s=semiring)).run(lower(sc))
    return codegen(graph, **kwargs)


@pytest.fixture(scope="module")
def small():
    return image_circuit()


@pytest.fixture(scope="module")
def batch():
    return torch.randint(256, (7, 1, 16), generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------
# Semantics


@pytest.mark.parametrize("how", sorted(PIPELINES))
def test_matches_the_reference_evaluator(small, batch, how):
    circuit = compile_circuit(small, how=how, seed=3, dtype=torch.float64)
    expected = evaluate(small, batch, circuit.symbolic_state())
    torch.testing.assert_close(circuit(batch).detach(), expected, rtol=1e-10, atol=1e-10)


def test_semirings_agree(small, batch):
    """lse-sum = log(sum-product); complex-lse-sum's real part = lse-sum."""
    out = {
        s: compile_circuit(small, s, seed=5, dtype=torch.float64)(batch).detach()
        for s in ("sum-product", "lse-sum", "complex-lse-sum")
    }
    torch.testing.assert_close(out["sum-product"].log(), out["lse-sum"], rtol=1e-9, atol=1e-9)
    assert out["complex-lse-sum"].is_complex()
    torch.testing.assert_close(out["complex-lse-sum"].real, out["lse-sum"], rtol=1e-10, atol=1e-10)


def test_complex_semiring_handles_negative_weights(batch):
    """Sum weights of any sign ('none' parameterization): exp(complex value) = the linear one."""
    sc = image_circuit(sum_weight_param="none", sum_product_layer="cp")
    linear = compile_circuit(sc, "sum-product", seed=2, dtype=torch.float64)
    assert any((p < 0).any() for p in linear.parameters())
    lin = linear(batch).detach()
    cplx = compile_circuit(sc, "complex-lse-sum", seed=2, dtype=torch.float64)(batch).detach()
    torch.testing.assert_close(cplx.exp(), lin.to(cplx.dtype), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("sum_product", ["tucker", "cp", "cp-t"])
def test_seeded_compilation_gives_one_function_whatever_the_flags(batch, sum_product):
    sc = image_circuit(sum_product_layer=sum_product)
    outputs = [compile_circuit(sc, how=how, seed=11)(batch) for how in sorted(PIPELINES)]
    for other in outputs[1:]:
        torch.testing.assert_close(other, outputs[0], rtol=1e-5, atol=1e-4)


def test_deep_circuit_is_exact_far_below_float_range():
    """900 pixels: log-likelihoods near -5000 without clamping, float32 and float64."""
    sc = image_circuit((1, 30, 30), region_graph="quad-tree-2", num_input_units=2)
    x = torch.randint(256, (3, 1, 900), generator=torch.Generator().manual_seed(1))
    c64 = compile_circuit(sc, seed=0, dtype=torch.float64)
    c32 = compile_circuit(sc)
    c32.load_symbolic_state(c64.symbolic_state())
    expected = evaluate(sc, x, c64.symbolic_state())
    assert expected.max() < -4000
    torch.testing.assert_close(c64(x).detach(), expected, rtol=1e-11, atol=1e-9)
    y32 = c32(x).detach().double()
    assert torch.isfinite(y32).all()
    torch.testing.assert_close(y32, expected, rtol=1e-5, atol=0.0)


def test_output_shape_and_2d_batches(batch):
    sc = image_circuit(num_classes=3)
    circuit = compile_circuit(sc, seed=0)
    out = circuit(batch)
    assert out.shape == (7, 1, 3)  # (batch, outputs, units): one output of 3 class units
    torch.testing.assert_close(circuit(batch[:, 0]), out)  # (B, D) when C == 1


def test_multi_channel_data():
    sc = image_circuit((3, 2, 2), input_layer="gaussian")
    circuit = compile_circuit(sc, seed=0, dtype=torch.float64)
    x = torch.randn(4, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(
        circuit(x).detach(), evaluate(sc, x, circuit.symbolic_state()), rtol=1e-10, atol=1e-10
    )
    with pytest.raises(InputError, match="3 channels"):
        circuit(x[:, 0])


def test_float64_and_gradients(small, batch):
    circuit = compile_circuit(small, seed=0, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in circuit.parameters())
    out = circuit(batch)
    assert out.dtype == torch.float64
    out.sum().backward()
    grads = [p.grad for p in circuit.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_gradients_finite_in_a_deep_float32_circuit():
    sc = image_circuit((1, 16, 16), region_graph="quad-tree-2", num_input_units=2)
    circuit = compile_circuit(sc, seed=0)
    circuit(torch.randint(256, (4, 1, 256))).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in circuit.parameters())


# ---------------------------------------------------------------------------------------------
# Printing and generated code

SEED_FIRST_LAYERS = """\
TorchCircuit(
  (0): TorchCategoricalLayer(
    folds: 784  channels: 1  variables: 1  output-units: 4
    input-shape: (784, 1, -1, 1)
    output-shape: (784, -1, 4)
    (probs): TorchParameter(
      shape: (784, 4, 1, 256)
      (0): TorchTensorParameter(output-shape: (784, 4, 1, 256))
      (1): TorchSoftmaxParameter(
        input-shapes: [(784, 4, 1, 256)]
        output-shape: (784, 4, 1, 256)
      )
    )
  )
  (1): TorchTuckerLayer(
    folds: 784  arity: 2  input-units: 4  output-units: 4
    input-shape: (784, 2, -1, 4)
    output-shape: (784, -1, 4)
    (weight): TorchParameter(
      shape: (784, 4, 16)
      (0): TorchTensorParameter(output-shape: (784, 4, 16))
      (1): TorchSoftmaxParameter(
        input-shapes: [(784, 4, 16)]
        output-shape: (784, 4, 16)
      )
    )
  )
  (2): TorchTuckerLayer(
    folds: 392  arity: 2  input-units: 4  output-units: 4
    input-shape: (392, 2, -1, 4)
    output-shape: (392, -1, 4)
    (weight): TorchParameter(
      shape: ("""


@pytest.fixture(scope="module")
def seed_compiled(seed_circuit):
    return compile_circuit(seed_circuit)


def test_print_matches_the_seed_notebook(seed_compiled):
    text = repr(seed_compiled)
    assert text.startswith(SEED_FIRST_LAYERS)
    assert [type(m).__name__ for m in seed_compiled.layers] == ["TorchCategoricalLayer"] + [
        "TorchTuckerLayer",
        "TorchTuckerLayer",
        "TorchMixingLayer",
    ] * 5
    first = next(seed_compiled.topological_ordering())
    assert type(first).__name__ == "TorchCategoricalLayer" and first.num_folds == 784
    assert all(isinstance(layer.num_folds, int) for layer in seed_compiled.layers)


def test_generated_code_is_python_and_names_every_layer(seed_compiled):
    code = seed_compiled.code
    compile(code, "<test>", "exec")
    assert "for " not in code and "while " not in code  # straight-line code
    for i in range(len(seed_compiled.layers)):
        assert f"L[{i}].evaluate(" in code
    assert "index_select" in code or "torch.stack" in code  # gathers are spelled out


def test_seed_circuit_runs_on_the_notebook_batch(seed_compiled):
    out = seed_compiled(torch.randint(256, size=(256, 1, 784)))
    assert out.shape == (256, 1, 1) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------
# Parameters: materialization, symbolic state, caching


def test_symbolic_state_round_trip(small, batch):
    a = compile_circuit(small, how="unfolded", seed=1)
    b = compile_circuit(small, how="fused+folded", seed=2)
    assert not torch.allclose(a(batch), b(batch))
    b.load_symbolic_state(a.symbolic_state())
    torch.testing.assert_close(b(batch), a(batch), rtol=1e-5, atol=1e-4)
    state = b.symbolic_state()
    assert state.keys() == a.symbolic_state().keys()
    assert all(torch.equal(state[k], v) for k, v in a.symbolic_state().items())
    with pytest.raises(InputError, match="no value for source"):
        b.load_symbolic_state({0: state[0]})
    with pytest.raises(InputError, match="shape"):
        b.load_symbolic_state({k: v.flatten()[:1] for k, v in state.items()})


def test_unseeded_compilation_uses_the_global_rng(small, batch):
    torch.manual_seed(0)
    a = compile_circuit(small)(batch)
    torch.manual_seed(0)
    b = compile_circuit(small)(batch)
    torch.testing.assert_close(a, b)


def test_parameter_cache_in_eval_mode(small, batch):
    circuit = compile_circuit(small, seed=0)
    circuit.eval()
    with torch.no_grad():
        first = circuit.parameter_values()
        assert circuit.parameter_values() is first  # cached
        y0 = circuit(batch)
        leaf = next(p for p in circuit.parameters())
        leaf.mul_(2.0)  # an in-place edit bumps the version counter: recomputed
        assert circuit.parameter_values() is not first
        assert not torch.equal(circuit(batch), y0)
        second = circuit.parameter_values()
        circuit.load_state_dict(circuit.state_dict())
        assert circuit.parameter_values() is not second
    circuit.train()
    assert circuit.parameter_values() is not circuit.parameter_values()  # no cache in training
    with torch.no_grad():
        assert circuit.parameter_values() is not circuit.parameter_values()
    circuit.eval()
    assert circuit.parameter_values() is not circuit.parameter_values()  # no cache with grad


def test_copy_pickle_and_state_dict(small, batch):
    circuit = compile_circuit(small, seed=0)
    expected = circuit(batch)
    torch.testing.assert_close(copy.deepcopy(circuit)(batch), expected)
    buffer = io.BytesIO()
    torch.save(circuit, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(restored(batch), expected)
    torch.testing.assert_close(pickle.loads(pickle.dumps(circuit))(batch), expected)
    other = compile_circuit(small, seed=9)
    other.load_state_dict(circuit.state_dict())
    torch.testing.assert_close(other(batch), expected)
    assert not any(".g" in k or "_index" in k for k in circuit.state_dict())  # indices: buffers


def test_layers_are_callable_on_their_own(small, batch):
    """A layer's forward takes (F, arity, B, K) and evaluates its own parameters."""
    circuit = compile_circuit(small, how="unfolded", seed=0, dtype=torch.float64)
    first = circuit.layers[0](batch)
    assert first.shape == (1, 7, 3)


# ---------------------------------------------------------------------------------------------
# Input validation


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: x.numpy(), "torch.Tensor"),
        (lambda x: x[0, 0], "dimension"),
        (lambda x: x[None], "dimension"),
        (lambda x: x.expand(7, 2, 16), "channels"),
        (lambda x: x[:, :, :15], "variables"),
        (lambda x: x[:0], "empty"),
        (lambda x: x.float() + 0.5, "variable 0 takes non-integer values"),
        (lambda x: x.bool(), "dtype"),
        (lambda x: x.index_fill(2, torch.tensor([3]), -1), "variable 3 has the negative"),
        (lambda x: x.index_fill(2, torch.tensor([5]), 256), "variable 5 has the value 256"),
        (lambda x: x.to("meta"), "device"),
    ],
)
def test_input_errors(small, batch, make, message):
    circuit = compile_circuit(small, seed=0)
    with pytest.raises(InputError, match=message):
        circuit(make(batch.clone()))


def test_nan_input_error():
    circuit = compile_circuit(image_circuit(input_layer="gaussian"), seed=0)
    x = torch.randn(3, 1, 16)
    x[1, 0, 5] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        circuit(x)


def test_other_integer_dtypes_are_accepted(small, batch):
    circuit = compile_circuit(small, seed=0)
    torch.testing.assert_close(circuit(batch.to(torch.uint8)), circuit(batch))


def test_compilation_errors(small):
    graph = lower(small)
    with pytest.raises(CompilationError, match="lower-semiring"):
        codegen(graph)
    with pytest.raises(OptionError, match="dtype"):
        codegen(graph, dtype=torch.float16)


def test_allocator_tuning_is_idempotent():
    assert retain_freed_memory() == retain_freed_memory()
