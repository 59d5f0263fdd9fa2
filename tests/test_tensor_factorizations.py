"""`cirkit_ir.templates.tensor_factorizations`: CP, Tucker and tensor-train circuits compute
exactly the tensor that `torch.einsum` contracts from their factors.

The factors hold small integers, so every product and sum is exact in float64: the compiled
circuit, evaluated at every index, must equal the einsum bit for bit, whatever the flags.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from cirkit_ir import errors
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic import (
    CategoricalLayer,
    DenseLayer,
    EmbeddingLayer,
    HadamardLayer,
    MixingLayer,
)
from cirkit_ir.templates import Parameterization, tensor_factorizations

SHAPE = (3, 4, 2, 3)
RANK = 2
FLAGS = [("sum-product", False, False), ("sum-product", True, True)]


def _integers(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(-3, 4, shape, generator=generator).to(torch.float64)


def _entries(circuit, values, fold: bool, optimize: bool) -> torch.Tensor:
    """The circuit at every index of SHAPE, as a tensor of SHAPE."""
    ctx = PipelineContext("torch", "sum-product", fold, optimize, dtype=torch.float64)
    compiled = ctx.compile(circuit, parameters=values)
    indices = torch.tensor(list(itertools.product(*(range(d) for d in SHAPE))))
    return compiled(indices).detach().reshape(SHAPE)


def _draw(circuit, seed: int) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Integer values for every learnable leaf, by source id and by id(leaf)."""
    generator = torch.Generator().manual_seed(seed)
    by_source, by_leaf = {}, {}
    for source, leaf in enumerate(circuit.tensor_parameters()):
        if leaf.learnable:
            by_source[source] = by_leaf[id(leaf)] = _integers(generator, leaf.shape)
    return by_source, by_leaf


def _factor(layer: EmbeddingLayer, by_leaf) -> torch.Tensor:
    """The (I, units) table of an embedding (one channel)."""
    return by_leaf[id(layer.weight)][:, 0, :].T


@pytest.mark.parametrize(("fold", "optimize"), [f[1:] for f in FLAGS])
def test_cp_is_the_einsum_of_its_factors(fold, optimize):
    circuit = tensor_factorizations.cp(SHAPE, RANK, weight_param=Parameterization())
    values, by_leaf = _draw(circuit, 0)
    a, b, c, d = (_factor(layer, by_leaf) for layer in circuit.input_layers)
    w = by_leaf[id(circuit.outputs[0].weight)][0]
    expected = torch.einsum("r,ir,jr,kr,lr->ijkl", w, a, b, c, d)
    assert torch.equal(_entries(circuit, values, fold, optimize), expected)


def test_cp_default_weights_are_fixed_ones():
    circuit = tensor_factorizations.cp(SHAPE, RANK)
    (output,) = circuit.outputs
    assert isinstance(output, DenseLayer) and not output.weight.learnable
    values, by_leaf = _draw(circuit, 1)
    a, b, c, d = (_factor(layer, by_leaf) for layer in circuit.input_layers)
    expected = torch.einsum("ir,jr,kr,lr->ijkl", a, b, c, d)
    assert torch.equal(_entries(circuit, values, False, False), expected)


@pytest.mark.parametrize(("fold", "optimize"), [f[1:] for f in FLAGS])
def test_tucker_is_the_einsum_of_its_core_and_factors(fold, optimize):
    circuit = tensor_factorizations.tucker(SHAPE, RANK)
    values, by_leaf = _draw(circuit, 2)
    a, b, c, d = (_factor(layer, by_leaf) for layer in circuit.input_layers)
    core = by_leaf[id(circuit.outputs[0].weight)].reshape((RANK,) * len(SHAPE))
    expected = torch.einsum("pqrs,ip,jq,kr,ls->ijkl", core, a, b, c, d)
    assert torch.equal(_entries(circuit, values, fold, optimize), expected)


@pytest.mark.parametrize(("fold", "optimize"), [f[1:] for f in FLAGS])
def test_tensor_train_is_the_einsum_of_its_cores(fold, optimize):
    circuit = tensor_factorizations.tensor_train(SHAPE, RANK)
    values, by_leaf = _draw(circuit, 3)
    tables = [by_leaf[id(layer.weight)][:, 0, :].T for layer in circuit.input_layers]
    # (I, R) each: V_1, then V_2's embeddings b = 0..R-1 (unit a is V_2[x, a, b]), V_3's, V_4
    v1, v4 = tables[0], tables[-1]
    v2 = torch.stack(tables[1 : 1 + RANK], dim=2)
    v3 = torch.stack(tables[1 + RANK : 1 + 2 * RANK], dim=2)
    expected = torch.einsum("ia,jab,kbc,lc->ijkl", v1, v2, v3, v4)
    assert torch.equal(_entries(circuit, values, fold, optimize), expected)


def test_tensor_train_shapes():
    circuit = tensor_factorizations.tensor_train((5, 6, 7), 3)
    assert all(layer.num_output_units == 3 for layer in circuit.input_layers)
    assert [layer.num_states for layer in circuit.input_layers] == [5, 6, 6, 6, 7]
    vector = tensor_factorizations.tensor_train((5,), 3)  # libcirkit: the first core's vector
    assert [layer.num_output_units for layer in vector.outputs] == [3]
    two = tensor_factorizations.tensor_train((2, 2), 2)
    assert not any(isinstance(layer, MixingLayer) for layer in two.layers)


def test_complex_cores():
    circuit = tensor_factorizations.tensor_train(
        (2, 3, 2), 2, factor_param=Parameterization(dtype="complex")
    )
    compiled = PipelineContext("torch", "complex-lse-sum", True, True, seed=0).compile(circuit)
    assert compiled(torch.tensor([[0, 2, 1]])).is_complex()


def test_factor_input_layers():
    categorical = tensor_factorizations.cp((3, 5), 2, input_layer="categorical")
    assert [type(layer) for layer in categorical.input_layers] == [CategoricalLayer] * 2
    assert [layer.num_categories for layer in categorical.input_layers] == [3, 5]
    binomial = tensor_factorizations.tucker((3, 5), 2, input_layer="binomial")
    assert [layer.total_count for layer in binomial.input_layers] == [3, 5]
    softmax = Parameterization(activation="softmax")
    normalized = tensor_factorizations.cp((3, 5), 2, input_params={"weight": softmax})
    assert all(layer.weight.name == "softmax" for layer in normalized.input_layers)
    one = tensor_factorizations.cp((4,), 3)  # one dimension: no product layer
    assert not any(isinstance(layer, HadamardLayer) for layer in one.layers)


@pytest.mark.parametrize("template", ["cp", "tucker", "tensor_train"])
@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (((), 2), {}, "non-empty tuple"),
        (((3, 0), 2), {}, r"shape\[1\] must be a positive"),
        (((3, 3), 0), {}, "rank must be a positive"),
        (((3, 3), 2), {"factor_param": "none"}, "must be a Parameterization"),
    ],
)
def test_bad_options(template, args, kwargs, match):
    if "factor_param" in kwargs and template != "tensor_train":
        kwargs = {"weight_param" if template == "cp" else "core_param": kwargs["factor_param"]}
    with pytest.raises(errors.OptionError, match=match):
        getattr(tensor_factorizations, template)(*args, **kwargs)


def test_unknown_factor_layer():
    with pytest.raises(errors.OptionError, match="unknown factor input layer 'gaussian'"):
        tensor_factorizations.cp((3, 3), 2, input_layer="gaussian")
