"""Probabilistic integral circuits: quadrature rules, `pc2qpc` materialization and training."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from cirkit_ir import reference
from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.ir import lower, parse_ir, print_ir, verify
from cirkit_ir.passes import PassManager
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.quadrature import quadrature, zw_quadrature
from cirkit_ir.symbolic import (
    CategoricalLayer,
    Circuit,
    ConstantTensorInitializer,
    DenseLayer,
    GaussianLayer,
    HadamardLayer,
    KroneckerLayer,
    rebuild,
)
from cirkit_ir.symbolic.pic import PICInputNetParameter, net_state, pc2qpc

# -- quadrature rules ------------------------------------------------------------------------


def _integral_of_monomial(degree: int, a: float, b: float) -> float:
    return (b ** (degree + 1) - a ** (degree + 1)) / (degree + 1)


@pytest.mark.parametrize(
    ("method", "nip", "exact_degree"),
    [("trapezoidal", 5, 1), ("midpoint", 4, 1), ("simpson", 7, 3), ("leggauss", 5, 9)],
)
def test_rules_integrate_polynomials_exactly_to_their_degree(method, nip, exact_degree):
    a, b = -0.5, 2.0
    z, w = quadrature(method, nip, a, b)
    for degree in range(exact_degree + 1):
        assert np.dot(w, z**degree) == pytest.approx(_integral_of_monomial(degree, a, b), abs=1e-12)
    # and not beyond: the next degree is off (the rules are exactly as strong as claimed)
    missed = np.dot(w, z ** (exact_degree + 1)) - _integral_of_monomial(exact_degree + 1, a, b)
    assert abs(missed) > 1e-8


@pytest.mark.parametrize(("method", "order"), [("trapezoidal", 2), ("leggauss", None)])
def test_rules_converge_on_smooth_functions(method, order):
    exact = math.e - math.exp(-1)  # the integral of exp over [-1, 1]
    rules = [quadrature(method, nip) for nip in (4, 8, 16)]
    errors = [abs(np.dot(w, np.exp(z)) - exact) for z, w in rules]
    assert errors[0] > errors[1] > errors[2] or errors[2] < 1e-14
    if order is not None:  # steps 2/7 and 2/15: the error shrinks by (15/7)^order
        assert errors[1] / errors[2] == pytest.approx((15 / 7) ** order, rel=0.05)
    else:
        assert errors[1] < 1e-9


def test_zw_quadrature_is_libcirkits_signature():
    z, w = zw_quadrature("leggauss", 3, a=0.0, b=1.0, return_log_weight=True, dtype=torch.float64)
    expected_z, expected_w = quadrature("leggauss", 3, 0.0, 1.0)
    assert z.dtype == torch.float64
    torch.testing.assert_close(z, torch.from_numpy(expected_z))
    torch.testing.assert_close(w.exp(), torch.from_numpy(expected_w))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("leggauss", 0), "nip"),
        (("leggauss", 2.5), "nip"),
        (("gauss-hermite", 4), "unknown integration_method"),
        (("trapezoidal", 1), "nip >= 2"),
        (("simpson", 4), "odd"),
        (("leggauss", 4, 1.0, 1.0), "a < b"),
    ],
)
def test_bad_quadrature_options_are_option_errors(args, match):
    with pytest.raises(OptionError, match=match):
        quadrature(*args)


# -- PICs and their QPCs -----------------------------------------------------------------------

NET = {"net_dim": 12}  # small nets keep the tests fast


def _pc(units: int, num_categories: int = 2) -> Circuit:
    """Three variables: a Tucker integral over (x0, x1), a CP-style one over x2, a root."""
    inputs = [CategoricalLayer((v,), units, num_categories=num_categories) for v in range(3)]
    kron, tucker = KroneckerLayer(units, 2), DenseLayer(units * units, units)
    dense = DenseLayer(units, units)
    product, root = HadamardLayer(units, 2), DenseLayer(units, 1)
    wiring = {
        kron: inputs[:2],
        tucker: [kron],
        dense: [inputs[2]],
        product: [tucker, dense],
        root: [product],
    }
    return Circuit([*inputs, kron, tucker, dense, product, root], wiring, [root])


def _qpc(units: int, method: str = "leggauss", **options) -> Circuit:
    return pc2qpc(_pc(units), method, **{**NET, **options})


def _net_values(qpc: Circuit, seed: int = 0) -> dict[int, torch.Tensor]:
    """Values of the nets' tensors, by source: the same for every number of points."""
    torch.manual_seed(seed)
    return {
        source: leaf.initializer.sample(leaf.shape, reference.REAL)
        for source, leaf in enumerate(qpc.tensor_parameters())
        if not isinstance(leaf.initializer, ConstantTensorInitializer)  # points and weights
    }


