"""Symbolic circuits: scopes, parameter graphs, layers and the circuit's checks and properties."""

from __future__ import annotations

import pytest
import torch

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ClampParameter,
    ConstantInitializer,
    ConstantLayer,
    ConstantTensorInitializer,
    DenseLayer,
    DirichletInitializer,
    EmbeddingLayer,
    EvidenceLayer,
    GaussianLayer,
    HadamardLayer,
    KroneckerLayer,
    KroneckerParameter,
    MatMulParameter,
    MixingLayer,
    MixingWeightParameter,
    NormalInitializer,
    ReduceParameter,
    ScaledSigmoidParameter,
    Scope,
    SigmoidParameter,
    SoftmaxParameter,
    SumLayer,
    TensorParameter,
    UniformInitializer,
)


def categorical(variable: int, units: int = 2) -> CategoricalLayer:
    return CategoricalLayer([variable], units, num_categories=3)


# -- scopes -------------------------------------------------------------------------------------


def test_scopes_are_sorted_immutable_sets() -> None:
    a, b = Scope([3, 1]), Scope([2])
    assert list(a | b) == [1, 2, 3] and len(a | b) == 3
    assert a.isdisjoint(b) and not a.isdisjoint(Scope([1]))
    assert Scope([1]).issubset(a) and 3 in a and 2 not in a
    assert Scope([1, 3]) == a and hash(Scope([1, 3])) == hash(a)
    assert Scope.union(a, b, Scope([0])) == Scope(range(4))
    assert repr(a) == "Scope({1, 3})"
    with pytest.raises(StructureError, match="non-negative"):
        Scope([-1])
    for bad in ("01", None, 3, ["a"]):
        with pytest.raises(StructureError, match="a scope is a collection of variable ids"):
            Scope(bad)


# -- parameters ---------------------------------------------------------------------------------


def test_parameter_graphs_infer_their_shapes() -> None:
    w = TensorParameter((4, 3))
    assert SoftmaxParameter(w).shape == (4, 3) and SoftmaxParameter(w, axis=-2).axis == 0
    assert ReduceParameter(w, axis=0).shape == (3,)
    assert MixingWeightParameter(TensorParameter((4, 2))).shape == (4, 8)
    assert KroneckerParameter(w, TensorParameter((2, 5))).shape == (8, 15)
    assert MatMulParameter(w, TensorParameter((3, 7))).shape == (4, 7)
    shared = SoftmaxParameter(w)
    assert MatMulParameter(shared, TensorParameter((3, 3))).nodes()[0] is w


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: TensorParameter((4, 0)), OptionError, "positive dimensions, got \\(4, 0\\)"),
        (lambda: TensorParameter(4), OptionError, "a tuple of positive ints, got 4"),
        (lambda: TensorParameter((2.5,)), OptionError, "a tuple of positive ints"),
        (
            lambda: TensorParameter((2,), "normal"),
            OptionError,
            "TensorParameter.initializer must be an Initializer, got a str 'normal'",
        ),
        (
            lambda: TensorParameter((2, 3), DirichletInitializer(axis=2)),
            OptionError,
            "DirichletInitializer: axis 2 out of range for shape \\(2, 3\\)",
        ),
        (
            lambda: SoftmaxParameter(TensorParameter((4,)), axis=1),
            OptionError,
            "SoftmaxParameter: axis 1 out of range for shape \\(4,\\); give an int in -1..0",
        ),
        (
            lambda: ReduceParameter(TensorParameter((4,)), axis="last"),
            OptionError,
            "axis 'last' out of range",
        ),
        (
            lambda: ReduceParameter(TensorParameter((4,)), kind="max"),
            OptionError,
            "unknown ReduceParameter.kind 'max'; expected one of: 'sum', 'prod', 'lse'",
        ),
        (
            lambda: MatMulParameter(TensorParameter((2, 3)), TensorParameter((2, 3))),
            StructureError,
            "MatMulParameter cannot multiply shapes \\(2, 3\\) and \\(2, 3\\)",
        ),
        (
            lambda: KroneckerParameter(TensorParameter((2,)), TensorParameter((2, 2))),
            StructureError,
            "needs two matrices",
        ),
        (
            lambda: MixingWeightParameter(TensorParameter((2,))),
            StructureError,
            "a matrix; got an input of shape \\(2,\\)",
        ),
        (
            lambda: SoftmaxParameter([1.0, 2.0]),
            OptionError,
            "SoftmaxParameter.x must be a ParameterNode, got a list",
        ),
        (
            lambda: MatMulParameter(TensorParameter((2, 3)), 3),
            OptionError,
            "MatMulParameter.b must be a ParameterNode, got an int 3",
        ),
        (
            lambda: ClampParameter(TensorParameter((2,)), vmin=1.0, vmax=0.0),
            OptionError,
            "ClampParameter needs vmin <= vmax, got vmin=1.0, vmax=0.0",
        ),
        (
            lambda: ClampParameter(TensorParameter((2,)), vmin=None, vmax=None),
            OptionError,
            "ClampParameter needs vmin or vmax",
        ),
        (
            lambda: ClampParameter(TensorParameter((2,)), vmin=float("nan")),
            OptionError,
            "ClampParameter: vmin must be a number or None, got nan",
        ),
        (
            lambda: ClampParameter(TensorParameter((2,)), vmin=0.0, vmax="1"),
            OptionError,
            "vmax must be a number or None, got '1'",
        ),
        (
            lambda: ScaledSigmoidParameter(TensorParameter((2,)), vmax=float("inf")),
            OptionError,
            "ScaledSigmoidParameter.vmax must be a finite number, got inf",
        ),
        (
            lambda: TensorParameter((2,), tensor_dtype="int"),
            OptionError,
            "unknown TensorParameter.tensor_dtype 'int'; expected one of: 'real', 'complex'",
        ),
    ],
)
def test_bad_parameters_are_rejected(build, error, message) -> None:
    with pytest.raises(error, match=message):
        build()


