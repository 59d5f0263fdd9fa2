"""Result types of IR ops.

A circuit op yields a tensor of shape (folds, batch, units); a parameter op yields a tensor
whose first dimension is the fold dimension. The batch size is not part of the type.
"""

from __future__ import annotations

from typing import Literal

import attrs

DType = Literal["real", "complex"]
SEMIRINGS: tuple[str, ...] = ("sum-product", "lse-sum", "complex-lse-sum")


@attrs.frozen
class CircuitType:
    """(folds, batch, units) values, real or complex."""

    folds: int
    units: int
    dtype: DType = "real"

    def __str__(self) -> str:
        return f"{self.folds}x?x{self.units}" + ("xcomplex" if self.dtype == "complex" else "")


@attrs.frozen
class ParamType:
    """A parameter tensor; `shape[0]` is the number of folds."""

    shape: tuple[int, ...]
    dtype: DType = "real"

    @property
    def folds(self) -> int:
        return self.shape[0]

    def __str__(self) -> str:
        dims = "x".join(map(str, self.shape))
        return dims + ("xcomplex" if self.dtype == "complex" else "")


MAX_SEMIRINGS: tuple[str, ...] = ("max-sum", "max-product")
"""Semirings an op may be lowered to for MAP (a sum keeps its largest term); `MAPQuery`
evaluates them, codegen compiles no forward for them."""
