"""Input layers: densities of the data, one variable per fold, as (F, K, B) values.

Discrete layers (categorical, embedding, small binomials) build a table of per-state values
once per forward, (F, K, C * N), and evaluate as one `torch.gather` of that table by the
data. Channels are independent: their values multiply (their log scales add).

In log semirings the table is in the packed form the layers compute with (`semirings`):
(F, K + 1, C * N), each state's values over the units normalized and their log scale in the
last row, so the lookup is the layer's result, with no exp at all. A packed column holds one
scale for all units, so a unit more than the float range below the best one (say 100 nats
in float32) reads as 0. Sum layers lose those units all the same, but a circuit that outputs
an input layer's values must not: the code generator sets `exact_values` on such layers,
whose tables then hold the semiring's values themselves (logs), and reads them with
`evaluate_values`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from cirkit_ir.backends.torch.kernels import layer_class, register_layer
from cirkit_ir.backends.torch.layers.base import TorchLayer
from cirkit_ir.backends.torch.parameters import TorchParameter
from cirkit_ir.backends.torch.semirings import Semiring
from cirkit_ir.errors import InputError
from cirkit_ir.ir import ops

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class _ExactValues:
    """`exact_values`: whether `prepare` makes semiring values (for `evaluate_values`, which
    is exact per unit) rather than the packed form (for `evaluate`, the fast path)."""

    exact_values = False
    semiring: Semiring

    def evaluate_values(self, x: Tensor, *prepared: Tensor) -> Tensor:
        """(F, K, B) semiring values (exact per unit when `exact_values` is set)."""
        raise NotImplementedError

    def _packed(self, values: Tensor) -> Tensor:
        return self.semiring.pack(values, 1)

    def _exact_forward(self, x: Tensor) -> Tensor:
        """`forward` of a layer without circuit inputs: (F, B, K) semiring values, exact per
        unit, from the layer's own parameters (whatever `exact_values` the code generator
        set for the compiled forward)."""
        exact, self.exact_values = self.exact_values, True
        try:
            values = self.evaluate_values(x, *self.parameter_values())  # type: ignore[attr-defined]
            return values.transpose(1, 2)
        finally:
            self.exact_values = exact


class TorchInputLayer(_ExactValues, TorchLayer):
    """Reads variable `variables[f]` of a (B, C, D) batch in fold f.

    `max_value` is the largest valid datum of a discrete layer (None when continuous).
    """

    max_value: int | None = None

    def __init__(
        self,
        *,
        variables: Sequence[int],
        num_channels: int,
        num_output_units: int,
        semiring: Semiring,
        params: Mapping[str, TorchParameter] | None = None,
    ) -> None:
        super().__init__(
            num_folds=len(variables),
            arity=1,
            num_input_units=num_channels,
            num_output_units=num_output_units,
            semiring=semiring,
            params=params,
        )
        self.num_channels = num_channels
        self.variables = tuple(variables)
        start = self.variables[0]
        self._span = None  # a contiguous range of variables is read with a view
        if self.variables == tuple(range(start, start + len(self.variables))):
            self._span = (start, start + len(self.variables))
        self.register_buffer(
            "_variables", torch.tensor(self.variables, dtype=torch.long), persistent=False
        )

    @property
    def variables_index(self) -> Tensor:
        """`variables` as a long tensor on the layer's device (for `index_select`)."""
        return self._variables

    @property
    def variables_span(self) -> tuple[int, int] | None:
        """(start, stop) when `variables` is that contiguous range (read with a view), else
        None."""
        return self._span

    @classmethod
    def from_op(cls, op, semiring, params, **options):  # type: ignore[override]
        """The layer of input op `op`; subclasses pass their own attributes in `options`."""
        return cls(
            variables=op.variables,
            num_channels=op.num_channels,
            num_output_units=op.num_units,
            semiring=semiring,
            params=params,
            **options,
        )

    @property
    def num_variables(self) -> int:
        """Variables per fold (one: input layers are univariate)."""
        return 1

    def select(self, x: Tensor) -> Tensor:
        """(B, C, D) data -> (F, C, B): each fold's variable (a view)."""
        if self._span is None:
            x = x.index_select(2, self._variables)
        elif self._span != (0, x.shape[2]):
            x = x[:, :, self._span[0] : self._span[1]]
        return x.permute(2, 1, 0)

    def log_density(self, x: Tensor, *prepared: Tensor) -> Tensor:
        """(F, K, B) natural logs, for layers that compute them from the data."""
        raise NotImplementedError

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        return self.semiring.pack_log(self.log_density(x, *prepared), 1)

    def evaluate_values(self, x: Tensor, *prepared: Tensor) -> Tensor:
        return self.semiring.from_log(self.log_density(x, *prepared))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """(B, C, D) (or (B, D)) data -> (F, B, K) semiring values, exact per unit."""
        return self._exact_forward(x.unsqueeze(1) if x.dim() == 2 else x)

    def extra_repr(self) -> str:
        f, c = self.num_folds, self.num_channels
        return (
            f"folds: {f}  channels: {c}  variables: {self.num_variables}"
            f"  output-units: {self.num_output_units}\n"
            f"input-shape: {(f, c, -1, self.num_variables)}\n"
            f"output-shape: {(f, -1, self.num_output_units)}"
        )


