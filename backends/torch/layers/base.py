"""`TorchLayer`: the module of one (folded) circuit op.

Memory layout. Values are (folds, units, batch) tensors: the batch is the innermost,
contiguous axis, so reductions over units, broadcasts between inputs and the (out x in) @
(in x batch) contractions all run over long contiguous rows (about 4x faster than a
units-innermost layout at 4 units). `evaluate` works on that layout and is what the
generated forward calls. `forward` is the layer as libcirkit users know it, on the logical
(folds, arity, batch, units) input, returning (folds, batch, units): it evaluates the layer's
own parameters and transposes (views only).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from backends.torch.parameters import TorchParameter
from backends.torch.semirings import Semiring


class TorchLayer(nn.Module):
    """A folded circuit layer with its parameters as `TorchParameter` children."""

    def __init__(
        self,
        *,
        num_folds: int,
        arity: int,
        num_input_units: int,
        num_output_units: int,
        semiring: Semiring,
        params: Mapping[str, TorchParameter] | None = None,
    ) -> None:
        super().__init__()
        self.num_folds = num_folds
        self.arity = arity
        self.num_input_units = num_input_units
        self.num_output_units = num_output_units
        self.semiring = semiring
        self.param_names = tuple(params or {})
        for name, param in (params or {}).items():
            self.add_module(name, param)

    # -- computing ------------------------------------------------------------------------------

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        """Turns parameter values (one per slot) into what `evaluate` reads, once per forward
        (and once for all in cached evaluation): log tables, transposed weights, ..."""
        return params

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        """(F, arity, K_in, B) -> (F, K_out, B)."""
        raise NotImplementedError

    def parameter_values(self) -> tuple[Tensor, ...]:
        """This layer's prepared parameters, evaluated from its own parameter graphs."""
        return self.prepare(*(getattr(self, name)() for name in self.param_names))

    def forward(self, x: Tensor) -> Tensor:
        """(F, arity, B, K_in) -> (F, B, K_out), any memory layout."""
        return self.evaluate(x.transpose(-1, -2), *self.parameter_values()).transpose(-1, -2)

    # -- printing -------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        f, h = self.num_folds, self.arity
        return (
            f"folds: {f}  arity: {h}  input-units: {self.num_input_units}"
            f"  output-units: {self.num_output_units}\n"
            f"input-shape: {(f, h, -1, self.num_input_units)}\n"
            f"output-shape: {(f, -1, self.num_output_units)}"
        )
