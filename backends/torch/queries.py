"""Queries of compiled circuits, libcirkit's names and signatures: marginals (`IntegrateQuery`),
MAP / MPE (`MAPQuery`) and exact sampling (`SamplingQuery`, also conditional on evidence).
MAP and sampling run the upward and top-down passes of `topdown` over the compiled layers.

One compiled circuit serves every query: nothing is recompiled per mask. While a query runs,
each input layer of the circuit evaluates as usual and then, for the (fold, batch) entries
whose variable is integrated out, puts its log-integral in place of its value: 0 for a
normalized distribution (categorical, binomial, gaussian), the log of the table's sum for an
unnormalized one (embedding, categorical given unnormalized probs). The sum and product layers
above do the rest, since a smooth and decomposable circuit integrates layer by layer. The
generated forward calls `L[j].evaluate(...)`; the query wraps that method on the input
layers' instances for the duration of the call (`layers.base.wrapped_outputs`, which EM
uses too), so the generated code, the fold gathers and every fused kernel run unchanged.

Conditionals: p(x_A | x_B) = p(x_A, x_B) / p(x_B), two calls with the same batch,
integrating out the variables outside A and B, then those outside B:

    log_joint = IntegrateQuery(circuit)(x, integrate_vars=rest)
    log_evidence = IntegrateQuery(circuit)(x, integrate_vars=rest | A)
    log_conditional = log_joint - log_evidence      # in a log semiring
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import torch
from torch import Tensor

from cirkit_ir.backends.torch import topdown as td
from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.backends.torch.exact import fallback_entries
from cirkit_ir.backends.torch.layers.base import OutputWrap, wrapped_outputs
from cirkit_ir.backends.torch.layers.inputs import (
    TableLayer,
    TorchBinomialLayer,
    TorchGaussianDerivativeLayer,
    TorchInputLayer,
)
from cirkit_ir.backends.torch.semirings import Semiring
from cirkit_ir.errors import InputError, OptionError, PropertyError
from cirkit_ir.symbolic.scope import Scope

if TYPE_CHECKING:
    from cirkit_ir.ir.graph import Graph

__all__ = ["IntegrateQuery", "MAPQuery", "Query", "SamplingQuery", "register_log_integral"]

IntegralRule = Callable[[TorchInputLayer, tuple[Tensor, ...]], Tensor]
"""(layer, its prepared parameters) -> the (F, K) integral over the layer's variable, as
semiring values (a log in log semirings, a linear value in sum-product)."""

_INTEGRALS: dict[type, IntegralRule] = {}


def register_log_integral(layer_class: type) -> Callable[[IntegralRule], IntegralRule]:
    """Decorator: `rule` integrates input layers of `layer_class` (and its subclasses without a
    rule of their own) over their variable. Layers without a rule are taken as normalized."""

    def register(rule: IntegralRule) -> IntegralRule:
        _INTEGRALS[layer_class] = rule
        return rule

    return register


def integral_rule(layer: TorchInputLayer) -> IntegralRule:
    """The integral rule registered for `layer`'s class or its nearest base (else: it is a
    normalized density, which integrates to 1)."""
    for cls in type(layer).__mro__:
        rule = _INTEGRALS.get(cls)
        if rule is not None:
            return rule
    return _normalized


def _normalized(layer: TorchInputLayer, prepared: tuple[Tensor, ...]) -> Tensor:
    """A normalized density integrates to 1."""
    like = prepared[0] if prepared else torch.empty(0)
    dtype = like.dtype if like.is_floating_point() or like.is_complex() else torch.float32
    if layer.semiring.name == "complex-lse-sum":
        dtype = torch.promote_types(dtype, torch.complex64)
    zeros = torch.zeros((layer.num_folds, layer.num_output_units), dtype=dtype, device=like.device)
    return zeros if layer.semiring.log_space else zeros + 1


def semiring_sum(values: Tensor, dim: int, semiring: Semiring) -> Tensor:
    """The semiring sum along `dim` of semiring values (log-sum-exp on real or complex logs,
    shifted by the largest real part; a plain sum of linear values)."""
    if not semiring.log_space:
        return values.sum(dim)
    key = values.real if values.is_complex() else values
    top = key.amax(dim, keepdim=True).nan_to_num(0.0, 0.0, 0.0)  # all -inf: stays -inf
    return torch.log(torch.exp(values - top).sum(dim)) + top.squeeze(dim)


@register_log_integral(TableLayer)
def _table_integral(layer: TorchInputLayer, prepared: tuple[Tensor, ...]) -> Tensor:
    """The sum of the table over the states, multiplied over the channels."""
    if isinstance(layer, TorchBinomialLayer) and not layer.tabulate:
        return _normalized(layer, prepared)
    s = layer.semiring
    table = prepared[0]
    values = table if layer.exact_values else s.unpack(table, 1)  # (F, K, C * N)
    f, k, cn = values.shape
    c = layer.num_channels
    per_channel = semiring_sum(values.reshape(f, k, c, cn // c), 3, s)  # (F, K, C)
    return per_channel.sum(2) if s.log_space else per_channel.prod(2)


@register_log_integral(TorchGaussianDerivativeLayer)
def _derivative_integral(layer: TorchInputLayer, prepared: tuple[Tensor, ...]) -> Tensor:
    """A density's derivative integrates to 0 (not to the 1 of the gaussian it derives from)."""
    one = _normalized(layer, prepared)  # the semiring's 1, in the right shape and dtype
    return one - math.inf if layer.semiring.log_space else one * 0


