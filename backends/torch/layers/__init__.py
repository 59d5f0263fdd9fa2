"""Torch modules for folded circuit ops, one module per layer family."""

from cirkit_ir.backends.torch.layers.base import TorchLayer
from cirkit_ir.backends.torch.layers.inputs import (
    TorchBinomialLayer,
    TorchCategoricalLayer,
    TorchConstantLayer,
    TorchEmbeddingLayer,
    TorchEvidenceLayer,
    TorchGaussianLayer,
    TorchInputLayer,
)
from cirkit_ir.backends.torch.layers.products import TorchHadamardLayer, TorchKroneckerLayer
from cirkit_ir.backends.torch.layers.sums import (
    TorchCPLayer,
    TorchCPTLayer,
    TorchDenseLayer,
    TorchMixingLayer,
    TorchTuckerLayer,
)

__all__ = [
    "TorchBinomialLayer",
    "TorchCPLayer",
    "TorchCPTLayer",
    "TorchCategoricalLayer",
    "TorchConstantLayer",
    "TorchDenseLayer",
    "TorchEmbeddingLayer",
    "TorchEvidenceLayer",
    "TorchGaussianLayer",
    "TorchHadamardLayer",
    "TorchInputLayer",
    "TorchKroneckerLayer",
    "TorchLayer",
    "TorchMixingLayer",
    "TorchTuckerLayer",
]
