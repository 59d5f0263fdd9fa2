"""Quad-tree region graphs over images ("quad-tree-2" and "quad-tree-4").

See Mari, Vessio and Vergari, "Unifying and understanding overparameterized circuit
representations via low-rank tensor decompositions", TPM workshop 2023.
"""

from __future__ import annotations

from collections.abc import Sequence

from cirkit_ir.errors import OptionError
from cirkit_ir.region_graph.algorithms._checks import image_shape
from cirkit_ir.region_graph.algorithms._quad import build_quad
from cirkit_ir.region_graph.graph import RegionGraph


def quad_tree(shape: Sequence[int], num_patch_splits: int = 2) -> RegionGraph:
    """A structured-decomposable tree that merges 2x2 blocks of regions, level by level.

    Args:
        shape: the image (channels, height, width) as cirkit takes it, or (height, width):
            pixel (row, col) of channel c is variable c * H * W + row * W + col, and each
            leaf region holds one pixel's channels.
        num_patch_splits: 2 merges each block's row pairs and then the two rows (binary
            partitions); 4 splits each block into its four quarters at once.

    Raises:
        OptionError: the shape is not two or three positive integers, or num_patch_splits is
            not 2 or 4.
    """
    dims = image_shape(shape, "quad_tree")
    if num_patch_splits not in (2, 4) or isinstance(num_patch_splits, bool):
        raise OptionError.choose("quad_tree num_patch_splits", num_patch_splits, (2, 4))
    return build_quad(dims, "halves" if num_patch_splits == 2 else "quarters")
