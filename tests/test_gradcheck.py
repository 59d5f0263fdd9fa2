"""`torch.autograd.gradcheck` of small float64 compiled circuits w.r.t. their parameters.

Every input layer (categorical with probabilities or logits, binomial with logits or
probabilities, gaussian, embedding) and every inner layer the backend emits (dense, mixing,
hadamard, kronecker unfused; tucker, cp, cp-t fused) is covered, under every semiring. The
circuit call is wrapped as a function of its parameter tensors with
`torch.func.functional_call`, so gradcheck perturbs exactly what training would update.
"""

from __future__ import annotations

import pytest
import torch

from cirkit_ir import reference
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.region_graph import quad_graph, random_binary_tree
from cirkit_ir.symbolic import (
    BinomialLayer,
    CategoricalLayer,
    Circuit,
    DenseLayer,
    EmbeddingLayer,
    ExpParameter,
    GaussianLayer,
    HadamardLayer,
    KroneckerLayer,
    MixingLayer,
    ScaledSigmoidParameter,
    SigmoidParameter,
    SoftmaxParameter,
    TensorParameter,
)
from cirkit_ir.templates import circuit_from_region_graph

SEMIRINGS = ("sum-product", "lse-sum", "complex-lse-sum")


def compile_circuit(circuit, semiring, *, fold=True, optimize=True, seed=0):
    ctx = PipelineContext(semiring=semiring, fold=fold, optimize=optimize, dtype=torch.float64)
    return ctx.compile(circuit, seed=seed)


def layer_names(compiled) -> set[str]:
    return {type(layer).__name__ for layer in compiled.layers}


