"""Validation of what a compiled circuit is handed: a few cheap tensor ops, one clear
`InputError`.

Batches: the common case costs one `aminmax` over the batch (discrete data) or one
`isnan().any()` (continuous data); per-variable bounds are only looked at to explain an
error. Parameters with a domain (sum weights and probabilities that 'lse-sum' needs
non-negative, a binomial's probs, a gaussian's stddev) that the IR cannot prove in it: one
`aminmax` per parameter and forward (`check_parameter`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs
import torch
from torch import Tensor

from cirkit_ir.errors import InputError, check_value_range
from cirkit_ir.ir.sign import Need


@attrs.frozen
class InputSpec:
    """What a batch must look like: (B, C, D) with these C and D.

    `bounds[v]` is the largest valid value of discrete variable v (over the layers reading
    it); `discrete` / `continuous` say which kinds of input layers the circuit has.
    """

    num_channels: int
    num_variables: int
    discrete: bool = False
    continuous: bool = False
    bounds: Mapping[int, int] = attrs.field(factory=dict)

    @property
    def max_value(self) -> int | None:
        return min(self.bounds.values()) if self.bounds else None


def check_input(x: object, spec: InputSpec, device: torch.device) -> Tensor:
    """`x` as a (B, C, D) tensor ready for the input layers, or an `InputError`."""
    if not isinstance(x, Tensor):
        raise InputError(
            f"the circuit takes a torch.Tensor of shape (batch, {spec.num_channels},"
            f" {spec.num_variables}), got {type(x).__name__}; convert it with torch.as_tensor"
        )
    c, d = spec.num_channels, spec.num_variables
    if x.dim() == 2:
        if c != 1:
            raise InputError(
                f"got a (batch, variables) tensor of shape {tuple(x.shape)}, but the circuit has"
                f" {c} channels: pass (batch, {c}, {d})"
            )
        x = x.unsqueeze(1)
    elif x.dim() != 3:
        raise InputError(
            f"expected a (batch, channels, variables) = (B, {c}, {d}) tensor, got {x.dim()}"
            f" dimension(s) with shape {tuple(x.shape)}"
        )
    if x.shape[1] != c:
        raise InputError(
            f"the batch has {x.shape[1]} channels (shape {tuple(x.shape)}), the circuit"
            f" expects {c}: pass (B, {c}, {d})"
        )
    if x.shape[2] != d:
        raise InputError(
            f"the batch has {x.shape[2]} variables (shape {tuple(x.shape)}), the circuit"
            f" expects {d}: pass (B, {c}, {d})"
        )
    if x.shape[0] == 0:
        raise InputError("the batch is empty (batch size 0): pass at least one example")
    if x.device != device:
        raise InputError(
            f"the batch is on device {x.device} but the circuit is on {device}: move it with"
            f" x.to('{device}') (or the circuit with circuit.to(...))"
        )
    if x.is_complex() or x.dtype == torch.bool:
        raise InputError(f"the batch has dtype {x.dtype}; pass integer or floating data")
    floating = x.is_floating_point()
    if floating and torch.isnan(x).any():
        raise InputError("the batch contains NaN; remove or impute missing values first")
    if not spec.discrete:
        return x
    if floating and spec.continuous:  # discrete and continuous variables share the floats
        _check_discrete(x, spec, integral=True)
        return x
    if floating:  # whole numbers of an all-discrete circuit, as a table of floats holds them
        lo, hi = torch.aminmax(x)
        if not bool(lo >= 0) or not bool(hi <= spec.max_value) or not bool((x == x.round()).all()):
            _check_discrete(x, spec, integral=True)
        return x.long()
    lo, hi = torch.aminmax(x)
    if int(lo) < 0 or int(hi) > spec.max_value:  # type: ignore[operator]
        _check_discrete(x, spec, integral=False)
    return x if x.dtype == torch.long else x.long()


def _check_discrete(x: Tensor, spec: InputSpec, integral: bool) -> None:
    """Finds the first discrete variable with a bad value and says which (slow, rare path)."""
    for v in sorted(spec.bounds):
        column = x[:, :, v]
        bound = spec.bounds[v]
        if integral and not bool((column == column.round()).all()):
            raise InputError(f"variable {v} takes non-integer values; it is discrete")
        check_value_range(v, column.min().item(), column.max().item(), bound)


def check_parameter(values: Tensor, slot: str, need: Need, layer: str, semiring: str) -> None:
    """An `InputError` unless every entry of `values` (parameter `slot` of `layer`, folds
    first) is finite and meets `need`: >= 0, in [0, 1], or positive (at least the dtype's
    smallest normal number, so that 1 / value is finite).

    Parameters are trained and loaded, so only a check at each forward sees every value
    they take: the layers whose values `cirkit_ir.ir.sign` cannot prove so run it. One
    reduction when all is well; only an error looks for the first bad entry.
    """
    if values.is_complex():
        raise InputError(
            f"{layer}: '{slot}' holds complex values ({values.dtype}), but must be real and"
            f" {need.value}. Make its tensor real (tensor_dtype='real', or dtype='real' in its"
            " Parameterization)"
        )
    finfo = torch.finfo(values.dtype)
    low = finfo.tiny if need is Need.POSITIVE else 0.0
    high = 1.0 if need is Need.PROBABILITY else finfo.max  # <= max: finite
    lo, hi = torch.aminmax(values.detach())
    if bool((lo >= low) & (hi <= high)):  # NaN compares false
        return
    bad = ~((values >= low) & (values <= high))
    index = bad.nonzero()[0].tolist()
    value = values[tuple(index)].item()
    where = f"{layer}, fold {index[0]}: {slot}{index} = {value:g}"
    if math.isnan(value) or (value == math.inf and high == finfo.max):  # only finite
        computes = f"semiring '{semiring}'" if need is Need.NONNEGATIVE else "the layer"
        raise InputError(
            f"{where}: '{slot}' must be finite, or {computes} computes NaN. The parameter"
            " diverged in training (lower the learning rate) or was loaded so (load finite"
            " values)"
        )
    if need is Need.NONNEGATIVE:
        raise InputError(
            f"{where} is negative, but semiring '{semiring}' needs non-negative weights and"
            " probabilities (a negative one makes a likelihood negative and its log NaN)."
            f" Parameterize '{slot}' with a non-negative activation: softmax, exp, softplus,"
            " sigmoid or positive-clamp (the templates' sum_weight_param or input_params; in"
            " a symbolic circuit, wrap the TensorParameter in a SoftmaxParameter,"
            " ExpParameter, ...). Or compile with semiring='complex-lse-sum' (or"
            " 'sum-product'), which computes with signed parameters"
        )
    if need is Need.PROBABILITY:
        raise InputError(
            f"{where} is outside [0, 1], but '{slot}' are probabilities (outside [0, 1] the"
            " likelihood is NaN or above 1, in every semiring). Parameterize them into"
            " [0, 1]: sigmoid, softmax, clamp(0, 1) or a scaled sigmoid within [0, 1] (the"
            " templates' input_params; in a symbolic circuit, wrap the TensorParameter in a"
            " SigmoidParameter, ...), which cost nothing at runtime. Or give the layer"
            " 'logits' instead of 'probs': logits take any real value"
        )
    wrong = "is not positive" if value <= 0 else "is too small"
    raise InputError(
        f"{where} {wrong}, but '{slot}' must be at least {finfo.tiny:g}, the smallest normal"
        f" {values.dtype} (the density divides by it: at 0 or below it is NaN, below the"
        " smallest normal 1 / value overflows; in every semiring)."
        " Parameterize it with a positive lower bound: a scaled sigmoid (the gaussian's"
        " default, ScaledSigmoidParameter(t, vmin=1e-4, vmax=10)) or a clamp with vmin > 0"
        " (the templates' 'positive-clamp'), which cost nothing at runtime; or softplus or"
        " exp, which are checked at each forward (for very negative inputs they underflow"
        " to 0)"
    )
