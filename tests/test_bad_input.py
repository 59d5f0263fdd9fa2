"""User mistakes raise a specific `cirkit_ir.errors` exception whose message names the problem.

One test per mistake: bad batches handed to a compiled circuit, evidence observed outside its
distribution's range, bad compilation options, bad template options, bad pipelines, and
symbolic circuits that are malformed or not smooth or decomposable.
"""

from __future__ import annotations

import re

import pytest
import torch
from ir_cases import quad_tree_2x2, seed_like

from cirkit_ir import errors
from cirkit_ir.backends.torch import codegen, make_layer
from cirkit_ir.backends.torch.semirings import get_semiring
from cirkit_ir.ir import ops
from cirkit_ir.ir.parser import parse_ir
from cirkit_ir.passes import PassManager
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ConstantInitializer,
    DenseLayer,
    EmbeddingLayer,
    EvidenceLayer,
    GaussianLayer,
    HadamardLayer,
    Initializer,
    InputLayer,
    MixingLayer,
    TensorParameter,
    UniformInitializer,
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
    circuit = quad_tree_2x2(num_channels=3)
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


def test_whole_floats_are_categories_and_fractions_are_not(categorical):
    assert torch.equal(categorical(GOOD.float()), categorical(GOOD))  # a table of floats
    fraction = GOOD.float()
    fraction[0, 1] = 1.5
    with pytest.raises(errors.InputError, match="variable 1 takes non-integer values"):
        categorical(fraction)
    infinite = GOOD.float()
    infinite[1, 2] = float("inf")
    with pytest.raises(errors.InputError, match="variable 2 has the value inf, out of range"):
        categorical(infinite)


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
# Evidence observed outside its distribution's range


def _observation(value: float, channels: int = 1) -> TensorParameter:
    return TensorParameter((channels,), ConstantInitializer(value), learnable=False)


def _evidence_circuit(
    *observed: InputLayer, channels: int = 1, initializer: Initializer | None = None
) -> Circuit:
    """Each of `observed` conditioned on an observation (drawn from `initializer`, or 0), times
    a categorical over variable 9 (the only variable the batch gives)."""
    initializer = initializer or ConstantInitializer(0.0)
    observation = [TensorParameter((channels,), initializer, learnable=False) for _ in observed]
    evidence = [EvidenceLayer(layer, obs) for layer, obs in zip(observed, observation, strict=True)]
    cat = CategoricalLayer([9], 2, num_categories=3, num_channels=channels)
    had = HadamardLayer(2, len(evidence) + 1)
    return Circuit([*evidence, cat, had], {had: [*evidence, cat]}, [had])


def _with_observations(circuit: Circuit, values: list[list[float]], **compile_options):
    """`circuit` compiled, its evidence layers (in order) observing `values` (per channel)."""
    compiled = PipelineContext(**compile_options).compile(circuit, seed=0)
    state = compiled.symbolic_state()
    evidence = [layer for layer in circuit.layers if isinstance(layer, EvidenceLayer)]
    sources = circuit.tensor_parameters()
    for layer, value in zip(evidence, values, strict=True):
        state[sources.index(layer.observation)] = torch.tensor(value, dtype=torch.float32)
    compiled.load_symbolic_state(state)
    return compiled


_BATCH = torch.zeros(2, 1, 10, dtype=torch.long)


@pytest.mark.parametrize("value", [300.0, 256.0, 255.5])
def test_evidence_above_the_categories(value):
    circuit = _evidence_circuit(CategoricalLayer([4], 2, num_categories=256))
    compiled = _with_observations(circuit, [[value]])
    with pytest.raises(
        errors.InputError,
        match=rf"evidence layer, fold 0 \(a categorical over variable 4\): the observation"
        rf" {value:g} in channel 0 is out of range; the categorical accepts 0\.\.255",
    ):
        compiled(_BATCH)


@pytest.mark.parametrize("value", [-1.0, -0.6, float("nan")])
def test_negative_or_nan_evidence(value):
    compiled = _with_observations(
        _evidence_circuit(CategoricalLayer([4], 2, num_categories=3)), [[value]]
    )
    with pytest.raises(errors.InputError, match=rf"observation {value:g} .* accepts 0\.\.2"):
        compiled(_BATCH)


def test_evidence_out_of_range_in_one_fold_and_channel_of_a_folded_layer():
    # A folded evidence op over variables 0 and 2 (fold 1 is variable 2), two channels.
    op = ops.EvidenceOp(ops.CategoricalOp((0, 2), 2, 2, num_categories=3), semiring="lse-sum")
    layer = make_layer(op, get_semiring("lse-sum"), {})
    observation = torch.tensor([[1.0, 2.0], [0.0, 5.0]])  # (folds, channels)
    probs = torch.full((2, 2, 2, 3), 1 / 3)
    layer.prepare(observation.clamp(max=2.0), probs)
    with pytest.raises(
        errors.InputError,
        match=r"fold 1 \(a categorical over variable 2\): the observation 5 in channel 1",
    ):
        layer.prepare(observation, probs)


