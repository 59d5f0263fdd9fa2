"""Expectations under compiled circuits: `MomentsQuery` (means, variances, covariances and raw
moments of the variables) and `ExpectationQuery` (E_p[f] for a circuit f compatible with p),
both optionally conditioned on evidence.

Moments. A smooth and decomposable circuit is multilinear in its input layers: each induced
tree holds one input unit per variable. So putting, in the input layers over X_i, each
unit's raw moment integral int x^m f_k(x) dx in place of its value, and its integral
int f_k(x) dx in every other input layer over an unobserved variable, makes the circuit
compute Z E[X_i^m | x_B] (Z: the same circuit with only the integrals); doing so in two
variables gives Z E[X_i X_j | x_B]. One compiled circuit serves every moment: each moment is
one row of a batched call (moment rows x evidence rows), with the input layers' outputs
replaced per row as `IntegrateQuery` replaces them per sample (`layers.base.wrapped_outputs`).
A covariance of V variables takes 1 + 2V + V(V - 1) / 2 rows per evidence row.

Log semirings hold no negative value, and a gaussian's first moment may be negative. Each
variable is therefore shifted by a constant c_i no larger than any of its units' means (the
least mean of its gaussians; 0 for counts), which makes every moment of Y_i = X_i - c_i
non-negative; the rows compute moments of Y, and the raw moments are shifted back (central
moments need no shift back). The shift also centers the data near its means, so a variance
does not come out of the difference of two large numbers.

Per-layer moment rules live in a registry (`register_moments`) beside the integral rules of
`queries.register_log_integral`: a user's input layer joins by registering its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from cirkit_ir.backends.torch.circuit import TorchCircuit
from cirkit_ir.backends.torch.exact import fallback_entries
from cirkit_ir.backends.torch.layers.base import OutputWrap, wrapped_outputs
from cirkit_ir.backends.torch.layers.inputs import (
    TableLayer,
    TorchBinomialLayer,
    TorchGaussianDerivativeLayer,
    TorchGaussianLayer,
    TorchInputLayer,
)
from cirkit_ir.backends.torch.queries import (
    Query,
    input_layers,
    integral_rule,
    integrating,
    prepared_batch,
)
from cirkit_ir.errors import InputError, OptionError, PropertyError
from cirkit_ir.symbolic.scope import Scope

if TYPE_CHECKING:
    from cirkit_ir.pipeline import PipelineContext
    from cirkit_ir.symbolic.circuit import Circuit

__all__ = ["ExpectationQuery", "MomentRule", "MomentsQuery", "register_moments"]


# -- moment rules --------------------------------------------------------------------------------


class MomentRule:
    """How the raw moments of an input layer's units are computed from its prepared
    parameters (what its `evaluate` reads)."""

    def center(self, layer: TorchInputLayer) -> Tensor | None:
        """(F, K, C): the largest shift c at which every int (x - c)^m f_k(x) dx of a unit is
        non-negative (a gaussian's mean); None for 0 (counts: the least value of their
        support)."""
        return None

    def moments(
        self, layer: TorchInputLayer, prepared: tuple[Tensor, ...], shift: Tensor, order: int
    ) -> Tensor:
        """(F, K, C, order + 1): int (x - shift)^m f_k(x) dx per channel, m = 0..order, as
        linear values; `shift` is (F, 1, C), one per fold and channel."""
        raise NotImplementedError


_MOMENTS: dict[type, MomentRule | None] = {}


def register_moments(layer_class: type) -> Callable[[type[MomentRule]], type[MomentRule]]:
    """Class decorator: the `MomentRule` subclass computes the moments of input layers of
    `layer_class` (and its subclasses without a rule of their own)."""

    def register(rule: type[MomentRule]) -> type[MomentRule]:
        _MOMENTS[layer_class] = rule()
        return rule

    return register


def moment_rule(layer: TorchInputLayer) -> MomentRule | None:
    """The rule of `layer`'s class or its nearest registered base (None: no moments)."""
    for cls in type(layer).__mro__:
        if cls in _MOMENTS:
            return _MOMENTS[cls]
    return None


