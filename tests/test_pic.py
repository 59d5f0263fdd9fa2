"""Probabilistic integral circuits: quadrature rules, `pc2qpc` materialization and training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cirkit_ir.errors import OptionError
from cirkit_ir.quadrature import quadrature, zw_quadrature

# -- quadrature rules ------------------------------------------------------------------------


def _integral_of_monomial(degree: int, a: float, b: float) -> float:
    return (b ** (degree + 1) - a ** (degree + 1)) / (degree + 1)


@pytest.mark.parametrize(
    ("method", "nip", "exact_degree"),
    [("trapezoidal", 5, 1), ("midpoint", 4, 1), ("simpson", 7, 3), ("leggauss", 5, 9)],
)
def test_rules_integrate_polynomials_exactly_to_their_degree(method, nip, exact_degree):
    a, b = -0.5, 2.0
    z, w = quadrature(method, nip, a, b)
    for degree in range(exact_degree + 1):
        assert np.dot(w, z**degree) == pytest.approx(_integral_of_monomial(degree, a, b), abs=1e-12)
    # and not beyond: the next degree is off (the rules are exactly as strong as claimed)
    missed = np.dot(w, z ** (exact_degree + 1)) - _integral_of_monomial(exact_degree + 1, a, b)
    assert abs(missed) > 1e-8


@pytest.mark.parametrize(("method", "order"), [("trapezoidal", 2), ("leggauss", None)])
def test_rules_converge_on_smooth_functions(method, order):
    exact = math.e - math.exp(-1)  # the integral of exp over [-1, 1]
    rules = [quadrature(method, nip) for nip in (4, 8, 16)]
    errors = [abs(np.dot(w, np.exp(z)) - exact) for z, w in rules]
    assert errors[0] > errors[1] > errors[2] or errors[2] < 1e-14
    if order is not None:  # steps 2/7 and 2/15: the error shrinks by (15/7)^order
        assert errors[1] / errors[2] == pytest.approx((15 / 7) ** order, rel=0.05)
    else:
        assert errors[1] < 1e-9


def test_zw_quadrature_is_libcirkits_signature():
    z, w = zw_quadrature("leggauss", 3, a=0.0, b=1.0, return_log_weight=True, dtype=torch.float64)
    expected_z, expected_w = quadrature("leggauss", 3, 0.0, 1.0)
    assert z.dtype == torch.float64
    torch.testing.assert_close(z, torch.from_numpy(expected_z))
    torch.testing.assert_close(w.exp(), torch.from_numpy(expected_w))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("leggauss", 0), "nip"),
        (("leggauss", 2.5), "nip"),
        (("gauss-hermite", 4), "unknown integration_method"),
        (("trapezoidal", 1), "nip >= 2"),
        (("simpson", 4), "odd"),
        (("leggauss", 4, 1.0, 1.0), "a < b"),
    ],
)
def test_bad_quadrature_options_are_option_errors(args, match):
    with pytest.raises(OptionError, match=match):
        quadrature(*args)