@pytest.mark.parametrize(
    ("observed", "bad", "accepted"),
    [
        (BinomialLayer([4], 2, total_count=3), 4.0, "binomial accepts 0..3"),
        (EmbeddingLayer([4], 2, num_states=5), 5.0, "embedding accepts 0..4"),
    ],
)
def test_evidence_out_of_range_for_other_discrete_layers(observed, bad, accepted):
    compiled = _with_observations(_evidence_circuit(observed), [[bad]])
    with pytest.raises(errors.InputError, match=re.escape(accepted)):
        compiled(_BATCH)


@pytest.mark.parametrize("semiring", ["sum-product", "lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize(("fold", "optimize"), [(False, False), (True, True)])
def test_evidence_out_of_range_in_every_semiring_and_flag(semiring, fold, optimize):
    circuit = _evidence_circuit(CategoricalLayer([4], 2, num_categories=3))
    options = {"semiring": semiring, "fold": fold, "optimize": optimize}
    compiled = _with_observations(circuit, [[3.0]], **options)
    with pytest.raises(errors.InputError, match="out of range"):
        compiled(_BATCH)
    with pytest.raises(errors.InputError, match="out of range"):
        compiled.eval()(_BATCH)  # the parameter cache prepares the layers too


def test_evidence_at_the_ends_of_the_range_is_accepted():
    observed = [CategoricalLayer([v], 2, num_categories=256) for v in (0, 1, 2)]
    compiled = _with_observations(_evidence_circuit(*observed), [[0.0], [255.0], [255.4]])
    assert torch.isfinite(compiled(_BATCH)).all()


def test_continuous_evidence_has_no_range():
    compiled = _with_observations(_evidence_circuit(GaussianLayer([4], 2)), [[-3.0]])
    out = compiled(_BATCH)
    assert out.shape == (2, 1, 2) and torch.isfinite(out).all()


def test_evidence_drawn_out_of_range():
    # The observation is drawn at compile time, so only the forward can see it.
    circuit = _evidence_circuit(
        CategoricalLayer([4], 2, num_categories=256), initializer=UniformInitializer(299.6, 300.4)
    )
    compiled = PipelineContext().compile(circuit, seed=0)
    with pytest.raises(errors.InputError, match=r"observation 30\d.*accepts 0\.\.255"):
        compiled(_BATCH)


@pytest.mark.parametrize(
    ("observed", "value", "accepted"),
    [
        (CategoricalLayer([4], 2, num_categories=256), 300.0, "0..255"),
        (CategoricalLayer([4], 2, num_categories=256), -1.0, "0..255"),
        (CategoricalLayer([4], 2, num_categories=256), float("inf"), "0..255"),
        (BinomialLayer([4], 2, total_count=3), 3.6, "0..3"),
        (EmbeddingLayer([4], 2, num_states=5), 5.0, "0..4"),
    ],
)
def test_constant_evidence_out_of_range_fails_when_built(observed, value, accepted):
    expected = (
        f"EvidenceLayer of a {type(observed).__name__} over variable 4: the observation is the"
        f" constant {value:g}, out of range; the layer accepts {accepted}."
    )
    with pytest.raises(errors.StructureError, match=re.escape(expected)):
        EvidenceLayer(observed, _observation(value))


def test_constant_evidence_in_range_is_built():
    observed = CategoricalLayer([4], 2, num_categories=256)
    for value in (0.0, 255.0, 255.4, -0.4):
        EvidenceLayer(observed, _observation(value))
    EvidenceLayer(GaussianLayer([4], 2), _observation(-300.0))


# ---------------------------------------------------------------------------------------------
# Negative sum weights and probabilities (trained or loaded into unconstrained parameters)


def _negated(circuit: Circuit, semiring: str, **flags: bool):
    """`circuit` compiled, every tensor loaded with minus its absolute value."""
    compiled = PipelineContext(semiring=semiring, **flags).compile(circuit, seed=0)
    state = {s: -v.abs() - 0.01 for s, v in compiled.symbolic_state().items()}
    compiled.load_symbolic_state(state)
    return compiled


def _unconstrained_weights(sum_product_layer: str) -> Circuit:
    options = {**IMAGE_OPTIONS, "sum_product_layer": sum_product_layer}
    return circuit_templates.image_data((1, 2, 2), **options, sum_weight_param="none")


_IMAGES = torch.arange(0, 240, 20).reshape(3, 1, 4)


@pytest.mark.parametrize("sum_product_layer", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize(("fold", "optimize"), [(False, False), (True, True)])
def test_negative_sum_weights(sum_product_layer, fold, optimize):
    circuit = _unconstrained_weights(sum_product_layer)
    compiled = _negated(circuit, "lse-sum", fold=fold, optimize=optimize)
    with pytest.raises(
        errors.InputError,
        match=r"(dense|mixing|tucker|cp|cp-t) layer %\d+ \(circuit\.layers\[\d+\]\), fold \d+:"
        r" weight\[[\d, ]+\] = -[\d.e-]+ is negative, but semiring 'lse-sum' needs"
        r" non-negative weights and probabilities.*softmax, exp, softplus, sigmoid or"
        r" positive-clamp.*"
        r"semiring='complex-lse-sum' \(or 'sum-product'\), which computes with signed",
    ):
        compiled(_IMAGES)


@pytest.mark.parametrize("semiring", ["sum-product", "complex-lse-sum"])
@pytest.mark.parametrize("sum_product_layer", ["tucker", "cp", "cp-t"])
def test_negative_sum_weights_compute_in_the_semirings_of_signed_values(
    semiring, sum_product_layer
):
    """Plain arithmetic and complex logs compute signed circuits (no check, no error)."""
    compiled = _negated(_unconstrained_weights(sum_product_layer), semiring)
    assert all(layer.checked_params == () for layer in compiled.layers)
    assert torch.isfinite(compiled(_IMAGES)).all()


def test_negative_probabilities():
    probs = Parameterization(initialization="uniform", activation="none")
    circuit = circuit_templates.image_data(
        (1, 2, 2), **IMAGE_OPTIONS, input_params={"probs": probs}
    )
    with pytest.raises(errors.InputError, match=r"categorical layer %\d+ .*: probs\[.*is negative"):
        _negated(circuit, "lse-sum")(_IMAGES)


@pytest.mark.parametrize("fold", [False, True])
def test_softmax_weights_are_not_checked(fold):
    """Circuits built like the seed's have softmax weights (and probs): provably
    non-negative, so no layer checks them and the forward pays nothing for the checks."""
    compiled = PipelineContext(fold=fold, optimize=fold).compile(seed_like(), seed=0)
    assert all(layer.checked_params == () for layer in compiled.layers)
    assert "prepare_checked" not in compiled.code
    assert torch.isfinite(
        _negated(seed_like(), "lse-sum", fold=fold)(_IMAGES.repeat(1, 1, 4))
    ).all()


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


def test_circuit_that_is_not_smooth_over_a_continuous_variable():
    # A mixture of a density over x0 and one over x0, x1: x1 is continuous, so no layer that is
    # 1 on every value of x1 can smooth it (a discrete x1 would be; tests/test_smoothing.py).
    a, b, c = (GaussianLayer([v], 2) for v in (0, 0, 1))
    had = HadamardLayer(2, 2)
    mix = MixingLayer(2, 2)
    out = DenseLayer(2, 1)
    circuit = Circuit([a, b, c, had, mix, out], {had: [b, c], mix: [a, had], out: [mix]}, [out])
    assert not circuit.is_smooth
    with pytest.raises(
        errors.PropertyError,
        match=r"not smooth: layer #4 \(MixingLayer\).*slot 0 lacks variable 1, which is continuous",
    ):
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
    with pytest.raises(
        errors.StructureError,
        match=r"layer #1 \(GaussianLayer\) reads 2 channel\(s\), but layer #0"
        r" \(CategoricalLayer\) reads 1: .* the same num_channels",
    ):
        Circuit([a, b, had], {had: [a, b]}, [had])


def test_evidence_may_observe_other_channels_than_the_data():
    # An evidence layer reads its observation, not the batch.
    evidence = EvidenceLayer(
        CategoricalLayer([0], 2, num_categories=2, num_channels=3), _observation(1.0, 3)
    )
    cat = CategoricalLayer([1], 2, num_categories=2)
    had = HadamardLayer(2, 2)
    circuit = Circuit([evidence, cat, had], {had: [evidence, cat]}, [had])
    assert circuit.num_channels == 1
    compiled = PipelineContext().compile(circuit, seed=0)
    assert compiled(torch.tensor([[0, 1]])).shape == (1, 1, 2)


def test_input_ops_with_different_channels_in_ir_text():
    # IR text skips the symbolic checks: the verifier (which codegen runs) names the two ops.
    units = "num_units=2, num_categories=3"
    graph = parse_ir(
        f"""
        %t0 = tensor() {{initializer=normal(), sources=[0]}} : 1x2x1x3
        %c0 = categorical() [probs=%t0] {{variables=[0], num_channels=1, {units}}} : 1x?x2
        %t1 = tensor() {{initializer=normal(), sources=[1]}} : 1x2x2x3
        %c1 = categorical() [probs=%t1] {{variables=[1], num_channels=2, {units}}} : 1x?x2
        %h = hadamard(%c0, %c1) {{units=2, num_inputs=2}} : 1x?x2
        return %h
        """
    )
    PassManager.parse("lower-semiring", verify=False).run(graph)
    with pytest.raises(
        errors.VerificationError,
        match=r"disagree on the number of channels: %\d+ \(categorical\) reads 2, %\d+"
        r" \(categorical\) reads 1; a batch has one number of channels",
    ):
        codegen(graph)


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
