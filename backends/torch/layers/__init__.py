"""Torch modules for folded circuit ops, one module per layer family."""

from backends.torch.layers.base import TorchLayer
from backends.torch.layers.inputs import (
    TorchBinomialLayer,
    TorchCategoricalLayer,
    TorchConstantLayer,
    TorchEmbeddingLayer,
    TorchEvidenceLayer,
    TorchGaussianLayer,
    TorchInputLayer,
)
from backends.torch.layers.products import TorchHadamardLayer, TorchKroneckerLayer
from backends.torch.layers.sums import (
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
