"""The quad-graph region graph over images ("quad-graph").

Like the binary quad-tree, but each 2x2 block region gets a second partition (left/right
halves next to top/bottom halves), so sub-regions are shared between overlapping splits.
"""

from __future__ import annotations

from collections.abc import Sequence

from cirkit_ir.region_graph.algorithms._checks import image_shape
from cirkit_ir.region_graph.algorithms._quad import build_quad
from cirkit_ir.region_graph.graph import RegionGraph


def quad_graph(shape: Sequence[int]) -> RegionGraph:
    """A DAG whose 2x2-block regions mix a top/bottom and a left/right partition.

    Args:
        shape: the image (channels, height, width) as cirkit takes it, or (height, width):
            pixel (row, col) of channel c is variable c * H * W + row * W + col, and each
            leaf region holds one pixel's channels.

    Raises:
        OptionError: the shape is not two or three positive integers.
    """
    dims = image_shape(shape, "quad_graph")
    return build_quad(dims, "both")
