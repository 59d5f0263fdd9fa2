"""Exact float32 log-likelihoods: batch entries whose sums underflowed, recomputed.

The packed form (`semirings`) keeps one log scale per column, so in float32 a unit more than
exp(-87) below its column's largest reads as 0; a sum that weights it heavily then comes out
0 (-inf) or imprecise where the exact value is finite. `semirings.watch` flags those batch
entries during the forward at the cost of one small reduction per sum layer, and
`exact_fallback` recomputes just them with every prepared parameter and value in float64
(complex128), whose range (exp(-708)) holds what float32 lost, then rounds back. Gradients
flow through the casts, so training sees the exact values too. Entries whose exact value is 0
(a zero probability) are flagged as well and come out -inf again, as they must.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from cirkit_ir.backends.torch import semirings
from cirkit_ir.backends.torch.layers.base import materialized_parameters
from cirkit_ir.backends.torch.parameters import TorchTensorParameter

if TYPE_CHECKING:
    from cirkit_ir.backends.torch.circuit import TorchCircuit

_WIDER = {torch.float32: torch.float64, torch.complex64: torch.complex128}

_ROWS: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar(
    "cirkit_ir_fallback_rows", default=None
)


def fallback_entries(t: Tensor) -> Tensor:
    """`t` (batch last) restricted to the batch entries that a running `exact_fallback`
    recomputes, and `t` itself otherwise: a query that changes layer outputs per batch entry
    (`layers.base.wrapped_outputs`) selects its per-entry masks and values with it."""
    rows = _ROWS.get()
    return t if rows is None or t.shape[-1] == 1 else t.index_select(-1, rows.to(t.device))


class Rerun:
    """The circuit as its generated forward sees it, with other prepared parameters (and,
    optionally, other layers): what a second, checking or wider, evaluation runs on."""

    def __init__(
        self,
        circuit: TorchCircuit,
        prepared: list | None = None,
        layers: tuple | None = None,
        nodes: tuple | None = None,
    ):
        self._circuit = circuit
        self._prepared = prepared
        self._layer_tuple = circuit._layer_tuple if layers is None else layers
        self._node_tuple = circuit._node_tuple if nodes is None else nodes

    def parameter_stream(self) -> Iterator[tuple]:
        if self._prepared is None:
            return self._circuit._stream_fn(self)
        return iter(self._prepared)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._circuit, name)


def _wider(value: Any) -> Any:
    if isinstance(value, Tensor) and value.dtype in _WIDER:
        return value.to(_WIDER[value.dtype])
    return value


class _WiderLeaf:
    """A parameter leaf read in float64, so that every parameter is computed from it in
    float64 (a softmax weight of exp(-200) that float32 rounds to 0 stays exp(-200))."""

    def __init__(self, leaf: TorchTensorParameter) -> None:
        self.leaf = leaf

    def forward(self) -> Tensor:
        return _wider(self.leaf.forward())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.leaf, name)


def exact_fallback(circuit: TorchCircuit, x: Tensor, rows: Tensor) -> Tensor:
    """The circuit's output for the batch entries `rows` of `x`, computed in float64: the
    exact log-space values of the columns where the float32 sums underflowed."""
    previous = semirings.pause_watch()
    try:
        nodes = tuple(
            _WiderLeaf(n) if isinstance(n, TorchTensorParameter) else n for n in circuit._node_tuple
        )
        data = circuit.check_input(x)[rows]
        token = _ROWS.set(rows)
        try:
            with materialized_parameters():
                return circuit._forward_fn(Rerun(circuit, nodes=nodes), _wider(data))
        finally:
            _ROWS.reset(token)
    finally:
        semirings.stop_watch(previous)


def recompute_underflowed(
    circuit: TorchCircuit, x: Tensor, out: Tensor, smallest: Tensor | None
) -> Tensor:
    """`out` with the batch entries whose smallest raw sum fell below `semirings.UNDERFLOW`
    replaced by their exact values (no copy when there are none)."""
    if smallest is None:
        return out
    lossy = smallest < semirings.UNDERFLOW
    if not lossy.any():
        return out
    rows = lossy.nonzero().squeeze(1)
    fixed = exact_fallback(circuit, x, rows).to(out.dtype)
    return out.index_put((rows,), fixed)
