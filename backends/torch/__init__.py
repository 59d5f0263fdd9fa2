"""The torch backend: IR graph -> `TorchCircuit` (an nn.Module with a generated forward)."""

from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.backends.torch.codegen import codegen, make_layer, make_parameter_node
from cirkit_ir.backends.torch.kernels import (
    layer_class,
    parameter_node_class,
    register_layer,
    register_parameter_node,
)
from cirkit_ir.backends.torch.layers import (
    TorchBinomialLayer,
    TorchCategoricalLayer,
    TorchConstantLayer,
    TorchCPLayer,
    TorchCPTLayer,
    TorchDenseLayer,
    TorchEmbeddingLayer,
    TorchEvidenceLayer,
    TorchGaussianLayer,
    TorchHadamardLayer,
    TorchInputLayer,
    TorchKroneckerLayer,
    TorchLayer,
    TorchMixingLayer,
    TorchTuckerLayer,
)
from cirkit_ir.backends.torch.native import cp as _native_cp  # noqa: F401 (registers)
from cirkit_ir.backends.torch.native import cpt as _native_cpt  # noqa: F401 (registers)
from cirkit_ir.backends.torch.native import mixing as _native_mixing  # noqa: F401 (registers)
from cirkit_ir.backends.torch.native import tucker as _native_tucker  # noqa: F401 (registers)
from cirkit_ir.backends.torch.triton_kernels import cp as _triton_cp  # noqa: F401 (registers)
from cirkit_ir.backends.torch.triton_kernels import tucker as _triton_tucker  # noqa: F401 (registers)
from cirkit_ir.backends.torch.parameters import (
    TorchClampParameter,
    TorchExpParameter,
    TorchKroneckerParameter,
    TorchLogParameter,
    TorchLogSoftmaxParameter,
    TorchMatMulParameter,
    TorchMixingWeightParameter,
    TorchParameter,
    TorchParameterNode,
    TorchReduceParameter,
    TorchScaledSigmoidParameter,
    TorchSigmoidParameter,
    TorchSoftmaxParameter,
    TorchSoftplusParameter,
    TorchStackParameter,
    TorchTensorParameter,
)
from cirkit_ir.backends.torch.semirings import SEMIRINGS, Semiring

__all__ = [
    "SEMIRINGS",
    "Semiring",
    "TorchBinomialLayer",
    "TorchCPLayer",
    "TorchCPTLayer",
    "TorchCategoricalLayer",
    "TorchCircuit",
    "TorchClampParameter",
    "TorchConstantLayer",
    "TorchDenseLayer",
    "TorchEmbeddingLayer",
    "TorchEvidenceLayer",
    "TorchExpParameter",
    "TorchGaussianLayer",
    "TorchHadamardLayer",
    "TorchInputLayer",
    "TorchKroneckerLayer",
    "TorchKroneckerParameter",
    "TorchLayer",
    "TorchLogParameter",
    "TorchLogSoftmaxParameter",
    "TorchMatMulParameter",
    "TorchMixingLayer",
    "TorchMixingWeightParameter",
    "TorchParameter",
    "TorchParameterNode",
    "TorchReduceParameter",
    "TorchScaledSigmoidParameter",
    "TorchSigmoidParameter",
    "TorchSoftmaxParameter",
    "TorchSoftplusParameter",
    "TorchStackParameter",
    "TorchTensorParameter",
    "TorchTuckerLayer",
    "codegen",
    "layer_class",
    "make_layer",
    "make_parameter_node",
    "parameter_node_class",
    "register_layer",
    "register_parameter_node",
]

# Registers the kernels of the PIC parameter ops (`cirkit_ir.ir.pic_ops`).
from cirkit_ir.backends.torch import pic as _pic  # noqa: E402, F401
