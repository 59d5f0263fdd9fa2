"""Random binary trees of regions, as in RAT-SPNs.

See Peharz et al., "Random sum-product networks: A simple but effective approach to
probabilistic deep learning", UAI 2019.
"""

from __future__ import annotations

import math

import numpy as np

from cirkit_ir.errors import OptionError
from cirkit_ir.region_graph.algorithms._builder import GraphBuilder
from cirkit_ir.region_graph.algorithms._checks import positive_int
from cirkit_ir.region_graph.algorithms._checks import seed as check_seed
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import RegionNode


def random_binary_tree(
    num_variables: int, depth: int | None = None, num_repetitions: int = 1, seed: int = 42
) -> RegionGraph:
    """A root over all variables with `num_repetitions` independent random binary trees.

    Each tree splits every region of its frontier into two halves of a random shuffle of its
    variables (the first half gets the extra variable when the size is odd), `depth` times.

    Args:
        num_variables: the number of variables.
        depth: the number of splitting levels, between 0 and ceil(log2(num_variables));
            None means the largest.
        num_repetitions: the number of trees, i.e. of partitions of the root.
        seed: the seed of the NumPy `RandomState` that draws the shuffles; the same seed gives
            the same graph (and the same one as cirkit's RandomBinaryTree).

    Raises:
        OptionError: a non-positive count, a depth out of range, or a seed that is not an
            integer in 0..2**32 - 1.
    """
    num_variables = positive_int(num_variables, "random_binary_tree num_variables")
    num_repetitions = positive_int(num_repetitions, "random_binary_tree num_repetitions")
    deepest = math.ceil(math.log2(num_variables))
    if depth is None:
        depth = deepest
    elif isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= deepest:
        raise OptionError(
            f"random_binary_tree depth must be between 0 and {deepest} for {num_variables} "
            f"variables, got {depth!r}"
        )
    random_state = np.random.RandomState(check_seed(seed, "random_binary_tree seed"))
    builder = GraphBuilder()
    root = builder.region(range(num_variables))
    # Each region travels with the order its variables are shuffled from (see _set_order).
    root_order = list(range(num_variables))
    for _ in range(num_repetitions):
        frontier: list[tuple[RegionNode, list[int]]] = [(root, root_order)]
        for _ in range(depth):
            next_frontier: list[tuple[RegionNode, list[int]]] = []
            for region, order in frontier:
                shuffled = list(order)
                random_state.shuffle(shuffled)
                cut = int(np.round(len(shuffled) / 2))
                if not 0 < cut < len(shuffled):
                    continue  # A single variable cannot be split further.
                halves = [_set_order(shuffled[:cut]), _set_order(shuffled[cut:])]
                children = [RegionNode(half) for half in halves]
                builder.partition(region, children)
                builder.nodes.extend(children)
                next_frontier.extend(zip(children, halves, strict=True))
            frontier = next_frontier
    return builder.build([root])


def _set_order(variables: list[int]) -> list[int]:
    """The order cirkit's scope of a new region built from `variables` iterates in.

    cirkit keeps scopes as Python frozensets (built twice for a new region) and shuffles them
    in their iteration order; starting from the same order makes the same seed draw the same
    trees as cirkit's RandomBinaryTree.
    """
    return list(frozenset(iter(frozenset(variables))))