def _integral_wrap(layer: TorchInputLayer, mask: Tensor) -> OutputWrap:
    """`layer`'s outputs with its integral where `mask` (F, 1, B) is set."""
    rule = integral_rule(layer)
    s = layer.semiring

    def wrap(method: str, out: Tensor, prepared: tuple[Tensor, ...]) -> Tensor:
        fill = rule(layer, prepared).unsqueeze(-1)  # (F, K, 1)
        if method == "evaluate":
            fill = s.pack(fill, 1)  # (F, K + 1, 1) in log semirings
        return torch.where(fallback_entries(mask), fill.to(out.dtype), out)

    return wrap


@contextmanager
def integrating(circuit: TorchCircuit, mask: Tensor) -> Iterator[None]:
    """Within it, `circuit` integrates out the variables set in `mask` ((B or 1, D) bool)."""
    wraps = {}
    for layer in circuit.layers:
        if isinstance(layer, TorchInputLayer):
            index = layer.variables_index.to(mask.device)
            folds = mask.t().index_select(0, index).unsqueeze(1)  # (F, 1, B)
            wraps[layer] = _integral_wrap(layer, folds.to(layer.variables_index.device))
    with wrapped_outputs(wraps, ("evaluate", "evaluate_values")):
        yield


class Query:
    """A query of a compiled circuit (`TorchCircuit`)."""

    def __init__(self, circuit: TorchCircuit) -> None:
        if not isinstance(circuit, TorchCircuit):
            raise OptionError(
                f"{type(self).__name__} queries a compiled TorchCircuit, got"
                f" {type(circuit).__name__}; compile the symbolic circuit first"
            )
        self._circuit = circuit

    @property
    def circuit(self) -> TorchCircuit:
        return self._circuit

    @property
    def links(self) -> td.CircuitLinks:
        """Which producer folds feed each layer: read from the IR once per circuit (and
        device), since a compiled circuit's structure never changes; a query made per call
        (`MAPQuery(circuit)(x)`) does not read it again."""
        circuit = self._circuit
        links = _LINKS.get(circuit)
        if links is None or links.device != circuit.device:
            links = _LINKS[circuit] = td.CircuitLinks.of(circuit)
        return links


_LINKS: WeakKeyDictionary[TorchCircuit, td.CircuitLinks] = WeakKeyDictionary()


def variables_mask(
    circuit: TorchCircuit, variables: Tensor | Scope | Sequence[Scope], what: str
) -> Tensor:
    """A (B or 1, D) bool mask from a mask, a scope, or one scope per sample."""
    d = circuit.num_variables
    if isinstance(variables, Tensor):
        if variables.dtype != torch.bool:
            raise InputError(
                f"{what} must be a bool tensor (True = the variable is selected), got dtype"
                f" {variables.dtype}"
            )
        mask = variables.unsqueeze(0) if variables.dim() == 1 else variables
        if mask.dim() != 2 or mask.shape[1] != d:
            raise InputError(
                f"{what} has shape {tuple(variables.shape)}; it must be (batch, {d}) or ({d},):"
                f" one entry per variable of the circuit"
            )
        return mask
    scopes = [variables] if isinstance(variables, Scope) else list(variables)
    if not scopes or not all(isinstance(s, Scope) for s in scopes):
        raise InputError(
            f"{what} must be a bool mask, a Scope or a non-empty list of Scopes, got"
            f" {type(variables).__name__}"
        )
    mask = torch.zeros((len(scopes), d), dtype=torch.bool)
    for i, scope in enumerate(scopes):
        bad = [v for v in scope if not 0 <= v < d]
        if bad:
            raise InputError(
                f"{what}: variable(s) {bad[:8]} are not variables of the circuit (0..{d - 1})"
            )
        mask[i, list(scope)] = True
    return mask


