"""User mistakes raise a specific `cirkit_ir.errors` exception whose message names the problem.

One test per mistake: bad batches handed to a compiled circuit, bad compilation options, bad
template options, bad pipelines, and symbolic circuits that are not smooth or decomposable.
"""

from __future__ import annotations

import pytest
import torch

from cirkit_ir import errors
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    CategoricalLayer,
    Circuit,
    DenseLayer,
    GaussianLayer,
    HadamardLayer,
    MixingLayer,
)
from cirkit_ir.templates import Parameterization, circuit_templates


@pytest.fixture(scope="module")
def categorical():
    """A compiled circuit over 4 variables of 3 categories, one channel."""
    circuit = circuit_templates.tabular_data(
        "random-binary-tree",
        num_features=4,
        input_layers={"name": "categorical", "args": {"num_categories": 3}},
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
    )
    return PipelineContext().compile(circuit, seed=0)


@pytest.fixture(scope="module")
def image():
    """A compiled circuit over 2x2 images with 3 channels of 256 categories."""
    circuit = circuit_templates.image_data(
        (3, 2, 2),
        region_graph="quad-tree-2",
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=2,
    )
    return PipelineContext().compile(circuit, seed=0)


@pytest.fixture(scope="module")
def gaussian():
    circuit = circuit_templates.tabular_data(
        "linear-tree",
        num_features=3,
        input_layers="gaussian",
        num_input_units=2,
        sum_product_layer="cp-t",
        num_sum_units=2,
    )
    return PipelineContext().compile(circuit, seed=0)


GOOD = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])


def test_good_batches_are_accepted(categorical, image, gaussian):
    assert categorical(GOOD).shape == (2, 1, 1)
    assert categorical(GOOD[:, None, :]).shape == (2, 1, 1)
    assert image(torch.randint(256, (5, 3, 4))).shape == (5, 1, 1)
    assert gaussian(torch.randn(2, 1, 3)).shape == (2, 1, 1)


# ---------------------------------------------------------------------------------------------
# Batches


def test_one_dimensional_batch(categorical):
    with pytest.raises(errors.InputError, match=r"\(batch, channels, variables\).*1 dimension"):
        categorical(torch.tensor([0, 1, 2, 1]))


def test_four_dimensional_batch(image):
    with pytest.raises(errors.InputError, match=r"\(batch, channels, variables\).*4 dimension"):
        image(torch.randint(256, (5, 3, 2, 2)))


def test_two_dimensional_batch_for_a_multichannel_circuit(image):
    with pytest.raises(errors.InputError, match=r"3 channels: pass \(batch, 3, 4\)"):
        image(torch.randint(256, (5, 12)))


def test_wrong_number_of_channels(image):
    with pytest.raises(errors.InputError, match=r"the batch has 1 channels.*expects 3"):
        image(torch.randint(256, (5, 1, 4)))


def test_wrong_number_of_variables(categorical):
    with pytest.raises(errors.InputError, match=r"the batch has 5 variables.*expects 4"):
        categorical(torch.zeros(2, 1, 5, dtype=torch.long))


def test_floats_where_categories_are_expected(categorical):
    with pytest.raises(errors.InputError, match="expect integer categories.*x.long()"):
        categorical(GOOD.float())


def test_category_out_of_range(categorical):
    bad = GOOD.clone()
    bad[1, 2] = 3
    with pytest.raises(
        errors.InputError, match=r"variable 2 has the value 3, out of range.*0\.\.2"
    ):
        categorical(bad)


def test_negative_category(categorical):
    bad = GOOD.clone()
    bad[0, 3] = -1
    with pytest.raises(errors.InputError, match=r"variable 3 has the negative value -1"):
        categorical(bad)


def test_pixel_value_out_of_range(image):
    bad = torch.randint(256, (2, 3, 4))
    bad[1, 2, 0] = 256
    with pytest.raises(errors.InputError, match="out of range"):
        image(bad)


def test_nan_in_continuous_data(gaussian):
    bad = torch.randn(3, 1, 3)
    bad[1, 0, 2] = float("nan")
    with pytest.raises(errors.InputError, match="NaN"):
        gaussian(bad)


def test_nan_in_discrete_data(categorical):
    bad = GOOD.double()
    bad[0, 0] = float("nan")
    with pytest.raises(errors.InputError, match="NaN"):
        categorical(bad)


def test_empty_batch(categorical):
    with pytest.raises(errors.InputError, match="empty"):
        categorical(torch.zeros(0, 1, 4, dtype=torch.long))


def test_boolean_batch(categorical):
    with pytest.raises(errors.InputError, match="dtype torch.bool"):
        categorical(GOOD > 0)