class TableLayer(TorchInputLayer):
    """A discrete layer evaluated by looking its (F, K(+1), C * N) table up."""

    def table(self, log: Tensor | None = None, linear: Tensor | None = None) -> Tensor:
        """The table `prepare` returns, from (F, K, C, N) logs or non-negative linear values."""
        s = self.semiring
        if log is not None:
            table = s.from_log(log) if self.exact_values else s.pack_log(log, 1)
        else:
            assert linear is not None
            table = s.from_linear(linear) if self.exact_values else s.pack_linear(linear, 1)
        return table.flatten(2)

    def lookup(self, x: Tensor, table: Tensor) -> Tensor:
        """The table's columns at the data, channels combined: (F, rows, B)."""
        xs = self.select(x)  # (F, C, B)
        if xs.numel() >= 4096:  # a contiguous index: the gather is about a third faster
            xs = xs.contiguous()
        if xs.is_floating_point():  # a circuit that mixes discrete and continuous inputs
            xs = xs.long()
        f, c, b = xs.shape
        rows = table.shape[1]
        if c == 1:
            return torch.gather(table, 2, xs.expand(f, rows, b))
        offsets = torch.arange(c, device=xs.device).mul_(table.shape[2] // c).view(1, c, 1)
        index = (xs + offsets).reshape(f, 1, c * b).expand(f, rows, c * b)
        values = torch.gather(table, 2, index).view(f, rows, c, b)
        s = self.semiring
        if self.exact_values:  # semiring values: their product over channels
            return values.sum(2) if s.log_space else values.prod(2)
        e, shift = s.split(values, 1)  # (F, K, C, B), (F, 1, C, B)
        return s.finish(e.prod(2), None if shift is None else shift.sum(2))

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        y = self.lookup(x, prepared[0])
        return self._packed(y) if self.exact_values else y

    def evaluate_values(self, x: Tensor, *prepared: Tensor) -> Tensor:
        y = self.lookup(x, prepared[0])
        return y if self.exact_values else self.semiring.unpack(y, 1)


@register_layer(ops.CategoricalOp)
class TorchCategoricalLayer(TableLayer):
    """p(x) = probs[k, c, x] per channel; the parameter is probs, logits or log-probs."""

    log_params = ("probs",)

    @classmethod
    def from_op(cls, op, semiring, params):  # type: ignore[override]
        return super().from_op(
            op, semiring, params, num_categories=op.num_categories, param=op.param
        )

    def __init__(self, *, num_categories: int, param: str = "probs", **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_categories = num_categories
        self.param = param
        self.max_value = num_categories - 1

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        (p,) = params  # (F, K, C, N)
        if self.param == "probs":
            return (self.table(linear=p),)
        if self.param == "log_probs":
            return (self.table(log=p),)
        if self.semiring.log_space:
            return (self.table(log=torch.log_softmax(p, -1)),)
        return (self.table(linear=torch.softmax(p, -1)),)

    def prepare_log(self, log_probs: Tensor) -> tuple[Tensor, ...]:
        """`prepare` for a `probs` layer handed the log of its probs (the generated code
        does this when the probs are a softmax: a log-softmax is exact where log(softmax)
        underflows)."""
        return (self.table(log=log_probs),)


@register_layer(ops.EmbeddingOp)
class TorchEmbeddingLayer(TableLayer):
    """f(x) = weight[k, c, x] per channel: a non-negative table over `num_states` states."""

    @classmethod
    def from_op(cls, op, semiring, params):  # type: ignore[override]
        return super().from_op(op, semiring, params, num_states=op.num_states)

    def __init__(self, *, num_states: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_states = num_states
        self.max_value = num_states - 1

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (self.table(linear=params[0]),)


def _binomial_log_pmf(k: Tensor, n: int, p: Tensor, param: str) -> Tensor:
    """log C(n, k) + k log p + (n - k) log(1 - p), exact at p in {0, 1} (xlogy: 0 log 0 = 0)."""
    log_binom = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    if param == "probs":
        return log_binom + torch.xlogy(k, p) + torch.xlogy(n - k, 1 - p)
    logp = torch.nn.functional.logsigmoid(p)
    log1mp = torch.nn.functional.logsigmoid(-p)
    return log_binom + k * logp + (n - k) * log1mp


@register_layer(ops.BinomialOp)
class TorchBinomialLayer(TableLayer):
    """Binomial(total_count, p) per channel; a table of all n + 1 values when n is small."""

    @classmethod
    def from_op(cls, op, semiring, params):  # type: ignore[override]
        return super().from_op(op, semiring, params, total_count=op.total_count, param=op.param)

    TABLE_LIMIT = 4096  # above this many states, evaluate the pmf at the data instead

    def __init__(self, *, total_count: int, param: str = "logits", **kwargs) -> None:
        super().__init__(**kwargs)
        self.total_count = total_count
        self.param = param
        self.max_value = total_count
        self.tabulate = total_count + 1 <= self.TABLE_LIMIT

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        (p,) = params  # (F, K, C)
        if not self.tabulate:
            return (p.unsqueeze(-1),)
        k = torch.arange(self.total_count + 1, dtype=p.dtype, device=p.device)
        log_pmf = _binomial_log_pmf(k, self.total_count, p.unsqueeze(-1), self.param)
        return (self.table(log=log_pmf),)

    def log_density(self, x: Tensor, *prepared: Tensor) -> Tensor:
        (p,) = prepared  # (F, K, C, 1)
        k = self.select(x).unsqueeze(1).to(p.dtype)  # (F, 1, C, B)
        return _binomial_log_pmf(k, self.total_count, p, self.param).sum(2)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        if self.tabulate:
            return super().evaluate(x, *prepared)
        return TorchInputLayer.evaluate(self, x, *prepared)

    def evaluate_values(self, x: Tensor, *prepared: Tensor) -> Tensor:
        if self.tabulate:
            return super().evaluate_values(x, *prepared)
        return TorchInputLayer.evaluate_values(self, x, *prepared)


@register_layer(ops.GaussianOp)
class TorchGaussianLayer(TorchInputLayer):
    """Normal densities N(x; mean, stddev) per channel."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        mean, stddev = params  # (F, K, C)
        log_norm = torch.log(stddev).add_(_HALF_LOG_2PI).neg_()
        return mean.unsqueeze(-1), torch.reciprocal(stddev).unsqueeze(-1), log_norm.unsqueeze(-1)

    def log_density(self, x: Tensor, *prepared: Tensor) -> Tensor:
        mean, inv_std, log_norm = prepared
        xs = self.select(x).unsqueeze(1).to(mean.dtype)  # (F, 1, C, B)
        z = (xs - mean) * inv_std
        return torch.addcmul(log_norm, z, z, value=-0.5).sum(2)


@register_layer(ops.ConstantOp)
class TorchConstantLayer(_ExactValues, TorchLayer):
    """Outputs `value` (given in linear space) for every batch entry."""

    @classmethod
    def from_op(cls, op, semiring, params):  # type: ignore[override]
        return cls(
            num_folds=op.num_folds, num_output_units=op.num_units, semiring=semiring, params=params
        )

    def __init__(self, *, num_folds: int, num_output_units: int, semiring: Semiring, params):
        super().__init__(
            num_folds=num_folds,
            arity=0,
            num_input_units=0,
            num_output_units=num_output_units,
            semiring=semiring,
            params=params,
        )

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        (value,) = params  # (F, K)
        s = self.semiring
        value = s.from_linear(value) if self.exact_values else s.pack_linear(value, 1)
        return (value.unsqueeze(-1),)

    def _expand(self, value: Tensor, x: Tensor) -> Tensor:
        return value.expand(value.shape[0], value.shape[1], x.shape[0])

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        value = prepared[0]
        if self.exact_values:
            value = self._packed(value)
        return self._expand(value, x)

    def evaluate_values(self, x: Tensor, *prepared: Tensor) -> Tensor:
        value = prepared[0]
        if not self.exact_values:
            value = self.semiring.unpack(value, 1)
        return self._expand(value, x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) data (only its batch size is read) -> (F, B, K) semiring values."""
        return self._exact_forward(x)

    def extra_repr(self) -> str:
        f, k = self.num_folds, self.num_output_units
        return f"folds: {f}  output-units: {k}\noutput-shape: {(f, -1, k)}"


@register_layer(ops.EvidenceOp)
class TorchEvidenceLayer(TorchConstantLayer):
    """An input distribution evaluated at a fixed observation: a constant of the data.

    `distribution` is that input layer (reading variable f of the observation in fold f);
    its parameters are this layer's, after `observation`. `variables` are the variables the
    distribution was over in the symbolic circuit, fold by fold: only error messages use them.
    """

    def __init__(
        self,
        *,
        distribution: TorchInputLayer,
        semiring: Semiring,
        params,
        variables: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            num_folds=distribution.num_folds,
            num_output_units=distribution.num_output_units,
            semiring=semiring,
            params=params,
        )
        self.distribution = distribution
        self.variables = None if variables is None else tuple(variables)

    @classmethod
    def from_op(cls, op, semiring, params):  # type: ignore[override]
        inner = op.distribution.replace(variables=tuple(range(op.num_folds)))
        # Its parameters are the evidence layer's, which checks them.
        distribution = layer_class(inner).from_op(inner, semiring, {})
        return cls(
            distribution=distribution,
            semiring=semiring,
            params=params,
            variables=op.distribution.variables,
        )

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        observation, *dist_params = params  # observation: (F, C)
        data = observation.t().unsqueeze(0)  # one batch entry, variable f read by fold f
        if self.distribution.max_value is not None:
            data = data.round()
            self._check_range(observation, data, self.distribution.max_value)
            data = data.long()
        dist = self.distribution
        dist.exact_values = self.exact_values
        prepared = dist.prepare(*dist_params)
        if self.exact_values:
            return (dist.evaluate_values(data, *prepared),)
        return (dist.evaluate(data, *prepared),)

    def _check_range(self, observation: Tensor, rounded: Tensor, max_value: int) -> None:
        """An `InputError` for an observation outside 0..max_value (or NaN), rather than
        the index error of the lookup: the observation is a parameter (drawn, trained or
        loaded), so no earlier check can see every value it takes."""
        valid = (rounded >= 0) & (rounded <= max_value)  # NaN compares false: invalid
        if bool(valid.all()):
            return
        channel, fold = (~valid[0]).nonzero()[0].tolist()  # `rounded` is (1, C, F)
        value = observation[fold, channel].item()
        variable = "" if self.variables is None else f" over variable {self.variables[fold]}"
        kind = type(self.distribution).__name__.removeprefix("Torch").removesuffix("Layer")
        raise InputError(
            f"evidence layer, fold {fold} (a {kind.lower()}{variable}): the observation"
            f" {value:g} in channel {channel} is out of range; the {kind.lower()} accepts"
            f" 0..{max_value}. Set an observation in range (its initializer, or the value"
            " given to load_symbolic_state)"
        )

    def extra_repr(self) -> str:
        f, k = self.num_folds, self.num_output_units
        return (
            f"folds: {f}  channels: {self.distribution.num_channels}  output-units: {k}\n"
            f"output-shape: {(f, -1, k)}"
        )


@register_layer(ops.GaussianDerivativeOp)
class TorchGaussianDerivativeLayer(TorchGaussianLayer):
    """d/dx N(x; mean, stddev) = -(x - mean) / stddev^2 N(x; mean, stddev), computed from its
    log-modulus and sign (exact where the linear value underflows)."""

    @classmethod
    def from_op(cls, op, semiring, params, **options):  # type: ignore[override]
        if not semiring.signed_parameters:
            from cirkit_ir.errors import CompilationError

            raise CompilationError(
                f"a gaussian-derivative op computes signed values, which the {semiring.name}"
                " semiring cannot hold (the log of a negative number); compile it under"
                " 'sum-product' or 'complex-lse-sum'"
            )
        return super().from_op(op, semiring, params, **options)

    def evaluate_values(self, x: Tensor, *prepared: Tensor) -> Tensor:
        mean, inv_std, log_norm = prepared
        xs = self.select(x).unsqueeze(1).to(mean.dtype)  # (F, 1, C, B)
        z = (xs - mean) * inv_std
        log_modulus = torch.addcmul(log_norm, z, z, value=-0.5) + torch.log(z.abs() * inv_std)
        log_modulus, negative = log_modulus.sum(2), (z > 0).any(2)  # one channel
        if self.semiring.log_space:  # complex logs: the sign is a phase of pi
            return torch.complex(log_modulus, negative.to(log_modulus.dtype) * math.pi)
        return torch.where(negative, -1.0, 1.0).to(log_modulus.dtype) * torch.exp(log_modulus)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        return self.semiring.pack(self.evaluate_values(x, *prepared), 1)


@register_layer(ops.PolynomialOp)
class TorchPolynomialLayer(TorchInputLayer):
    """f(x) = sum_d coeff[k, c, d] x^d per channel, channels multiplied; values may be
    negative (or complex), so they enter the semiring as linear values."""

    @classmethod
    def from_op(cls, op, semiring, params):  # type: ignore[override]
        return super().from_op(op, semiring, params)

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        return (params[0].unsqueeze(-1),)  # (F, K, C, D, 1)

    def values(self, x: Tensor, coeff: Tensor) -> Tensor:
        xs = self.select(x).to(coeff.real.dtype if coeff.is_complex() else coeff.dtype)
        degrees = torch.arange(coeff.shape[-2], device=xs.device, dtype=xs.dtype)
        powers = xs.unsqueeze(1).unsqueeze(-2) ** degrees.view(-1, 1)  # (F, 1, C, D, B)
        return (coeff * powers).sum(-2).prod(2)  # (F, K, B)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        values = self.values(x, prepared[0])
        if self.exact_values:
            return self._packed(self.semiring.from_linear(values))
        return self.semiring.pack_linear(values, 1)

    def evaluate_values(self, x: Tensor, *prepared: Tensor) -> Tensor:
        return self.semiring.from_linear(self.values(x, prepared[0]))
