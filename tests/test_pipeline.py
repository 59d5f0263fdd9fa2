"""PipelineContext end to end: the seed notebook's cells, flags that agree, training."""

from __future__ import annotations

import io

import pytest
import torch
from ir_cases import quad_tree_2x2, seed_like

from cirkit_ir import pipeline
from cirkit_ir.errors import OptionError, PipelineSyntaxError, PropertyError
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import CategoricalLayer, Circuit, DenseLayer, HadamardLayer

FLAGS = [(False, False), (False, True), (True, False), (True, True)]
FOLDED_NAMES = ["TorchCategoricalLayer"] + [
    "TorchKroneckerLayer",
    "TorchDenseLayer",
    "TorchKroneckerLayer",
    "TorchDenseLayer",
    "TorchMixingLayer",
] * 5
OPTIMIZED_NAMES = ["TorchCategoricalLayer"] + [
    "TorchTuckerLayer",
    "TorchTuckerLayer",
    "TorchMixingLayer",
] * 5


@pytest.fixture(scope="module")
def seed_compiled(seed_circuit):
    """The seed circuit compiled with every flag combination, with the same parameters."""
    return {
        flags: PipelineContext(
            semiring="lse-sum", fold=flags[0], optimize=flags[1], seed=7
        ).compile(seed_circuit)
        for flags in FLAGS
    }


@pytest.fixture(scope="module")
def batch():
    return torch.randint(256, size=(256, 1, 784), generator=torch.Generator().manual_seed(0))


def small_circuit(sum_product_layer: str = "tucker"):
    return seed_like(num_input_units=3, sum_product_layer=sum_product_layer, num_sum_units=3)


def test_layer_counts_and_names_as_in_the_notebook(seed_compiled):
    assert len(seed_compiled[(False, False)].layers) == 4163
    folded = seed_compiled[(True, False)]
    assert [type(layer).__name__ for layer in folded.layers] == FOLDED_NAMES
    first = next(folded.topological_ordering())
    assert type(first).__name__ == "TorchCategoricalLayer" and first.num_folds == 784
    optimized = seed_compiled[(True, True)]
    assert [type(layer).__name__ for layer in optimized.layers] == OPTIMIZED_NAMES


def test_every_flag_combination_computes_the_same_function(seed_compiled, batch):
    with torch.no_grad():
        outputs = {flags: circuit(batch) for flags, circuit in seed_compiled.items()}
    reference = outputs[(False, False)]
    assert reference.shape == (256, 1, 1)
    assert -4700 < reference.mean().item() < -4200  # the seed circuit: about -4400
    for flags, out in outputs.items():
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=0, msg=f"flags {flags}")


def test_two_dimensional_batches_are_accepted_when_there_is_one_channel(seed_compiled, batch):
    circuit = seed_compiled[(True, True)]
    with torch.no_grad():
        torch.testing.assert_close(circuit(batch[:, 0, :]), circuit(batch))


def test_lse_sum_is_the_log_of_sum_product_and_complex_agrees():
    sc = small_circuit()
    x = torch.randint(256, size=(32, 1, 16), generator=torch.Generator().manual_seed(1))
    outputs = {}
    for semiring in ("sum-product", "lse-sum", "complex-lse-sum"):
        ctx = PipelineContext(semiring=semiring, seed=3, dtype=torch.float64)
        with torch.no_grad():
            outputs[semiring] = ctx.compile(sc)(x)
    torch.testing.assert_close(outputs["lse-sum"], outputs["sum-product"].log(), rtol=1e-10, atol=0)
    complex_out = outputs["complex-lse-sum"]
    assert complex_out.is_complex()
    torch.testing.assert_close(complex_out.real, outputs["lse-sum"], rtol=1e-10, atol=0)
    torch.testing.assert_close(complex_out.imag, torch.zeros_like(complex_out.imag))


def test_parameters_carry_over_between_flags(seed_circuit, seed_compiled, batch):
    source = seed_compiled[(True, True)]
    target = PipelineContext(semiring="lse-sum", fold=False, optimize=True).compile(
        seed_circuit, parameters=source.symbolic_state()
    )
    with torch.no_grad():
        torch.testing.assert_close(target(batch), source(batch), rtol=1e-5, atol=0)


