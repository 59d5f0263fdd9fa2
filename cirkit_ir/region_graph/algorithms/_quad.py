"""The shared bottom-up construction of quad-trees and quad-graphs over an image.

Pixels (each with its channels' variables) start as leaf regions on a grid. Each round halves
the grid (rounding up): every cell of the new grid gathers the up to four cells (top-left,
top-right, bottom-left, bottom-right) of a 2x2 block of the old one. One cell is passed up
unchanged; two (a block cut by the image border) are merged by one partition; four are
merged as the variant says.
"""

from __future__ import annotations

from cirkit_ir.region_graph.algorithms._builder import GraphBuilder
from cirkit_ir.region_graph.algorithms._checks import rectangle_scope
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import RegionNode


def build_quad(shape: tuple[int, int, int], four_way: str) -> RegionGraph:
    """Build the quad structure; `four_way` is "halves" (2 splits), "quarters" or "both".

    - "halves": merge each row pair, then the two rows (a tree, two splits per level).
    - "quarters": one partition into the four quarters (a tree, four splits per level).
    - "both": the top/bottom halves and the left/right halves, as two partitions of the
      same region (a DAG, so not structured-decomposable).
    """
    _, height, width = shape
    builder = GraphBuilder()
    grid = [
        [
            builder.region(rectangle_scope(shape, range(i, i + 1), range(j, j + 1)))
            for j in range(width)
        ]
        for i in range(height)
    ]
    rows, cols = height, width
    while rows > 1 or cols > 1:
        prev, prev_rows, prev_cols = grid, rows, cols
        rows, cols = (rows + 1) // 2, (cols + 1) // 2
        grid = []
        for i in range(rows):
            line: list[RegionNode] = []
            for j in range(cols):
                block = [
                    prev[r][c]
                    for r, c in (
                        (2 * i, 2 * j),
                        (2 * i, 2 * j + 1),
                        (2 * i + 1, 2 * j),
                        (2 * i + 1, 2 * j + 1),
                    )
                    if r < prev_rows and c < prev_cols
                ]
                line.append(_merge_block(builder, block, four_way))
            grid.append(line)
    return builder.build([grid[0][0]])


def _merge_block(builder: GraphBuilder, block: list[RegionNode], four_way: str) -> RegionNode:
    if len(block) == 1:
        return block[0]
    if len(block) == 2:
        return builder.merge(block)
    top_left, top_right, bottom_left, bottom_right = block
    if four_way == "quarters":
        return builder.merge(block)
    top = builder.merge([top_left, top_right])
    bottom = builder.merge([bottom_left, bottom_right])
    whole = builder.merge([top, bottom])
    if four_way == "both":
        left = builder.merge([top_left, bottom_left])
        right = builder.merge([top_right, bottom_right])
        builder.partition(whole, [left, right])
    return whole
