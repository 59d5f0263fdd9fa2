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
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from cirkit_ir.errors import InputError, OptionError, StructureError, check_value_range
from cirkit_ir.symbolic import layers as sl
from cirkit_ir.symbolic import parameters as sp
from cirkit_ir.symbolic.circuit import Circuit

REAL = torch.float64
COMPLEX = torch.complex128

__all__ = [
    "draw_values",
    "evaluate",
    "evaluate_layers",
    "evaluate_parameters",
    "logsumexp",
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
    return torch.exp(_log_softmax(x, axis))


def _log_softmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    return add(x, -logsumexp(x, axis).unsqueeze(axis))


def _promote(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both operands complex128 if one of them is, else both as they are (float64)."""
    if a.is_complex() or b.is_complex():
        return a.to(COMPLEX), b.to(COMPLEX)
    return a, b


def _parameter_value(node: sp.ParameterNode, args: list[torch.Tensor]) -> torch.Tensor:
    """The value of one (non-leaf) parameter node from the values of its inputs."""
    if isinstance(node, sp.SoftmaxParameter):
        return _softmax(args[0], node.axis)
    if isinstance(node, sp.LogSoftmaxParameter):
        return _log_softmax(args[0], node.axis)
    if isinstance(node, sp.ExpParameter):
        return torch.exp(args[0])
    if isinstance(node, sp.LogParameter):
        return torch.log(args[0])
    if isinstance(node, sp.SigmoidParameter):
        return torch.sigmoid(args[0])
    if isinstance(node, sp.SoftplusParameter):
        # log(1 + exp(x)), written without a threshold so that it is exact everywhere.
        return torch.logaddexp(torch.zeros_like(args[0]), args[0])
    if isinstance(node, sp.ClampParameter):
        return torch.clamp(args[0], min=node.vmin, max=node.vmax)
    if isinstance(node, sp.ScaledSigmoidParameter):
        return node.vmin + (node.vmax - node.vmin) * torch.sigmoid(args[0])
    if isinstance(node, sp.MixingWeightParameter):
        return _mixing_weight(args[0])
    if isinstance(node, sp.ReduceParameter):
        if node.kind == "sum":
            return args[0].sum(dim=node.axis)
        if node.kind == "prod":
            return args[0].prod(dim=node.axis)
        return logsumexp(args[0], node.axis)
    if isinstance(node, sp.KroneckerParameter):
        return _kronecker(*_promote(args[0], args[1]))
    if isinstance(node, sp.MatMulParameter):
        a, b = _promote(args[0], args[1])
        return a @ b
    raise NotImplementedError(f"the reference cannot evaluate {type(node).__name__}")


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
    """The log of parameter values, as the mode stores it."""
    if mode == "real" and not t.is_complex():
        return torch.log(t)
    return _in_mode(torch.log(t.to(COMPLEX)), mode)


# =============================================================================================
# Input layers: log-densities of one variable's data (B, C) -> (B, K), summed over channels


def _categorical_log(layer: sl.CategoricalLayer, params, data: torch.Tensor, mode: str):
    name, _ = layer._param()
    table = params[name]  # (K, C, N)
    if name == "logits":
        log_table = _in_mode(_log_softmax(table, -1), mode)
    else:
        log_table = _log(table, mode)
    return _gather_table(log_table, data.long())


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


def _gaussian_log(layer: sl.GaussianLayer, params, data: torch.Tensor, mode: str):
    x = data.to(REAL)[:, None, :]  # (B, 1, C)
    mean = params["mean"][None]
    std = params["stddev"][None]
    terms = -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return _in_mode(terms.sum(dim=-1), mode)


_INPUT_LOG_DENSITIES = {
    sl.CategoricalLayer: _categorical_log,
    sl.BinomialLayer: _binomial_log,
    sl.GaussianLayer: _gaussian_log,
    sl.EmbeddingLayer: _embedding_log,
}


def _input_log(layer: sl.InputLayer, params, data: torch.Tensor, mode: str) -> torch.Tensor:
    for cls in type(layer).__mro__:
        if cls in _INPUT_LOG_DENSITIES:
            return _INPUT_LOG_DENSITIES[cls](layer, params, data, mode)
    raise NotImplementedError(f"the reference cannot evaluate {type(layer).__name__}")


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
    batch = data.shape[0]
    computed = evaluate_parameters(circuit, values)
    if mode is None:
        mode = "complex" if _needs_complex(circuit, computed) else "real"
    if mode not in MODES:
        raise OptionError.choose("mode", mode, MODES)
    step = _layer_log if log_space else _layer_linear
    out: dict[sl.Layer, torch.Tensor] = {}
    for layer in circuit.topological_ordering():
        params = _layer_params(layer, computed)
        inputs = [out[child] for child in circuit.layer_inputs(layer)]
        out[layer] = step(layer, params, inputs, data, batch, mode, computed)
    return out


def _layer_log(layer, params, inputs, data, batch, mode, computed) -> torch.Tensor:
    """The log-output (B, units) of one layer from its inputs' log-outputs."""
    if isinstance(layer, sl.InputLayer):
        (variable,) = tuple(layer.scope)
        _check_data_range(layer, data[:, :, variable])
        return _input_log(layer, params, data[:, :, variable], mode)
    if isinstance(layer, sl.ConstantLayer):
        value = _log(params["value"], mode)  # (K,)
        return value[None, :].expand(batch, -1)
    if isinstance(layer, sl.EvidenceLayer):
        observation = _evidence_data(layer, params["observation"])  # (1, C)
        inner = _layer_params(layer.layer, computed)
        value = _input_log(layer.layer, inner, observation, mode)  # (1, K)
        return value.expand(batch, -1)
    if isinstance(layer, sl.DenseLayer):
        (child,) = inputs  # (B, J)
        log_w = _log(params["weight"], mode)  # (K, J)
        return logsumexp(add(log_w[None, :, :], child[:, None, :]), dim=2)
    if isinstance(layer, sl.MixingLayer):
        log_w = _log(params["weight"], mode)  # (K, H)
        stacked = torch.stack(inputs, dim=2)  # (B, K, H)
        return logsumexp(add(log_w[None, :, :], stacked), dim=2)
    if isinstance(layer, sl.HadamardLayer):
        total = inputs[0]
        for child in inputs[1:]:
            total = add(total, child)
        return total
    if isinstance(layer, sl.KroneckerLayer):
        # Unit (i_1, ..., i_n) is i_1 * K^(n-1) + ... + i_n: the first input varies slowest.
        total = inputs[0]
        for child in inputs[1:]:
            total = add(total[:, :, None], child[:, None, :]).reshape(batch, -1)
        return total
    raise NotImplementedError(f"the reference cannot evaluate {type(layer).__name__}")


def _layer_linear(layer, params, inputs, data, batch, mode, computed) -> torch.Tensor:
    """The output (B, units) of one layer in linear space: plain sums and products.

    A second, independent path (no logs, no shifts) for small circuits whose values do not
    underflow; input densities are the exponentials of their log-densities.
    """
    if isinstance(layer, sl.InputLayer | sl.EvidenceLayer):
        return torch.exp(_layer_log(layer, params, inputs, data, batch, mode, computed))

    def weight(name: str) -> torch.Tensor:
        value = params[name]
        if mode == "bound":
            return value.abs()
        return value.to(COMPLEX) if mode == "complex" else value

    if isinstance(layer, sl.ConstantLayer):
        return weight("value")[None, :].expand(batch, -1)
    if isinstance(layer, sl.DenseLayer):
        (child,) = inputs  # (B, J)
        w = weight("weight")  # (K, J)
        return (w[None, :, :] * child[:, None, :]).sum(dim=2)
    if isinstance(layer, sl.MixingLayer):
        w = weight("weight")  # (K, H)
        stacked = torch.stack(inputs, dim=2)  # (B, K, H)
        return (w[None, :, :] * stacked).sum(dim=2)
    if isinstance(layer, sl.HadamardLayer):
        total = inputs[0]
        for child in inputs[1:]:
            total = total * child
        return total
    if isinstance(layer, sl.KroneckerLayer):
        total = inputs[0]
        for child in inputs[1:]:
            total = (total[:, :, None] * child[:, None, :]).reshape(batch, -1)
        return total
    raise NotImplementedError(f"the reference cannot evaluate {type(layer).__name__}")


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