@pytest.mark.parametrize("fold, optimize", FLAGS)
def test_a_few_adam_steps_lower_the_negative_log_likelihood(fold, optimize):
    sc = small_circuit("cp")
    ctx = PipelineContext(semiring="lse-sum", fold=fold, optimize=optimize, seed=0)
    circuit = ctx.compile(sc)
    x = torch.randint(4, size=(64, 1, 16), generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(circuit.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = -circuit(x).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 1.0


def test_context_manager_form_compiles_with_the_innermost_context():
    sc = small_circuit()
    with PipelineContext(fold=False, optimize=False):
        unfolded = pipeline.compile(sc)
        with PipelineContext(fold=True, optimize=True):
            folded = pipeline.compile(sc)
        again = pipeline.compile(sc)
    assert len(unfolded.layers) == len(again.layers) > len(folded.layers)
    assert pipeline.current_context() == PipelineContext.from_default_backend()


def test_a_custom_pipeline_string_replaces_the_flags():
    sc = small_circuit()
    ctx = PipelineContext(pipeline="lower-semiring{semiring=sum-product},fold")
    circuit = ctx.compile(sc)
    assert {type(layer).__name__ for layer in circuit.layers} >= {"TorchKroneckerLayer"}
    # The kernel choice still follows the context's `kernels`, unless the pipeline makes it.
    assert ctx.pipeline_string == (
        "lower-semiring{semiring=sum-product},fold,select-kernels{kernels=auto}"
    )
    chosen = PipelineContext(pipeline="fold,select-kernels{kernels=eager}", kernels="native")
    assert chosen.pipeline_string == "fold,select-kernels{kernels=eager}"
    with pytest.raises(PipelineSyntaxError, match="fold"):
        PipelineContext(pipeline="fold{x=1}").compile(sc)


def test_ir_printing_and_timing_go_through_to_the_pass_manager():
    stream = io.StringIO()
    ctx = PipelineContext.from_default_backend(
        print_ir_after="all", print_ir_to=stream, timing=True
    )
    ctx.compile(small_circuit())
    text = stream.getvalue()
    for name in ("fold", "lower-semiring", "fuse", "dce"):
        assert name in text
    assert "tucker(" in text  # the IR after fuse
    assert "Total" in ctx.timing_report()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"backend": "jax"}, "backend 'jax'; expected one of: 'torch'"),
        ({"semiring": "max-product"}, "semiring 'max-product'; expected one of: 'sum-product'"),
        ({"fold": "yes"}, "fold must be True or False"),
        ({"seed": 1.5}, "seed must be an int or None, got 1.5"),
        ({"seed": True}, "seed must be an int or None"),
        ({"pipeline": ["fold"]}, "pipeline must be a pipeline string"),
        ({"dtype": torch.float16}, "dtype must be torch.float32 or torch.float64"),
        ({"device": "gpu"}, "device 'gpu' is not a torch device"),
        ({"device": 3.5}, "device 3.5 is not a torch device"),
    ],
)
def test_bad_options_list_the_valid_ones(options, message):
    with pytest.raises(OptionError, match=message):
        PipelineContext(**options)


def test_compiling_something_else_than_a_circuit_is_an_error():
    with pytest.raises(OptionError, match="expects a cirkit_ir.symbolic.Circuit"):
        PipelineContext().compile("circuit")


def test_a_circuit_that_is_not_decomposable_is_rejected():
    a = CategoricalLayer([0], 2, num_categories=3)
    b = CategoricalLayer([0], 2, num_categories=3)
    product = HadamardLayer(2, 2)
    root = DenseLayer(2, 1)
    circuit = Circuit([a, b, product, root], {product: [a, b], root: [product]}, [root])
    with pytest.raises(PropertyError, match="not decomposable: layer #2 \\(HadamardLayer\\)"):
        PipelineContext().compile(circuit)


@pytest.mark.skipif(torch.cuda.device_count() > 8, reason="needs fewer than 9 CUDA devices")
def test_a_device_this_machine_lacks_is_an_option_error():
    message = "no CUDA device" if not torch.cuda.is_available() else "CUDA device\\(s\\)"
    with pytest.raises(OptionError, match=message):
        PipelineContext(device="cuda:9")


def test_any_int_seed_is_accepted():
    assert PipelineContext(seed=-3).seed == -3


def test_defaults_are_libcirkits():
    """A context made without flags computes probabilities, unfolded and unoptimized;
    `compile` outside any context uses the default backend's fast flags."""
    ctx = PipelineContext()
    assert (ctx.backend, ctx.semiring, ctx.fold, ctx.optimize) == (
        "torch",
        "sum-product",
        False,
        False,
    )
    fast = PipelineContext.from_default_backend(seed=3)
    assert (fast.semiring, fast.fold, fast.optimize, fast.seed) == ("lse-sum", True, True, 3)
    assert pipeline.current_context() == PipelineContext.from_default_backend()
    sc = quad_tree_2x2()
    x = torch.randint(256, size=(8, 1, 4), generator=torch.Generator().manual_seed(1))
    probabilities = PipelineContext(seed=2).compile(sc)(x).detach()
    log_probabilities = pipeline.compile(sc, seed=2)(x).detach()
    assert torch.allclose(probabilities.log(), log_probabilities, atol=1e-5)
    assert len(pipeline.compile(sc).layers) < len(PipelineContext().compile(sc).layers)
