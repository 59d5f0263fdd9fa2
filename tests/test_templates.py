"""Tests of the circuit templates (cirkit_ir.templates)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ir_cases import quad_tree_2x2

from cirkit_ir.errors import InputError, OptionError
from cirkit_ir.region_graph import quad_tree
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ClampParameter,
    ConstantInitializer,
    DenseLayer,
    DirichletInitializer,
    EmbeddingLayer,
    ExpParameter,
    GaussianLayer,
    InputLayer,
    LogSoftmaxParameter,
    MixingLayer,
    NormalInitializer,
    SigmoidParameter,
    SoftmaxParameter,
    SoftplusParameter,
    TensorParameter,
    UniformInitializer,
)
from cirkit_ir.templates import (
    Parameterization,
    build_parameter,
    circuit_from_region_graph,
    circuit_templates,
)


def small_image(**overrides):
    kwargs = dict(
        region_graph="quad-tree-2",
        input_layer="categorical",
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=3,
    )
    kwargs.update(overrides)
    shape = kwargs.pop("image_shape", (1, 2, 2))
    return circuit_templates.image_data(shape, **kwargs)


def tree(circuit: Circuit, layer=None):
    """A layer as a nested tuple: (kind, output units, inputs...) or (kind, variable, units)."""
    if layer is None:
        (layer,) = circuit.outputs
    if isinstance(layer, InputLayer):
        (variable,) = layer.scope
        return (layer.kind, variable, layer.num_output_units)
    children = tuple(tree(circuit, child) for child in circuit.layer_inputs(layer))
    return (layer.kind, layer.num_output_units, *children)


def wiring(circuit: Circuit) -> list[tuple]:
    """Each layer in list order: kind, output units, and the list indices of its inputs."""
    index = {layer: i for i, layer in enumerate(circuit.layers)}
    rows = []
    for layer in circuit.layers:
        if isinstance(layer, InputLayer):
            rows.append((layer.kind, layer.num_output_units, tuple(layer.scope)))
        else:
            inputs = tuple(index[c] for c in circuit.layer_inputs(layer))
            rows.append((layer.kind, layer.num_output_units, inputs))
    return rows


def assert_lists_allowed(error: pytest.ExceptionInfo, allowed) -> None:
    message = str(error.value)
    for value in allowed:
        assert repr(value) in message, (value, message)


# ---------------------------------------------------------------------------------------------
# The seed notebook's circuit


def test_seed_layer_counts(seed_circuit):
    assert len(seed_circuit.layers) == 4163
    assert seed_circuit.layer_counts() == {
        "categorical": 784,
        "kronecker": 1560,
        "dense": 1560,
        "mixing": 259,
    }
    one_unit = [
        layer
        for layer in seed_circuit.layers
        if isinstance(layer, DenseLayer) and layer.num_output_units == 1
    ]
    assert len(one_unit) == 2
    (root,) = seed_circuit.outputs
    assert isinstance(root, MixingLayer) and root.num_output_units == 1 and root.arity == 2
    assert list(seed_circuit.layer_inputs(root)) == one_unit


def test_seed_depth_and_kinds(seed_circuit):
    levels = seed_circuit.layerwise_topological_ordering()
    assert len(levels) == 26
    kinds = [sorted({layer.kind for layer in level}) for level in levels]
    block = [["kronecker"], ["dense"], ["kronecker"], ["dense"], ["mixing"]]
    assert kinds == [["categorical"]] + block * 5
    # Folds per depth, as libcirkit 0.3.1 folds the same circuit.
    assert [len(level) for level in levels] == [
        784, 784, 784, 392, 392, 196, 196, 196, 98, 98, 49, 42, 42, 22, 22, 9,
        12, 12, 8, 8, 4, 4, 4, 2, 2, 1,
    ]  # fmt: skip


def test_seed_properties_and_parameters(seed_circuit):
    assert seed_circuit.is_smooth and seed_circuit.is_decomposable
    assert len(seed_circuit.outputs) == 1 and seed_circuit.outputs[0].num_output_units == 1
    assert seed_circuit.scope.variables == frozenset(range(784))
    assert seed_circuit.num_channels == 1
    assert list(seed_circuit.topological_ordering()) == seed_circuit.layers
    for layer in seed_circuit.layers:
        if isinstance(layer, CategoricalLayer):
            assert layer.num_categories == 256 and layer.probs.shape == (4, 1, 256)
            assert isinstance(layer.probs, SoftmaxParameter)
        elif isinstance(layer, DenseLayer):
            assert layer.weight.shape == (layer.num_output_units, 16)
            assert isinstance(layer.weight, SoftmaxParameter)
            assert isinstance(layer.weight.x.initializer, NormalInitializer)
        elif isinstance(layer, MixingLayer):
            assert isinstance(layer.weight, SoftmaxParameter) and layer.weight.shape[1] == 2


def test_layer_order_is_deterministic():
    first = small_image(image_shape=(1, 5, 6), region_graph="quad-graph")
    second = small_image(image_shape=(1, 5, 6), region_graph="quad-graph")
    assert wiring(first) == wiring(second)
    third = small_image(image_shape=(1, 5, 6), region_graph="random-binary-tree", seed=3)
    fourth = small_image(image_shape=(1, 5, 6), region_graph="random-binary-tree", seed=3)
    assert wiring(third) == wiring(fourth)


# ---------------------------------------------------------------------------------------------
# Every option combination


@pytest.mark.parametrize("sum_product", circuit_templates.SUM_PRODUCT_LAYERS)
@pytest.mark.parametrize("input_layer", circuit_templates.IMAGE_INPUT_LAYERS)
@pytest.mark.parametrize("region_graph", circuit_templates.IMAGE_REGION_GRAPHS)
def test_every_image_combination_builds(region_graph, input_layer, sum_product):
    shape = (2, 4, 4)
    data = np.random.default_rng(0).integers(0, 256, size=(40, *shape))
    layer_class = {
        "categorical": CategoricalLayer,
        "binomial": BinomialLayer,
        "gaussian": GaussianLayer,
        "embedding": EmbeddingLayer,
    }[input_layer]
    for use_mixing_weights in (True, False):
        circuit = circuit_templates.image_data(
            shape,
            region_graph,
            input_layer=input_layer,
            num_input_units=3,
            sum_product_layer=sum_product,
            num_sum_units=4,
            num_classes=2,
            use_mixing_weights=use_mixing_weights,
            data=data if region_graph == "chow-liu-tree" else None,
        )
        assert circuit.is_smooth and circuit.is_decomposable
        assert circuit.scope.variables == frozenset(range(16))
        assert len(circuit.outputs) == 1 and circuit.outputs[0].num_output_units == 2
        inputs = circuit.inputs
        assert len(inputs) == 16
        assert all(type(layer) is layer_class and layer.num_channels == 2 for layer in inputs)
        assert all(layer.num_output_units == 3 for layer in inputs)
        assert list(circuit.topological_ordering()) == circuit.layers
        if not use_mixing_weights:
            for layer in circuit.layers:
                if isinstance(layer, MixingLayer):
                    assert all(isinstance(c, DenseLayer) for c in circuit.layer_inputs(layer))


def test_input_layer_sizes():
    sizes = {
        "categorical": ("num_categories", 256),
        "binomial": ("total_count", 255),
        "embedding": ("num_states", 256),
    }
    for name, (attribute, value) in sizes.items():
        circuit = small_image(input_layer=name)
        assert all(getattr(layer, attribute) == value for layer in circuit.inputs)
    gaussian = small_image(input_layer="gaussian", image_shape=(3, 2, 2))
    assert all(layer.mean.shape == (2, 3) for layer in gaussian.inputs)


def test_tiny_images():
    one_pixel = small_image(image_shape=(1, 1, 1), num_classes=2)
    assert wiring(one_pixel) == [("categorical", 2, (0,)), ("dense", 2, (0,))]
    one_row = small_image(image_shape=(1, 1, 3), region_graph="quad-graph")
    assert one_row.is_smooth and one_row.is_decomposable and len(one_row.scope) == 3


# ---------------------------------------------------------------------------------------------
# 2x2 images, worked out by hand. Pixel (i, j) is variable 2 * i + j; K_in = 2, K = 3.


def cat(variable):
    return ("categorical", variable, 2)


def test_quad_tree_2_tucker_by_hand():
    circuit = small_image(region_graph="quad-tree-2", sum_product_layer="tucker")
    top = ("dense", 3, ("kronecker", 4, cat(0), cat(1)))
    bottom = ("dense", 3, ("kronecker", 4, cat(2), cat(3)))
    assert tree(circuit) == ("dense", 1, ("kronecker", 9, top, bottom))
    assert wiring(circuit) == [
        ("categorical", 2, (0,)),
        ("categorical", 2, (1,)),
        ("categorical", 2, (2,)),
        ("categorical", 2, (3,)),
        ("kronecker", 4, (0, 1)),
        ("dense", 3, (4,)),
        ("kronecker", 4, (2, 3)),
        ("dense", 3, (6,)),
        ("kronecker", 9, (5, 7)),
        ("dense", 1, (8,)),
    ]
    dense_shapes = [layer.weight.shape for layer in circuit.layers if isinstance(layer, DenseLayer)]
    assert dense_shapes == [(3, 4), (3, 4), (1, 9)]


def test_quad_graph_tucker_by_hand():
    circuit = small_image(region_graph="quad-graph", sum_product_layer="tucker", num_classes=2)

    def tucker(a, b, units):
        return ("dense", units, ("kronecker", 4, a, b))

    top, bottom = tucker(cat(0), cat(1), 3), tucker(cat(2), cat(3), 3)
    left, right = tucker(cat(0), cat(2), 3), tucker(cat(1), cat(3), 3)
    assert tree(circuit) == (
        "mixing",
        2,
        ("dense", 2, ("kronecker", 9, top, bottom)),
        ("dense", 2, ("kronecker", 9, left, right)),
    )
    assert circuit.layer_counts() == {"categorical": 4, "kronecker": 6, "dense": 6, "mixing": 1}
    (root,) = circuit.outputs
    assert root.weight.shape == (2, 2)
    # Each pixel's input layer is shared by the two partitions that read it.
    assert len({id(layer) for layer in circuit.inputs}) == 4
    assert not circuit.is_structured_decomposable


def test_quad_graph_without_mixing_weights_by_hand():
    circuit = small_image(
        region_graph="quad-graph", sum_product_layer="cp-t", use_mixing_weights=False
    )

    def cpt(a, b, units):
        return ("dense", units, ("hadamard", 2, a, b))

    top, bottom = cpt(cat(0), cat(1), 3), cpt(cat(2), cat(3), 3)
    left, right = cpt(cat(0), cat(2), 3), cpt(cat(1), cat(3), 3)
    assert tree(circuit) == (
        "mixing",
        1,
        ("dense", 1, ("dense", 1, ("hadamard", 3, top, bottom))),
        ("dense", 1, ("dense", 1, ("hadamard", 3, left, right))),
    )


def test_quad_tree_2_cp_by_hand():
    circuit = small_image(region_graph="quad-tree-2", sum_product_layer="cp", num_classes=2)

    def cp(a, b):
        return ("hadamard", 3, ("dense", 3, a), ("dense", 3, b))

    top, bottom = cp(cat(0), cat(1)), cp(cat(2), cat(3))
    # At the root, the hadamard of num_sum_units is followed by a dense to num_classes.
    assert tree(circuit) == ("dense", 2, cp(top, bottom))
    assert circuit.layer_counts() == {"categorical": 4, "dense": 7, "hadamard": 3}
    dense_shapes = [layer.weight.shape for layer in circuit.layers if isinstance(layer, DenseLayer)]
    assert dense_shapes == [(3, 2)] * 4 + [(3, 3)] * 2 + [(2, 3)]


def test_quad_tree_2_cp_t_by_hand():
    circuit = small_image(region_graph="quad-tree-2", sum_product_layer="cp-t", num_classes=2)
    top = ("dense", 3, ("hadamard", 2, cat(0), cat(1)))
    bottom = ("dense", 3, ("hadamard", 2, cat(2), cat(3)))
    assert tree(circuit) == ("dense", 2, ("hadamard", 3, top, bottom))


def test_quad_tree_4_by_hand():
    tucker = small_image(region_graph="quad-tree-4", sum_product_layer="tucker")
    assert tree(tucker) == ("dense", 1, ("kronecker", 16, cat(0), cat(1), cat(2), cat(3)))
    assert tucker.outputs[0].weight.shape == (1, 16)
    cp = small_image(region_graph="quad-tree-4", sum_product_layer="cp")
    assert tree(cp) == (
        "dense",
        1,
        ("hadamard", 3, *(("dense", 3, cat(v)) for v in range(4))),
    )


def test_linear_tree_mixed_units_by_hand():
    # A partition that mixes a leaf (K_in = 2) and an inner region (K = 3) maps the leaf to K
    # with a dense layer before the product.
    circuit = small_image(region_graph="linear-tree", sum_product_layer="tucker")
    last = ("dense", 3, ("kronecker", 4, cat(2), cat(3)))
    middle = ("dense", 3, ("kronecker", 9, ("dense", 3, cat(1)), last))
    assert tree(circuit) == ("dense", 1, ("kronecker", 9, ("dense", 3, cat(0)), middle))
    same_units = small_image(region_graph="linear-tree", num_input_units=3)
    assert same_units.layer_counts() == {"categorical": 4, "kronecker": 3, "dense": 3}


def test_multichannel_pixels():
    circuit = small_image(image_shape=(3, 2, 2))
    assert all(layer.num_channels == 3 and len(layer.scope) == 1 for layer in circuit.inputs)
    assert all(layer.probs.shape == (2, 3, 256) for layer in circuit.inputs)
    assert circuit.num_variables == 4


def test_multivariate_leaves_are_factorized():
    circuit = small_image(image_shape=(1, 16, 16), region_graph="poon-domingos")
    hadamards = [
        layer
        for layer in circuit.layers
        if layer.kind == "hadamard"
        and all(isinstance(c, InputLayer) for c in circuit.layer_inputs(layer))
    ]
    assert hadamards and all(h.arity == 4 for h in hadamards)  # delta 2: 2x2 patches
    assert circuit.is_smooth and circuit.is_decomposable


def test_circuit_from_region_graph_directly():
    def factory(scope, num_units):
        return GaussianLayer(scope, num_units)

    circuit = circuit_from_region_graph(
        quad_tree((2, 2)),
        input_factory=factory,
        sum_product="cp-t",
        num_input_units=2,
        num_sum_units=2,
        num_classes=1,
    )
    assert circuit.layer_counts() == {"gaussian": 4, "hadamard": 3, "dense": 3}
    with pytest.raises(OptionError, match="variable"):
        circuit_from_region_graph(
            quad_tree((2, 2)),
            input_factory={0: factory},
            sum_product="cp",
            num_input_units=2,
            num_sum_units=2,
        )
    with pytest.raises(OptionError, match="RegionGraph"):
        circuit_from_region_graph(
            "quad-tree",
            input_factory=factory,
            sum_product="cp",
            num_input_units=2,
            num_sum_units=2,
        )


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"input_factory": lambda scope, units: None},
            r"the input factory of variable 0 returned None; it must return an input layer"
            r" over Scope\(\[0\]\)",
        ),
        (
            {"input_factory": lambda scope, units: GaussianLayer([7], units)},
            r"variable 0 returned GaussianLayer\(scope=Scope\(\{7\}\)",
        ),
        (
            {"sum_weight_factory": lambda shape: TensorParameter((1,))},
            r"sum_weight_factory\(2, 2\) returned shape \(1,\); it must return a parameter"
            r" graph \(a ParameterNode\) of the shape it is given, \(2, 2\)",
        ),
        (
            {"sum_weight_factory": lambda shape: torch.ones(shape)},
            r"sum_weight_factory\(2, 2\) returned a Tensor",
        ),
    ],
)
def test_circuit_from_region_graph_checks_what_factories_return(options, message):
    kwargs = dict(
        input_factory=lambda scope, units: GaussianLayer(scope, units),
        sum_product="cp-t",
        num_input_units=2,
        num_sum_units=2,
    )
    with pytest.raises(OptionError, match=message):
        circuit_from_region_graph(quad_tree((2, 2)), **{**kwargs, **options})


# ---------------------------------------------------------------------------------------------
# Parameterizations


def test_parameterization_defaults_and_build():
    """libcirkit's defaults: normal draws, no activation."""
    p = Parameterization()
    assert (p.initialization, p.activation, p.dtype) == ("normal", "none", "real")
    assert p.initialization_kwargs == {} and p.activation_kwargs == {}
    node = build_parameter(p, (3, 4))
    assert type(node) is TensorParameter and node.shape == (3, 4)
    assert node.initializer == NormalInitializer(mean=0.0, stddev=1.0)
    assert p == Parameterization() and hash(p) == hash(Parameterization())
    assert p.build((2,)).shape == (2,)
    softmax = build_parameter(Parameterization(activation="softmax"), (3, 4))
    assert isinstance(softmax, SoftmaxParameter) and softmax.axis == 1