def test_clamps_with_one_bound_are_built() -> None:
    x = TensorParameter((2,))
    assert ClampParameter(x, vmin=None, vmax=1.0).vmax == 1.0
    assert ClampParameter(x, vmin=0.0, vmax=0.0).vmin == 0.0
    assert ClampParameter(x, vmin=-float("inf")).vmax is None


def test_initializers_draw_what_they_say() -> None:
    g = torch.Generator().manual_seed(0)
    assert torch.equal(ConstantInitializer(2.5).sample((3,), torch.float64), torch.full((3,), 2.5))
    uniform = UniformInitializer(-1.0, 1.0).sample((1000,), torch.float64, g)
    assert -1.0 <= uniform.min() and uniform.max() < 1.0
    normal = NormalInitializer(5.0, 0.1).sample((4000,), torch.float64, g)
    assert abs(normal.mean().item() - 5.0) < 0.02 and abs(normal.std().item() - 0.1) < 0.01
    for alpha in (1.0, 0.5):
        rows = DirichletInitializer(alpha).sample((50, 6), torch.float64, g)
        torch.testing.assert_close(rows.sum(-1), torch.ones(50, dtype=torch.float64))
        assert (rows >= 0).all()
    with pytest.raises(OptionError, match="a < b"):
        UniformInitializer(1.0, 1.0)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: NormalInitializer(stddev=0.0),
            "NormalInitializer.stddev must be a finite number > 0",
        ),
        (lambda: NormalInitializer(mean=float("nan")), "NormalInitializer.mean must be a finite"),
        (lambda: UniformInitializer("0", 1.0), "UniformInitializer.a must be a finite number"),
        (lambda: DirichletInitializer(alpha=-1.0), "DirichletInitializer.alpha must be a finite"),
        (lambda: DirichletInitializer(axis=0.5), "DirichletInitializer.axis must be an int"),
        (lambda: ConstantInitializer(float("nan")), "ConstantInitializer.value must be a number"),
    ],
)
def test_bad_initializers_are_rejected(build, message) -> None:
    with pytest.raises(OptionError, match=message):
        build()


# -- layers -------------------------------------------------------------------------------------


