"""The symbolic circuit that the compiler lowers: one op per layer, smooth sums."""

from __future__ import annotations

from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.smoothing import smooth
from cirkit_ir.symbolic.sum_layers import expand_sum_layers


def lowerable(circuit: Circuit) -> Circuit:
    """`circuit` with cirkit's `SumLayer`s written as dense and mixing layers, smoothed; the
    same function, and `circuit` itself when it needs neither.

    `cirkit_ir.ir.lower` takes the result: ``lower(lowerable(circuit))`` is the first stage of
    `PipelineContext.compile`. A compiled circuit's `symbolic_state()` is keyed by the tensor
    parameters of this circuit (the same as `circuit`'s when nothing was rewritten).
    """
    return smooth(expand_sum_layers(circuit))