def test_parameterizations_take_libcirkits_positional_order():
    p = Parameterization("uniform", "softplus", "real", {"a": 0.5, "b": 2.0}, {})
    assert p.build((2,)).x.initializer == UniformInitializer(a=0.5, b=2.0)
    assert "initialization_kwargs={'a': 0.5, 'b': 2.0}" in repr(p)


@pytest.mark.parametrize(
    ("activation", "node_type"),
    [
        ("softmax", SoftmaxParameter),
        ("log-softmax", LogSoftmaxParameter),
        ("positive-clamp", ClampParameter),
        ("exp", ExpParameter),
        ("sigmoid", SigmoidParameter),
        ("softplus", SoftplusParameter),
        ("none", TensorParameter),
    ],
)
def test_parameterization_activations(activation, node_type):
    node = build_parameter(Parameterization(activation=activation), (2, 5))
    assert type(node) is node_type and node.shape == (2, 5)


def test_parameterization_options():
    clamp = build_parameter(
        Parameterization("uniform", "positive-clamp", activation_kwargs={"vmin": 1e-3}), (2,)
    )
    assert clamp.vmin == 1e-3 and clamp.vmax is None
    assert clamp.x.initializer == UniformInitializer()
    normal = build_parameter(
        Parameterization(activation="softmax", initialization_kwargs={"stddev": 0.5, "mean": 1.0}),
        (2, 2),
    )
    assert normal.x.initializer == NormalInitializer(mean=1.0, stddev=0.5)
    dirichlet = build_parameter(
        Parameterization("dirichlet", "none", initialization_kwargs={"alpha": 2.0}), (2,)
    )
    assert dirichlet.initializer == DirichletInitializer(alpha=2.0)
    constant = build_parameter(
        Parameterization("constant", "exp", initialization_kwargs={"value": 0.0}), (2,)
    )
    assert constant.x.initializer == ConstantInitializer(0.0)
    complex_node = build_parameter(Parameterization(activation="none", dtype="complex"), (2,))
    assert complex_node.dtype == "complex"
    axis = build_parameter(
        Parameterization(activation="softmax", activation_kwargs={"axis": 0}), (2, 3)
    )
    assert axis.axis == 0


