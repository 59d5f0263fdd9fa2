"""Torch backend: every layer and parameter node against math written here, in float64.

Each circuit op is compiled inside a small hand-built IR graph; the layer under test is then
called on chosen inputs through its public `forward` ((F, arity, B, K) -> (F, B, K)) and
compared with a numpy computation from the layer's parameter values.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from ir_cases import seed_like

from cirkit_ir.backends.torch import codegen
from cirkit_ir.backends.torch import parameters as tp
from cirkit_ir.errors import CompilationError, InputError
from cirkit_ir.ir import FoldMap, Graph, ops
from cirkit_ir.ir.sign import Need
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic.initializers import NormalInitializer, UniformInitializer

SEMIRINGS = ("sum-product", "lse-sum", "complex-lse-sum")
B = 5


class Builder:
    """A hand-built IR graph in one semiring, with unique tensor sources."""

    def __init__(self, semiring: str = "lse-sum") -> None:
        self.graph = Graph()
        self.semiring = semiring
        self.sources = itertools.count()

    def tensor(self, shape, initializer=None) -> int:
        op = ops.TensorOp(
            initializer or NormalInitializer(),
            shape=shape,
            sources=[next(self.sources) for _ in range(shape[0])],
        )
        return self.graph.add_op(op)

    def positive(self, shape) -> int:
        """Weights for real semirings: uniform in [0.1, 1)."""
        return self.tensor(shape, UniformInitializer(0.1, 1.0))

    def weights(self, shape) -> int:
        """Positive weights, or signed ones in the complex semiring (which allows them)."""
        if self.semiring == "complex-lse-sum":
            return self.tensor(shape)
        return self.positive(shape)

    def add(self, op, inputs=(), params=None) -> int:
        return self.graph.add_op(op.replace(semiring=self.semiring), inputs, params)

    def categorical(self, folds: int, units: int) -> int:
        probs = self.positive((folds, units, 1, 3))
        op = ops.CategoricalOp(range(folds), 1, units, num_categories=3)
        return self.add(op, params={"probs": probs})

    def compile(self, outputs, **kwargs):
        """The layers' arithmetic alone: inputs may share variables (no verification)."""
        self.graph.set_outputs(outputs)
        return codegen(self.graph, **{"dtype": torch.float64, "verify": False, **kwargs})


def value(layer, name: str) -> np.ndarray:
    """A layer's evaluated parameter, as numpy."""
    return getattr(layer, name)().detach().numpy()


def as_input(log_values: np.ndarray, semiring: str) -> torch.Tensor:
    """Layer inputs (given as logs) in the semiring's representation."""
    t = torch.from_numpy(log_values)
    if semiring == "sum-product":
        return t.exp()
    return t.to(torch.complex128) if semiring == "complex-lse-sum" else t


def check(out: torch.Tensor, linear_ref: np.ndarray, semiring: str) -> None:
    """`out` equals the linear reference, read in the semiring's representation."""
    out = out.detach().numpy()
    if semiring == "sum-product":
        np.testing.assert_allclose(out, linear_ref, rtol=1e-10, atol=1e-300)
    elif semiring == "lse-sum":
        np.testing.assert_allclose(out, np.log(linear_ref), rtol=1e-10, atol=1e-10)
    else:  # compare exp(value): the imaginary part is only defined modulo 2 pi
        np.testing.assert_allclose(np.exp(out), linear_ref.astype(complex), rtol=1e-9, atol=1e-12)


def inner_layer(semiring, make_op, arity, in_units, params):
    """Compiles op `make_op` fed by `arity` categorical producers; returns its layer."""
    b = Builder(semiring)
    folds = 2
    inputs = [b.categorical(folds, in_units) for _ in range(arity)]
    param_nodes = {
        name: (b.weights(shape) if sign else b.positive(shape))
        for name, (shape, sign) in params.items()
    }
    node = b.add(make_op(folds), inputs, param_nodes)
    return b.compile([node]).layers[-1]


def log_inputs(folds, arity, units, rng) -> np.ndarray:
    return rng.normal(size=(folds, arity, B, units)) * 3