def _batch(x: object) -> Tensor:
    """`x` as a tensor with a channel axis, when it is one (the circuit checks the rest)."""
    if isinstance(x, Tensor) and x.dim() == 2:
        return x.unsqueeze(1)
    return x  # type: ignore[return-value]


class IntegrateQuery(Query):
    """Marginal values: the circuit with some variables integrated out, per sample.

    `IntegrateQuery(circuit)(x, integrate_vars=...)` -> (B, num_outputs, num_units) in the
    circuit's semiring (marginal log-likelihoods under 'lse-sum'). `integrate_vars` is a
    (B, D) (or (D,), or (1, D) for every sample) bool mask, True where a variable is
    integrated out; a `Scope`, for every sample; or a list of B scopes, one per sample.
    The values of `x` at integrated variables are not read (NaN or any placeholder is fine).
    """

    def __call__(self, x: Tensor, *, integrate_vars: Tensor | Scope | Sequence[Scope]) -> Tensor:
        circuit = self._circuit
        mask = variables_mask(circuit, integrate_vars, "integrate_vars")
        x = _batch(x)
        if isinstance(x, Tensor) and x.dim() == 3 and x.shape[2] == circuit.num_variables:
            if mask.shape[0] not in (1, x.shape[0]):
                raise InputError(
                    f"integrate_vars gives {mask.shape[0]} masks for a batch of {x.shape[0]};"
                    " give one per sample, or one for all"
                )
            mask = mask.to(x.device)
            x = x.masked_fill(mask.unsqueeze(1), 0)  # placeholders in range (never read)
            mask = mask.expand(x.shape[0], -1)
        with integrating(circuit, mask):
            return circuit(x)


def input_layers(circuit: TorchCircuit) -> list[tuple[int, TorchInputLayer]]:
    """(index in `circuit.layers`, layer) of every input layer: what queries rewire."""
    return [(j, la) for j, la in enumerate(circuit.layers) if isinstance(la, TorchInputLayer)]


def _fold_mask(layer: TorchInputLayer, mask: Tensor) -> Tensor:
    """(B, D) per-variable mask -> (F, B): the mask of each fold's variable."""
    if layer.variables_span is not None:  # a range of variables: a view
        return mask[:, layer.variables_span[0] : layer.variables_span[1]].t()
    return mask.t().index_select(0, layer.variables_index.to(mask.device))


def prepared_batch(
    circuit: TorchCircuit, x: Tensor | None, evidence_mask: Tensor | None, batch: int
) -> tuple[Tensor, Tensor]:
    """(the checked (B, C, D) data, placeholders where unobserved; the (B, D) evidence mask)."""
    d, c = circuit.num_variables, circuit.num_channels
    if x is None:
        if evidence_mask is not None:
            raise InputError("evidence_mask was given without the data x it selects from")
        continuous = circuit.input_spec.continuous
        dtype = torch.get_default_dtype() if continuous else torch.long
        x = torch.zeros((batch, c, d), dtype=dtype, device=circuit.device)
        return circuit.check_input(x), torch.zeros((batch, d), dtype=torch.bool, device=x.device)
    x = _batch(x)
    if evidence_mask is None:
        mask = torch.ones((1, d), dtype=torch.bool)
    else:
        mask = variables_mask(circuit, evidence_mask, "evidence_mask")
    if isinstance(x, Tensor) and x.dim() == 3 and x.shape[2] == d:
        if mask.shape[0] not in (1, x.shape[0]):
            raise InputError(
                f"evidence_mask gives {mask.shape[0]} masks for a batch of {x.shape[0]};"
                " give one per sample, or one for all"
            )
        mask = mask.to(x.device).expand(x.shape[0], -1)
        x = x.masked_fill(~mask.unsqueeze(1), 0)  # unobserved values are never read
    x = circuit.check_input(x)  # shape, dtype, and the range of the evidence
    return x, mask.to(x.device)