def test_layers_know_their_units_and_parameters() -> None:
    layer = categorical(0, units=4)
    assert (layer.num_input_units, layer.num_output_units, layer.arity) == (1, 4, 1)
    assert layer.params["probs"].shape == (4, 1, 3)
    assert KroneckerLayer(3, 2).num_output_units == 9
    assert HadamardLayer(3, 4).num_output_units == 3
    assert DenseLayer(9, 2).params["weight"].shape == (2, 9)
    assert MixingLayer(3, 2).params["weight"].shape == (3, 2)
    gaussian = GaussianLayer([0], 2, num_channels=3)
    assert set(gaussian.params) == {"mean", "stddev"} and gaussian.num_input_units == 3


@pytest.mark.parametrize(
    "build, error, message",
    [
        (
            lambda: DenseLayer(4, 2, weight=TensorParameter((4, 2))),
            StructureError,
            "DenseLayer: parameter 'weight' has shape \\(4, 2\\), expected \\(2, 4\\)",
        ),
        (
            lambda: CategoricalLayer([0, 1], 2, num_categories=3),
            StructureError,
            "univariate",
        ),
        (
            lambda: CategoricalLayer([0], 0, num_categories=3),
            OptionError,
            "CategoricalLayer.num_output_units must be a positive int, got 0",
        ),
        (
            lambda: DenseLayer(4.0, 2),
            OptionError,
            "DenseLayer.num_input_units must be a positive int, got 4.0",
        ),
        (
            lambda: CategoricalLayer(
                [0],
                2,
                num_categories=3,
                probs=TensorParameter((2, 1, 3)),
                logits=TensorParameter((2, 1, 3)),
            ),
            OptionError,
            "CategoricalLayer takes probs or logits, not both",
        ),
        (
            lambda: GaussianLayer([0], 2, stddev=1.0),
            OptionError,
            "GaussianLayer.stddev must be a ParameterNode, got a float 1.0",
        ),
        (
            lambda: ConstantLayer(TensorParameter((2, 2))),
            StructureError,
            "ConstantLayer needs a vector value",
        ),
        (
            lambda: EvidenceLayer(DenseLayer(2, 2), TensorParameter((1,))),
            OptionError,
            "EvidenceLayer.layer must be an InputLayer, got a DenseLayer",
        ),
    ],
)
def test_bad_layers_are_rejected(build, error, message) -> None:
    with pytest.raises(error, match=message):
        build()


def test_default_parameters_are_libcirkits() -> None:
    """Each layer's default parameter graph is the one libcirkit 0.3.1 builds."""
    gaussian = GaussianLayer([0], 2)
    assert type(gaussian.mean) is TensorParameter
    assert isinstance(gaussian.stddev, ScaledSigmoidParameter)
    assert (gaussian.stddev.vmin, gaussian.stddev.vmax) == (1e-5, 1.0)
    binomial = BinomialLayer([0], 2)
    assert binomial.total_count == 2 and set(binomial.params) == {"probs"}
    assert isinstance(binomial.probs, SigmoidParameter)
    embedding = EmbeddingLayer([0], 2)
    assert embedding.num_states == 2 and type(embedding.weight) is TensorParameter
    assert embedding.weight.initializer == NormalInitializer()
    assert isinstance(categorical(0).probs, SoftmaxParameter)
    assert type(SumLayer(2, 3).weight) is TensorParameter  # no activation
    assert isinstance(DenseLayer(2, 3).weight, SoftmaxParameter)  # ours: rows sum to one


