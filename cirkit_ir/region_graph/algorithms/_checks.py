"""Argument checks shared by the region-graph algorithms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral

from cirkit_ir.errors import OptionError
from cirkit_ir.symbolic.scope import Scope


def positive_int(value: object, what: str) -> int:
    """`value` as an int, if it is a positive integer (NumPy integers included)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise OptionError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def seed(value: object, what: str) -> int:
    """`value` as an int, if NumPy's `RandomState` takes it as a seed (0 <= seed < 2**32)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value < 2**32:
        raise OptionError(f"{what} must be an integer in 0..2**32 - 1, got {value!r}")
    return int(value)


def variable_list(values: object, what: str) -> list[int]:
    """`values` as a list of ints, if it is a collection of integers (NumPy's included)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise OptionError(f"{what} must be a list of variable ids, got {values!r}")
    listed = list(values)
    for value in listed:
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise OptionError(f"{what} must hold integer variable ids, got {value!r} in {listed!r}")
    return [int(value) for value in listed]


def image_shape(shape: Sequence[int], algorithm: str) -> tuple[int, int, int]:
    """(channels, height, width) of an image, from cirkit's (C, H, W) or from (H, W), one
    channel; checked."""
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or len(shape) not in (2, 3)
    ):
        raise OptionError(
            f"{algorithm} needs an image shape (channels, height, width), or (height, width)"
            f" for one channel, of positive integers; got {shape!r}"
        )
    channels = positive_int(shape[0], f"{algorithm} image channels") if len(shape) == 3 else 1
    height = positive_int(shape[-2], f"{algorithm} image height")
    width = positive_int(shape[-1], f"{algorithm} image width")
    return channels, height, width


def rectangle_scope(shape: tuple[int, int, int], rows: range, cols: range) -> Scope:
    """The variables of an image rectangle, all channels: pixel (row, col) of channel c is
    variable c * H * W + row * W + col (cirkit's numbering of a (C, H, W) image)."""
    channels, height, width = shape
    return Scope(
        c * height * width + row * width + col
        for c in range(channels)
        for row in rows
        for col in cols
    )