def test_parameterization_errors():
    with pytest.raises(OptionError) as error:
        Parameterization(initialization="xavier")
    assert_lists_allowed(error, ["normal", "uniform", "dirichlet", "constant"])
    with pytest.raises(OptionError) as error:
        Parameterization(activation="relu")
    assert_lists_allowed(
        error,
        ["softmax", "log-softmax", "positive-clamp", "exp", "sigmoid", "softplus", "none"],
    )
    with pytest.raises(OptionError) as error:
        Parameterization(dtype="integer")
    assert_lists_allowed(error, ["real", "complex"])
    with pytest.raises(OptionError) as error:
        Parameterization(initialization_kwargs={"std": 1.0})
    assert_lists_allowed(error, ["mean", "stddev"])
    with pytest.raises(OptionError, match="stddev"):
        Parameterization(initialization_kwargs={"stddev": -1.0})
    with pytest.raises(OptionError, match="takes no options"):
        Parameterization(activation="exp", activation_kwargs={"axis": 0})
    with pytest.raises(OptionError, match="axis"):
        build_parameter(
            Parameterization(activation="softmax", activation_kwargs={"axis": 3}), (2, 2)
        )
    with pytest.raises(OptionError, match="shape"):
        build_parameter(Parameterization(), (2, 0))