def _powers(y: Tensor, order: int) -> Tensor:
    """y ** m along a new last axis, m = 0..order (0 ** 0 = 1)."""
    return y.unsqueeze(-1) ** torch.arange(order + 1, device=y.device, dtype=y.dtype)


def _shifted(raw: Tensor, shift: Tensor) -> Tensor:
    """Moments about `shift` from raw moments (..., M + 1): sum_k C(m, k) (-shift)^(m-k) E[X^k]."""
    order = raw.shape[-1] - 1
    out = [
        sum(math.comb(m, k) * (-shift) ** (m - k) * raw[..., k] for k in range(m + 1))
        for m in range(order + 1)
    ]
    return torch.stack(out, -1)


@register_moments(TorchGaussianLayer)
class _GaussianMoments(MomentRule):
    """E[Y^m] = mu E[Y^(m-1)] + (m - 1) s^2 E[Y^(m-2)] for Y ~ N(mu, s^2) (Stein's lemma): all
    non-negative when mu is."""

    def center(self, layer: TorchInputLayer) -> Tensor:
        return layer.parameter_values()[0].squeeze(-1)

    def moments(self, layer, prepared, shift, order):
        mean, inv_std, _ = prepared  # (F, K, C, 1)
        mu = mean.squeeze(-1) - shift
        var = inv_std.squeeze(-1).reciprocal().square()
        out = [torch.ones_like(mu), mu]
        for m in range(2, order + 1):
            out.append(mu * out[-1] + (m - 1) * var * out[-2])
        return torch.stack(out[: order + 1], -1)


