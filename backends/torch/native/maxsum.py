"""The binary Tucker layer in max-sum (MAP) through the fused C++ kernels of `maxsum.cpp`:
the upward max without any (folds, out, K * K, batch) scores, and the top-down argmax
computed only for the unit each (fold, batch entry) visits.

Each function returns None where the kernels do not apply (not built, another device or
dtype, not binary); the caller then computes eagerly (`topdown`'s Tucker rule), with the
same values and the same picks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cirkit_ir.backends.torch import native

DTYPES = (torch.float32, torch.float64)


def _applies(x: Tensor, logw: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and logw.device.type == "cpu"
        and x.dtype in DTYPES
        and logw.dtype == x.dtype
        and x.dim() == 4
        and x.shape[1] == 2
        and native.load() is not None
    )


def tucker_max(x: Tensor, logw: Tensor) -> Tensor | None:
    """(F, 2, K, B) input logs, (F, O, K, K) log weights -> (F, O, B): the max over (i, j)
    of w[o, i, j] + (a[i] + c[j]); None where the kernel does not apply."""
    if not _applies(x, logw):
        return None
    f, o = logw.shape[:2]
    w = logw.reshape(f, o, -1).contiguous()
    return torch.ops.cirkit_ir_native.maxsum_tucker2_up(_rows(x), w)


def tucker_argmax(x: Tensor, logw: Tensor, units: Tensor) -> Tensor | None:
    """(F, 2, K, B) input logs, (F, O, K, K) log weights, (F, B) units (-1: none) ->
    (F, 2, B): the input units (i, j) of the first i * K + j attaining the max of unit
    units[f, b], -1 where it is -1; None where the kernel does not apply."""
    if not _applies(x, logw):
        return None
    f, o = logw.shape[:2]
    w = logw.reshape(f, o, -1).contiguous()
    units = units.expand(f, x.shape[3]).contiguous()
    return torch.ops.cirkit_ir_native.maxsum_tucker2_down(_rows(x), w, units)


def _rows(x: Tensor) -> Tensor:
    """`x` as the kernels read it: each (K, B) contiguous, any strides between them."""
    return x if x.stride(3) == 1 and x.stride(2) == x.shape[3] else x.contiguous()