@pytest.mark.parametrize(
    "activation_kwargs, message",
    [
        ({"vmin": None}, "needs vmin or vmax \\(or both\\), got neither"),
        ({"vmin": float("nan")}, "vmin must be a number or None, got nan"),
        ({"vmin": "0"}, "vmin must be a number or None, got '0'"),
        ({"vmin": 1.0, "vmax": 0.5}, "needs vmin <= vmax, got vmin=1.0, vmax=0.5"),
    ],
)
def test_positive_clamp_bounds_fail_when_the_parameterization_is_made(activation_kwargs, message):
    with pytest.raises(OptionError, match="the 'positive-clamp' activation:? " + message):
        Parameterization("uniform", "positive-clamp", activation_kwargs=activation_kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mean": [1.0]}, "NormalInitializer.mean must be a finite number, got \\[1.0\\]"),
        ({"stddev": float("inf")}, "NormalInitializer.stddev must be a finite number > 0, got inf"),
    ],
)
def test_initializer_option_values_are_checked(kwargs, message):
    with pytest.raises(OptionError, match=message):
        Parameterization("normal", initialization_kwargs=kwargs)


def test_dirichlet_axis_must_fit_the_shape():
    p = Parameterization("dirichlet", "none", initialization_kwargs={"axis": 2})
    with pytest.raises(OptionError, match="DirichletInitializer: axis 2 out of range for shape"):
        build_parameter(p, (2, 2))


