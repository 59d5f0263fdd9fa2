"""Quadrature rules: points z and weights w such that sum_k w[k] f(z[k]) ~ the integral of f.

A probabilistic integral circuit (PIC, `cirkit_ir.symbolic.pic`) integrates over continuous
latent variables; materializing it as a quadrature circuit (QPC) replaces each integral by
such a sum, one unit per point. The rules are pure functions of the number of points and the
interval, computed in float64 (numpy), so callers pick the dtype they store.

Names as libcirkit 0.3.1 spells them (`zw_quadrature(integration_method, nip, a, b)`):

- 'trapezoidal': `nip` >= 2 equally spaced points including both ends; exact for degree 1,
  error O(1/nip^2) on smooth functions;
- 'leggauss': Gauss-Legendre, exact for polynomials of degree <= 2 nip - 1, error decaying
  exponentially on analytic functions;
- 'midpoint': the centres of `nip` equal cells; exact for degree 1;
- 'simpson': composite Simpson's rule, an odd `nip` >= 3; exact for degree 3.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cirkit_ir.errors import OptionError
from cirkit_ir.validators import is_int

Rule = Callable[[int], tuple[np.ndarray, np.ndarray]]
"""nip -> (points, weights) on [-1, 1]."""


def _trapezoidal(nip: int) -> tuple[np.ndarray, np.ndarray]:
    if nip < 2:
        raise OptionError(f"the trapezoidal rule needs nip >= 2 points (both ends), got {nip}")
    step = 2.0 / (nip - 1)
    weights = np.full(nip, step)
    weights[[0, -1]] = step / 2
    return np.linspace(-1.0, 1.0, nip), weights


def _leggauss(nip: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(nip)


def _midpoint(nip: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(-1.0, 1.0, nip + 1)
    return (edges[:-1] + edges[1:]) / 2, np.full(nip, 2.0 / nip)


def _simpson(nip: int) -> tuple[np.ndarray, np.ndarray]:
    if nip < 3 or nip % 2 == 0:
        raise OptionError(f"Simpson's rule needs an odd nip >= 3, got {nip}")
    pattern = np.ones(nip)
    pattern[1:-1:2], pattern[2:-1:2] = 4.0, 2.0
    return np.linspace(-1.0, 1.0, nip), pattern * (2.0 / (nip - 1)) / 3


RULES: dict[str, Rule] = {
    "trapezoidal": _trapezoidal,
    "leggauss": _leggauss,
    "midpoint": _midpoint,
    "simpson": _simpson,
}
"""integration_method -> its rule on [-1, 1]; a user may add one here."""


def quadrature(
    integration_method: str, nip: int, a: float = -1.0, b: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(points, weights) of `integration_method` with `nip` points on [a, b], float64.

    Raises `OptionError` for an unknown method, a non-positive `nip` or an empty interval.
    """
    rule = RULES.get(integration_method) if isinstance(integration_method, str) else None
    if rule is None:
        raise OptionError(
            f"unknown integration_method {integration_method!r}; choose one of"
            f" {', '.join(map(repr, RULES))}"
        )
    if not is_int(nip) or nip < 1:
        raise OptionError(
            f"nip, the number of integration points, must be an int >= 1, got {nip!r}"
        )
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise OptionError(f"the interval [a, b] must be finite with a < b, got [{a}, {b}]")
    points, weights = rule(int(nip))
    half = (b - a) / 2
    return a + (points + 1.0) * half, weights * half


def zw_quadrature(
    integration_method: str,
    nip: int,
    a: float = -1.0,
    b: float = 1.0,
    return_log_weight: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """libcirkit's function: `quadrature(...)` as tensors of `dtype`, the weights' logs if
    `return_log_weight`."""
    points, weights = quadrature(integration_method, nip, a, b)
    z = torch.tensor(points, dtype=dtype)
    w = torch.tensor(np.log(weights) if return_log_weight else weights, dtype=dtype)
    return z, w
