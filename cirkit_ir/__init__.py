"""cirkit-ir: a compiler from symbolic probabilistic circuits to fast PyTorch modules."""

__version__ = "0.1.0"
