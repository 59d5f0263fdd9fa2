"""Triton kernels for the torch backend's contraction layers on GPUs.

Triton compiles each kernel for the GPU at its first launch (and caches it, in Triton's own
cache); it ships with torch's CUDA wheels. Where it is not installed (torch's CPU wheels)
`available()` is False and the layers compute with the eager kernels. The kernels also run on
CPU tensors under Triton's interpreter (`TRITON_INTERPRET=1`), which is how the tests check
them on machines without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType


def available() -> bool:
    """Whether Triton is installed (the kernels compile at their first launch)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter, on CPU tensors (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def load(name: str) -> ModuleType:
    """The module of jitted kernels `name` (imported on first use: it imports Triton)."""
    return importlib.import_module(f"{__name__}.{name}")
