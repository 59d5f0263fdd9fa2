"""The Poon-Domingos region graph over images ("poon-domingos").

See Poon and Domingos, "Sum-Product Networks: A New Deep Architecture", UAI 2011. Rectangles
are cut, breadth first from the whole image, at every cut point that falls inside them; each
cut is a binary partition, and rectangles reached by several cuts share one region.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TypeAlias

from cirkit_ir.errors import OptionError
from cirkit_ir.region_graph.algorithms._builder import GraphBuilder
from cirkit_ir.region_graph.algorithms._checks import image_shape, rectangle_scope
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import RegionNode

Delta: TypeAlias = float | Sequence[float | Sequence[float]]
"""One delta for both axes, or a list whose items are each a delta or a (rows, cols) pair."""

Rectangle: TypeAlias = tuple[tuple[int, int], tuple[int, int]]
"""((top, left), (bottom, right)), bottom and right excluded."""


def poon_domingos(shape: Sequence[int], delta: Delta, max_depth: int | None = None) -> RegionGraph:
    """Cut the image into rectangles along the grid lines every `delta` pixels.

    Args:
        shape: the image (channels, height, width) as cirkit takes it, or (height, width):
            pixel (row, col) of channel c is variable c * H * W + row * W + col, and a
            region holds its rectangle's pixels in every channel.
        delta: the cut spacing. A number applies to both axes; a list gives several spacings,
            each a number or a per-axis (rows, cols) pair. A rectangle is cut with the first
            spacing of the list that has a cut point inside it, at all of that spacing's points.
        max_depth: rectangles more than `max_depth` cuts below the whole image are left uncut
            (so 0 cuts only the whole image); None cuts as far as the spacings allow.

    Raises:
        OptionError: a bad shape, a delta below 1 or not a number/pair, or a negative depth.
    """
    dims = image_shape(shape, "poon_domingos")
    _, height, width = dims
    cut_points = _cut_points(delta, (height, width))
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0
    ):
        raise OptionError(f"poon_domingos max_depth must be None or >= 0, got {max_depth!r}")

    builder = GraphBuilder()
    regions: dict[Rectangle, RegionNode] = {}

    def region_of(rect: Rectangle) -> RegionNode:
        if rect not in regions:
            (top, left), (bottom, right) = rect
            regions[rect] = builder.region(
                rectangle_scope(dims, range(top, bottom), range(left, right))
            )
        return regions[rect]

    whole: Rectangle = ((0, 0), (height, width))
    root = region_of(whole)
    depth = {whole: 0}
    queue = deque([whole])
    while queue:
        rect = queue.popleft()
        if max_depth is not None and depth[rect] > max_depth:
            continue
        for per_axis in cut_points:
            found = False
            for axis, points in enumerate(per_axis):
                for point in points:
                    if not rect[0][axis] < point < rect[1][axis]:
                        continue
                    found = True
                    halves = _split(rect, axis, point)
                    builder.partition(region_of(rect), [region_of(half) for half in halves])
                    for half in halves:
                        if half not in depth:
                            depth[half] = depth[rect] + 1
                            queue.append(half)
            if found:
                break
    return builder.build([root])


def _split(rect: Rectangle, axis: int, point: int) -> tuple[Rectangle, Rectangle]:
    """The two rectangles either side of a cut at `point` along `axis` (0 rows, 1 columns)."""
    (top, left), (bottom, right) = rect
    if axis == 0:
        return ((top, left), (point, right)), ((point, left), (bottom, right))
    return ((top, left), (bottom, point)), ((top, point), (bottom, right))


def _cut_points(delta: Delta, sizes: tuple[int, int]) -> list[tuple[list[int], list[int]]]:
    """For each spacing, the cut points inside (0, size) on the row and the column axis."""
    spacings = [delta] if _is_number(delta) else delta
    if isinstance(spacings, (str, bytes)) or not isinstance(spacings, Sequence) or not spacings:
        raise OptionError(
            f"poon_domingos delta must be a number or a non-empty list, got {delta!r}"
        )
    result: list[tuple[list[int], list[int]]] = []
    for spacing in spacings:
        pair = (spacing, spacing) if _is_number(spacing) else spacing
        if (
            isinstance(pair, (str, bytes))
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(_is_number(d) for d in pair)
        ):
            raise OptionError(
                f"poon_domingos delta item {spacing!r} must be a number or a (rows, cols) pair"
            )
        if any(not d >= 1 for d in pair):  # `not >=`: NaN fails too
            raise OptionError(f"poon_domingos deltas must be >= 1, got {spacing!r}")
        rows, cols = (
            [int((k + 1) * d) for k in range(int((size - 1) // d))]
            for d, size in zip(pair, sizes, strict=True)
        )
        result.append((rows, cols))
    return result


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