# ---------------------------------------------------------------------------------------------
# Template parameter options


def sum_weights(circuit):
    return [layer.weight for layer in circuit.layers if isinstance(layer, DenseLayer | MixingLayer)]


@pytest.mark.parametrize(
    ("name", "node_type", "initializer"),
    [
        ("softmax", SoftmaxParameter, NormalInitializer()),
        ("positive-clamp", ClampParameter, UniformInitializer()),
        ("exp", ExpParameter, NormalInitializer()),
        ("sigmoid", SigmoidParameter, NormalInitializer()),
        ("softplus", SoftplusParameter, NormalInitializer()),
        ("none", TensorParameter, UniformInitializer()),
    ],
)
def test_sum_weight_param_names(name, node_type, initializer):
    circuit = small_image(region_graph="quad-graph", sum_weight_param=name)
    weights = sum_weights(circuit)
    assert weights and all(type(w) is node_type for w in weights)
    leaves = [w if isinstance(w, TensorParameter) else w.x for w in weights]
    assert all(leaf.initializer == initializer for leaf in leaves)
    # Every layer has its own tensor.
    assert len({id(leaf) for leaf in leaves}) == len(leaves)


def test_sum_weight_param_object():
    param = Parameterization("dirichlet", "none")
    circuit = small_image(region_graph="quad-graph", sum_weight_param=param)
    assert all(
        isinstance(w, TensorParameter) and isinstance(w.initializer, DirichletInitializer)
        for w in sum_weights(circuit)
    )


