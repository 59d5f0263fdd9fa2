"""Why a forward returned NaN: a diagnosis that runs only after the cheap check failed.

`TorchCircuit.forward` tests its (B, outputs, units) result with one `isnan().any()` (one
device sync per forward, nothing per layer). Only when that finds a NaN does `diagnose` look
for the cause, in the order it arises: a parameter tensor that holds NaN (a loaded state, an
optimizer step), then a layer's prepared parameters that are NaN or +inf where they must be
finite (exp(89) in float32, a softmax of infinite draws), then the first layer whose output
holds NaN (the layers re-run one at a time, each output checked). The result names the
layer, the parameter, the fold and the index.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from cirkit_ir.backends.torch.exact import Rerun
from cirkit_ir.backends.torch.layers.base import TorchLayer, materialized_parameters
from cirkit_ir.backends.torch.semirings import pause_watch, stop_watch
from cirkit_ir.errors import NumericalError

if TYPE_CHECKING:
    from cirkit_ir.backends.torch.circuit import TorchCircuit

_ADVICE = (
    "; a smaller learning rate, a bounded parameterization (softmax rather than exp) or"
    " float64 avoids it"
)


def _where(bad: Tensor) -> tuple[int, ...]:
    """The index of the first True entry of `bad`."""
    return tuple(int(i) for i in bad.nonzero()[0])


def _fold_and_index(bad: Tensor) -> str:
    where = _where(bad)
    return f"fold {where[0]}, index {where[1:]}" if len(where) > 1 else f"index {where}"


def _bad(t: Tensor) -> Tensor:
    """NaN or +inf: never a valid parameter (a log of a probability may be -inf)."""
    real = t.real if t.is_complex() else t
    return torch.isnan(t) | (real == float("inf"))


def _layer_name(circuit: TorchCircuit, index: int) -> str:
    return circuit.layers[index].label


def diagnose(circuit: TorchCircuit, x: Tensor) -> NumericalError:
    """The error explaining the NaN that `circuit(x)` returned."""
    with torch.no_grad():
        for name, value in circuit.named_parameters():
            if torch.isnan(value).any():
                return NumericalError(
                    f"the parameter {name} holds NaN at {_fold_and_index(torch.isnan(value))}"
                    " (a loaded state or an optimizer step put it there)" + _ADVICE
                )
        with materialized_parameters():
            prepared = list(circuit._stream_fn(circuit))
        for index, params in enumerate(prepared):
            layer = circuit.layers[index]
            for slot, value in zip(_slot_names(layer, params), params, strict=False):
                if isinstance(value, Tensor) and (value.is_floating_point() or value.is_complex()):
                    bad = _bad(value)
                    if bad.any():
                        return NumericalError(
                            f"{_layer_name(circuit, index)}: its parameter {slot!r} evaluates to"
                            f" {value[bad].flatten()[0].item()} at {_fold_and_index(bad)} (beyond"
                            f" the range of {str(value.dtype).removeprefix('torch.')})" + _ADVICE
                        )
        culprit = _first_nan_layer(circuit, x, prepared)
    if culprit is not None:
        return NumericalError(
            f"{_layer_name(circuit, culprit[0])} computes NaN at {culprit[1]} from finite"
            " inputs and parameters" + _ADVICE
        )
    return NumericalError("the forward computed NaN from finite parameters" + _ADVICE)


def _slot_names(layer: TorchLayer, params: tuple) -> Iterator[str]:
    names = list(layer.param_names)
    for i in range(len(params)):
        yield names[i] if i < len(names) else f"#{i}"


class _Checked:
    """A layer whose outputs are checked for NaN (the first one found is recorded)."""

    def __init__(self, layer: TorchLayer, index: int, found: list) -> None:
        self.layer, self.index, self.found = layer, index, found

    def evaluate(self, x: Tensor, *prepared: Any) -> Tensor:
        y = self.layer.evaluate(x, *prepared)
        if not self.found and torch.isnan(y).any():
            self.found.append((self.index, _fold_and_index(torch.isnan(y))))
        return y


def _first_nan_layer(circuit: TorchCircuit, x: Tensor, prepared: list) -> tuple | None:
    found: list = []
    layers = tuple(_Checked(layer, i, found) for i, layer in enumerate(circuit._layer_tuple))
    previous = pause_watch()
    try:
        circuit._forward_fn(Rerun(circuit, prepared, layers), x)
    finally:
        stop_watch(previous)
    return found[0] if found else None
