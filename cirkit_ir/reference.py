"""A reference evaluator: the oracle that compiled circuits are tested against.

It walks a *symbolic* circuit layer by layer and never touches the IR, the passes or a
backend: no folding, no fusion, no generated code. Everything is computed in float64, or in
complex128 when some parameter is complex or a value that must be logged is negative (that is
what the 'complex-lse-sum' semiring computes). It is written to be obviously right, not fast.

In log space (the default) every layer outputs log-values, and sums are taken with a
log-sum-exp that subtracts the largest real part first, so that circuits whose values are far
below the smallest float64 (log-likelihoods of -5000) come out exact.

    >>> from cirkit_ir.reference import evaluate
    >>> log_p = evaluate(circuit, x)                                  # doctest: +SKIP
    >>> log_p = evaluate(circuit, x, compiled.symbolic_state())       # doctest: +SKIP

The semantics of each layer and parameter class are registered beside them in this module
(`input_rule`, `layer_rule`, `parameter_rule`), so that a user's own layer is checked the same
way: its rule is the plain formula of its definition, nothing from the compiler.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch

from cirkit_ir.errors import InputError, OptionError, StructureError, check_value_range
from cirkit_ir.symbolic import layers as sl
from cirkit_ir.symbolic import parameters as sp
from cirkit_ir.symbolic import pic
from cirkit_ir.symbolic.circuit import Circuit

REAL = torch.float64
COMPLEX = torch.complex128

__all__ = [
    "LayerContext",
    "draw_values",
    "evaluate",
    "evaluate_layers",
    "evaluate_parameters",
    "input_rule",
    "layer_rule",
    "logsumexp",
    "parameter_rule",
]


# =============================================================================================
# Small numerical helpers


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, with complex log-values added part by part.

    torch adds complex tensors as a + 1 * b with a complex multiplication, which turns
    (-inf + 0j) into (-inf + nan j) on some broadcasting paths; log 0 must stay -inf + 0j.
    """
    if not (a.is_complex() or b.is_complex()):
        return a + b
    return torch.complex(_real(a) + _real(b), _imag(a) + _imag(b))


def _real(t: torch.Tensor) -> torch.Tensor:
    return t.real if t.is_complex() else t


def _imag(t: torch.Tensor) -> torch.Tensor:
    return t.imag if t.is_complex() else torch.zeros_like(t)