def test_input_params():
    logits = small_image(input_params={"logits": Parameterization(activation="none")})
    for layer in logits.inputs:
        assert layer.probs is None and type(layer.logits) is TensorParameter
        assert layer.logits.shape == (2, 1, 256)
    gaussian = small_image(
        image_shape=(2, 2, 2),
        input_layer="gaussian",
        input_params={"stddev": Parameterization(activation="softplus")},
    )
    for layer in gaussian.inputs:
        assert isinstance(layer.stddev, SoftplusParameter) and layer.stddev.shape == (2, 2)
    embedding = small_image(
        input_layer="embedding", input_params={"weight": Parameterization(activation="exp")}
    )
    assert all(layer.weight.shape == (2, 1, 256) for layer in embedding.inputs)
    binomial = small_image(
        input_layer="binomial",
        input_params={"probs": Parameterization("uniform", "sigmoid")},
    )
    assert all(isinstance(layer.probs, SigmoidParameter) for layer in binomial.inputs)


# ---------------------------------------------------------------------------------------------
# Invalid options


@pytest.mark.parametrize(
    ("overrides", "allowed"),
    [
        ({"region_graph": "quad"}, circuit_templates.IMAGE_REGION_GRAPHS),
        ({"input_layer": "bernoulli"}, circuit_templates.IMAGE_INPUT_LAYERS),
        ({"sum_product_layer": "cpt"}, ("tucker", "cp", "cp-t")),
        ({"sum_weight_param": "relu"}, circuit_templates.SUM_WEIGHT_ACTIVATIONS),
        ({"sum_weight_param": 3}, circuit_templates.SUM_WEIGHT_ACTIVATIONS),
        ({"input_params": {"mean": Parameterization()}}, ("probs", "logits")),
        (
            {"input_layer": "gaussian", "input_params": {"probs": Parameterization()}},
            ("mean", "stddev"),
        ),
    ],
)
def test_invalid_image_names_list_allowed_values(overrides, allowed):
    with pytest.raises(OptionError) as error:
        small_image(**overrides)
    assert_lists_allowed(error, allowed)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"image_shape": (28, 28)}, "image_shape"),
        ({"image_shape": (1, 0, 2)}, "image_shape"),
        ({"image_shape": "1x2x2"}, "image_shape"),
        ({"num_input_units": 0}, "num_input_units"),
        ({"num_input_units": 2.5}, "num_input_units"),
        ({"num_sum_units": -1}, "num_sum_units"),
        ({"num_sum_units": True}, "num_sum_units"),
        ({"num_classes": 0}, "num_classes"),
        ({"use_mixing_weights": "yes"}, "use_mixing_weights"),
        ({"seed": -1}, "seed"),
        ({"region_graph": "chow-liu-tree"}, "data="),
        ({"region_graph": "chow-liu-tree", "data": np.zeros((4, 5))}, "data of shape"),
        ({"region_graph": "chow-liu-tree", "data": np.zeros((4, 4)), "num_bins": 1}, "num_bins"),
        ({"input_params": {"probs": "softmax"}}, "Parameterization"),
        (
            {"input_params": {"probs": Parameterization(), "logits": Parameterization()}},
            "not both",
        ),
        ({"input_params": ["probs"]}, "input_params"),
    ],
)
def test_invalid_image_values(overrides, match):
    with pytest.raises(OptionError, match=match):
        small_image(**overrides)