def test_complex_batch(gaussian):
    with pytest.raises(errors.InputError, match="dtype torch.complex64"):
        gaussian(torch.randn(2, 1, 3, dtype=torch.complex64))


def test_not_a_tensor(categorical):
    with pytest.raises(errors.InputError, match="torch.Tensor.*torch.as_tensor"):
        categorical(GOOD.tolist())


def test_wrong_device(categorical):
    with pytest.raises(errors.InputError, match=r"on (device )?meta but the circuit is on cpu"):
        categorical(torch.zeros(2, 1, 4, dtype=torch.long, device="meta"))


def test_non_integer_values_for_a_discrete_column_of_a_mixed_table():
    circuit = circuit_templates.tabular_data(
        "linear-tree",
        input_layers=["gaussian", {"name": "categorical", "args": {"num_categories": 3}}],
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
    )
    compiled = PipelineContext().compile(circuit, seed=0)
    assert compiled(torch.tensor([[0.5, 2.0]])).shape == (1, 1, 1)
    with pytest.raises(errors.InputError, match="variable 1 takes non-integer values"):
        compiled(torch.tensor([[0.5, 1.5]]))


def test_load_symbolic_state_of_another_circuit(categorical):
    with pytest.raises(errors.InputError, match="no value for source"):
        categorical.load_symbolic_state({0: categorical.symbolic_state()[0]})
    state = categorical.symbolic_state()
    state[0] = torch.zeros(7)
    with pytest.raises(errors.InputError, match="source 0 has shape"):
        categorical.load_symbolic_state(state)


# ---------------------------------------------------------------------------------------------
# Compilation options


def test_unknown_semiring():
    with pytest.raises(errors.OptionError, match="unknown semiring 'max-product'.*'lse-sum'"):
        PipelineContext(semiring="max-product")


def test_unknown_backend():
    with pytest.raises(errors.OptionError, match="unknown backend 'jax'.*'torch'"):
        PipelineContext(backend="jax")


def test_flags_must_be_booleans():
    with pytest.raises(errors.OptionError, match="fold must be True or False"):
        PipelineContext(fold="yes")


def test_unknown_pass_in_a_pipeline():
    circuit = _small_circuit()
    with pytest.raises(errors.UnknownPassError, match="fusee"):
        PipelineContext(pipeline="lower-semiring{semiring=lse-sum},fusee").compile(circuit)


def test_malformed_pipeline_string():
    circuit = _small_circuit()
    with pytest.raises(errors.PipelineSyntaxError):
        PipelineContext(pipeline="lower-semiring{semiring=lse-sum,fold").compile(circuit)


def test_unknown_pass_option():
    circuit = _small_circuit()
    with pytest.raises(errors.PipelineSyntaxError, match="semirign"):
        PipelineContext(pipeline="lower-semiring{semirign=lse-sum}").compile(circuit)


def test_pipeline_without_a_semiring_cannot_be_compiled():
    with pytest.raises(errors.CompilationError, match="semiring"):
        PipelineContext(pipeline="fold,fuse").compile(_small_circuit())


def test_compile_something_that_is_not_a_circuit():
    with pytest.raises(errors.OptionError, match="cirkit_ir.symbolic.Circuit"):
        PipelineContext().compile("quad-graph")


# ---------------------------------------------------------------------------------------------
# Template options


IMAGE_OPTIONS = {
    "region_graph": "quad-graph",
    "input_layer": "categorical",
    "num_input_units": 2,
    "sum_product_layer": "tucker",
    "num_sum_units": 2,
}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("region_graph", "quad-tree-3", r"unknown region graph 'quad-tree-3'.*'quad-graph'"),
        ("input_layer", "poisson", r"unknown input layer 'poisson'.*'categorical'"),
        ("sum_product_layer", "tensor-train", r"unknown sum-product layer 'tensor-train'"),
        ("sum_weight_param", "relu", r"unknown sum_weight_param 'relu'.*'softmax'"),
        ("num_input_units", 0, "num_input_units must be a positive integer"),
        ("num_sum_units", 2.5, "num_sum_units must be a positive integer"),
        ("num_classes", -1, "num_classes must be a positive integer"),
        ("use_mixing_weights", "no", "use_mixing_weights must be True or False"),
    ],
)
def test_unknown_image_template_options(option, value, message):
    with pytest.raises(errors.OptionError, match=message):
        circuit_templates.image_data((1, 2, 2), **{**IMAGE_OPTIONS, option: value})


def test_bad_image_shape():
    with pytest.raises(errors.OptionError, match=r"image_shape must be \(num_channels"):
        circuit_templates.image_data((2, 2), **IMAGE_OPTIONS)


