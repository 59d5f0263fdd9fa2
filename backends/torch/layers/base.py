"""`TorchLayer`: the module of one (folded) circuit op.

Memory layout. Values are (folds, units, batch) tensors: the batch is the innermost,
contiguous axis, so reductions over units, broadcasts between inputs and the (out x in) @
(in x batch) contractions all run over long contiguous rows (about 4x faster than a
units-innermost layout at 4 units). `evaluate` works on that layout, in the semiring's
evaluation form (`Semiring.pack`: in log semirings, linear values plus one log-scale row,
(folds, units + 1, batch)), and is what the generated forward calls. `forward` is the layer
as libcirkit users know it, on the logical (folds, arity, batch, units) semiring values,
returning (folds, batch, units): it evaluates the layer's own parameters, packs, evaluates
and unpacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from cirkit_ir.backends.torch.checks import check_parameter
from cirkit_ir.backends.torch.parameters import TorchParameter
from cirkit_ir.backends.torch.semirings import Semiring
from cirkit_ir.ir.ops import CircuitOp
from cirkit_ir.ir.sign import Need

_materialize = 0


@contextmanager
def materialized_parameters() -> Iterator[None]:
    """Within it, `prepare_softmax` computes the softmax even where a layer could defer it:
    what `TorchCircuit.parameter_values` (and its cache) hands out is plain tensors."""
    global _materialize
    _materialize += 1
    try:
        yield
    finally:
        _materialize -= 1


def materializing() -> bool:
    """Whether a caller asked for the prepared parameters as plain tensors
    (`materialized_parameters`): then no layer or kernel may keep a softmax unevaluated."""
    return _materialize > 0


OutputWrap = Callable[[str, Tensor, tuple[Tensor, ...]], Tensor]
"""(method name, the method's output, the prepared parameters) -> the output to use instead."""


@contextmanager
def wrapped_outputs(
    wraps: Mapping[TorchLayer, OutputWrap], methods: tuple[str, ...] = ("evaluate",)
) -> Iterator[None]:
    """Within it, each layer's `methods` (what the generated forward calls) pass their output
    through the layer's wrap; the class's methods are back afterwards. Queries (integrating
    masked variables) and EM (keeping input outputs for their flows) observe or change one
    call of a compiled circuit this way, without recompiling it."""
    wrapped: list[TorchLayer] = []
    try:
        for layer, wrap in wraps.items():
            for name in methods:
                inner = getattr(type(layer), name)

                def method(x, *prepared, _inner=inner, _layer=layer, _wrap=wrap, _name=name):
                    return _wrap(_name, _inner(_layer, x, *prepared), prepared)

                object.__setattr__(layer, name, method)
            wrapped.append(layer)
        yield
    finally:
        for layer in wrapped:
            for name in methods:
                layer.__dict__.pop(name, None)


def may_defer() -> bool:
    """Whether a layer may keep weights as `softmax(logits)` not computed yet: only when no
    gradient is recorded and no caller needs the tensors themselves."""
    return not (materializing() or torch.is_grad_enabled())


class TorchLayer(nn.Module):
    """A folded circuit layer with its parameters as `TorchParameter` children.

    `checked_params`: (position, slot name, `Need`) of the parameters that `prepare_checked`
    checks meet their need (`codegen.make_layer` sets them: the parameters with a domain,
    such as sum weights under 'lse-sum' or a binomial's probs, that the IR cannot prove in
    it). `label` names the layer in errors.
    """

    checked_params: tuple[tuple[int, str, Need], ...] = ()
    label = "layer"
    log_params: tuple[str, ...] = ()
    """Parameter slots that `prepare_log` can take as logs, in log semirings: the generated
    code hands them over that way when their value is a node that computes its log
    directly (a softmax, as a log-softmax), which is exact where the log of it underflows."""
    softmax_params: tuple[str, ...] = ()
    """Parameter slots that `prepare_softmax` can take as logits of a softmax, so that the
    layer normalizes them itself (a block of folds at a time, say)."""

    @classmethod
    def from_op(
        cls, op: CircuitOp, semiring: Semiring, params: Mapping[str, TorchParameter]
    ) -> TorchLayer:
        """The layer computing `op` (kernels register per op class: `kernels.register_layer`)."""
        return cls(
            num_folds=op.num_folds,
            arity=op.arity,
            num_input_units=op.num_input_units,
            num_output_units=op.num_output_units,
            semiring=semiring,
            params=params,
        )

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

    def prepare_log(self, *log_params: Tensor) -> tuple:
        """`prepare` for parameters given as logs (see `log_params`)."""
        raise NotImplementedError(f"{type(self).__name__} reads no parameter as logs")

    def prepare_softmax(self, logits: Tensor, axis: int) -> tuple:
        """`prepare` for a weight softmax(logits, axis) that nothing else reads: the
        generated code hands the logits over, so that a layer can normalize them a block of
        folds at a time instead of holding the whole normalized tensor."""
        return self.prepare(torch.softmax(logits, axis))

    def prepare_checked(self, *params: Tensor) -> tuple:
        """`prepare`, after checking `checked_params` (an `InputError` for a value outside
        its domain, NaN or infinite). The generated code calls it for the layers with such
        parameters, and `prepare` for the others, which so pay nothing for the check."""
        for i, slot, need in self.checked_params:
            check_parameter(params[i], slot, need, self.label, self.semiring.name)
        return self.prepare(*params)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        """(F, arity, K_in, B) -> (F, K_out, B), both in the semiring's evaluation form
        (one more row along the units in log semirings: the log scale)."""
        raise NotImplementedError

    def parameter_values(self) -> tuple[Tensor, ...]:
        """This layer's prepared parameters, evaluated from its own parameter graphs."""
        return self.prepare_checked(*(getattr(self, name)() for name in self.param_names))

    def forward(self, x: Tensor) -> Tensor:
        """(F, arity, B, K_in) -> (F, B, K_out) semiring values, any memory layout."""
        s = self.semiring
        y = self.evaluate(s.pack(x.transpose(-1, -2), 2), *self.parameter_values())
        return s.unpack(y, 1).transpose(-1, -2)

    # -- printing -------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        f, h = self.num_folds, self.arity
        return (
            f"folds: {f}  arity: {h}  input-units: {self.num_input_units}"
            f"  output-units: {self.num_output_units}\n"
            f"input-shape: {(f, h, -1, self.num_input_units)}\n"
            f"output-shape: {(f, -1, self.num_output_units)}"
        )