ALL_STATES = torch.cartesian_prod(*[torch.arange(2)] * 3).unsqueeze(1)  # (8, 1, 3)


def _probabilities(qpc: Circuit, values: dict[int, torch.Tensor]) -> torch.Tensor:
    return reference.evaluate(qpc, ALL_STATES, values).exp().flatten()


def test_pc2qpc_replaces_parameters_by_nets_that_lower_to_parameter_ops():
    qpc = _qpc(3)
    counts = lower(qpc).op_counts()
    assert counts["pic-input-net"] == 1  # input_sharing='f': one net for all input layers
    assert counts["pic-inner-net"] == 3  # a Tucker (3 arguments), a dense (2), the root (1)
    assert counts["kronecker"] == counts["hadamard"] == 1
    weights = [layer.weight for layer in qpc.layers if isinstance(layer, DenseLayer)]
    assert sorted(w.shape for w in weights) == [(1, 3), (3, 3), (3, 9)]


def test_ir_text_round_trips_and_folds():
    graph = lower(_qpc(2))
    text = print_ir(graph)
    assert "pic-inner-net" in text and print_ir(parse_ir(text)) == text
    folded = PassManager.parse("fold,lower-semiring{semiring=lse-sum},fuse,dce").run(graph)
    verify(folded)


@pytest.mark.parametrize(("fold", "optimize"), [(False, False), (True, True)])
def test_compiled_qpc_matches_the_reference(fold, optimize):
    qpc = _qpc(3, input_sharing="c", inner_sharing="none")
    compiled = PipelineContext(semiring="lse-sum", fold=fold, optimize=optimize, seed=1).compile(
        qpc
    )
    expected = reference.evaluate(qpc, ALL_STATES, compiled.symbolic_state())
    torch.testing.assert_close(compiled(ALL_STATES).double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["leggauss", "trapezoidal"])
def test_qpc_converges_to_the_pic_as_points_increase(method):
    values = _net_values(_qpc(2))  # the nets' tensors do not depend on the points
    target = _probabilities(_qpc(40, method), values)
    errors = [
        (_probabilities(_qpc(k, method), values) - target).abs().max().item() for k in (4, 8, 16)
    ]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < (1e-4 if method == "leggauss" else 1e-2), errors


@pytest.mark.parametrize("semiring", ["lse-sum", "sum-product"])
def test_qpc_is_normalized(semiring):
    qpc = _qpc(4, "trapezoidal", inner_sharing="f")
    compiled = PipelineContext(semiring=semiring, seed=3).compile(qpc)
    total = compiled(ALL_STATES)
    total = total.exp().sum() if semiring == "lse-sum" else total.sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)
    assert _probabilities(qpc, _net_values(qpc)).sum().item() == pytest.approx(1.0, abs=1e-12)


def test_inner_net_weights_are_quadrature_weighted_and_row_normalized():
    qpc = _qpc(5, "trapezoidal")
    computed = reference.evaluate_parameters(qpc, _net_values(qpc))
    weight = computed[
        id(next(layer.weight for layer in qpc.layers if isinstance(layer, DenseLayer)))
    ]
    torch.testing.assert_close(weight.sum(-1), torch.ones(weight.shape[0], dtype=weight.dtype))