def test_chow_liu_image_data_forms():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(30, 1, 3, 3))
    shapes = [data, data.reshape(30, 1, 9), data.reshape(30, 3, 3), torch.from_numpy(data)]
    structures = {
        str(wiring(small_image(image_shape=(1, 3, 3), region_graph="chow-liu-tree", data=d)))
        for d in shapes
    }
    assert len(structures) == 1
    binned = small_image(image_shape=(1, 3, 3), region_graph="chow-liu-tree", data=data, num_bins=4)
    assert binned.is_smooth and binned.is_decomposable and len(binned.scope) == 9


# ---------------------------------------------------------------------------------------------
# Tables

MIXED_COLUMNS = [
    {"name": "categorical", "args": {"num_categories": 3}},
    {"name": "gaussian", "args": {}},
    {"name": "categorical", "args": {"num_categories": 5}},
    "gaussian",
    {"name": "gaussian"},
]


def mixed_table(num_rows=60, seed=0):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(num_rows, 5))
    table[:, 0] = rng.integers(0, 3, size=num_rows)
    table[:, 2] = rng.integers(0, 5, size=num_rows)
    return table


@pytest.mark.parametrize(
    ("region_graph", "sum_product"),
    list(itertools.product(circuit_templates.TABULAR_REGION_GRAPHS, ("tucker", "cp", "cp-t"))),
)
def test_tabular_mixed_columns(region_graph, sum_product):
    circuit = circuit_templates.tabular_data(
        region_graph,
        data=mixed_table() if region_graph == "chow-liu-tree" else None,
        input_layers=MIXED_COLUMNS,
        num_input_units=2,
        sum_product_layer=sum_product,
        num_sum_units=3,
        num_classes=2,
    )
    assert circuit.is_smooth and circuit.is_decomposable
    assert circuit.scope.variables == frozenset(range(5))
    assert circuit.outputs[0].num_output_units == 2
    by_variable = {}
    for layer in circuit.inputs:
        (variable,) = layer.scope
        by_variable.setdefault(variable, set()).add(type(layer))
        assert layer.num_channels == 1
        if variable == 0:
            assert layer.num_categories == 3
        if variable == 2:
            assert layer.num_categories == 5
    assert by_variable == {
        0: {CategoricalLayer},
        1: {GaussianLayer},
        2: {CategoricalLayer},
        3: {GaussianLayer},
        4: {GaussianLayer},
    }


def test_tabular_one_spec_for_all_columns():
    data = np.random.default_rng(2).integers(0, 4, size=(50, 6))
    circuit = circuit_templates.tabular_data(
        "chow-liu-tree",
        data=torch.from_numpy(data),
        input_layers={"name": "categorical"},  # num_categories inferred from the data
        num_input_units=2,
        sum_product_layer="tucker",
        num_sum_units=2,
    )
    assert all(layer.num_categories == 4 for layer in circuit.inputs)
    assert len(circuit.scope) == 6
    gaussian = circuit_templates.tabular_data(
        num_features=7,
        input_layers="gaussian",
        num_input_units=2,
        sum_product_layer="cp",
        num_sum_units=2,
        sum_weight_param=Parameterization("uniform", "positive-clamp"),
    )
    assert gaussian.layer_counts()["gaussian"] == 7
    params = circuit_templates.tabular_data(
        "fully-factorized",
        num_features=2,
        input_layers={
            "name": "categorical",
            "args": {"num_categories": 2, "logits": Parameterization(activation="none")},
        },
        num_input_units=2,
        sum_product_layer="cp-t",
        num_sum_units=2,
    )
    assert all(type(layer.logits) is TensorParameter for layer in params.inputs)


