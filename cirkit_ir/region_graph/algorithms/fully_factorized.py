"""Fully factorized region graphs: the root split straight into single variables."""

from __future__ import annotations

from cirkit_ir.region_graph.algorithms._builder import GraphBuilder
from cirkit_ir.region_graph.algorithms._checks import positive_int
from cirkit_ir.region_graph.graph import RegionGraph


def fully_factorized(num_variables: int, num_repetitions: int = 1) -> RegionGraph:
    """A root with `num_repetitions` partitions, each into fresh one-variable leaf regions.

    With a single variable the graph is just the root region.

    Raises:
        OptionError: a non-positive count.
    """
    num_variables = positive_int(num_variables, "fully_factorized num_variables")
    num_repetitions = positive_int(num_repetitions, "fully_factorized num_repetitions")
    builder = GraphBuilder()
    root = builder.region(range(num_variables))
    for _ in range(num_repetitions if num_variables > 1 else 0):
        leaves = [builder.region([v]) for v in range(num_variables)]
        builder.partition(root, leaves)
    return builder.build([root])
