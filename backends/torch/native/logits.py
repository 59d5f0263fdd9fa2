"""When a native kernel takes a softmax's logits and normalizes them in its own loop."""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch.layers import base


def keeps_logits(logits: Tensor, axis: int) -> bool:
    """Whether a kernel that normalizes the last axis may take `logits` as they are: the
    softmax is over that axis, the caller does not want the prepared parameters as tensors
    (`materialized_parameters`: the eval-mode cache, the exact float64 rerun), and no torch
    function mode observes the calls (EM's E-step reads its counts off the outputs of the
    torch.softmax calls it sees, so then the softmax must be one)."""
    return (
        axis in (-1, logits.dim() - 1) and not base.materializing() and not _function_mode_active()
    )


def _function_mode_active() -> bool:
    """Whether a `torch.overrides.TorchFunctionMode` sees torch calls now (torch has no
    public query for this; the private one below is what its own dispatch reads)."""
    return torch._C._is_torch_function_mode_enabled()
