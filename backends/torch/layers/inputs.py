"""Input layers: densities of the data, one variable per fold, as (F, K, B) values.

Discrete layers (categorical, embedding, small binomials) build a table of per-state values
once per forward, (F, K, C * N) in the semiring's representation, and evaluate as one
`torch.gather` of that table by the data. Channels are independent: their values multiply
(add, in log space).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from backends.torch.layers.base import TorchLayer
from backends.torch.parameters import TorchParameter
from backends.torch.semirings import Semiring

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class TorchInputLayer(TorchLayer):
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
    def num_variables(self) -> int:
        """Variables per fold (one: input layers are univariate)."""
        return 1

    def select(self, x: Tensor) -> Tensor:
        """(B, C, D) data -> (F, C, B): each fold's variable."""
        if self._span is None:
            x = x.index_select(2, self._variables)
        elif self._span != (0, x.shape[2]):
            x = x[:, :, self._span[0] : self._span[1]]
        return x.permute(2, 1, 0)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """(B, C, D) (or (B, D)) data -> (F, B, K)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.evaluate(x, *self.parameter_values()).transpose(1, 2)

    def extra_repr(self) -> str:
        f, c = self.num_folds, self.num_channels
        return (
            f"folds: {f}  channels: {c}  variables: {self.num_variables}"
            f"  output-units: {self.num_output_units}\n"
            f"input-shape: {(f, c, -1, self.num_variables)}\n"
            f"output-shape: {(f, -1, self.num_output_units)}"
        )


class _TableLayer(TorchInputLayer):
    """A discrete layer evaluated by looking its (F, K, C * N) table up."""

    def lookup(self, x: Tensor, table: Tensor) -> Tensor:
        xs = self.select(x)  # (F, C, B)
        if xs.is_floating_point():  # a circuit that mixes discrete and continuous inputs
            xs = xs.long()
        f, c, b = xs.shape
        k = table.shape[1]
        if c == 1:
            return torch.gather(table, 2, xs.expand(f, k, b))
        offsets = torch.arange(c, device=xs.device).mul_(table.shape[2] // c).view(1, c, 1)
        index = (xs + offsets).reshape(f, 1, c * b).expand(f, k, c * b)
        values = torch.gather(table, 2, index).view(f, k, c, b)
        return self.semiring.prod(values, 2)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        return self.lookup(x, prepared[0])


class TorchCategoricalLayer(_TableLayer):
    """p(x) = probs[k, c, x] per channel; the parameter is probs, logits or log-probs."""

    def __init__(self, *, num_categories: int, param: str = "probs", **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_categories = num_categories
        self.param = param
        self.max_value = num_categories - 1

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        (p,) = params
        s = self.semiring
        if self.param == "probs":
            table = s.from_linear(p)
        elif self.param == "log_probs":
            table = s.from_log(p)
        elif s.log_space:
            table = s.from_log(torch.log_softmax(p, -1))
        else:
            table = torch.softmax(p, -1)
        return (table.reshape(p.shape[0], p.shape[1], -1),)

    def prepare_log(self, log_probs: Tensor) -> tuple[Tensor, ...]:
        """`prepare` for a `probs` layer handed the log of its probs (the generated code
        does this when the probs are a softmax: a log-softmax is exact where log(softmax)
        underflows)."""
        table = self.semiring.from_log(log_probs)
        return (table.reshape(log_probs.shape[0], log_probs.shape[1], -1),)


class TorchEmbeddingLayer(_TableLayer):
    """f(x) = weight[k, c, x] per channel: a non-negative table over `num_states` states."""

    def __init__(self, *, num_states: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_states = num_states
        self.max_value = num_states - 1

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        (w,) = params
        return (self.semiring.from_linear(w).reshape(w.shape[0], w.shape[1], -1),)


def _binomial_log_pmf(k: Tensor, n: int, p: Tensor, param: str) -> Tensor:
    """log C(n, k) + k log p + (n - k) log(1 - p), exact at p in {0, 1} (xlogy: 0 log 0 = 0)."""
    log_binom = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    if param == "probs":
        return log_binom + torch.xlogy(k, p) + torch.xlogy(n - k, 1 - p)
    logp = torch.nn.functional.logsigmoid(p)
    log1mp = torch.nn.functional.logsigmoid(-p)
    return log_binom + k * logp + (n - k) * log1mp


class TorchBinomialLayer(_TableLayer):
    """Binomial(total_count, p) per channel; a table of all n + 1 values when n is small."""

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
        table = _binomial_log_pmf(k, self.total_count, p.unsqueeze(-1), self.param)
        return (self.semiring.from_log(table).reshape(p.shape[0], p.shape[1], -1),)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        if self.tabulate:
            return self.lookup(x, prepared[0])
        (p,) = prepared  # (F, K, C, 1)
        k = self.select(x).unsqueeze(1).to(p.dtype)  # (F, 1, C, B)
        log_pmf = _binomial_log_pmf(k, self.total_count, p, self.param).sum(2)
        return self.semiring.from_log(log_pmf)


class TorchGaussianLayer(TorchInputLayer):
    """Normal densities N(x; mean, stddev) per channel."""

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        mean, stddev = params  # (F, K, C)
        log_norm = torch.log(stddev).add_(_HALF_LOG_2PI).neg_()
        return mean.unsqueeze(-1), torch.reciprocal(stddev).unsqueeze(-1), log_norm.unsqueeze(-1)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:  # type: ignore[override]
        mean, inv_std, log_norm = prepared
        xs = self.select(x).unsqueeze(1).to(mean.dtype)  # (F, 1, C, B)
        z = (xs - mean) * inv_std
        log_density = torch.addcmul(log_norm, z, z, value=-0.5).sum(2)
        return self.semiring.from_log(log_density)


class TorchConstantLayer(TorchLayer):
    """Outputs `value` (given in linear space) for every batch entry."""

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
        (value,) = params
        return (self.semiring.from_linear(value).unsqueeze(-1),)

    def evaluate(self, x: Tensor, *prepared: Tensor) -> Tensor:
        value = prepared[0]
        return value.expand(value.shape[0], value.shape[1], x.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) data (only its batch size is read) -> (F, B, K)."""
        return self.evaluate(x, *self.parameter_values()).transpose(1, 2)

    def extra_repr(self) -> str:
        f, k = self.num_folds, self.num_output_units
        return f"folds: {f}  output-units: {k}\noutput-shape: {(f, -1, k)}"


class TorchEvidenceLayer(TorchConstantLayer):
    """An input distribution evaluated at a fixed observation: a constant of the data.

    `distribution` is that input layer (reading variable f of the observation in fold f);
    its parameters are this layer's, after `observation`.
    """

    def __init__(self, *, distribution: TorchInputLayer, semiring: Semiring, params) -> None:
        super().__init__(
            num_folds=distribution.num_folds,
            num_output_units=distribution.num_output_units,
            semiring=semiring,
            params=params,
        )
        self.distribution = distribution

    def prepare(self, *params: Tensor) -> tuple[Tensor, ...]:
        observation, *dist_params = params  # observation: (F, C)
        data = observation.t().unsqueeze(0)  # one batch entry, variable f read by fold f
        if self.distribution.max_value is not None:
            data = data.round().long()
        return (self.distribution.evaluate(data, *self.distribution.prepare(*dist_params)),)

    def extra_repr(self) -> str:
        f, k = self.num_folds, self.num_output_units
        return (
            f"folds: {f}  channels: {self.distribution.num_channels}  output-units: {k}\n"
            f"output-shape: {(f, -1, k)}"
        )