def check_gradients(compiled, x: torch.Tensor) -> None:
    """gradcheck of x -> compiled(x) as a function of every learnable parameter."""
    named = [(n, p) for n, p in compiled.named_parameters() if p.requires_grad]
    assert named, "the compiled circuit has no learnable parameters"
    names = [n for n, _ in named]
    tensors = tuple(p.detach().clone().requires_grad_(True) for _, p in named)
    assert all(t.dtype in (torch.float64, torch.complex128) for t in tensors)

    def call(*values: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(compiled, dict(zip(names, values, strict=True)), (x,))
        # Compare gradients of real quantities: the real and imaginary parts of complex logs.
        return torch.view_as_real(out) if out.is_complex() else out

    assert torch.autograd.gradcheck(call, tensors, eps=1e-6, atol=1e-6, rtol=1e-4)


def two_variable_circuit(input_factory, sum_product="cp-t"):
    return circuit_from_region_graph(
        random_binary_tree(2, seed=0),
        input_factory=input_factory,
        sum_product=sum_product,
        num_input_units=2,
        num_sum_units=2,
        num_classes=2,
    )


INPUTS = {
    "categorical-probs": (
        lambda scope, k: CategoricalLayer(scope, k, num_categories=3),
        lambda g: torch.randint(3, (3, 1, 2), generator=g),
    ),
    "categorical-logits": (
        lambda scope, k: CategoricalLayer(
            scope, k, num_categories=3, logits=TensorParameter((k, 1, 3))
        ),
        lambda g: torch.randint(3, (3, 1, 2), generator=g),
    ),
    "binomial-logits": (
        lambda scope, k: BinomialLayer(scope, k, total_count=4),
        lambda g: torch.randint(5, (3, 1, 2), generator=g),
    ),
    "binomial-probs": (
        lambda scope, k: BinomialLayer(
            scope, k, total_count=4, probs=SigmoidParameter(TensorParameter((k, 1)))
        ),
        lambda g: torch.randint(5, (3, 1, 2), generator=g),
    ),
    "gaussian": (
        lambda scope, k: GaussianLayer(
            scope,
            k,
            num_channels=2,
            stddev=ScaledSigmoidParameter(TensorParameter((k, 2)), vmin=0.5, vmax=2.0),
        ),
        lambda g: torch.randn((3, 2, 2), generator=g, dtype=torch.float64),
    ),
    "embedding": (
        lambda scope, k: EmbeddingLayer(
            scope, k, num_states=3, weight=ExpParameter(TensorParameter((k, 1, 3)))
        ),
        lambda g: torch.randint(3, (3, 1, 2), generator=g),
    ),
}


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("input_layer", sorted(INPUTS))
def test_input_layers(input_layer, semiring):
    factory, data = INPUTS[input_layer]
    circuit = two_variable_circuit(factory)
    compiled = compile_circuit(circuit, semiring, seed=1)
    check_gradients(compiled, data(torch.Generator().manual_seed(0)))


def _inner_circuit():
    """Every unfused inner layer: kronecker -> dense, hadamard -> dense, mixing of both."""
    cats = [
        CategoricalLayer(
            [v], 2, num_categories=3, probs=SoftmaxParameter(TensorParameter((2, 1, 3)))
        )
        for v in range(2)
    ]
    kron = KroneckerLayer(2, 2)
    had = HadamardLayer(2, 2)
    dense_k = DenseLayer(4, 2)
    dense_h = DenseLayer(2, 2, weight=ExpParameter(TensorParameter((2, 2))))
    mix = MixingLayer(2, 2)
    layers = [*cats, kron, had, dense_k, dense_h, mix]
    wiring = {kron: cats, had: cats, dense_k: [kron], dense_h: [had], mix: [dense_k, dense_h]}
    return Circuit(layers, wiring, [mix])


X3 = torch.tensor([[0, 1], [2, 2], [1, 0]])[:, None, :]


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize("fold", [False, True])
def test_dense_mixing_hadamard_kronecker_unfused(semiring, fold):
    compiled = compile_circuit(_inner_circuit(), semiring, fold=fold, optimize=False, seed=2)
    names = layer_names(compiled)
    for kind in ("Dense", "Mixing", "Hadamard", "Kronecker"):
        assert any(kind in name for name in names), (kind, names)
    check_gradients(compiled, X3)


@pytest.mark.parametrize("semiring", SEMIRINGS)
@pytest.mark.parametrize(
    ("sum_product", "fused"), [("tucker", "Tucker"), ("cp", "CP"), ("cp-t", "CPT")]
)
def test_fused_layers(sum_product, fused, semiring):
    circuit = circuit_from_region_graph(
        quad_graph((2, 2)),
        input_factory=lambda scope, k: CategoricalLayer(scope, k, num_categories=3),
        sum_product=sum_product,
        num_input_units=2,
        num_sum_units=2,
    )
    compiled = compile_circuit(circuit, semiring, optimize=True, seed=3)
    names = layer_names(compiled)
    assert f"Torch{fused}Layer" in names, names
    x = torch.randint(3, (3, 1, 4), generator=torch.Generator().manual_seed(1))
    check_gradients(compiled, x)


@pytest.mark.parametrize("semiring", ["lse-sum", "complex-lse-sum"])
def test_matches_reference_gradients(semiring):
    # The gradient of the summed log-likelihood agrees with the reference's autograd.
    circuit = _inner_circuit()
    compiled = compile_circuit(circuit, semiring, seed=4)
    compiled(X3).real.sum().backward()
    leaves = {
        s: v.detach().clone().requires_grad_(True) for s, v in compiled.symbolic_state().items()
    }
    reference.evaluate(circuit, X3, leaves).real.sum().backward()
    # Parameters are in the compiled circuit's own (folded) layout, so compare through the
    # symbolic state: its gradient is the chain rule through the same leaves.
    state_grads = {s: v.grad for s, v in leaves.items()}
    assert all(g is not None and torch.isfinite(g).all() for g in state_grads.values())
    total_ref = sum(g.abs().sum() for g in state_grads.values())
    total = sum(p.grad.abs().sum() for p in compiled.parameters() if p.grad is not None)
    torch.testing.assert_close(total, total_ref, rtol=1e-9, atol=1e-12)
