"""cirkit's `SumLayer` written with the sum layers the compiler lowers.

A `SumLayer` of arity H computes W [x_1; ...; x_H] with W of shape (K_out, H * K_in). The
IR has a dense op (one input) and a mixing op (a per-unit mixture of H inputs), so:

* arity 1: a `DenseLayer` with the same weight;
* a mixing weight (`MixingWeightParameter` of a (K, H) matrix w, K_in = K_out = K), or one
  unit in and out (W is (1, H)): a `MixingLayer` with weight w, resp. W;
* otherwise: per input h, a `DenseLayer` with the columns W_h = W @ S_h (S_h a constant
  0/1 matrix selecting input h's columns), summed by a `MixingLayer` of constant weight 1.

The weight graphs are shared, not copied: training the expanded circuit trains W.
"""

from __future__ import annotations

import numpy as np

from cirkit_ir.symbolic.builder import CircuitBuilder, rebuild
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import ConstantInitializer, ConstantTensorInitializer
from cirkit_ir.symbolic.layers import DenseLayer, Layer, MixingLayer, SumLayer
from cirkit_ir.symbolic.parameters import (
    MatMulParameter,
    MixingWeightParameter,
    ParameterNode,
    TensorParameter,
)


def _is_cirkit_sum(layer: Layer) -> bool:
    return type(layer) is SumLayer


def expand_sum_layers(circuit: Circuit) -> Circuit:
    """`circuit` with every `SumLayer` written as dense and mixing layers (see the module);
    `circuit` itself when it has none."""
    if not any(_is_cirkit_sum(layer) for layer in circuit.layers):
        return circuit
    return rebuild(circuit, _expand)


def _expand(layer: Layer, inputs: tuple[Layer, ...], builder: CircuitBuilder) -> Layer | None:
    if not _is_cirkit_sum(layer):
        return None
    assert isinstance(layer, SumLayer) and layer.weight is not None
    k_in, k_out, arity, weight = (
        layer.num_input_units,
        layer.num_output_units,
        layer.arity,
        layer.weight,
    )
    if arity == 1:
        return builder.add(DenseLayer(k_in, k_out, weight=weight), inputs)
    if isinstance(weight, MixingWeightParameter) and k_in == k_out:
        return builder.add(MixingLayer(k_out, arity, weight=weight.x), inputs)
    if k_in == k_out == 1:
        return builder.add(MixingLayer(1, arity, weight=weight), inputs)
    parts = [
        builder.add(DenseLayer(k_in, k_out, weight=_columns(weight, h, k_in, arity)), [x])
        for h, x in enumerate(inputs)
    ]
    ones = TensorParameter((k_out, arity), ConstantInitializer(1.0), learnable=False)
    return builder.add(MixingLayer(k_out, arity, weight=ones), parts)


def _columns(weight: ParameterNode, h: int, k_in: int, arity: int) -> ParameterNode:
    """Columns h * k_in ... (h + 1) * k_in - 1 of `weight`: its block for input h."""
    select = np.zeros((arity * k_in, k_in))
    select[h * k_in : (h + 1) * k_in, :] = np.eye(k_in)
    constant = TensorParameter(select.shape, ConstantTensorInitializer(select), learnable=False)
    return MatMulParameter(weight, constant)