def _assign(circuit: TorchCircuit, x: Tensor, units: list[Tensor], free: Tensor, draw) -> Tensor:
    """`x` with the free (B, D) variables set by `draw(j, layer, folds, units) -> (n, C)` at the
    unit each batch entry visits in the variable's input layer."""
    out = x.clone()
    for j, layer in input_layers(circuit):
        out = _assign_layer(out, j, layer, units[j], free, draw)
    return out


def _assign_layer(out: Tensor, j: int, layer: TorchInputLayer, units: Tensor, free: Tensor, draw):
    """`_assign` for the variables of one input layer."""
    take = (units >= 0) & _fold_mask(layer, free)  # (F, B)
    if not bool(take.any()):
        return out
    folds, batch = take.nonzero(as_tuple=True)
    values = draw(j, layer, folds, units[folds, batch])  # (n, C)
    variables = layer.variables_index.to(out.device)[folds]
    if values.is_floating_point() and not out.is_floating_point():
        out = out.to(values.dtype)
    out[batch, :, variables] = values.to(out.dtype)
    return out


def _assign_modes(
    circuit: TorchCircuit, x: Tensor, units: list[Tensor], free: Tensor, modes: dict[int, Tensor]
) -> Tensor:
    """`_assign` with each free variable set to its visited unit's mode (`modes[j]`, (F, K, C)),
    in whole-tensor ops for layers whose folds hold distinct variables of x's dtype."""
    out = x.clone()
    for j, layer in input_layers(circuit):
        mode, variables = modes[j], layer.variables_index.to(x.device)
        span = layer.variables_span
        if mode.dtype != out.dtype or (
            span is None and variables.unique().numel() != variables.numel()
        ):
            out = _assign_layer(out, j, layer, units[j], free, lambda j, la, f, u: modes[j][f, u])
            continue
        take = ((units[j] >= 0) & _fold_mask(layer, free)).t().unsqueeze(1)  # (B, 1, F)
        f, k, c = mode.shape
        rows = units[j].clamp(min=0) + torch.arange(f, device=x.device).unsqueeze(1) * k
        at = mode.reshape(f * k, c).index_select(0, rows.flatten())  # each (fold, sample)'s mode
        at = at.view(f, -1, c).permute(1, 2, 0)  # (B, C, F)
        if span is not None:
            region = out[:, :, span[0] : span[1]]
            region.copy_(torch.where(take, at, region))
        else:
            out[:, :, variables] = torch.where(take, at, out[:, :, variables])
    return out


def _check_distribution_circuit(circuit: TorchCircuit) -> None:
    if circuit.semiring.name == "complex-lse-sum":
        raise PropertyError(
            "the circuit computes in 'complex-lse-sum' (signed or complex weights): it is not a"
            " distribution, so it has no MAP state and cannot be sampled; compile it with"
            " 'lse-sum' or 'sum-product' from non-negative parameters"
        )