def test_gradients_reach_every_mlp_weight():
    qpc = _qpc(3, input_sharing="none", inner_sharing="c")
    compiled = PipelineContext(semiring="lse-sum", seed=0).compile(qpc)
    loss = -compiled(ALL_STATES).mean()
    loss.backward()
    params = list(compiled.parameters())
    # the MLPs' weights and biases; the Fourier coefficients, points and weights are fixed
    learnable = [leaf for leaf in qpc.tensor_parameters() if leaf.learnable]
    assert sum(p.numel() for p in params) == sum(math.prod(leaf.shape) for leaf in learnable)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    optimizer = torch.optim.Adam(compiled.parameters(), lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        loss_now = -compiled(ALL_STATES[:2]).mean()
        loss_now.backward()
        optimizer.step()
    assert -compiled(ALL_STATES[:2]).mean().item() < loss_now.item()


def test_learn_ff_makes_the_fourier_coefficients_learnable():
    fixed = {leaf.shape for leaf in _qpc(2).tensor_parameters() if not leaf.learnable}
    learned = {leaf.shape for leaf in _qpc(2, learn_ff=True).tensor_parameters() if leaf.learnable}
    assert (1, 6) in fixed and (3, 6) in fixed  # (arguments, ff_dim / 2)
    assert (1, 6) in learned and (3, 6) in learned


def test_sharing_modes_share_what_they_say():
    def distinct_leaves(**options):
        return len(_qpc(2, **options).tensor_parameters())

    # 'f' shares whole nets, 'c' the Fourier features and hidden layers, 'none' nothing
    assert distinct_leaves(input_sharing="f") < distinct_leaves(input_sharing="c")
    assert distinct_leaves(input_sharing="c") < distinct_leaves(input_sharing="none")
    qpc = _qpc(2, input_sharing="f")
    nets = {id(layer.probs.x) for layer in qpc.layers if isinstance(layer, CategoricalLayer)}
    assert len(nets) == 1


def test_gaussian_inputs_get_separate_nets_for_mean_and_stddev():
    pc = _pc(2)
    gaussians = rebuild(
        pc,
        lambda layer, inputs, builder: (
            builder.add(GaussianLayer(layer.scope, 2), inputs)
            if isinstance(layer, CategoricalLayer)
            else None
        ),
    )
    qpc = pc2qpc(gaussians, "leggauss", **NET)
    layer = next(layer for layer in qpc.layers if isinstance(layer, GaussianLayer))
    assert isinstance(layer.mean, PICInputNetParameter)
    assert layer.stddev.x is not layer.mean  # the stddev's own net, under its reparameterization
    x = torch.randn(4, 1, 3)
    compiled = PipelineContext(semiring="lse-sum", seed=0).compile(qpc)
    expected = reference.evaluate(qpc, x, compiled.symbolic_state())
    torch.testing.assert_close(compiled(x).double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"integration_method": "romberg"}, "unknown integration_method"),
        ({"input_sharing": "full"}, "input_sharing"),
        ({"ff_dim": 5}, "even"),
        ({"net_dim": 0}, "net_dim"),
        ({"ff_sigma": -1.0}, "ff_sigma"),
    ],
)
def test_bad_pc2qpc_options_are_option_errors(options, match):
    with pytest.raises(OptionError, match=match):
        pc2qpc(_pc(2), **{"integration_method": "leggauss", **options})


def test_pc2qpc_refuses_what_is_not_an_integral():
    inputs = [CategoricalLayer((v,), 3, num_categories=2) for v in range(2)]
    product, root = HadamardLayer(3, 2), DenseLayer(3, 2)
    unequal = Circuit([*inputs, product, root], {product: inputs, root: [product]}, [root])
    with pytest.raises(StructureError, match="one grid per latent"):
        pc2qpc(unequal, "leggauss")
    with pytest.raises(OptionError, match="symbolic Circuit"):
        pc2qpc(lower(_pc(2)), "leggauss")


def test_the_digits_example_trains_a_qpc():
    pytest.importorskip("sklearn")
    example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "pic.py"))
    train_data, test_data = example["digits"]()
    assert train_data.shape[1:] == (1, 64) and int(train_data.max()) <= 16
    circuit = PipelineContext(semiring="lse-sum", seed=0).compile(example["qpc"](2, "leggauss", 8))
    before = example["bits_per_dim"](circuit, test_data)
    example["train"](circuit, train_data, epochs=1, steps=10)
    after = example["bits_per_dim"](circuit, test_data)
    assert math.isfinite(after) and after < before


def test_net_state_moves_trained_nets_to_more_points():
    few, many = _qpc(2), _qpc(5)
    trained = PipelineContext(semiring="lse-sum", seed=5).compile(few)
    state = net_state(few, trained.symbolic_state())
    assert len(state) == len(few.tensor_parameters()) - 2  # all but the points and weights
    more = PipelineContext(semiring="lse-sum", seed=9).compile(many)
    more.load_symbolic_state(state, strict=False)
    expected = reference.evaluate(many, ALL_STATES, state)
    torch.testing.assert_close(more(ALL_STATES).double(), expected, atol=1e-5, rtol=1e-5)