def test_tabular_errors():
    base = dict(
        input_layers=MIXED_COLUMNS, num_input_units=2, sum_product_layer="cp", num_sum_units=2
    )
    with pytest.raises(OptionError) as error:
        circuit_templates.tabular_data("quad-graph", **base)
    assert_lists_allowed(error, circuit_templates.TABULAR_REGION_GRAPHS)
    with pytest.raises(OptionError) as error:
        circuit_templates.tabular_data(
            num_features=2,
            input_layers=["gaussian", "poisson"],
            num_input_units=2,
            sum_product_layer="cp",
            num_sum_units=2,
        )
    assert_lists_allowed(error, circuit_templates.TABULAR_INPUT_LAYERS)
    with pytest.raises(OptionError) as error:
        circuit_templates.tabular_data(
            num_features=2,
            input_layers={"name": "categorical", "args": {"categories": 2}},
            num_input_units=2,
            sum_product_layer="cp",
            num_sum_units=2,
        )
    assert_lists_allowed(error, ["num_categories", "probs", "logits"])
    with pytest.raises(OptionError, match="disagrees"):
        circuit_templates.tabular_data(num_features=4, **base)
    with pytest.raises(OptionError, match="data="):
        circuit_templates.tabular_data("chow-liu-tree", **base)
    with pytest.raises(OptionError, match="num_categories"):
        circuit_templates.tabular_data(
            num_features=2,
            input_layers="categorical",
            num_input_units=2,
            sum_product_layer="cp",
            num_sum_units=2,
        )
    with pytest.raises(OptionError, match="number of columns"):
        circuit_templates.tabular_data(
            input_layers="gaussian", num_input_units=2, sum_product_layer="cp", num_sum_units=2
        )
    with pytest.raises(OptionError) as error:
        circuit_templates.tabular_data(num_features=2, **{**base, "sum_product_layer": "x"})
    assert_lists_allowed(error, ("tucker", "cp", "cp-t"))
    with pytest.raises(OptionError, match="num_sum_units"):
        circuit_templates.tabular_data(**{**base, "num_sum_units": 0})


@pytest.mark.parametrize("bad", [float("nan"), -1.0, 1.5])
@pytest.mark.parametrize(
    "region_graph, input_layers",
    [
        # Data infers the number of categories (or the total count) ...
        ("random-binary-tree", "categorical"),
        ("random-binary-tree", "binomial"),
        ("chow-liu-tree", "binomial"),
        # ... or learns the tree, even when the categories are given.
        ("chow-liu-tree", {"name": "categorical", "args": {"num_categories": 3}}),
    ],
)
def test_tabular_discrete_data_must_hold_counts(bad, region_graph, input_layers):
    data = torch.tensor([[0.0, 1.0], [bad, 2.0], [1.0, 0.0]])
    with pytest.raises(InputError, match=rf"must hold whole numbers 0, 1, 2, \.\.\. .*got {bad!r}"):
        circuit_templates.tabular_data(
            region_graph,
            data=data,
            input_layers=input_layers,
            num_input_units=2,
            sum_product_layer="cp",
            num_sum_units=2,
        )


def test_image_chow_liu_data_must_be_finite():
    data = torch.zeros(4, 1, 2, 2)
    data[1, 0, 0, 1] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite pixel values"):
        small_image(region_graph="chow-liu-tree", data=data, num_bins=4)


def test_parameterization_is_immutable_and_picklable():
    import pickle

    p = Parameterization("normal", "softmax", initialization_kwargs={"stddev": 2.0})
    with pytest.raises(TypeError):
        p.initialization_kwargs["stddev"] = 3.0  # type: ignore[index]
    copy = pickle.loads(pickle.dumps(p))
    assert copy == p and hash(copy) == hash(p)
    assert p != Parameterization("normal", "softmax", initialization_kwargs={"stddev": 3.0})


@pytest.mark.parametrize("sum_product", ["tucker", "cp", "cp-t"])
@pytest.mark.parametrize("use_mixing_weights", [True, False])
def test_softmax_circuits_are_normalized(sum_product, use_mixing_weights):
    from cirkit_ir.reference import evaluate
    from cirkit_ir.region_graph import linear_tree, quad_graph

    def factory(scope, num_units):
        return CategoricalLayer(scope, num_units, num_categories=3)

    every_state = torch.tensor(list(itertools.product(range(3), repeat=4)))
    for region_graph in (quad_graph((2, 2)), linear_tree(4)):
        circuit = circuit_from_region_graph(
            region_graph,
            input_factory=factory,
            sum_product=sum_product,
            num_input_units=2,
            num_sum_units=3,
            num_classes=2,
            use_mixing_weights=use_mixing_weights,
        )
        log_z = torch.logsumexp(evaluate(circuit, every_state), dim=0)
        torch.testing.assert_close(log_z, torch.zeros_like(log_z), atol=1e-9, rtol=0)


def test_symbolic_circuits_draw_as_graphviz(tmp_path) -> None:
    from cirkit_ir.graphviz import render
    from cirkit_ir.symbolic import to_dot

    circuit = quad_tree_2x2()
    text = to_dot(circuit)
    assert text.count("shape=box") == 4 and text.count("shape=circle") == 3
    assert text.count("shape=invtriangle") == 3 and text.count("->") == 2 * 3 + 3
    assert text.count("peripheries=2") == 1
    assert render(text, tmp_path / "c.dot").read_text(encoding="utf-8") == text