class MAPQuery(Query):
    """The most likely assignment of the unobserved variables (MAP / MPE), and its value.

    `MAPQuery(circuit)(x, evidence_mask=..., integrate_vars=...)` -> (values (B,), assignments
    (B, C, D)): variables where `evidence_mask` is True keep their value in `x`; those in
    `integrate_vars` are summed out (and left as in `x`); the others are maximized. Values
    are natural logs (the circuit's own semiring does not matter). Without `x`, nothing is
    observed (MPE: the single most likely state); with `x` and no `evidence_mask`, all is.

    The value is max over the circuit's induced trees of the tree's value (the max-sum
    circuit's output), and the assignment attains it in the tree found. On a deterministic
    circuit (at most one input of each sum is non-zero for any complete state), a state has
    one induced tree, so this is the true MAP: max_x p(x, evidence). Otherwise it is a lower
    bound on that maximum (and with integrated variables the usual max-sum approximation of
    marginal MAP, which is NP-hard in general).

    `graph` is the circuit's IR lowered to 'max-sum': what the query computes, op by op.
    """

    @property
    def graph(self) -> Graph:
        from cirkit_ir.passes import PassManager

        graph = self._circuit.graph
        PassManager.parse("lower-semiring{semiring=max-sum}").run(graph)
        return graph

    def __call__(
        self,
        x: Tensor | None = None,
        *,
        evidence_mask: Tensor | Scope | Sequence[Scope] | None = None,
        integrate_vars: Tensor | Scope | Sequence[Scope] | None = None,
    ) -> tuple[Tensor, Tensor]:
        circuit = self._circuit
        _check_distribution_circuit(circuit)
        x, observed = prepared_batch(circuit, x, evidence_mask, 1)
        b = x.shape[0]
        if integrate_vars is None:
            summed = torch.zeros_like(observed)
        else:
            summed = variables_mask(circuit, integrate_vars, "integrate_vars").to(x.device)
            if summed.shape[0] not in (1, b):
                raise InputError(f"integrate_vars gives {summed.shape[0]} masks for a batch of {b}")
            summed = summed.expand(b, -1) & ~observed
        free = ~observed & ~summed
        links = self.links
        modes = {}
        summing = integrating(circuit, summed) if integrate_vars is not None else nullcontext()
        with torch.no_grad(), summing:
            inputs = {}
            for j, layer in input_layers(circuit):
                table = td.log_table(layer)
                if table is None or integrate_vars is not None:
                    best, modes[j] = td.input_max(layer)
                    logs = td.input_logs(layer, x)
                else:  # one table for the modes and the evidence
                    best, modes[j] = td.table_max(table)
                    logs = td.table_logs(layer, table, x)
                inputs[j] = torch.where(
                    _fold_mask(layer, free).unsqueeze(1), best.unsqueeze(-1), logs
                )
            up = td.upward(circuit, links, inputs, td.amax)
            units = td.topdown(circuit, links, up, b, td.ArgMax())
        (root, fold), *_ = links.outputs
        assignment = _assign_modes(circuit, x, units, free, modes)
        return up.values[root][fold, 0], assignment


class SamplingQuery(Query):
    """Exact ancestral samples of the circuit's distribution, or of its conditional.

    `SamplingQuery(circuit)(num_samples=..., generator=...)` -> (samples (N, C, D), units):
    `units[j]` is (F, N), the unit of layer j that each sample's induced tree visits in each
    fold (-1 where it visits none), libcirkit's "mixture samples" of every layer at once.
    With `x` and `evidence_mask` (True = observed), draws one sample of the unobserved
    variables per row of `x` from p(unobserved | observed), keeping the observed values (or
    `num_samples` draws given a single row).
    Needs non-negative parameters (a `PropertyError` otherwise) and one output unit.
    """

    def __call__(
        self,
        num_samples: int = 1,
        *,
        x: Tensor | None = None,
        evidence_mask: Tensor | Scope | Sequence[Scope] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        circuit = self._circuit
        _check_distribution_circuit(circuit)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise OptionError(f"num_samples must be a positive int, got {num_samples!r}")
        if x is not None:
            x = _batch(x)
            rows = x.shape[0] if isinstance(x, Tensor) and x.dim() == 3 else None
            if rows is not None and rows > 1 and num_samples not in (1, rows):
                raise OptionError(
                    f"num_samples is {num_samples}, but x has {rows} rows: a conditional"
                    " query draws one sample per row of x (or num_samples given one row)"
                )
        x, observed = prepared_batch(circuit, x, evidence_mask, 1)
        # One row (no evidence, or one evidence row): the upward values are shared by every
        # draw, and the top-down pass reads them as tables of rows.
        b = num_samples if x.shape[0] == 1 else x.shape[0]
        free = ~observed
        with torch.no_grad(), integrating(circuit, free):
            inputs = {j: td.input_logs(layer, x) for j, layer in input_layers(circuit)}
            up = td.upward(circuit, links := self.links, inputs, td.lse)
            units = td.topdown(circuit, links, up, b, td.Gumbel(generator))
        x, free = x.expand(b, -1, -1), free.expand(b, -1)
        with torch.no_grad():
            samples = _assign(
                circuit, x, units, free, lambda j, la, f, u: td.input_sample(la, f, u, generator)
            )
        return samples, units


# Expectations and moments live in their own module, which builds on this one: imported on
# first use (PEP 562), so that either module may be imported first.
_EXPECTATIONS = ("ExpectationQuery", "MomentsQuery", "register_moments")
__all__ += list(_EXPECTATIONS)


def __getattr__(name: str) -> object:
    if name in _EXPECTATIONS:
        from cirkit_ir.backends.torch import expectations

        return getattr(expectations, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
