"""cirkit-ir: a compiler from symbolic probabilistic circuits to fast PyTorch modules."""

__version__ = "0.1.0"

from cirkit_ir.serialization import load, save  # noqa: E402 - after __version__, which they read

__all__ = ["__version__", "load", "save"]