# ---------------------------------------------------------------------------------------------
# Sum and product layers


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_dense(semiring):
    layer = inner_layer(
        semiring, lambda f: ops.DenseOp(3, 2, num_folds=f), 1, 3, {"weight": ((2, 2, 3), True)}
    )
    x = log_inputs(2, 1, 3, np.random.default_rng(0))
    w = value(layer, "weight")
    ref = np.einsum("foi,fbi->fbo", w, np.exp(x[:, 0]))
    check(layer(as_input(x, semiring)), ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("arity", [2, 3])
def test_mixing(semiring, arity):
    layer = inner_layer(
        semiring,
        lambda f: ops.MixingOp(3, arity, num_folds=f),
        arity,
        3,
        {"weight": ((2, 3, arity), True)},
    )
    x = log_inputs(2, arity, 3, np.random.default_rng(1))
    w = value(layer, "weight")  # (F, K, H)
    ref = np.einsum("fkh,fhbk->fbk", w, np.exp(x))
    check(layer(as_input(x, semiring)), ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_hadamard(semiring):
    layer = inner_layer(semiring, lambda f: ops.HadamardOp(3, 3, num_folds=f), 3, 3, {})
    x = log_inputs(2, 3, 3, np.random.default_rng(2))
    check(layer(as_input(x, semiring)), np.exp(x).prod(axis=1), semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("arity", [2, 3])
def test_kronecker(semiring, arity):
    layer = inner_layer(semiring, lambda f: ops.KroneckerOp(2, arity, num_folds=f), arity, 2, {})
    x = log_inputs(2, arity, 2, np.random.default_rng(3))
    e = np.exp(x)
    ref = np.zeros((2, B, 2**arity))
    for units in itertools.product(range(2), repeat=arity):  # first input slowest
        k = int("".join(map(str, units)), 2)
        ref[:, :, k] = np.prod([e[:, h, :, u] for h, u in enumerate(units)], axis=0)
    check(layer(as_input(x, semiring)), ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("arity", [2, 3])
def test_tucker(semiring, arity):
    k_in, k_out = 2, 3
    layer = inner_layer(
        semiring,
        lambda f: ops.TuckerOp(k_in, k_out, arity, num_folds=f),
        arity,
        k_in,
        {"weight": ((2, k_out, k_in**arity), True)},
    )
    x = log_inputs(2, arity, k_in, np.random.default_rng(4))
    w = value(layer, "weight").reshape(2, k_out, *([k_in] * arity))
    e = np.exp(x)
    ref = np.zeros((2, B, k_out))
    for units in itertools.product(range(k_in), repeat=arity):
        term = np.prod([e[:, h, :, u] for h, u in enumerate(units)], axis=0)  # (F, B)
        ref += term[:, :, None] * w[(slice(None), slice(None), *units)][:, None, :]
    check(layer(as_input(x, semiring)), ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_cp_t(semiring):
    layer = inner_layer(
        semiring,
        lambda f: ops.CPTOp(3, 2, 2, num_folds=f),
        2,
        3,
        {"weight": ((2, 2, 3), True)},
    )
    x = log_inputs(2, 2, 3, np.random.default_rng(5))
    w = value(layer, "weight")
    ref = np.einsum("foi,fbi->fbo", w, np.exp(x).prod(axis=1))
    check(layer(as_input(x, semiring)), ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_cp(semiring):
    layer = inner_layer(
        semiring,
        lambda f: ops.CPOp(3, 2, 2, num_folds=f),
        2,
        3,
        {"weight": ((2, 2, 2, 3), True)},
    )
    x = log_inputs(2, 2, 3, np.random.default_rng(6))
    w = value(layer, "weight")  # (F, H, O, I)
    ref = np.einsum("fhoi,fhbi->fhbo", w, np.exp(x)).prod(axis=1)
    check(layer(as_input(x, semiring)), ref, semiring)


def test_log_sum_exp_is_exact_far_below_float_range():
    """Inputs around -5000 (exp underflows to 0): the max shift keeps the result exact."""
    layer = inner_layer(
        "lse-sum", lambda f: ops.DenseOp(3, 2, num_folds=f), 1, 3, {"weight": ((2, 2, 3), False)}
    )
    x = log_inputs(2, 1, 3, np.random.default_rng(7)) - 5000.0
    w = value(layer, "weight")
    m = x[:, 0].max(axis=-1, keepdims=True)
    ref = m + np.log(np.einsum("foi,fbi->fbo", w, np.exp(x[:, 0] - m)))
    out = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    assert out.max() < -4990


def test_log_sum_exp_of_all_minus_inf_is_minus_inf_not_nan():
    for make, arity, params in [
        (lambda f: ops.DenseOp(3, 2, num_folds=f), 1, {"weight": ((2, 2, 3), False)}),
        (lambda f: ops.MixingOp(3, 2, num_folds=f), 2, {"weight": ((2, 3, 2), False)}),
        (lambda f: ops.TuckerOp(3, 2, 2, num_folds=f), 2, {"weight": ((2, 2, 9), False)}),
    ]:
        for semiring in ("lse-sum", "complex-lse-sum"):
            layer = inner_layer(semiring, make, arity, 3, params)
            x = torch.full((2, arity, B, 3), -math.inf, dtype=torch.float64)
            if semiring == "complex-lse-sum":
                x = x.to(torch.complex128)
            out = layer(x)
            assert not torch.isnan(out).any()
            assert torch.all(out.real == -math.inf)


# ---------------------------------------------------------------------------------------------
# Input layers


def input_circuit(semiring, op, params, **kwargs):
    """A circuit whose outputs are every fold of one input op: (B, F, K) values."""
    b = Builder(semiring)
    nodes = {name: b.tensor(shape, init) for name, (shape, init) in params.items()}
    node = b.add(op, params=nodes)
    return b.compile([(node, f) for f in range(op.num_folds)], **kwargs)


def check_input_layer(circuit, x, log_ref, semiring):
    """`log_ref` is (B, F, K) log-values."""
    out = circuit(x).detach()
    ref = torch.from_numpy(log_ref)
    if semiring == "sum-product":
        torch.testing.assert_close(out, ref.exp(), rtol=1e-10, atol=1e-300)
    else:
        torch.testing.assert_close(out, ref.to(out.dtype), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("param", ["probs", "logits", "log_probs"])
@pytest.mark.parametrize("channels", [1, 2])
def test_categorical(semiring, param, channels):
    variables, n, k = (2, 0, 3), 4, 3
    init = UniformInitializer(0.1, 1.0) if param == "probs" else NormalInitializer()
    op = ops.CategoricalOp(variables, channels, k, num_categories=n, param=param)
    circuit = input_circuit(semiring, op, {param: ((3, k, channels, n), init)})
    table = value(circuit.layers[0], param)  # (F, K, C, N)
    if param == "probs":
        log_table = np.log(table)
    elif param == "logits":
        log_table = table - np.log(np.exp(table).sum(axis=-1, keepdims=True))
    else:
        log_table = table
    x = torch.randint(n, (B, channels, 4))
    ref = np.zeros((B, 3, k))
    for bi, f, c in itertools.product(range(B), range(3), range(channels)):
        ref[bi, f] += log_table[f, :, c, x[bi, c, variables[f]]]
    check_input_layer(circuit, x, ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("param", ["probs", "logits"])
@pytest.mark.parametrize("total_count", [7, 5000])  # a table of all values, or the pmf at x
def test_binomial(semiring, param, total_count):
    channels, k = 2, 2
    init = UniformInitializer(0.05, 0.95) if param == "probs" else NormalInitializer()
    op = ops.BinomialOp((1, 0), channels, k, total_count=total_count, param=param)
    circuit = input_circuit(semiring, op, {param: ((2, k, channels), init)})
    p = value(circuit.layers[0], param)
    if param == "logits":
        p = 1 / (1 + np.exp(-p))
    x = torch.randint(total_count + 1, (B, channels, 2))
    ref = np.zeros((B, 2, k))
    for bi, f, c in itertools.product(range(B), range(2), range(channels)):
        v = int(x[bi, c, (1, 0)[f]])
        log_binom = math.lgamma(total_count + 1) - math.lgamma(v + 1)
        log_binom -= math.lgamma(total_count - v + 1)
        ref[bi, f] += log_binom + v * np.log(p[f, :, c]) + (total_count - v) * np.log1p(-p[f, :, c])
    check_input_layer(circuit, x, ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_gaussian(semiring):
    channels, k = 2, 3
    op = ops.GaussianOp((0, 1), channels, k)
    circuit = input_circuit(
        semiring,
        op,
        {
            "mean": ((2, k, channels), NormalInitializer()),
            "stddev": ((2, k, channels), UniformInitializer(0.5, 2.0)),
        },
    )
    mean, std = value(circuit.layers[0], "mean"), value(circuit.layers[0], "stddev")
    x = torch.randn(B, channels, 2, dtype=torch.float64)
    xs = x.numpy()
    ref = np.zeros((B, 2, k))
    for bi, f, c in itertools.product(range(B), range(2), range(channels)):
        z = (xs[bi, c, f] - mean[f, :, c]) / std[f, :, c]
        ref[bi, f] += -0.5 * z**2 - np.log(std[f, :, c]) - 0.5 * np.log(2 * np.pi)
    check_input_layer(circuit, x, ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_embedding(semiring):
    op = ops.EmbeddingOp((0, 1), 1, 2, num_states=5)
    circuit = input_circuit(semiring, op, {"weight": ((2, 2, 1, 5), UniformInitializer(0.1, 3))})
    w = value(circuit.layers[0], "weight")
    x = torch.randint(5, (B, 1, 2))
    ref = np.stack([np.log(w[f, :, 0, x[:, 0, f].numpy()]) for f in range(2)], axis=1)
    check_input_layer(circuit, x, ref, semiring)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_constant(semiring):
    b = Builder(semiring)
    value_node = b.positive((2, 3))
    cat = b.categorical(1, 3)
    node = b.add(ops.ConstantOp(3, num_folds=2), params={"value": value_node})
    circuit = b.compile([(node, 0), (node, 1), (cat, 0)])
    v = value(circuit.layers[1], "value")
    x = torch.randint(3, (B, 1, 1))
    out = circuit(x).detach()
    assert out.shape == (B, 3, 3)  # (batch, outputs, units), outputs from two ops
    out = out[:, :2]
    ref = np.broadcast_to(np.log(v), (B, 2, 3)).copy()
    check_input_layer_values(out, ref, semiring)


def check_input_layer_values(out, log_ref, semiring):
    ref = torch.from_numpy(log_ref)
    if semiring == "sum-product":
        torch.testing.assert_close(out, ref.exp())
    else:
        torch.testing.assert_close(out, ref.to(out.dtype))


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_evidence(semiring):
    b = Builder(semiring)
    obs = b.tensor((2, 1), UniformInitializer(0.0, 2.49))  # rounded to categories 0..2
    probs = b.positive((2, 2, 1, 3))
    dist = ops.CategoricalOp((4, 5), 1, 2, num_categories=3)
    node = b.add(ops.EvidenceOp(dist), params={"observation": obs, "probs": probs})
    cat = b.categorical(1, 2)
    circuit = b.compile([(node, 0), (node, 1), (cat, 0)])
    layer = circuit.layers[0]
    o = np.round(value(layer, "observation")).astype(int)
    p = value(layer, "probs")
    x = torch.randint(3, (B, 1, 1))
    out = circuit(x).detach()[:, :2]
    ref = np.broadcast_to(np.log(np.stack([p[f, :, 0, o[f, 0]] for f in range(2)])), (B, 2, 2))
    check_input_layer_values(out, ref.copy(), semiring)


# ---------------------------------------------------------------------------------------------
# Parameter nodes


def test_parameter_nodes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 4))
    t = torch.from_numpy(a)
    shape = [(2, 3, 4)]

    def close(node, expected, *args):
        out = node(*(args or (t,))).detach().numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)

    soft = np.exp(a) / np.exp(a).sum(axis=-2, keepdims=True)
    close(tp.TorchSoftmaxParameter(shape, shape[0], axis=-2), soft)
    close(tp.TorchLogSoftmaxParameter(shape, shape[0], axis=-2), np.log(soft))
    close(tp.TorchExpParameter(shape, shape[0]), np.exp(a))
    close(tp.TorchLogParameter(shape, shape[0]), np.log(np.abs(a)), t.abs())
    close(tp.TorchSigmoidParameter(shape, shape[0]), 1 / (1 + np.exp(-a)))
    close(tp.TorchSoftplusParameter(shape, shape[0]), np.log1p(np.exp(a)))
    close(tp.TorchClampParameter(shape, shape[0], -0.5, 0.5), np.clip(a, -0.5, 0.5))
    close(tp.TorchClampParameter(shape, shape[0], 0.1, None), np.maximum(a, 0.1))
    close(tp.TorchScaledSigmoidParameter(shape, shape[0], 1.0, 3.0), 1 + 2 / (1 + np.exp(-a)))
    close(tp.TorchReduceParameter(shape, (2, 3), -1, "sum"), a.sum(-1))
    close(tp.TorchReduceParameter(shape, (2, 3), -1, "prod"), a.prod(-1))
    close(tp.TorchReduceParameter(shape, (2, 4), -2, "lse"), np.log(np.exp(a).sum(-2)))

    mixing = np.zeros((2, 3, 12))
    for f, k, h in itertools.product(range(2), range(3), range(4)):
        mixing[f, k, h * 3 + k] = a[f, k, h]
    close(tp.TorchMixingWeightParameter(shape, (2, 3, 12)), mixing)

    b = rng.normal(size=(2, 2, 5))
    tb = torch.from_numpy(b)
    kron = np.stack([np.kron(a[f], b[f]) for f in range(2)])
    close(tp.TorchKroneckerParameter(shape + [(2, 2, 5)], (2, 6, 20)), kron, t, tb)
    c = rng.normal(size=(2, 4, 5))
    close(tp.TorchMatMulParameter(shape + [(2, 4, 5)], (2, 3, 5)), a @ c, t, torch.from_numpy(c))
    close(tp.TorchStackParameter(shape * 2, (2, 2, 3, 4)), np.stack([a, a], 1), t, t)


def test_parameter_graph_in_the_generated_code_matches_the_layer_view():
    """A weight computed by a chain of parameter ops, including a fold gather."""
    b = Builder("lse-sum")
    raw = b.tensor((4, 3, 2))  # four folds; the dense op reads folds 3 and 1
    soft = b.graph.add_op(ops.SoftmaxOp(axis=-2, shape=(4, 3, 2)), [raw])
    mix = b.graph.add_op(ops.MixingWeightOp(shape=(2, 3, 6)))
    b.graph.connect(soft, mix, 0, FoldMap([0, 1], [3, 1]))
    node = b.add(ops.DenseOp(6, 3, num_folds=2), [b.categorical(2, 6)], {"weight": mix})
    circuit = b.compile([(node, 0)])
    dense = circuit.layers[-1]
    w = dense.weight().detach().numpy()
    r = dense.weight.nodes[0].value.detach().numpy()
    soft_ref = np.exp(r) / np.exp(r).sum(axis=-2, keepdims=True)
    expected = np.zeros((2, 3, 6))
    for f, src in enumerate((3, 1)):
        for k, h in itertools.product(range(3), range(2)):
            expected[f, k, h * 3 + k] = soft_ref[src, k, h]
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    (prepared,) = circuit.parameter_values()[-1]
    np.testing.assert_allclose(prepared.detach().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
@pytest.mark.parametrize("through", ["layer", "log-op"])
def test_zero_probability_gradients_are_not_nan(semiring, through):
    """d log p / d probs at an unread zero probability is 0 (torch.log alone gives NaN)."""
    b = Builder(semiring)
    probs = b.positive((1, 1, 1, 3))
    if through == "log-op":  # what lower-semiring emits: log(probs) read as log_probs
        log_probs = b.graph.add_op(ops.LogOp(shape=(1, 1, 1, 3)), [probs])
        op = ops.CategoricalOp((0,), 1, 1, num_categories=3, param="log_probs")
        node = b.add(op, params={"log_probs": log_probs})
    else:
        node = b.add(ops.CategoricalOp((0,), 1, 1, num_categories=3), params={"probs": probs})
    circuit = b.compile([node])
    circuit.load_symbolic_state({0: torch.tensor([[[0.5, 0.5, 0.0]]], dtype=torch.float64)})
    circuit(torch.tensor([[0]])).real.sum().backward()
    (grad,) = [p.grad for p in circuit.parameters()]
    torch.testing.assert_close(grad.reshape(3), torch.tensor([2.0, 0.0, 0.0]).double())


def test_complex_parameters_need_the_complex_semiring():
    b = Builder("lse-sum")
    weight = b.tensor((1, 2, 3))
    b.graph.replace_op(weight, b.graph.op(weight).replace(tensor_dtype="complex"))
    node = b.add(ops.DenseOp(3, 2), [b.categorical(1, 3)], {"weight": weight})
    with pytest.raises(CompilationError, match="complex-lse-sum"):
        b.compile([node])


# ---------------------------------------------------------------------------------------------
# Parameters the real semirings need non-negative

# Each sum op: (op of `folds` folds, arity, input units, weight shape for 2 folds).
SUM_OPS = {
    "dense": (lambda f: ops.DenseOp(3, 2, num_folds=f), 1, 3, (2, 2, 3)),
    "mixing": (lambda f: ops.MixingOp(3, 2, num_folds=f), 2, 3, (2, 3, 2)),
    "tucker": (lambda f: ops.TuckerOp(2, 3, 2, num_folds=f), 2, 2, (2, 3, 4)),
    "cp-t": (lambda f: ops.CPTOp(3, 2, 2, num_folds=f), 2, 3, (2, 2, 3)),
    "cp": (lambda f: ops.CPOp(3, 2, 2, num_folds=f), 2, 3, (2, 2, 2, 3)),
}
BATCH = torch.tensor([[[0, 1]], [[2, 0]]])  # two variables of 3 categories


def raw_weight_circuit(semiring: str, name: str, bad: float | None):
    """A 2-fold sum op of kind `name` whose weight is a raw tensor (no activation, so its
    sign is not known), with `bad` written at weight[1, 0, ...]; -> (circuit, node)."""
    make_op, arity, units, shape = SUM_OPS[name]
    b = Builder(semiring)
    inputs = [b.categorical(2, units) for _ in range(arity)]
    node = b.add(make_op(2), inputs, {"weight": b.positive(shape)})
    circuit = b.compile([node], seed=0)
    if bad is not None:
        with torch.no_grad():
            circuit.layers[-1].weight.nodes[0].value[(1,) + (0,) * (len(shape) - 1)] = bad
    return circuit, node


@pytest.mark.parametrize("name", list(SUM_OPS))
def test_a_negative_sum_weight_is_an_error_not_nan(name):
    semiring = "lse-sum"
    circuit, node = raw_weight_circuit(semiring, name, -0.25)
    j = len(circuit.layers) - 1
    zeros = ", ".join(["0"] * (len(SUM_OPS[name][3]) - 1))
    message = (
        rf"{name} layer %{node} \(circuit\.layers\[{j}\]\), fold 1: weight\[1, {zeros}\] ="
        rf" -0\.25 is negative, but semiring '{semiring}' needs non-negative weights and"
        r" probabilities.*softmax, exp.*semiring='complex-lse-sum' \(or 'sum-product'\)"
    )
    with pytest.raises(InputError, match=message):
        circuit(BATCH)
    with torch.no_grad(), pytest.raises(InputError, match=message):
        circuit.eval()(BATCH)  # the parameter cache checks too
    layer = circuit.layers[-1]
    x = torch.zeros((2, layer.arity, 1, layer.num_input_units), dtype=torch.float64)
    with pytest.raises(InputError, match=message):
        layer(x)  # a layer called by hand checks its own parameters


@pytest.mark.parametrize("semiring", ["sum-product", "complex-lse-sum"])
@pytest.mark.parametrize("name", list(SUM_OPS))
def test_semirings_of_signed_values_take_negative_sum_weights(semiring, name):
    circuit, _ = raw_weight_circuit(semiring, name, -0.25)
    assert not circuit.layers[-1].checked_params
    assert torch.isfinite(circuit(BATCH)).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_or_infinite_sum_weight_is_an_error(bad):
    circuit, _ = raw_weight_circuit("lse-sum", "dense", bad)
    with pytest.raises(InputError, match=rf"weight\[1, 0, 0\] = {bad}: 'weight' must be finite"):
        circuit(BATCH)


def test_weights_under_an_activation_are_not_checked():
    """softmax(raw) weights are non-negative whatever raw holds: no check, no cost."""
    b = Builder("lse-sum")
    raw = b.tensor((1, 2, 3))
    soft = b.graph.add_op(ops.SoftmaxOp(shape=(1, 2, 3)), [raw])
    node = b.add(ops.DenseOp(3, 2), [b.categorical(1, 3)], {"weight": soft})
    circuit = b.compile([node])
    assert circuit.layers[-1].checked_params == ()
    # (L[0], the categorical, reads raw probs; a native dense layer takes the logits)
    assert "yield L[1].prepare(" in circuit.code or "yield L[1].prepare_softmax(" in circuit.code
    positive, _ = raw_weight_circuit("lse-sum", "dense", None)
    assert positive.layers[-1].checked_params == ((0, "weight", Need.NONNEGATIVE),)
    assert "yield L[1].prepare_checked(" in positive.code


def negative_input_circuit(op, slot: str, shape):
    """`op` reading `slot` from a raw tensor whose first entry is -0.5, in lse-sum."""
    b = Builder("lse-sum")
    params = {slot: b.positive(shape)}
    if isinstance(op, ops.EvidenceOp):
        params["observation"] = b.tensor((shape[0], 1), UniformInitializer(0.0, 0.4))
    node = b.add(op, params=params)
    cat = b.categorical(1, op.num_output_units)
    circuit = b.compile([(node, 0), (cat, 0)], seed=0)
    with torch.no_grad():
        getattr(circuit.layers[0], slot).nodes[-1].value.view(-1)[0] = -0.5
    return circuit


@pytest.mark.parametrize(
    ("op", "slot", "shape"),
    [
        (ops.CategoricalOp((0,), 1, 2, num_categories=3), "probs", (1, 2, 1, 3)),
        (ops.EmbeddingOp((0,), 1, 2, num_states=3), "weight", (1, 2, 1, 3)),
        (ops.ConstantOp(2), "value", (1, 2)),
        (ops.EvidenceOp(ops.CategoricalOp((5,), 1, 2, num_categories=3)), "probs", (1, 2, 1, 3)),
    ],
)
def test_a_negative_probability_or_table_entry_is_an_error(op, slot, shape):
    circuit = negative_input_circuit(op, slot, shape)
    index = ", ".join(["0"] * len(shape))
    with pytest.raises(
        InputError, match=rf"{op.name} layer %\d+ .*: {slot}\[{index}\] = -0\.5 is negative"
    ):
        circuit(torch.zeros((2, 1, 1), dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# Parameters with a domain in every semiring: a binomial's probs, a gaussian's stddev

BINOMIAL_X = torch.tensor([[[0, 1]], [[1, 0]], [[2, 2]]]).expand(3, 2, 2)  # (B, C, D)
GAUSSIAN_X = torch.tensor([[[0.0, 1.0]], [[-2.0, 0.5]]], dtype=torch.float64).expand(2, 2, 2)


def binomial(total_count: int = 2) -> ops.BinomialOp:
    return ops.BinomialOp((0, 1), 2, 2, total_count=total_count, param="probs")


def domain_circuit(semiring, op, slot: str, bad: float | None, dtype=torch.float64):
    """`op` (2 folds, 2 units, 2 channels) whose parameters are raw tensors of valid values
    (0.5, and a mean of 0), with `bad` written at `slot`[1, 0, 1]."""
    shape = (2, 2, 2)
    params = {name: (shape, UniformInitializer(0.4, 0.6)) for name in op.param_slots}
    if "mean" in params:
        params["mean"] = (shape, NormalInitializer())
    circuit = input_circuit(semiring, op, params, seed=0, dtype=dtype)
    if bad is not None:
        with torch.no_grad():
            getattr(circuit.layers[0], slot).nodes[0].value[1, 0, 1] = bad
    return circuit


def raises_everywhere(circuit, x, message: str) -> None:
    """The circuit, its eval-mode parameter cache and its layer called by hand all raise."""
    with pytest.raises(InputError, match=message):
        circuit(x)
    with torch.no_grad(), pytest.raises(InputError, match=message):
        circuit.eval()(x)
    with pytest.raises(InputError, match=message):
        circuit.layers[0](x)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("total_count", [2, 5000])  # a table of all values, or the pmf at x
@pytest.mark.parametrize("bad", [-0.25, 1.5, math.inf])
def test_binomial_probs_outside_the_unit_interval_are_an_error(semiring, total_count, bad):
    """Outside [0, 1] the pmf is NaN, or a finite value above 1 (at x = 0 for probs < 0):
    wrong in every semiring, so every semiring checks."""
    circuit = domain_circuit(semiring, binomial(total_count), "probs", bad)
    assert circuit.layers[0].checked_params == ((0, "probs", Need.PROBABILITY),)
    message = (
        rf"binomial layer %\d+ \(circuit\.layers\[0\]\), fold 1: probs\[1, 0, 1\] = {bad:g}"
        r" is outside \[0, 1\], but 'probs' are probabilities.*sigmoid, softmax, clamp\(0, 1\)"
        r".*Or give the layer 'logits' instead of 'probs'"
    )
    raises_everywhere(circuit, BINOMIAL_X, message)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_binomial_probs_of_0_and_1_are_valid(semiring):
    circuit = domain_circuit(semiring, binomial(), "probs", None)
    with torch.no_grad():
        circuit.layers[0].probs.nodes[0].value[0] = 0.0
        circuit.layers[0].probs.nodes[0].value[1] = 1.0
    out = circuit(BINOMIAL_X)
    assert not out.isnan().any()
    # Fold 0 (probs 0) gives probability 1 to x = 0 only; fold 1 (probs 1) to x = 2 only.
    log_out = out.real if semiring != "sum-product" else out.log()
    zeros = torch.zeros(2, dtype=torch.float64)
    torch.testing.assert_close(log_out[0, 0], zeros, atol=1e-12, rtol=0)
    torch.testing.assert_close(log_out[2, 1], zeros, atol=1e-12, rtol=0)
    assert (log_out[1:, 0] == -math.inf).all() and (log_out[:2, 1] == -math.inf).all()


def test_a_nan_binomial_probability_is_an_error():
    circuit = domain_circuit("sum-product", binomial(), "probs", math.nan)
    with pytest.raises(InputError, match=r"probs\[1, 0, 1\] = nan: 'probs' must be finite"):
        circuit(BINOMIAL_X)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_a_gaussian_stddev_that_is_not_positive_is_an_error(semiring, bad):
    circuit = domain_circuit(semiring, ops.GaussianOp((0, 1), 2, 2), "stddev", bad)
    assert circuit.layers[0].checked_params == ((1, "stddev", Need.POSITIVE),)
    message = (
        rf"gaussian layer %\d+ \(circuit\.layers\[0\]\), fold 1: stddev\[1, 0, 1\] = {bad:g}"
        r" is not positive, but 'stddev' must be at least 2\.22507e-308, the smallest normal"
        r" torch\.float64.*a scaled sigmoid.*or a clamp with vmin > 0.*or softplus or exp"
    )
    raises_everywhere(circuit, GAUSSIAN_X, message)


@pytest.mark.parametrize("bad", [2.0**-140, math.inf, math.nan])
def test_a_gaussian_stddev_must_be_normal_and_finite(bad):
    """2^-140 is positive but subnormal in float32: its reciprocal overflows to inf."""
    circuit = domain_circuit("lse-sum", ops.GaussianOp((0, 1), 2, 2), "stddev", bad, torch.float32)
    message = (
        rf"stddev\[1, 0, 1\] = {bad:g} is too small, but 'stddev' must be at least 1\.17549e-38"
        if bad < 1
        else rf"stddev\[1, 0, 1\] = {bad}: 'stddev' must be finite, or the layer computes NaN"
    )
    with pytest.raises(InputError, match=message):
        circuit(GAUSSIAN_X.float())


def test_an_evidence_binomial_checks_its_probs():
    op = ops.EvidenceOp(ops.BinomialOp((5,), 1, 2, total_count=3, param="probs"))
    circuit = negative_input_circuit(op, "probs", (1, 2, 1))
    with pytest.raises(
        InputError, match=r"evidence layer %\d+ .*: probs\[0, 0, 0\] = -0\.5 is outside \[0, 1\]"
    ):
        circuit(torch.zeros((2, 1, 1), dtype=torch.long))


def activated_circuit(semiring, op, slot: str, activation: ops.ParamOp, raw: float):
    """`op` (as in `domain_circuit`) whose `slot` is `activation` of a raw tensor holding
    `raw` everywhere (a value the activation saturates on, say)."""
    b = Builder(semiring)
    params = {name: b.tensor((2, 2, 2), UniformInitializer(0.4, 0.6)) for name in op.param_slots}
    raw_node = b.tensor((2, 2, 2))
    params[slot] = b.graph.add_op(activation.replace(shape=(2, 2, 2)), [raw_node])
    node = b.add(op, params=params)
    circuit = b.compile([(node, f) for f in range(2)], seed=0)
    with torch.no_grad():
        getattr(circuit.layers[0], slot).nodes[0].value.fill_(raw)
    return circuit


UNIT_ACTIVATIONS = [
    ops.SigmoidOp(shape=(1,)),
    ops.SoftmaxOp(shape=(1,)),
    ops.ClampOp(0.0, 1.0, shape=(1,)),
    ops.ScaledSigmoidOp(0.05, 1.0, shape=(1,)),
]
POSITIVE_ACTIVATIONS = [
    ops.ScaledSigmoidOp(1e-4, 10.0, shape=(1,)),  # GaussianLayer's default
    ops.ClampOp(1e-18, shape=(1,)),  # the templates' 'positive-clamp'
]


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("raw", [-1e4, 0.0, 1e4])
@pytest.mark.parametrize(
    ("op", "slot", "activation"),
    [(binomial(), "probs", a) for a in UNIT_ACTIVATIONS]
    + [(ops.GaussianOp((0, 1), 2, 2), "stddev", a) for a in POSITIVE_ACTIVATIONS],
    ids=lambda v: getattr(v, "name", v),
)
def test_parameters_proven_in_their_domain_are_not_checked(semiring, raw, op, slot, activation):
    """No check in the layer or the code (no cost), and no NaN whatever the raw tensor."""
    circuit = activated_circuit(semiring, op, slot, activation, raw)
    assert circuit.layers[0].checked_params == ()
    assert "prepare_checked" not in circuit.code
    x = BINOMIAL_X if isinstance(op, ops.BinomialOp) else GAUSSIAN_X
    assert not circuit(x).isnan().any()


@pytest.mark.parametrize("activation", [ops.ExpOp(shape=(1,)), ops.SoftplusOp(shape=(1,))])
def test_a_stddev_under_exp_or_softplus_is_checked_as_it_underflows_to_0(activation):
    gaussian = ops.GaussianOp((0, 1), 2, 2)
    circuit = activated_circuit("lse-sum", gaussian, "stddev", activation, 0.0)
    assert circuit.layers[0].checked_params == ((1, "stddev", Need.POSITIVE),)
    assert "prepare_checked" in circuit.code
    assert torch.isfinite(circuit(GAUSSIAN_X)).all()
    with torch.no_grad():
        circuit.layers[0].stddev.nodes[0].value.fill_(-1e4)  # exp(-1e4) == 0
    with pytest.raises(InputError, match=r"stddev\[0, 0, 0\] = 0 is not positive"):
        circuit(GAUSSIAN_X)


def test_binomial_logits_take_any_value_unchecked():
    op = ops.BinomialOp((0, 1), 2, 2, total_count=3)
    circuit = input_circuit("lse-sum", op, {"logits": ((2, 2, 2), NormalInitializer(0, 100))})
    assert circuit.layers[0].checked_params == ()
    assert torch.isfinite(circuit(BINOMIAL_X)).all()


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("input_layer", ["categorical", "binomial", "gaussian"])
def test_template_circuits_with_default_parameters_emit_no_checks(semiring, input_layer):
    """The seed circuit (softmax probs, softmax tucker weights), and its binomial (logits)
    and gaussian (scaled-sigmoid stddev) variants: every parameter is proven valid."""
    circuit = seed_like((1, 2, 2), input_layer=input_layer)
    compiled = PipelineContext(semiring=semiring).compile(circuit, seed=0)
    assert all(layer.checked_params == () for layer in compiled.layers)
    assert "prepare_checked" not in compiled.code