def test_chow_liu_template_without_data():
    with pytest.raises(errors.OptionError, match="pass data="):
        circuit_templates.image_data(
            (1, 2, 2), **{**IMAGE_OPTIONS, "region_graph": "chow-liu-tree"}
        )


def test_unknown_template_keyword():
    with pytest.raises(TypeError, match="num_units"):
        circuit_templates.image_data((1, 2, 2), **IMAGE_OPTIONS, num_units=3)


def test_unknown_tabular_input_layer():
    with pytest.raises(errors.OptionError, match=r"unknown input_layers input layer 'beta'"):
        circuit_templates.tabular_data(
            num_features=3,
            input_layers="beta",
            num_input_units=2,
            sum_product_layer="cp",
            num_sum_units=2,
        )


def test_unknown_tabular_layer_argument():
    with pytest.raises(errors.OptionError, match=r"argument of a categorical layer 'num_states'"):
        circuit_templates.tabular_data(
            num_features=3,
            input_layers={"name": "categorical", "args": {"num_states": 3}},
            num_input_units=2,
            sum_product_layer="cp",
            num_sum_units=2,
        )


# ---------------------------------------------------------------------------------------------
# Circuits without the properties compilation needs


def _small_circuit() -> Circuit:
    cats = [CategoricalLayer([v], 2, num_categories=2) for v in range(2)]
    had = HadamardLayer(2, 2)
    dense = DenseLayer(2, 1)
    return Circuit([*cats, had, dense], {had: cats, dense: [had]}, [dense])


def test_circuit_that_is_not_smooth():
    # A mixture of a distribution over x0 and one over x0, x1.
    a, b, c = (CategoricalLayer([v], 2, num_categories=2) for v in (0, 0, 1))
    had = HadamardLayer(2, 2)
    mix = MixingLayer(2, 2)
    out = DenseLayer(2, 1)
    circuit = Circuit([a, b, c, had, mix, out], {had: [b, c], mix: [a, had], out: [mix]}, [out])
    assert not circuit.is_smooth
    with pytest.raises(errors.PropertyError, match=r"not smooth: layer #4 \(MixingLayer\)"):
        PipelineContext().compile(circuit)


def test_circuit_that_is_not_decomposable():
    # A product of two distributions over the same variable.
    a, b = (CategoricalLayer([0], 2, num_categories=2) for _ in range(2))
    had = HadamardLayer(2, 2)
    out = DenseLayer(2, 1)
    circuit = Circuit([a, b, had, out], {had: [a, b], out: [had]}, [out])
    assert not circuit.is_decomposable
    with pytest.raises(errors.PropertyError, match=r"not decomposable: layer #2 \(HadamardLayer\)"):
        PipelineContext().compile(circuit)


def test_not_decomposable_through_a_deeper_layer():
    # x0 reaches the product twice, through two different sums.
    a, b = (CategoricalLayer([0], 2, num_categories=2) for _ in range(2))
    c = CategoricalLayer([1], 2, num_categories=2)
    had1 = HadamardLayer(2, 2)
    had2 = HadamardLayer(2, 2)
    d = DenseLayer(2, 2)
    out = DenseLayer(2, 1)
    layers = [a, b, c, had1, d, had2, out]
    wiring = {had1: [a, c], d: [had1], had2: [d, b], out: [had2]}
    circuit = Circuit(layers, wiring, [out])
    with pytest.raises(errors.PropertyError, match="not decomposable"):
        PipelineContext().compile(circuit)


def test_gaussian_and_categorical_with_different_channels():
    a = CategoricalLayer([0], 2, num_categories=2)
    b = GaussianLayer([1], 2, num_channels=2)
    had = HadamardLayer(2, 2)
    circuit = Circuit([a, b, had], {had: [a, b]}, [had])
    # Raised by the backend (CompilationError) today; StructureError would fit as well.
    with pytest.raises(errors.CirkitIRError, match="disagree on the number of channels"):
        PipelineContext().compile(circuit)


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum"])
def test_complex_parameters_under_a_real_semiring(semiring):
    weights = Parameterization(initialization="normal", activation="none", dtype="complex")
    circuit = circuit_templates.image_data(
        (1, 1, 2), **{**IMAGE_OPTIONS, "sum_product_layer": "cp", "sum_weight_param": weights}
    )
    with pytest.raises(errors.CompilationError, match="complex parameters.*'complex-lse-sum'"):
        PipelineContext(semiring=semiring).compile(circuit, seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_batch_for_a_cuda_circuit():
    compiled = PipelineContext(device="cuda").compile(_small_circuit(), seed=0)
    with pytest.raises(errors.InputError, match=r"on (device )?cpu but the circuit is on cuda"):
        compiled(torch.zeros(2, 1, 2, dtype=torch.long))