def logsumexp(z: torch.Tensor, dim: int) -> torch.Tensor:
    """log(sum(exp(z), dim)) for real or complex `z`, stable, and exact at -inf.

    The largest real part along `dim` is subtracted before exponentiating (and added back),
    so no term overflows and the largest one is exp(0) = 1 in modulus. A slice that is all
    -inf gives -inf (not NaN). Complex terms are exp(Re z - shift) * e^(i Im z).
    """
    real = _real(z)
    shift = real.detach().amax(dim=dim, keepdim=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    modulus = torch.exp(real - shift)
    if z.is_complex():
        total = torch.polar(modulus, z.imag).sum(dim=dim, keepdim=True)
    else:
        total = modulus.sum(dim=dim, keepdim=True)
    return add(torch.log(total), shift).squeeze(dim)


def _as_tensor(value: object, dtype: torch.dtype) -> torch.Tensor:
    """A leaf value as a float64 / complex128 tensor on the CPU (autograd is kept)."""
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if t.is_complex() and not dtype.is_complex:
        dtype = COMPLEX
    return t.to(device="cpu", dtype=dtype)


# =============================================================================================
# Parameters


def draw_values(
    circuit: Circuit, generator: torch.Generator | None = None
) -> dict[int, torch.Tensor]:
    """Values for every tensor leaf, keyed by source id, drawn from the leaves' initializers.

    Draws use torch's global RNG unless a `generator` is given, in source-id order.
    """
    values: dict[int, torch.Tensor] = {}
    for source, leaf in enumerate(circuit.tensor_parameters()):
        dtype = COMPLEX if leaf.dtype == "complex" else REAL
        values[source] = leaf.initializer.sample(tuple(leaf.shape), dtype, generator)
    return values


def _mixing_weight(w: torch.Tensor) -> torch.Tensor:
    """(K, H) -> (K, H*K) with entry [k, h*K + k] = w[k, h] and zeros elsewhere."""
    k, h = w.shape
    out = torch.zeros((k, h * k), dtype=w.dtype)
    for unit in range(k):
        for branch in range(h):
            out[unit, branch * k + unit] = w[unit, branch]
    return out


def _kronecker(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out[i * b0 + j, k * b1 + l] = a[i, k] * b[j, l]."""
    a0, a1 = a.shape
    b0, b1 = b.shape
    out = a[:, None, :, None] * b[None, :, None, :]  # (a0, b0, a1, b1)
    return out.reshape(a0 * b0, a1 * b1)


def _softmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    """softmax(x), carrying its exact log-softmax along for `_log`: in log space a weight of
    exp(-800) is -800, not the log of a float64 0."""
    log_values = _log_softmax(x, axis)
    value = torch.exp(log_values)
    value.exact_log = log_values  # type: ignore[attr-defined]
    return value


def _log_softmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    return add(x, -logsumexp(x, axis).unsqueeze(axis))


def _promote(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both operands complex128 if one of them is, else both as they are (float64)."""
    if a.is_complex() or b.is_complex():
        return a.to(COMPLEX), b.to(COMPLEX)
    return a, b


ParameterRule = Callable[[Any, list[torch.Tensor]], torch.Tensor]
"""The value of a (non-leaf) parameter node from the values of its inputs."""

_PARAMETER_RULES: dict[type, ParameterRule] = {}


def parameter_rule(*classes: type) -> Callable[[ParameterRule], ParameterRule]:
    """Registers the reference semantics of symbolic parameter node classes."""

    def register(rule: ParameterRule) -> ParameterRule:
        for cls in classes:
            _PARAMETER_RULES[cls] = rule
        return rule

    return register


def _lookup(rules: dict[type, Any], obj: object, what: str) -> Any:
    for cls in type(obj).__mro__:
        if cls in rules:
            return rules[cls]
    raise NotImplementedError(
        f"the reference cannot evaluate the {what} {type(obj).__name__}: register its"
        f" semantics with cirkit_ir.reference.{what.replace(' ', '_')}_rule"
    )


def _reduce(node: sp.ReduceParameter, x: torch.Tensor) -> torch.Tensor:
    if node.kind == "sum":
        return x.sum(dim=node.axis)
    if node.kind == "prod":
        return x.prod(dim=node.axis)
    return logsumexp(x, node.axis)


parameter_rule(sp.SoftmaxParameter)(lambda node, args: _softmax(args[0], node.axis))
parameter_rule(sp.LogSoftmaxParameter)(lambda node, args: _log_softmax(args[0], node.axis))
parameter_rule(sp.ExpParameter)(lambda node, args: torch.exp(args[0]))
parameter_rule(sp.LogParameter)(lambda node, args: torch.log(args[0]))
parameter_rule(sp.SigmoidParameter)(lambda node, args: torch.sigmoid(args[0]))
# log(1 + exp(x)), written without a threshold so that it is exact everywhere.
parameter_rule(sp.SoftplusParameter)(
    lambda node, args: torch.logaddexp(torch.zeros_like(args[0]), args[0])
)
parameter_rule(sp.ClampParameter)(
    lambda node, args: torch.clamp(args[0], min=node.vmin, max=node.vmax)
)
parameter_rule(sp.ScaledSigmoidParameter)(
    lambda node, args: node.vmin + (node.vmax - node.vmin) * torch.sigmoid(args[0])
)
parameter_rule(sp.MixingWeightParameter)(lambda node, args: _mixing_weight(args[0]))
parameter_rule(sp.ReduceParameter)(lambda node, args: _reduce(node, args[0]))
parameter_rule(sp.KroneckerParameter)(lambda node, args: _kronecker(*_promote(*args)))
parameter_rule(sp.MatMulParameter)(lambda node, args: operator.matmul(*_promote(*args)))


def _parameter_value(node: sp.ParameterNode, args: list[torch.Tensor]) -> torch.Tensor:
    """The value of one (non-leaf) parameter node from the values of its inputs."""
    return _lookup(_PARAMETER_RULES, node, "parameter")(node, args)


def evaluate_parameters(
    circuit: Circuit, values: Mapping[int, torch.Tensor] | None = None
) -> dict[int, torch.Tensor]:
    """The value of every parameter node of the circuit, keyed by ``id(node)``.

    `values` maps source ids (indices in ``circuit.tensor_parameters()``) to leaf tensors;
    missing leaves are drawn from their initializers with torch's RNG.
    """
    leaves = circuit.tensor_parameters()
    if values is None:
        values = draw_values(circuit)
    computed: dict[int, torch.Tensor] = {}
    for source, leaf in enumerate(leaves):
        if source in values:
            value = _as_tensor(values[source], COMPLEX if leaf.dtype == "complex" else REAL)
        else:
            dtype = COMPLEX if leaf.dtype == "complex" else REAL
            value = leaf.initializer.sample(tuple(leaf.shape), dtype)
        if tuple(value.shape) != tuple(leaf.shape):
            raise InputError(
                f"value for source {source} has shape {tuple(value.shape)}, expected {leaf.shape}"
            )
        computed[id(leaf)] = value
    for layer in circuit.topological_ordering():
        for root in layer.params.values():
            for node in root.nodes():
                if id(node) not in computed:
                    args = [computed[id(child)] for child in node.inputs]
                    computed[id(node)] = _parameter_value(node, args)
    return computed


# =============================================================================================
# Modes
#
# "real":    float64 log-values; every logged parameter must be non-negative.
# "complex": complex128 log-values, log(v) = log|v| + i arg(v): what complex-lse-sum computes.
# "bound":   float64, every logged parameter replaced by its modulus, log|v| = Re log(v). This
#            is the circuit with all signs and phases dropped: the sum of the moduli of every
#            term, the scale against which rounding errors of a cancelling sum are measured.

MODES = ("real", "complex", "bound")


def _in_mode(log_values: torch.Tensor, mode: str) -> torch.Tensor:
    """Log-values (real or complex) as the mode stores them."""
    if mode == "complex":
        return log_values.to(COMPLEX)
    if mode == "bound" and log_values.is_complex():
        return log_values.real
    return log_values


def _log(t: torch.Tensor, mode: str) -> torch.Tensor:
    """The log of parameter values, as the mode stores it (exact for a softmax's values)."""
    exact = getattr(t, "exact_log", None)
    if exact is not None:
        return _in_mode(exact, mode)
    if mode == "real" and not t.is_complex():
        return torch.log(t)
    return _in_mode(torch.log(t.to(COMPLEX)), mode)


# =============================================================================================
# Input layers: log-densities of one variable's data (B, C) -> (B, K), summed over channels


InputRule = Callable[[Any, dict[str, torch.Tensor], torch.Tensor, str], torch.Tensor]
"""(layer, params, data (B, C) of the layer's variable, mode) -> (B, K) log-densities, summed
over channels, in the mode's representation (`_in_mode`, `_log`)."""

_INPUT_RULES: dict[type, InputRule] = {}


def input_rule(*classes: type) -> Callable[[InputRule], InputRule]:
    """Registers the log-density of symbolic input layer classes (see `InputRule`)."""

    def register(rule: InputRule) -> InputRule:
        for cls in classes:
            _INPUT_RULES[cls] = rule
        return rule

    return register


@input_rule(sl.CategoricalLayer)
def _categorical_log(layer: sl.CategoricalLayer, params, data: torch.Tensor, mode: str):
    name, _ = layer._param()
    table = params[name]  # (K, C, N)
    if name == "logits":
        log_table = _in_mode(_log_softmax(table, -1), mode)
    else:
        log_table = _log(table, mode)
    return _gather_table(log_table, data.long())


@input_rule(sl.EmbeddingLayer)
def _embedding_log(layer: sl.EmbeddingLayer, params, data: torch.Tensor, mode: str):
    return _gather_table(_log(params["weight"], mode), data.long())


def _gather_table(log_table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """sum_c log_table[k, c, index[b, c]] -> (B, K)."""
    batch, channels = index.shape
    units = log_table.shape[0]
    out = torch.zeros((batch, units), dtype=log_table.dtype)
    for c in range(channels):
        # log_table[:, c, :] is (K, N); pick column index[b, c] for every b: (K, B).
        out = add(out, log_table[:, c, :][:, index[:, c]].T)
    return out


@input_rule(sl.BinomialLayer)
def _binomial_log(layer: sl.BinomialLayer, params, data: torch.Tensor, mode: str):
    n = float(layer.total_count)
    name, _ = layer._param()
    x = data.to(REAL)[:, None, :]  # (B, 1, C)
    if name == "logits":
        logit = params["logits"][None]  # (1, K, C)
        log_p = torch.nn.functional.logsigmoid(logit)
        log_q = torch.nn.functional.logsigmoid(-logit)
        terms = x * log_p + (n - x) * log_q
    else:
        p = params["probs"][None]
        # xlogy makes 0 * log(0) = 0: p = 0 with x = 0 (or p = 1 with x = n) has mass one.
        terms = torch.xlogy(x, p) + torch.xlogy(n - x, 1.0 - p)
    log_binom = math.lgamma(n + 1) - torch.lgamma(x + 1) - torch.lgamma(n - x + 1)
    return _in_mode((terms + log_binom).sum(dim=-1), mode)


@input_rule(sl.GaussianLayer)
def _gaussian_log(layer: sl.GaussianLayer, params, data: torch.Tensor, mode: str):
    x = data.to(REAL)[:, None, :]  # (B, 1, C)
    mean = params["mean"][None]
    std = params["stddev"][None]
    terms = -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return _in_mode(terms.sum(dim=-1), mode)


def _input_log(layer: sl.InputLayer, params, data: torch.Tensor, mode: str) -> torch.Tensor:
    return _lookup(_INPUT_RULES, layer, "input")(layer, params, data, mode)


# =============================================================================================
# The circuit


def _layer_params(layer: sl.Layer, computed: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: computed[id(root)] for name, root in layer.params.items()}


def needs_complex(circuit: Circuit, values: Mapping[int, torch.Tensor] | None = None) -> bool:
    """Whether some value the circuit multiplies by is complex or negative (so that its
    log-values are complex), given leaf values by source id."""
    return _needs_complex(circuit, evaluate_parameters(circuit, values))


def _needs_complex(circuit: Circuit, computed: dict[int, torch.Tensor]) -> bool:
    for layer in circuit.layers:
        inner = layer.layer if isinstance(layer, sl.EvidenceLayer) else layer
        for name, root in inner.params.items():
            value = computed[id(root)]
            if value.is_complex():
                return True
            logged = not (
                isinstance(inner, sl.GaussianLayer | sl.BinomialLayer) or name == "logits"
            )
            if logged and bool((value.detach() < 0).any()):
                return True
    return False


def _prepare_data(circuit: Circuit, x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    channels = circuit.num_channels
    if x.dim() == 2 and channels == 1:
        x = x[:, None, :]
    if x.dim() != 3 or x.shape[1] != channels:
        raise InputError(
            f"the reference expects data of shape (B, {channels}, D), got {tuple(x.shape)}"
        )
    if x.shape[2] < circuit.num_variables:
        raise InputError(
            f"the circuit reads {circuit.num_variables} variables, data has {x.shape[2]}"
        )
    return x.cpu()


def _check_data_range(layer: sl.InputLayer, column: torch.Tensor) -> None:
    """An `InputError` unless a discrete layer's data (B, C) lie in 0..max_value, worded as
    the backend words it. Out of range, the table lookups would fail with an index error, or
    (negative values) silently read the table from its end."""
    top = layer.max_value
    if top is None or column.numel() == 0:
        return
    (variable,) = layer.scope
    values = column.to(REAL)
    if bool(torch.isnan(values).any()):
        raise InputError(f"variable {variable} has NaN values; remove or impute them first")
    check_value_range(variable, values.min().item(), values.max().item(), top)


def _evidence_data(layer: sl.EvidenceLayer, observation: torch.Tensor) -> torch.Tensor:
    """The observation (C,) as a batch (1, C) for the observed layer. A discrete layer's
    observation rounds to the nearest integer, as the backend rounds it; one outside
    0..max_value (or NaN) is an `InputError` naming the channel, the value and the range."""
    data = observation.detach().reshape(1, -1)
    top = layer.layer.max_value
    if top is None:
        return observation.reshape(1, -1)
    rounded = data.real.round() if data.is_complex() else data.round()
    valid = (rounded >= 0) & (rounded <= top)  # NaN compares false: invalid
    if not bool(valid.all()):
        channel = int((~valid[0]).nonzero()[0])
        value = data[0, channel].item()
        (variable,) = layer.layer.scope
        kind = type(layer.layer).__name__.removesuffix("Layer").lower()
        raise InputError(
            f"evidence layer (a {kind} over variable {variable}): the observation {value:g}"
            f" in channel {channel} is out of range; the {kind} accepts 0..{top}. Set an"
            " observation in range (its initializer, or the value given for its source)"
        )
    return rounded


@attrs.frozen
class LayerContext:
    """What a layer rule reads besides the layer, its parameters and its inputs' outputs."""

    data: torch.Tensor  # (B, C, D)
    mode: str  # see `MODES`
    computed: dict[int, torch.Tensor]  # parameter values by id(node)

    @property
    def batch(self) -> int:
        return self.data.shape[0]

    def log(self, t: torch.Tensor) -> torch.Tensor:
        """The log of parameter values, as the mode stores it."""
        return _log(t, self.mode)

    def params(self, layer: sl.Layer) -> dict[str, torch.Tensor]:
        """The parameter values of another layer (an evidence layer's distribution)."""
        return _layer_params(layer, self.computed)


LayerRule = Callable[[Any, dict[str, torch.Tensor], list[torch.Tensor], LayerContext], torch.Tensor]
"""(layer, params, inputs' outputs (B, units) each, context) -> the layer's (B, K) output."""

_LOG_RULES: dict[type, LayerRule] = {}
_LINEAR_RULES: dict[type, LayerRule] = {}


def layer_rule(*classes: type, linear: bool = False) -> Callable[[LayerRule], LayerRule]:
    """Registers the reference semantics of symbolic layer classes (not input layers: see
    `input_rule`): in log space (the default: inputs and outputs are log-values, see `add`
    and `logsumexp`), or with `linear=True` in linear space (plain sums and products, the
    second, independent path of `evaluate(log_space=False)`; a layer without a linear rule
    is the exp of its log rule there)."""

    def register(rule: LayerRule) -> LayerRule:
        for cls in classes:
            (_LINEAR_RULES if linear else _LOG_RULES)[cls] = rule
        return rule

    return register


def _weight(value: torch.Tensor, mode: str) -> torch.Tensor:
    """A linear weight as the linear path multiplies by it in `mode`."""
    if mode == "bound":
        return value.abs()
    return value.to(COMPLEX) if mode == "complex" else value


@layer_rule(sl.ConstantLayer)
def _constant_log(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    return ctx.log(params["value"])[None, :].expand(ctx.batch, -1)  # (K,) -> (B, K)


@layer_rule(sl.ConstantLayer, linear=True)
def _constant_linear(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    return _weight(params["value"], ctx.mode)[None, :].expand(ctx.batch, -1)


@layer_rule(sl.EvidenceLayer)
def _evidence_log(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    observation = _evidence_data(layer, params["observation"])  # (1, C)
    value = _input_log(layer.layer, ctx.params(layer.layer), observation, ctx.mode)  # (1, K)
    return value.expand(ctx.batch, -1)


@layer_rule(sl.SumLayer)  # DenseLayer is its one-input form
def _sum_log(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    child = torch.cat(inputs, dim=1)  # (B, J): the inputs' units, concatenated
    log_w = ctx.log(params["weight"])  # (K, J)
    return logsumexp(add(log_w[None, :, :], child[:, None, :]), dim=2)


@layer_rule(sl.SumLayer, linear=True)
def _sum_linear(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    child = torch.cat(inputs, dim=1)  # (B, J)
    w = _weight(params["weight"], ctx.mode)  # (K, J)
    return (w[None, :, :] * child[:, None, :]).sum(dim=2)


@layer_rule(sl.MixingLayer)
def _mixing_log(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    log_w = ctx.log(params["weight"])  # (K, H)
    stacked = torch.stack(inputs, dim=2)  # (B, K, H)
    return logsumexp(add(log_w[None, :, :], stacked), dim=2)


@layer_rule(sl.MixingLayer, linear=True)
def _mixing_linear(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    w = _weight(params["weight"], ctx.mode)  # (K, H)
    return (w[None, :, :] * torch.stack(inputs, dim=2)).sum(dim=2)


@layer_rule(sl.HadamardLayer)
def _hadamard_log(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    total = inputs[0]
    for child in inputs[1:]:
        total = add(total, child)
    return total


@layer_rule(sl.HadamardLayer, linear=True)
def _hadamard_linear(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    return functools.reduce(operator.mul, inputs)


@layer_rule(sl.KroneckerLayer)
def _kronecker_log(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    # Unit (i_1, ..., i_n) is i_1 * K^(n-1) + ... + i_n: the first input varies slowest.
    total = inputs[0]
    for child in inputs[1:]:
        total = add(total[:, :, None], child[:, None, :]).reshape(ctx.batch, -1)
    return total


@layer_rule(sl.KroneckerLayer, linear=True)
def _kronecker_linear(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    total = inputs[0]
    for child in inputs[1:]:
        total = (total[:, :, None] * child[:, None, :]).reshape(ctx.batch, -1)
    return total


def _layer_log(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    """The log-output (B, units) of one layer from its inputs' log-outputs."""
    if isinstance(layer, sl.InputLayer):
        (variable,) = tuple(layer.scope)
        column = ctx.data[:, :, variable]
        _check_data_range(layer, column)
        return _input_log(layer, params, column, ctx.mode)
    return _lookup(_LOG_RULES, layer, "layer")(layer, params, inputs, ctx)


def _layer_linear(layer, params, inputs, ctx: LayerContext) -> torch.Tensor:
    """The output (B, units) of one layer in linear space: plain sums and products.

    A second, independent path (no logs, no shifts) for small circuits whose values do not
    underflow; input densities are the exponentials of their log-densities.
    """
    rule = next((_LINEAR_RULES[c] for c in type(layer).__mro__ if c in _LINEAR_RULES), None)
    if rule is None:
        return torch.exp(_layer_log(layer, params, inputs, ctx))
    return rule(layer, params, inputs, ctx)


def evaluate_layers(
    circuit: Circuit,
    x: torch.Tensor,
    values: Mapping[int, torch.Tensor] | None = None,
    *,
    log_space: bool = True,
    mode: str | None = None,
) -> dict[sl.Layer, torch.Tensor]:
    """The output (B, units) of every layer of the circuit, in log space by default.

    `mode` (see `MODES`) None picks "complex" when a parameter is complex or a weight,
    probability, embedding or constant is negative, and "real" otherwise.
    """
    data = _prepare_data(circuit, x)
    computed = evaluate_parameters(circuit, values)
    if mode is None:
        mode = "complex" if _needs_complex(circuit, computed) else "real"
    if mode not in MODES:
        raise OptionError.choose("mode", mode, MODES)
    step = _layer_log if log_space else _layer_linear
    ctx = LayerContext(data, mode, computed)
    out: dict[sl.Layer, torch.Tensor] = {}
    for layer in circuit.topological_ordering():
        params = _layer_params(layer, computed)
        inputs = [out[child] for child in circuit.layer_inputs(layer)]
        out[layer] = step(layer, params, inputs, ctx)
    return out


def evaluate(
    circuit: Circuit,
    x: torch.Tensor,
    values: Mapping[int, torch.Tensor] | None = None,
    *,
    log_space: bool = True,
    mode: str | None = None,
) -> torch.Tensor:
    """The circuit's outputs on the batch `x`: a (B, num_outputs, num_units) tensor.

    Args:
        circuit: a symbolic circuit.
        x: data of shape (B, C, D), or (B, D) when the circuit has one channel. Categorical,
            binomial and embedding inputs read integers (floats are truncated) in their
            range 0..max_value; evidence observations of such layers round to the nearest
            integer, as the backend rounds them.
        values: tensor-leaf values keyed by source id (e.g. ``compiled.symbolic_state()``);
            leaves missing from it are drawn from their initializers with torch's RNG.
        log_space: return log-values (default) or values.
        mode: "real", "complex" or "bound" (see `MODES`); None picks "complex" when a
            parameter is complex or a logged value is negative, else "real".

    Returns:
        float64 (or complex128) log-values, or values with ``log_space=False``.

    Raises:
        InputError: data of the wrong shape, discrete data or an evidence observation out
            of its layer's range (or NaN), or a leaf value of the wrong shape.
        OptionError: an unknown `mode`.
        StructureError: outputs with different numbers of units.
    """
    per_layer = evaluate_layers(circuit, x, values, log_space=log_space, mode=mode)
    units = {layer.num_output_units for layer in circuit.outputs}
    if len(units) != 1:
        raise StructureError(
            f"the circuit's outputs have different numbers of units, {sorted(units)}; the"
            " reference stacks them into one (B, outputs, units) tensor"
        )
    return torch.stack([per_layer[layer] for layer in circuit.outputs], dim=1)


# =============================================================================================
# Comparing a compiled circuit with the reference


def output_as_log(output: torch.Tensor, semiring: str) -> torch.Tensor:
    """A compiled circuit's output as log-values: complex128 for complex or signed outputs,
    float64 otherwise. 'sum-product' outputs are values; the other semirings' are logs."""
    output = output.detach().cpu()
    if semiring == "sum-product":
        if output.is_complex() or bool((output < 0).any()):
            return torch.log(output.to(COMPLEX))
        return torch.log(output.to(REAL))
    return output.to(COMPLEX if output.is_complex() else REAL)


def scaled_error(
    output: torch.Tensor,
    circuit: Circuit,
    x: torch.Tensor,
    values: Mapping[int, torch.Tensor] | None,
    semiring: str,
) -> torch.Tensor:
    """|output - reference| / bound, elementwise (B, num_outputs, num_units).

    `bound` is the reference with every weight replaced by its modulus (mode "bound"): for
    circuits with non-negative parameters it is the reference itself, so this is the relative
    error; for signed or complex ones it measures errors against the size of the terms that
    cancel, which is what floating point can promise. Where the bound is zero the output must
    be exactly zero (error 0) or the error is inf. NaN in the output gives NaN.
    """
    values = None if values is None else dict(values)
    if values is None:
        values = draw_values(circuit)
    reference = evaluate(circuit, x, values, mode="complex").detach()
    bound = evaluate(circuit, x, values, mode="bound").detach()
    log_output = output_as_log(output, semiring).to(COMPLEX)
    if log_output.shape != reference.shape:
        raise AssertionError(
            f"output shape {tuple(log_output.shape)} != reference {tuple(reference.shape)}"
        )
    zero_bound = torch.isneginf(bound)
    safe_bound = torch.where(zero_bound, torch.zeros_like(bound), bound)
    actual = torch.exp(log_output - safe_bound)
    expected = torch.exp(reference - safe_bound)
    error = (actual - expected).abs()
    output_is_zero = torch.isneginf(log_output.real)
    on_zero = torch.where(output_is_zero, torch.zeros_like(error), torch.full_like(error, math.inf))
    error = torch.where(zero_bound, on_zero, error)
    nan = torch.isnan(log_output.real) | torch.isnan(log_output.imag)
    return torch.where(nan, torch.full_like(error, math.nan), error)


def assert_matches(
    output: torch.Tensor,
    circuit: Circuit,
    x: torch.Tensor,
    values: Mapping[int, torch.Tensor] | None,
    semiring: str,
    tol: float,
) -> None:
    """Raises AssertionError, naming the worst entry, unless `output` (a compiled circuit's
    output under `semiring`) is within `tol` of the reference (see `scaled_error`)."""
    error = scaled_error(output, circuit, x, values, semiring)
    bad = torch.isnan(error) | (error > tol)
    if bool(bad.any()):
        flat = torch.where(torch.isnan(error), torch.full_like(error, math.inf), error)
        index = tuple(int(i) for i in torch.unravel_index(flat.argmax(), flat.shape))
        reference = evaluate(circuit, x, values, mode="complex")
        raise AssertionError(
            f"{int(bad.sum())} of {error.numel()} outputs differ from the reference by more"
            f" than {tol} (semiring {semiring}); worst at {index}: error {error[index].item():.3g},"
            f" got {output.detach()[index].item()}, reference log-value"
            f" {reference[index].item()}"
        )


# =============================================================================================
# Probabilistic integral circuits: nets evaluated at quadrature points (`symbolic.pic`)


def _pic_net(grid: torch.Tensor, args: list[torch.Tensor]) -> torch.Tensor:
    """The net of Fourier coefficients args[0] and (weight, bias) pairs args[1:] at each row
    of `grid` (G, d): (G, out)."""
    coeff, layers = args[0], args[1:]
    angles = 2 * math.pi * grid @ coeff
    h = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    for i in range(0, len(layers), 2):
        if i:
            h = torch.tanh(h)
        h = h @ layers[i].T + layers[i + 1]
    return h


def _pic_grid(points: torch.Tensor, num_dim: int) -> torch.Tensor:
    """Every num_dim-tuple of points, the last varying fastest: (K^num_dim, num_dim)."""
    return torch.cartesian_prod(*[points] * num_dim).reshape(-1, num_dim)


@parameter_rule(pic.PICInputNetParameter)
def _pic_input_net(node: pic.PICInputNetParameter, args: list[torch.Tensor]) -> torch.Tensor:
    points, rest = args[0], args[1:]
    return _pic_net(points[:, None], rest).reshape(node.shape)


@parameter_rule(pic.PICInnerNetParameter)
def _pic_inner_net(node: pic.PICInnerNetParameter, args: list[torch.Tensor]) -> torch.Tensor:
    points, weights, rest = args[0], args[1], args[2:]
    num_dim = node.coeff.shape[0]
    f = torch.logaddexp(torch.zeros(()), _pic_net(_pic_grid(points, num_dim), rest)[:, 0])
    f = f.reshape(node.shape) + math.sqrt(torch.finfo(f.dtype).tiny)
    w = _pic_grid(weights, node.num_normalized).prod(dim=1)  # (K^n,)
    return f * w / (f * w).sum(dim=1, keepdim=True)


def _outer(node: sp.OuterParameter, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out[..., i * J + j, ...] = a[..., i, ...] * b[..., j, ...], by enumeration."""
    a, b = _promote(a, b)
    axis = node.axis
    pieces = [
        a.select(axis, i).unsqueeze(axis) * b for i in range(a.shape[axis])
    ]  # each: a's i-th slice times all of b
    return torch.cat(pieces, dim=axis)


parameter_rule(sp.ConjugateParameter)(
    lambda node, args: args[0].conj().resolve_conj() if args[0].is_complex() else args[0]
)
parameter_rule(sp.OuterParameter)(lambda node, args: _outer(node, *args))


# -- polynomials --------------------------------------------------------------------------------

from cirkit_ir.symbolic import polynomial as _poly  # noqa: E402 - the section's own layer


@input_rule(_poly.PolynomialLayer)
def _polynomial_log(layer, params, data: torch.Tensor, mode: str):
    """log of prod_c sum_d coeff[k, c, d] x_c^d, the sum written out term by term."""
    coeff = params["coeff"]  # (K, C, D)
    x = data.to(REAL)  # (B, C)
    value = torch.ones((x.shape[0], coeff.shape[0]), dtype=coeff.dtype)
    for c in range(coeff.shape[1]):
        terms = [coeff[None, :, c, d] * x[:, c, None] ** d for d in range(coeff.shape[2])]
        value = value * sum(terms)
    return _log(value, mode)


def _polynomial_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Coefficient d of unit i * K2 + j: sum over i' + j' = d of a[i, c, i'] b[j, c, j']."""
    a, b = _promote(a, b)
    (k1, c, d1), (k2, _, d2) = a.shape, b.shape
    out = torch.zeros((k1, k2, c, d1 + d2 - 1), dtype=a.dtype)
    for p in range(d1):
        for q in range(d2):
            out[:, :, :, p + q] += a[:, None, :, p] * b[None, :, :, q]
    return out.reshape(k1 * k2, c, d1 + d2 - 1)


def _polynomial_differential(node, x: torch.Tensor) -> torch.Tensor:
    """Coefficient d of the derivative: x[d + order] (d + order)! / d!."""
    d = x.shape[-1]
    if node.order >= d:
        return torch.zeros((*x.shape[:-1], 1), dtype=x.dtype)
    scale = [math.perm(e, node.order) for e in range(node.order, d)]
    return x[..., node.order :] * torch.tensor(scale, dtype=REAL)


parameter_rule(_poly.PolynomialProductParameter)(lambda node, args: _polynomial_product(*args))
parameter_rule(_poly.PolynomialDifferentialParameter)(
    lambda node, args: _polynomial_differential(node, args[0])
)


def _gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[i * K2 + j, c] = sum_s a[i, c, s] b[j, c, s], summed term by term."""
    a, b = _promote(a, b)
    return (a[:, None] * b[None, :]).sum(-1).reshape(a.shape[0] * b.shape[0], a.shape[1])


parameter_rule(sp.GramParameter)(lambda node, args: _gram(*args))


def _gaussian_product(node, m1, s1, m2, s2) -> torch.Tensor:
    """Unit i * K2 + j, channel by channel, from the textbook formulas."""
    k1, c = m1.shape
    k2 = m2.shape[0]
    out = torch.zeros((k1 * k2, c), dtype=REAL)
    norm = torch.ones(k1 * k2, dtype=REAL)
    for i in range(k1):
        for j in range(k2):
            v1, v2 = s1[i] ** 2, s2[j] ** 2
            if node.output == "mean":
                out[i * k2 + j] = (m1[i] * v2 + m2[j] * v1) / (v1 + v2)
            elif node.output == "stddev":
                out[i * k2 + j] = torch.sqrt(v1 * v2 / (v1 + v2))
            else:
                density = torch.exp(-((m1[i] - m2[j]) ** 2) / (2 * (v1 + v2)))
                norm[i * k2 + j] = torch.prod(density / torch.sqrt(2 * math.pi * (v1 + v2)))
    return norm if node.output == "normalizer" else out


parameter_rule(sp.GaussianProductParameter)(lambda node, args: _gaussian_product(node, *args))


from cirkit_ir.symbolic import kronecker_dense as _kron_dense  # noqa: E402


def _with_kronecker_weight(rule):
    def evaluate(layer, params, inputs, ctx):
        weight = _kronecker(*_promote(params["weight1"], params["weight2"]))
        return rule(layer, {"weight": weight}, inputs, ctx)

    return evaluate


layer_rule(_kron_dense.KroneckerDenseLayer)(_with_kronecker_weight(_sum_log))
layer_rule(_kron_dense.KroneckerDenseLayer, linear=True)(_with_kronecker_weight(_sum_linear))


def _binomial_table(node, x: torch.Tensor) -> torch.Tensor:
    """C(n, k) p^k (1 - p)^(n - k) for every k, from the textbook formula."""
    p = torch.sigmoid(x) if node.logits else x
    n = node.total_count
    columns = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    return torch.stack(columns, dim=-1)


parameter_rule(sp.BinomialTableParameter)(lambda node, args: _binomial_table(node, args[0]))