@register_moments(TableLayer)
class _TableMoments(MomentRule):
    """sum_s f_k(s) (s - shift)^m over the states of each channel (counts 0..N-1)."""

    def moments(self, layer, prepared, shift, order):
        if isinstance(layer, TorchBinomialLayer) and not layer.tabulate:
            return _binomial_moments(layer, prepared[0], shift, order)
        s = layer.semiring
        values = prepared[0] if layer.exact_values else s.unpack(prepared[0], 1)
        linear = torch.exp(values) if s.log_space else values  # (F, K, C * N)
        f, k, cn = linear.shape
        c = layer.num_channels
        real = shift.dtype
        states = torch.arange(cn // c, device=linear.device, dtype=real)
        powers = _powers(states - shift.unsqueeze(-1), order)  # (F, 1, C, N, M + 1)
        return (linear.reshape(f, k, c, cn // c, 1) * powers).sum(3)


def _binomial_moments(layer: TorchBinomialLayer, p: Tensor, shift: Tensor, order: int) -> Tensor:
    """A binomial too large to tabulate: E[X] = n p, E[X^2] = n p (1 - p) + (n p)^2."""
    if order > 2:
        raise PropertyError(
            f"moments of order {order} of a binomial of {layer.total_count} trials (too large"
            " to tabulate) are not implemented; ask for orders up to 2"
        )
    p = p.squeeze(-1)  # (F, K, C)
    if layer.param != "probs":
        p = torch.sigmoid(p)
    n = layer.total_count
    raw = torch.stack([torch.ones_like(p), n * p, n * p * (1 - p) + (n * p) ** 2][: order + 1], -1)
    return _shifted(raw, shift)


# Their values are the derivative of a density, not a density: no moments by inheritance.
_MOMENTS[TorchGaussianDerivativeLayer] = None


# -- moments as rows of one batched call -------------------------------------------------------


def _shifts(circuit: TorchCircuit, dtype: torch.dtype) -> Tensor:
    """(D, C): per variable and channel, the least center of the units over it (0 where no
    rule has one); detached, as any constant shift gives the same moments."""
    device = circuit.device
    shift = torch.full((circuit.num_variables, circuit.num_channels), math.inf, device=device)
    shift = shift.to(dtype)
    with torch.no_grad():
        for _, layer in input_layers(circuit):
            rule = moment_rule(layer)
            center = None if rule is None else rule.center(layer)
            if center is not None:
                least = center.real.amin(1).to(dtype)  # (F, C)
                index = layer.variables_index.unsqueeze(1).expand_as(least).to(device)
                shift.scatter_reduce_(0, index, least, "amin")
    return torch.where(torch.isinf(shift), torch.zeros_like(shift), shift)


def _moment_wrap(
    layer: TorchInputLayer, orders: Tensor, shift: Tensor, free: Tensor, batch: int
) -> OutputWrap:
    """`layer`'s outputs with, where `free` ((F, 1, B * R), entry b * R + r) is set, the
    product over channels of each unit's moment of the order `orders` ((R, F, C)) gives."""
    s = layer.semiring
    rule = moment_rule(layer)
    rows = orders.shape[0]
    top = int(orders.max()) if orders.numel() else 0
    if rule is None and top > 0:
        variables = sorted({layer.variables[f] for f in orders.nonzero()[:, 1].tolist()})
        raise PropertyError(
            f"{type(layer).__name__} over variable(s) {variables[:8]} has no moment rule (its"
            " values are not a density with moments); leave these variables out, or register"
            " a rule with cirkit_ir.backends.torch.expectations.register_moments"
        )

    def wrap(method: str, out: Tensor, prepared: tuple[Tensor, ...]) -> Tensor:
        if rule is None:  # only integrals: the query's integral rule
            fill = integral_rule(layer)(layer, prepared).unsqueeze(-1).expand(-1, -1, rows)
        else:
            moments = rule.moments(layer, prepared, shift, top)  # (F, K, C, M + 1)
            f, k, c, _ = moments.shape
            index = orders.permute(1, 2, 0).unsqueeze(1).expand(f, k, c, rows)
            fill = s.from_linear(moments.gather(3, index).prod(2))  # (F, K, R)
        if method == "evaluate":
            fill = s.pack(fill, 1)
        fill = fallback_entries(fill.repeat(1, 1, batch))
        return torch.where(fallback_entries(free), fill.to(out.dtype), out)

    return wrap


def _variables(circuit: TorchCircuit, variables: object) -> list[int]:
    """The queried variables, in the order given (a Scope: increasing); each must be read by
    an input layer of the circuit."""
    read = sorted({v for _, layer in input_layers(circuit) for v in layer.variables})
    if variables is None:
        return read
    if isinstance(variables, int) and not isinstance(variables, bool):
        variables = [variables]
    try:
        chosen = list(variables)  # type: ignore[call-overload]
    except TypeError:
        chosen = None
    if (
        chosen is None
        or not chosen
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in chosen)
    ):
        raise OptionError(
            f"variables must be a variable id, a Scope or a non-empty list of ids, got"
            f" {variables!r}"
        )
    outside = [v for v in chosen if v not in set(read)]
    if outside:
        raise InputError(
            f"variable(s) {outside[:8]} are not in the circuit's scope {Scope(read)}: it has no"
            " moments of them; ask for variables it is over"
        )
    if len(set(chosen)) != len(chosen):
        raise OptionError(f"variables lists a variable twice: {chosen}")
    return chosen


class MomentsQuery(Query):
    """Moments of the variables under the circuit's distribution, or under its conditional
    given evidence: `mean`, `variance`, `covariance`, and raw moments `E[X_i^order]`.

    `MomentsQuery(circuit)(x=None, *, evidence_mask=None, variables=None, order=1)` ->
    (B, C, V): E[X_i^order | x_B] for each queried variable i (all by default; a list of ids
    in the order wanted, or a Scope) and channel. Without `x`, unconditional (B = 1); with
    `x` and `evidence_mask` ((B, D) or (D,) bool, a Scope or a list of Scopes; True =
    observed), conditioned on the observed values of each row; an observed variable's
    moments are those of its value (its variance is 0). `batch_size` bounds the batch entries
    (moment rows x evidence rows) of one call of the circuit. The circuit need not be normalized
    (moments divide by its integral), needs one output unit, and input layers with a
    `MomentRule` over the queried variables: gaussian, categorical, binomial, embedding.
    """

    def _setup(
        self, x: Tensor | None, evidence_mask: object, variables: object
    ) -> tuple[Tensor, Tensor, list[int]]:
        x, observed = prepared_batch(self._circuit, x, evidence_mask, 1)  # type: ignore[arg-type]
        return x, observed, _variables(self._circuit, variables)

    def __init__(self, circuit: TorchCircuit, *, batch_size: int = 1024) -> None:
        super().__init__(circuit)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size

    def _values(self, x: Tensor, observed: Tensor, orders: Tensor, shift: Tensor) -> Tensor:
        """(B, R) the circuit's values with the moments of `orders` (R, D, C) in its inputs,
        in calls of at most `batch_size` entries (moment rows x evidence rows) where it can."""
        circuit = self._circuit
        b = x.shape[0]
        step = max(1, self.batch_size // b)
        chunks = []
        for start in range(0, orders.shape[0], step):
            chunk = orders[start : start + step].to(x.device)
            rows = chunk.shape[0]
            wraps = {}
            for _, layer in input_layers(circuit):
                index = layer.variables_index.to(x.device)
                free = (~observed).t().index_select(0, index).repeat_interleave(rows, 1)
                wraps[layer] = _moment_wrap(
                    layer,
                    chunk.index_select(1, index),
                    shift.index_select(0, index).unsqueeze(1),
                    free.unsqueeze(1),
                    b,
                )
            with wrapped_outputs(wraps, ("evaluate", "evaluate_values")):
                out = circuit(x.repeat_interleave(rows, 0))
            if out.shape[1:] != (1, 1):
                raise PropertyError(
                    "moments need a circuit with one output unit (a distribution); this one"
                    f" has {out.shape[1]} output(s) of {out.shape[2]} unit(s)"
                )
            chunks.append(out.reshape(b, rows))
        return torch.cat(chunks, 1)

    def _ratios(self, x: Tensor, observed: Tensor, orders: Tensor) -> tuple[Tensor, Tensor]:
        """(E[prod_i Y_i^orders[r, i]] | x_B: (B, R) for each row r of `orders` (R, D, C),
        the (D, C) shifts c with Y = X - c). Row 0 must be all zeros (the normalizer)."""
        circuit = self._circuit
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        shift = _shifts(circuit, dtype)
        values = self._values(x, observed, orders, shift)
        s = circuit.semiring
        if s.log_space:
            key = values[:, 0].real if values.is_complex() else values[:, 0]
            zero = torch.isneginf(key)
            ratios = torch.exp(values - values[:, :1])
        else:
            zero = values[:, 0] == 0
            ratios = values / values[:, :1]
        if bool(zero.any()):
            row = int(zero.nonzero()[0])
            raise InputError(
                f"the evidence of row {row} has probability 0 under the circuit: its"
                " conditional moments are undefined; check the observed values and the mask"
            )
        return (ratios.real if ratios.is_complex() else ratios), shift

    def _single(self, x: Tensor, observed: Tensor, variables: list[int], order: int):
        """(E[Y_i^k | x_B]: (B, C, V, order) for k = 1..order; the shifts (C, V))."""
        d, c, v = self._circuit.num_variables, self._circuit.num_channels, len(variables)
        orders = torch.zeros((1 + v * c * order, d, c), dtype=torch.long)
        row = 1
        for i in variables:
            for ch in range(c):
                for k in range(1, order + 1):
                    orders[row, i, ch] = k
                    row += 1
        ratios, shift = self._ratios(x, observed, orders)
        moments = ratios[:, 1:].reshape(-1, v, c, order).transpose(1, 2)
        return moments, shift[variables].t()

    def _observed(self, x: Tensor, observed: Tensor, variables: list[int]):
        """((B, 1, V) which queried variables each row observes; their values (B, C, V))."""
        return observed[:, variables].unsqueeze(1), x[:, :, variables].to(torch.float64)

    def __call__(
        self,
        x: Tensor | None = None,
        *,
        evidence_mask: Tensor | Scope | Sequence[Scope] | None = None,
        variables: int | Sequence[int] | Scope | None = None,
        order: int = 1,
    ) -> Tensor:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise OptionError(f"order must be a positive int, got {order!r}")
        x, observed, variables = self._setup(x, evidence_mask, variables)
        shifted, shift = self._single(x, observed, variables, order)
        ones = torch.ones_like(shifted[..., :1])
        raw = _shifted(torch.cat([ones, shifted], -1), -shift)[..., order]
        seen, values = self._observed(x, observed, variables)
        return torch.where(seen, values.to(raw.dtype) ** order, raw)

    def mean(
        self,
        x: Tensor | None = None,
        *,
        evidence_mask: Tensor | Scope | Sequence[Scope] | None = None,
        variables: int | Sequence[int] | Scope | None = None,
    ) -> Tensor:
        """(B, C, V): E[X_i | x_B]."""
        return self(x, evidence_mask=evidence_mask, variables=variables, order=1)

    def variance(
        self,
        x: Tensor | None = None,
        *,
        evidence_mask: Tensor | Scope | Sequence[Scope] | None = None,
        variables: int | Sequence[int] | Scope | None = None,
    ) -> Tensor:
        """(B, C, V): Var[X_i | x_B] = E[Y^2] - E[Y]^2 about the shift (0 where observed;
        rounding below 0 reads 0)."""
        x, observed, variables = self._setup(x, evidence_mask, variables)
        shifted, _ = self._single(x, observed, variables, 2)
        var = (shifted[..., 1] - shifted[..., 0] ** 2).clamp_min(0)
        seen, _ = self._observed(x, observed, variables)
        return var.masked_fill(seen, 0)

    def covariance(
        self,
        x: Tensor | None = None,
        *,
        evidence_mask: Tensor | Scope | Sequence[Scope] | None = None,
        variables: int | Sequence[int] | Scope | None = None,
    ) -> Tensor:
        """(B, V, V): Cov[X_i, X_j | x_B] (rows and columns of observed variables are 0), for
        circuits over one channel."""
        circuit = self._circuit
        if circuit.num_channels != 1:
            raise OptionError(
                f"covariance is over variables of one channel; this circuit reads"
                f" {circuit.num_channels} (ask for `variance` per channel instead)"
            )
        x, observed, variables = self._setup(x, evidence_mask, variables)
        v, d = len(variables), circuit.num_variables
        pairs = [(a, b) for a in range(v) for b in range(a + 1, v)]
        orders = torch.zeros((1 + 2 * v + len(pairs), d, 1), dtype=torch.long)
        for a, i in enumerate(variables):
            orders[1 + a, i], orders[1 + v + a, i] = 1, 2
        for r, (a, b) in enumerate(pairs):
            orders[1 + 2 * v + r, variables[a]] = 1
            orders[1 + 2 * v + r, variables[b]] = 1
        ratios, _ = self._ratios(x, observed, orders)
        first, second = ratios[:, 1 : 1 + v], ratios[:, 1 + v : 1 + 2 * v]
        cov = torch.empty((x.shape[0], v, v), dtype=ratios.dtype, device=ratios.device)
        cov[:, range(v), range(v)] = (second - first**2).clamp_min(0)
        if pairs:
            a, b = (list(t) for t in zip(*pairs, strict=True))
            mixed = ratios[:, 1 + 2 * v :] - first[:, a] * first[:, b]
            cov[:, a, b] = mixed
            cov[:, b, a] = mixed
        seen = observed[:, variables]
        return cov.masked_fill(seen.unsqueeze(1) | seen.unsqueeze(2), 0)


# -- E_p[f] ----------------------------------------------------------------------------------------


def _state_in(
    circuit: Circuit, state: Mapping[int, Tensor] | None, of: Circuit, what: str
) -> dict[int, Tensor]:
    """`state` (values by `of`'s source ids) keyed by `circuit`'s source ids instead (the two
    circuits share those tensor leaves)."""
    if state is None:
        return {}
    if not isinstance(state, Mapping):
        raise OptionError(
            f"{what} must map source ids to tensors (a compiled circuit's symbolic_state()),"
            f" got {type(state).__name__}"
        )
    leaves = of.tensor_parameters()
    ids = {id(leaf): i for i, leaf in enumerate(circuit.tensor_parameters())}
    bad = [k for k in state if not isinstance(k, int) or not 0 <= k < len(leaves)]
    if bad:
        raise OptionError(
            f"{what} has source ids {bad[:8]}, which its circuit does not have (0.."
            f"{len(leaves) - 1}); pass the symbolic_state() of that circuit's compilation"
        )
    return {ids[id(leaves[k])]: value for k, value in state.items() if id(leaves[k]) in ids}


class ExpectationQuery(Query):
    """E_p[f(X)] for a symbolic circuit f compatible with p (the same region structure), or
    E_p[f(X) | x_B] given evidence, one value per output of p (and of f).

    `ExpectationQuery(p, f, ctx=None)` compiles `SF.concatenate([SF.multiply(p, f), p])` once
    (with `ctx`, by default the active pipeline context), and each call evaluates it with the
    unobserved variables integrated out (`IntegrateQuery`'s mechanism) and divides:
    E_p[f | x_B] = int p(x_B, x_A) f(x_B, x_A) dx_A / int p(x_B, x_A) dx_A. So p need not be
    normalized. `p_state` / `f_state` load trained values (the `symbolic_state()` of a
    compilation of p or f). `circuit` is the compiled concatenation (outputs: p * f, then p).

    `query(x=None, *, evidence_mask=None, log=False)` -> (B, num_outputs): without `x`, the
    unconditional expectation (B = 1); with `x` and `evidence_mask` (True = observed), one
    conditional expectation per row. `log=True` gives natural logs (complex ones where the
    expectation is negative, under 'complex-lse-sum'), free of underflow.
    """

    def __init__(
        self,
        p: Circuit,
        f: Circuit,
        *,
        ctx: PipelineContext | None = None,
        p_state: Mapping[int, Tensor] | None = None,
        f_state: Mapping[int, Tensor] | None = None,
    ) -> None:
        import cirkit_ir.symbolic.functional as SF
        from cirkit_ir.pipeline import current_context

        product = SF.multiply(p, f)  # checks that p and f are compatible
        for which, sc in (("p", p), ("f", f)):
            units = {layer.num_output_units for layer in sc.outputs}
            if units != {1}:
                raise PropertyError(
                    f"ExpectationQuery needs circuits with one unit per output; {which} has"
                    f" outputs of {sorted(units)} units"
                )
        both = SF.concatenate([product, p])
        state = _state_in(both, p_state, p, "p_state") | _state_in(both, f_state, f, "f_state")
        ctx = current_context() if ctx is None else ctx
        super().__init__(ctx.compile(both, parameters=state or None))
        self.num_outputs = len(p.outputs)

    def __call__(
        self,
        x: Tensor | None = None,
        *,
        evidence_mask: Tensor | Scope | Sequence[Scope] | None = None,
        log: bool = False,
    ) -> Tensor:
        circuit = self._circuit
        x, observed = prepared_batch(circuit, x, evidence_mask, 1)
        with integrating(circuit, ~observed):
            out = circuit(x)[:, :, 0]  # (B, 2 * num_outputs)
        joint, normalizer = out[:, : self.num_outputs], out[:, self.num_outputs :]
        s = circuit.semiring
        key = normalizer.real if normalizer.is_complex() else normalizer
        if bool((torch.isneginf(key) if s.log_space else key == 0).any()):
            raise InputError(
                "the evidence has probability 0 under p (its integral is 0): the conditional"
                " expectation is undefined; check the observed values and the mask"
            )
        if s.log_space:
            logs = joint - normalizer
            if log:
                return logs
            values = torch.exp(logs)
            return values.real if values.is_complex() else values
        ratio = joint / normalizer
        return torch.log(ratio) if log else ratio
