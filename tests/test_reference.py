"""The reference evaluator against values computed by hand on tiny circuits."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cirkit_ir import reference
from cirkit_ir.errors import InputError, OptionError, StructureError
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    ClampParameter,
    ConstantInitializer,
    ConstantLayer,
    DenseLayer,
    EmbeddingLayer,
    EvidenceLayer,
    ExpParameter,
    GaussianLayer,
    HadamardLayer,
    KroneckerLayer,
    KroneckerParameter,
    LogParameter,
    LogSoftmaxParameter,
    MatMulParameter,
    MixingLayer,
    MixingWeightParameter,
    ReduceParameter,
    ScaledSigmoidParameter,
    SigmoidParameter,
    SoftmaxParameter,
    SoftplusParameter,
    TensorParameter,
)

# ---------------------------------------------------------------------------------------------
# A 2-variable circuit, by hand
#
#   c0 = Categorical(x0): 2 units over 3 categories      c1 = Categorical(x1): 2 units
#   kron = c0 (x) c1: 4 units, unit 2*i + j = c0[i] * c1[j]
#   had  = c0 * c1: 2 units
#   d1   = W1 @ kron: 2 units          d2 = W2 @ had: 2 units
#   mix  = per unit: m[k] = v[k, 0] d1[k] + v[k, 1] d2[k]
#   out  = U @ mix: 1 unit

P0 = [[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]]
P1 = [[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]]
W1 = [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]
W2 = [[0.5, 0.5], [0.9, 0.1]]
V = [[0.3, 0.7], [0.6, 0.4]]
U = [[0.25, 0.75]]


def _by_hand(x0: int, x1: int) -> float:
    c0 = [P0[k][x0] for k in range(2)]
    c1 = [P1[k][x1] for k in range(2)]
    kron = [c0[i] * c1[j] for i in range(2) for j in range(2)]
    had = [c0[k] * c1[k] for k in range(2)]
    d1 = [sum(W1[k][j] * kron[j] for j in range(4)) for k in range(2)]
    d2 = [sum(W2[k][j] * had[j] for j in range(2)) for k in range(2)]
    mix = [V[k][0] * d1[k] + V[k][1] * d2[k] for k in range(2)]
    return sum(U[0][k] * mix[k] for k in range(2))


def _two_variable_circuit():
    leaves = {
        "p0": TensorParameter((2, 1, 3)),
        "p1": TensorParameter((2, 1, 3)),
        "w1": TensorParameter((2, 4)),
        "w2": TensorParameter((2, 2)),
        "v": TensorParameter((2, 2)),
        "u": TensorParameter((1, 2)),
    }
    c0 = CategoricalLayer([0], 2, num_categories=3, probs=leaves["p0"])
    c1 = CategoricalLayer([1], 2, num_categories=3, probs=leaves["p1"])
    kron = KroneckerLayer(2, 2)
    had = HadamardLayer(2, 2)
    d1 = DenseLayer(4, 2, weight=leaves["w1"])
    d2 = DenseLayer(2, 2, weight=leaves["w2"])
    mix = MixingLayer(2, 2, weight=leaves["v"])
    out = DenseLayer(2, 1, weight=leaves["u"])
    layers = [c0, c1, kron, had, d1, d2, mix, out]
    wiring = {
        kron: [c0, c1],
        had: [c0, c1],
        d1: [kron],
        d2: [had],
        mix: [d1, d2],
        out: [mix],
    }
    circuit = Circuit(layers, wiring, [out])
    sources = circuit.tensor_parameters()
    given = {"p0": [P0], "p1": [P1], "w1": W1, "w2": W2, "v": V, "u": U}
    values = {}
    for name, leaf in leaves.items():
        value = torch.tensor(given[name], dtype=torch.float64)
        if name in ("p0", "p1"):
            value = value.permute(1, 0, 2)  # (1, 2, 3) -> (2, 1, 3)
        values[sources.index(leaf)] = value
    return circuit, values


ALL_PAIRS = torch.tensor([[a, b] for a in range(3) for b in range(3)])


def test_two_variable_circuit_by_hand():
    circuit, values = _two_variable_circuit()
    out = reference.evaluate(circuit, ALL_PAIRS, values)
    assert out.shape == (9, 1, 1)
    assert out.dtype == torch.float64
    expected = torch.tensor(
        [math.log(_by_hand(a, b)) for a, b in ALL_PAIRS.tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(out[:, 0, 0], expected, rtol=1e-12, atol=0)


def test_two_variable_circuit_linear_space_and_three_dims():
    circuit, values = _two_variable_circuit()
    out = reference.evaluate(circuit, ALL_PAIRS[:, None, :], values, log_space=False)
    expected = torch.tensor([_by_hand(a, b) for a, b in ALL_PAIRS.tolist()], dtype=torch.float64)
    torch.testing.assert_close(out[:, 0, 0], expected, rtol=1e-12, atol=0)


def test_two_variable_circuit_is_normalized():
    # Every weight row above sums to one, so the circuit is a distribution over 3 x 3 values.
    circuit, values = _two_variable_circuit()
    total = reference.evaluate(circuit, ALL_PAIRS, values, log_space=False).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-14)


def test_every_layer_output_by_hand():
    circuit, values = _two_variable_circuit()
    per_layer = reference.evaluate_layers(circuit, torch.tensor([[2, 1]]), values)
    c0, c1, kron, had, *_ = circuit.layers
    c0v = [P0[0][2], P0[1][2]]
    c1v = [P1[0][1], P1[1][1]]
    expected_kron = [c0v[0] * c1v[0], c0v[0] * c1v[1], c0v[1] * c1v[0], c0v[1] * c1v[1]]
    torch.testing.assert_close(per_layer[kron][0].exp(), torch.tensor(expected_kron).double())
    expected_had = [c0v[0] * c1v[0], c0v[1] * c1v[1]]
    torch.testing.assert_close(per_layer[had][0].exp(), torch.tensor(expected_had).double())


def test_kronecker_of_three_inputs_first_input_slowest():
    layers = [CategoricalLayer([v], 2, num_categories=2) for v in range(3)]
    kron = KroneckerLayer(2, 3)
    circuit = Circuit([*layers, kron], {kron: layers}, [kron])
    torch.manual_seed(0)
    values = reference.draw_values(circuit)
    x = torch.tensor([[0, 1, 1]])
    per_layer = reference.evaluate_layers(circuit, x, values, log_space=False)
    a, b, c = (per_layer[layer][0] for layer in layers)
    out = per_layer[kron][0]
    for i in range(2):
        for j in range(2):
            for k in range(2):
                assert out[4 * i + 2 * j + k].item() == pytest.approx(
                    (a[i] * b[j] * c[k]).item(), rel=1e-14
                )


# ---------------------------------------------------------------------------------------------
# Input layers


def _single_layer_values(layer, tensors):
    circuit = Circuit([layer], {}, [layer])
    sources = circuit.tensor_parameters()
    return circuit, {sources.index(leaf): value for leaf, value in tensors.items()}


def test_categorical_with_logits_and_two_channels():
    logits = TensorParameter((1, 2, 3))
    layer = CategoricalLayer([0], 1, num_channels=2, num_categories=3, logits=logits)
    table = torch.tensor([[[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]]], dtype=torch.float64)
    circuit, values = _single_layer_values(layer, {logits: table})
    x = torch.tensor([[[2], [1]]])  # channel 0 takes 2, channel 1 takes 1
    out = reference.evaluate(circuit, x, values)
    expected = (2.0 - math.log(1 + math.e + math.e**2)) + (
        -1.0 - math.log(math.e**3 + math.e**-1 + math.e**0.5)
    )
    assert out.item() == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("use_logits", [False, True])
def test_binomial_by_hand(use_logits):
    n = 5
    param = TensorParameter((2, 1))
    p = torch.tensor([[0.3], [0.8]], dtype=torch.float64)
    if use_logits:
        layer = BinomialLayer([0], 2, total_count=n, logits=param)
        value = torch.log(p / (1 - p))
    else:
        layer = BinomialLayer([0], 2, total_count=n, probs=param)
        value = p
    circuit, values = _single_layer_values(layer, {param: value})
    x = torch.arange(n + 1)[:, None]
    out = reference.evaluate(circuit, x, values, log_space=False)[:, 0, :]
    for k in range(n + 1):
        for unit, q in enumerate([0.3, 0.8]):
            expected = math.comb(n, k) * q**k * (1 - q) ** (n - k)
            assert out[k, unit].item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(out.sum(0), torch.ones(2, dtype=torch.float64))


def test_binomial_with_probability_zero_and_one():
    param = TensorParameter((2, 1))
    layer = BinomialLayer([0], 2, total_count=3, probs=param)
    circuit, values = _single_layer_values(layer, {param: torch.tensor([[0.0], [1.0]])})
    out = reference.evaluate(circuit, torch.tensor([[0], [3], [1]]), values)[:, 0, :]
    assert out[0, 0].item() == pytest.approx(0.0, abs=1e-14) and out[0, 1].item() == -math.inf
    assert out[1, 0].item() == -math.inf and out[1, 1].item() == pytest.approx(0.0, abs=1e-14)
    assert torch.isneginf(out[2]).all()
    assert not torch.isnan(out).any()


def test_gaussian_by_hand():
    mean, std = TensorParameter((1, 2)), TensorParameter((1, 2))
    layer = GaussianLayer([0], 1, num_channels=2, mean=mean, stddev=std)
    circuit, values = _single_layer_values(
        layer,
        {
            mean: torch.tensor([[0.5, -1.0]], dtype=torch.float64),
            std: torch.tensor([[2.0, 0.1]], dtype=torch.float64),
        },
    )
    x = torch.tensor([[[1.5], [-1.2]]], dtype=torch.float64)
    out = reference.evaluate(circuit, x, values).item()

    def log_normal(v, m, s):
        return -0.5 * ((v - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)

    assert out == pytest.approx(log_normal(1.5, 0.5, 2.0) + log_normal(-1.2, -1.0, 0.1), rel=1e-13)


def test_embedding_by_hand():
    weight = TensorParameter((2, 1, 4))
    layer = EmbeddingLayer([0], 2, num_states=4, weight=weight)
    table = torch.tensor([[[1.0, 2.0, 3.0, 4.0]], [[0.5, 0.0, 7.0, 1.0]]], dtype=torch.float64)
    circuit, values = _single_layer_values(layer, {weight: table})
    out = reference.evaluate(circuit, torch.tensor([[2], [1]]), values, log_space=False)
    torch.testing.assert_close(out[:, 0, :], torch.tensor([[3.0, 7.0], [2.0, 0.0]]).double())


def test_constant_and_evidence_layers():
    value = TensorParameter((2,))
    constant = ConstantLayer(value)
    probs = TensorParameter((2, 1, 3))
    observed = CategoricalLayer([0], 2, num_categories=3, probs=probs)
    observation = TensorParameter((1,))
    evidence = EvidenceLayer(observed, observation)
    had = HadamardLayer(2, 2)
    cat = CategoricalLayer([1], 2, num_categories=3, probs=TensorParameter((2, 1, 3)))
    had2 = HadamardLayer(2, 2)
    circuit = Circuit(
        [constant, evidence, cat, had, had2], {had: [constant, evidence], had2: [had, cat]}, [had2]
    )
    sources = circuit.tensor_parameters()
    table = torch.tensor([[[0.1, 0.2, 0.7]], [[0.3, 0.3, 0.4]]], dtype=torch.float64)
    values = {
        sources.index(value): torch.tensor([2.0, 0.5], dtype=torch.float64),
        sources.index(probs): table,
        sources.index(observation): torch.tensor([2.0], dtype=torch.float64),
        sources.index(cat.probs): table,
    }
    out = reference.evaluate(circuit, torch.tensor([[0, 1]]), values, log_space=False)
    expected = torch.tensor([2.0 * 0.7 * 0.2, 0.5 * 0.4 * 0.3], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], expected)


# ---------------------------------------------------------------------------------------------
# Parameter ops


def _param_value(root, leaf_values):
    dense = DenseLayer(root.shape[1], root.shape[0], weight=root)
    cat = CategoricalLayer([0], root.shape[1], num_categories=2)
    circuit = Circuit([cat, dense], {dense: [cat]}, [dense])
    sources = circuit.tensor_parameters()
    values = {sources.index(leaf): v for leaf, v in leaf_values.items()}
    return reference.evaluate_parameters(circuit, values)[id(root)]


M = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=torch.float64)


def _rows(fn, m):
    return torch.tensor([[fn(v) for v in row] for row in m.tolist()], dtype=torch.float64)


def test_elementwise_parameter_ops():
    leaf = TensorParameter((2, 3))
    cases = [
        (ExpParameter(leaf), _rows(math.exp, M)),
        (SigmoidParameter(leaf), _rows(lambda v: 1 / (1 + math.exp(-v)), M)),
        (SoftplusParameter(leaf), _rows(lambda v: math.log(1 + math.exp(v)), M)),
        (ClampParameter(leaf, vmin=0.1, vmax=2.0), _rows(lambda v: min(max(v, 0.1), 2.0), M)),
        (ClampParameter(leaf, vmin=0.0, vmax=None), _rows(lambda v: max(v, 0.0), M)),
        (
            ScaledSigmoidParameter(leaf, vmin=0.5, vmax=3.0),
            _rows(lambda v: 0.5 + 2.5 / (1 + math.exp(-v)), M),
        ),
        (LogParameter(ExpParameter(leaf)), M),
    ]
    for root, expected in cases:
        got = _param_value(root, {leaf: M})
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-15, msg=type(root).__name__)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(axis):
    leaf = TensorParameter((2, 3))
    dim = axis % 2
    exps = M.exp()
    expected = exps / exps.sum(dim=dim, keepdim=True)
    torch.testing.assert_close(_param_value(SoftmaxParameter(leaf, axis=axis), {leaf: M}), expected)
    torch.testing.assert_close(
        _param_value(ExpParameter(LogSoftmaxParameter(leaf, axis=axis)), {leaf: M}), expected
    )


def test_softmax_of_huge_logits_is_exact():
    leaf = TensorParameter((1, 2))
    big = torch.tensor([[1000.0, 1000.0 + math.log(3.0)]], dtype=torch.float64)
    got = _param_value(SoftmaxParameter(leaf), {leaf: big})
    torch.testing.assert_close(got, torch.tensor([[0.25, 0.75]], dtype=torch.float64))


def test_reduce_parameter():
    leaf = TensorParameter((2, 2, 3))
    t = torch.arange(12, dtype=torch.float64).reshape(2, 2, 3) / 4
    for kind, fn in [
        ("sum", sum),
        ("prod", math.prod),
        ("lse", lambda vs: math.log(sum(math.exp(v) for v in vs))),
    ]:
        root = ReduceParameter(leaf, axis=0, kind=kind)
        expected = torch.tensor(
            [[fn([t[0, i, j].item(), t[1, i, j].item()]) for j in range(3)] for i in range(2)],
            dtype=torch.float64,
        )
        torch.testing.assert_close(_param_value(root, {leaf: t}), expected, msg=kind)


def test_mixing_weight_parameter():
    leaf = TensorParameter((2, 3))
    got = _param_value(MixingWeightParameter(leaf), {leaf: M})
    # [k, h * K + k] = w[k, h]
    expected = torch.tensor(
        [[1.0, 0.0, -2.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 3.0, 0.0, -1.0]], dtype=torch.float64
    )
    torch.testing.assert_close(got, expected)


def test_kronecker_and_matmul_parameters():
    a, b = TensorParameter((2, 1)), TensorParameter((1, 2))
    av = torch.tensor([[2.0], [3.0]], dtype=torch.float64)
    bv = torch.tensor([[5.0, 7.0]], dtype=torch.float64)
    kron = _param_value(KroneckerParameter(a, b), {a: av, b: bv})
    torch.testing.assert_close(kron, torch.tensor([[10.0, 14.0], [15.0, 21.0]]).double())
    torch.testing.assert_close(kron, torch.kron(av, bv))
    prod = _param_value(MatMulParameter(a, b), {a: av, b: bv})
    torch.testing.assert_close(prod, torch.tensor([[10.0, 14.0], [15.0, 21.0]]).double())
    c, d = TensorParameter((2, 2)), TensorParameter((2, 2))
    cv = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    dv = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    got = _param_value(KroneckerParameter(c, d), {c: cv, d: dv})
    expected = [[0, 1, 0, 2], [1, 0, 2, 0], [0, 3, 0, 4], [3, 0, 4, 0]]
    torch.testing.assert_close(got, torch.tensor(expected).double())
    torch.testing.assert_close(_param_value(MatMulParameter(c, d), {c: cv, d: dv}), cv @ dv)


# ---------------------------------------------------------------------------------------------
# Numerics of the reference itself


def test_deep_product_does_not_underflow():
    n = 2000
    cats = [
        CategoricalLayer([v], 1, num_categories=2, probs=TensorParameter((1, 1, 2)))
        for v in range(n)
    ]
    had = HadamardLayer(1, n)
    circuit = Circuit([*cats, had], {had: cats}, [had])
    values = {i: torch.tensor([[[0.5, 0.5]]], dtype=torch.float64) for i in range(n)}
    out = reference.evaluate(circuit, torch.zeros(1, n, dtype=torch.long), values)
    assert out.item() == pytest.approx(n * math.log(0.5), rel=1e-12)
    assert out.item() < -1000


def test_logsumexp_edge_cases():
    z = torch.tensor([[-math.inf, -math.inf], [-5000.0, -5000.0], [1000.0, 0.0]]).double()
    got = reference.logsumexp(z, dim=1)
    assert got[0].item() == -math.inf
    assert got[1].item() == pytest.approx(-5000.0 + math.log(2), rel=1e-15)
    assert got[2].item() == pytest.approx(1000.0, rel=1e-15)


def test_negative_weights_switch_to_complex():
    circuit, values = _two_variable_circuit()
    sources = circuit.tensor_parameters()
    out_layer = circuit.outputs[0]
    values[sources.index(out_layer.weight)] = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    log_out = reference.evaluate(circuit, ALL_PAIRS, values)
    assert log_out.dtype == torch.complex128
    linear = reference.evaluate(circuit, ALL_PAIRS, values, log_space=False)
    expected = []
    for a, b in ALL_PAIRS.tolist():
        c0 = [P0[k][a] for k in range(2)]
        c1 = [P1[k][b] for k in range(2)]
        kron = [c0[i] * c1[j] for i in range(2) for j in range(2)]
        had = [c0[k] * c1[k] for k in range(2)]
        d1 = [sum(W1[k][j] * kron[j] for j in range(4)) for k in range(2)]
        d2 = [sum(W2[k][j] * had[j] for j in range(2)) for k in range(2)]
        mix = [V[k][0] * d1[k] + V[k][1] * d2[k] for k in range(2)]
        expected.append(2.0 * mix[0] - 1.0 * mix[1])
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(log_out[:, 0, 0].exp().real, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(linear[:, 0, 0].real, expected, rtol=1e-12, atol=1e-15)
    # The sign sits in the imaginary part: 0 or pi.
    signs = torch.cos(log_out[:, 0, 0].imag)
    torch.testing.assert_close(signs, torch.sign(expected))


def test_complex_leaves():
    leaf = TensorParameter((2, 2), tensor_dtype="complex")
    cats = [CategoricalLayer([0], 2, num_categories=2), CategoricalLayer([1], 2, num_categories=2)]
    had = HadamardLayer(2, 2)
    dense = DenseLayer(2, 1, weight=MatMulParameter(TensorParameter((1, 2)), leaf))
    circuit = Circuit([*cats, had, dense], {had: cats, dense: [had]}, [dense])
    torch.manual_seed(1)
    values = reference.draw_values(circuit)
    assert values[circuit.tensor_parameters().index(leaf)].dtype == torch.complex128
    x = torch.tensor([[0, 1], [1, 1]])
    log_out = reference.evaluate(circuit, x, values)
    linear = reference.evaluate(circuit, x, values, log_space=False)
    assert log_out.dtype == torch.complex128
    torch.testing.assert_close(log_out.exp(), linear, rtol=1e-12, atol=1e-15)


def test_values_default_to_torch_rng_draws():
    circuit, _ = _two_variable_circuit()
    torch.manual_seed(123)
    first = reference.evaluate(circuit, ALL_PAIRS)
    torch.manual_seed(123)
    second = reference.evaluate(circuit, ALL_PAIRS, reference.draw_values(circuit))
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_clamp_of_constant_zero_gives_minus_infinity_not_nan():
    probs = ClampParameter(TensorParameter((1, 1, 3), ConstantInitializer(0.0)), vmin=0.0)
    layer = CategoricalLayer([0], 1, num_categories=3, probs=probs)
    dense = DenseLayer(1, 1)
    circuit = Circuit([layer, dense], {dense: [layer]}, [dense])
    out = reference.evaluate(circuit, torch.tensor([[0], [2]]))
    assert torch.isneginf(out).all()


def test_bad_data_shape():
    circuit, values = _two_variable_circuit()
    with pytest.raises(InputError, match="expects data of shape"):
        reference.evaluate(circuit, torch.zeros(2, 2, 2, dtype=torch.long), values)
    with pytest.raises(InputError, match="variables"):
        reference.evaluate(circuit, torch.zeros(2, 1, dtype=torch.long), values)


def test_bad_mode_and_leaf_value_shape():
    circuit, values = _two_variable_circuit()
    x = torch.zeros(2, 2, dtype=torch.long)
    with pytest.raises(OptionError, match="unknown mode 'exact'; expected one of: 'real'"):
        reference.evaluate(circuit, x, values, mode="exact")
    with pytest.raises(InputError, match=r"value for source 0 has shape \(7,\), expected"):
        reference.evaluate(circuit, x, {**values, 0: torch.zeros(7)})


@pytest.mark.parametrize(
    "layer, bad, message",
    [
        (
            CategoricalLayer([1], 2, num_categories=3),
            3,
            r"variable 1 has the value 3, out of range: its input layer accepts 0\.\.2",
        ),
        (
            CategoricalLayer([1], 2, num_categories=3),
            -1,
            r"variable 1 has the negative value -1; its values must be in 0\.\.2",
        ),
        (
            EmbeddingLayer([1], 2, num_states=4),
            4,
            r"variable 1 has the value 4, out of range: its input layer accepts 0\.\.3",
        ),
        (
            BinomialLayer([1], 2, total_count=5),
            6,
            r"variable 1 has the value 6, out of range: its input layer accepts 0\.\.5",
        ),
        (
            CategoricalLayer([1], 2, num_categories=3),
            float("nan"),
            r"variable 1 has NaN values",
        ),
    ],
)
def test_data_out_of_a_discrete_layers_range(layer, bad, message):
    # A negative category would otherwise read the table from its end, without an error.
    circuit = Circuit([layer], {}, [layer])
    x = torch.tensor([[0.0, 1.0], [2.0, bad]])
    with pytest.raises(InputError, match=message):
        reference.evaluate(circuit, x)


def test_continuous_data_has_no_range():
    layer = GaussianLayer([0], 2)
    circuit = Circuit([layer], {}, [layer])
    assert torch.isfinite(reference.evaluate(circuit, torch.tensor([[-1e3], [1e3]]))).all()


def _evidence_times_categorical(observed, value: float):
    """`observed` at the observation `value` times a categorical over variable 1."""
    observation = TensorParameter((1,), ConstantInitializer(0.0), learnable=False)
    evidence = EvidenceLayer(observed, observation)
    cat = CategoricalLayer([1], 2, num_categories=3)
    had = HadamardLayer(2, 2)
    circuit = Circuit([evidence, cat, had], {had: [evidence, cat]}, [had])
    values = reference.draw_values(circuit, torch.Generator().manual_seed(0))
    values[circuit.tensor_parameters().index(observation)] = torch.tensor([value])
    return circuit, values


@pytest.mark.parametrize(
    "observed, value, accepted",
    [
        (CategoricalLayer([0], 2, num_categories=3), 3.0, "categorical accepts 0..2"),
        (CategoricalLayer([0], 2, num_categories=3), 2.6, "categorical accepts 0..2"),
        (CategoricalLayer([0], 2, num_categories=3), -1.0, "categorical accepts 0..2"),
        (CategoricalLayer([0], 2, num_categories=3), float("nan"), "categorical accepts 0..2"),
        (BinomialLayer([0], 2, total_count=3), 4.0, "binomial accepts 0..3"),
        (EmbeddingLayer([0], 2, num_states=5), 5.0, "embedding accepts 0..4"),
    ],
)
def test_evidence_out_of_range(observed, value, accepted):
    circuit, values = _evidence_times_categorical(observed, value)
    expected = (
        f"evidence layer (a {accepted.split()[0]} over variable 0): the observation {value:g}"
        f" in channel 0 is out of range; the {accepted}"
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        reference.evaluate(circuit, torch.tensor([[0, 1]]), values)


def test_evidence_rounds_as_the_backend_does():
    """A discrete observation rounds to the nearest integer (2.4 -> 2, -0.4 -> 0), as
    the torch backend rounds it, and the ends of the range are accepted."""
    observed = BinomialLayer([0], 2, total_count=3)
    x = torch.tensor([[0, 1]])
    for near, exact in ((2.4, 2.0), (-0.4, 0.0), (3.4, 3.0)):
        circuit, values = _evidence_times_categorical(observed, near)
        _, exact_values = _evidence_times_categorical(observed, exact)
        torch.testing.assert_close(
            reference.evaluate(circuit, x, values), reference.evaluate(circuit, x, exact_values)
        )


def test_outputs_of_different_units_cannot_be_stacked():
    a, b = CategoricalLayer([0], 2, num_categories=3), CategoricalLayer([1], 3, num_categories=3)
    circuit = Circuit([a, b], {}, [a, b])
    with pytest.raises(StructureError, match=r"different numbers of units, \[2, 3\]"):
        reference.evaluate(circuit, torch.zeros(1, 2, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# The comparison helper that the other test files use


def test_assert_matches_accepts_every_semiring_form():
    circuit, values = _two_variable_circuit()
    log_out = reference.evaluate(circuit, ALL_PAIRS, values)
    reference.assert_matches(log_out.float(), circuit, ALL_PAIRS, values, "lse-sum", 1e-6)
    reference.assert_matches(log_out.exp(), circuit, ALL_PAIRS, values, "sum-product", 1e-12)
    as_complex = log_out.to(torch.complex128) + 2j * math.pi  # the same value, another branch
    reference.assert_matches(as_complex, circuit, ALL_PAIRS, values, "complex-lse-sum", 1e-12)
    with pytest.raises(AssertionError, match="differ from the reference"):
        reference.assert_matches(log_out + 1e-3, circuit, ALL_PAIRS, values, "lse-sum", 1e-6)
    with pytest.raises(AssertionError, match="differ from the reference"):
        nan = log_out.clone()
        nan[3, 0, 0] = math.nan
        reference.assert_matches(nan, circuit, ALL_PAIRS, values, "lse-sum", 1e-6)
    with pytest.raises(AssertionError, match="shape"):
        reference.assert_matches(log_out[:, 0], circuit, ALL_PAIRS, values, "lse-sum", 1e-6)


def test_scaled_error_measures_cancellation_against_the_bound():
    circuit, values = _two_variable_circuit()
    sources = circuit.tensor_parameters()
    values[sources.index(circuit.outputs[0].weight)] = torch.tensor([[1.0, -1.0]]).double()
    linear = reference.evaluate(circuit, ALL_PAIRS, values, log_space=False).real
    bound = reference.evaluate(circuit, ALL_PAIRS, values, mode="bound").exp()
    # Perturb every output by 1e-9 of its bound: the scaled error is 1e-9 everywhere.
    perturbed = linear + 1e-9 * bound
    error = reference.scaled_error(perturbed, circuit, ALL_PAIRS, values, "sum-product")
    torch.testing.assert_close(error, torch.full_like(error, 1e-9), rtol=1e-5, atol=0)


def test_zero_outputs_must_be_exactly_zero():
    probs = TensorParameter((1, 1, 2))
    layer = CategoricalLayer([0], 1, num_categories=2, probs=probs)
    circuit = Circuit([layer], {}, [layer])
    values = {0: torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)}
    x = torch.tensor([[0], [1]])
    good = torch.tensor([[[-math.inf]], [[0.0]]])
    reference.assert_matches(good, circuit, x, values, "lse-sum", 1e-9)
    with pytest.raises(AssertionError):
        reference.assert_matches(good.clamp_min(-700), circuit, x, values, "lse-sum", 1e-9)