def test_parameter_factories_build_missing_parameters() -> None:
    shapes = []

    def factory(shape):
        shapes.append(shape)
        return SigmoidParameter(TensorParameter(shape))

    layers = [
        CategoricalLayer([0], 2, num_categories=3, logits_factory=factory),
        CategoricalLayer([0], 2, num_categories=3, probs_factory=factory),
        BinomialLayer([0], 2, total_count=4, probs_factory=factory),
        GaussianLayer([0], 2, num_channels=3, mean_factory=factory, stddev_factory=factory),
        EmbeddingLayer([0], 2, num_states=5, weight_factory=factory),
        SumLayer(2, 3, 2, weight_factory=factory),
        DenseLayer(2, 3, weight_factory=factory),
        MixingLayer(2, 4, weight_factory=factory),
    ]
    assert shapes == [
        (2, 1, 3),
        (2, 1, 3),
        (2, 1),
        (2, 3),
        (2, 3),
        (2, 1, 5),
        (3, 4),  # a SumLayer's weight spans its concatenated inputs
        (3, 2),
        (2, 4),
    ]
    assert set(layers[0].params) == {"logits"} and set(layers[1].params) == {"probs"}
    given = TensorParameter((2, 1, 3))
    assert CategoricalLayer([0], 2, num_categories=3, probs=given, probs_factory=factory).probs is (
        given
    )
    with pytest.raises(OptionError, match="takes probs_factory or logits_factory, not both"):
        CategoricalLayer([0], 2, num_categories=3, probs_factory=factory, logits_factory=factory)
    with pytest.raises(OptionError, match="weight_factory must be a callable"):
        EmbeddingLayer([0], 2, weight_factory="normal")
    with pytest.raises(OptionError, match=r"mean_factory\(2, 1\) returned a str"):
        GaussianLayer([0], 2, mean_factory=lambda shape: "mean")


def test_constant_tensor_initializer() -> None:
    init = ConstantTensorInitializer([[0.0, 1.0]])
    assert init.value == "[[0.0, 1.0]]" and init.array.shape == (1, 2)
    assert init == ConstantTensorInitializer(init.value)  # the JSON text the IR parser gives
    values = init.sample((3, 1, 2), torch.float32)
    assert values.shape == (3, 1, 2) and values[2, 0].tolist() == [0.0, 1.0]
    assert ConstantTensorInitializer(2.5).sample((2,), torch.float64).tolist() == [2.5, 2.5]
    with pytest.raises(StructureError, match=r"values of shape \(1, 2\), which do not broadcast"):
        TensorParameter((2, 3), init)
    with pytest.raises(OptionError, match="must not be NaN"):
        ConstantTensorInitializer([float("nan")])
    with pytest.raises(OptionError, match="takes a real number or an array"):
        ConstantTensorInitializer([[1.0], [1.0, 2.0]])


def test_circuits_answer_libcirkits_graph_questions() -> None:
    circuit, (a, b, c, k1, d1, k2, d2) = tucker_pair()
    assert circuit.nodes == circuit.layers == [a, b, c, k1, d1, k2, d2]
    assert circuit.nodes_inputs == circuit.layers_inputs and circuit.layers_inputs[k2] == (d1, c)
    assert circuit.nodes_outputs[d1] == [k2] and circuit.node_outputs(d1) == [k2]
    assert circuit.node_inputs(k1) == (a, b)
    assert circuit.input_layers == [a, b, c]
    assert circuit.sum_layers == [d1, d2] and circuit.product_layers == [k1, k2]
    assert circuit.inner_layers == [k1, d1, k2, d2]


# -- circuits -----------------------------------------------------------------------------------


def tucker_pair() -> tuple[Circuit, list]:
    a, b, c = categorical(0), categorical(1), categorical(2)
    k1, d1 = KroneckerLayer(2, 2), DenseLayer(4, 2)
    k2, d2 = KroneckerLayer(2, 2), DenseLayer(4, 1)
    layers = [a, b, c, k1, d1, k2, d2]
    wiring = {k1: [a, b], d1: [k1], k2: [d1, c], d2: [k2]}
    return Circuit(layers, wiring, [d2]), layers


def test_circuit_structure_orderings_and_scopes() -> None:
    circuit, (a, b, c, k1, d1, k2, d2) = tucker_pair()
    assert list(circuit.topological_ordering()) == [a, b, c, k1, d1, k2, d2]
    assert circuit.layerwise_topological_ordering() == [[a, b, c], [k1], [d1], [k2], [d2]]
    assert circuit.layer_scope(d1) == Scope([0, 1]) and circuit.scope == Scope([0, 1, 2])
    assert circuit.layer_outputs(d1) == [k2] and circuit.layer_inputs(k2) == (d1, c)
    assert circuit.inputs == [a, b, c] and circuit.num_variables == 3
    assert circuit.layer_counts() == {"categorical": 3, "kronecker": 2, "dense": 2}
    assert circuit.is_smooth and circuit.is_decomposable and circuit.is_structured_decomposable
    assert [id(t) for t in circuit.tensor_parameters()][:1] == [id(a.params["probs"].x)]
    assert len(circuit.tensor_parameters()) == 5  # 3 categorical tables, 2 dense weights


@pytest.mark.parametrize(
    "wiring, message",
    [
        ("units", "layer #3 \\(DenseLayer\\) expects 9 units on input 0"),
        ("arity", "layer #2 \\(KroneckerLayer\\) has arity 2 but 1 input"),
        ("missing", "reads a layer that is not in the circuit"),
        ("cycle", "cycle through layer #"),
        ("no output", "at least one output"),
    ],
)
def test_bad_wiring_names_the_layer(wiring, message) -> None:
    a, b = categorical(0), categorical(1)
    k = KroneckerLayer(2, 2)
    d = DenseLayer(4, 1)
    layers, edges, outputs = [a, b, k, d], {k: [a, b], d: [k]}, [d]
    if wiring == "units":
        layers[3] = d = DenseLayer(9, 1)
        edges = {k: [a, b], d: [k]}
        outputs = [d]
    elif wiring == "arity":
        edges = {k: [a], d: [k]}
    elif wiring == "missing":
        edges = {k: [a, categorical(5)], d: [k]}
    elif wiring == "cycle":
        h = HadamardLayer(2, 2)
        d2 = DenseLayer(2, 2)
        layers, edges = [a, h, d2], {h: [a, d2], d2: [h]}
        outputs = [d2]
    elif wiring == "no output":
        outputs = []
    with pytest.raises(StructureError, match=message):
        Circuit(layers, edges, outputs)


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda a, d: Circuit([a, d], {d: [a]}, d), OptionError, "outputs must be a list"),
        (lambda a, d: Circuit([a, 3], {}, [a]), OptionError, "layers\\[1\\] is an int"),
        (lambda a, d: Circuit([a, d], [(d, [a])], [d]), OptionError, "in_layers must map"),
        (lambda a, d: Circuit([a, d], {d: a}, [d]), OptionError, "in_layers\\[layer #1"),
        (
            lambda a, d: Circuit([a], {d: [a]}, [a]),
            StructureError,
            "in_layers gives the inputs of a DenseLayer that is not in the layer list",
        ),
        (
            lambda a, d: Circuit([a, d], {d: [a]}, [d]).layer_inputs(DenseLayer(2, 2)),
            StructureError,
            "is not a layer of this circuit",
        ),
        (
            lambda a, d: Circuit([a, d], {d: [a]}, [d]).layer_scope(a.params["probs"]),
            StructureError,
            "is not a layer of this circuit",
        ),
    ],
)
def test_bad_circuit_arguments_are_named(build, error, message) -> None:
    a = categorical(0)
    with pytest.raises(error, match=message):
        build(a, DenseLayer(2, 1))


def test_properties_detect_violations() -> None:
    a, a2, b = categorical(0), categorical(0), categorical(1)
    overlapping = HadamardLayer(2, 2)
    mixed = MixingLayer(2, 2)
    circuit = Circuit(
        [a, a2, b, overlapping, mixed], {overlapping: [a, a2], mixed: [a, b]}, [mixed]
    )
    assert not circuit.is_decomposable and circuit.decomposability_violation() is overlapping
    assert not circuit.is_smooth and circuit.smoothness_violation() is mixed
    # Two splits of one scope: decomposable, but not structured-decomposable.
    x, y, z = categorical(0), categorical(1), categorical(2)
    p1, p2 = KroneckerLayer(2, 2), KroneckerLayer(2, 2)
    q1, q2 = KroneckerLayer(4, 2), KroneckerLayer(4, 2)
    dz, dx = DenseLayer(2, 4), DenseLayer(2, 4)
    root = MixingLayer(16, 2)
    circuit = Circuit(
        [x, y, z, p1, p2, dz, dx, q1, q2, root],
        {p1: [x, y], p2: [y, z], dz: [z], dx: [x], q1: [p1, dz], q2: [dx, p2], root: [q1, q2]},
        [root],
    )
    assert circuit.is_decomposable and circuit.is_smooth
    assert not circuit.is_structured_decomposable
