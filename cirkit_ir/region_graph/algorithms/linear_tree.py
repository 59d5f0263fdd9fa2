"""Linear trees: each partition peels one variable off the remaining ones."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cirkit_ir.errors import OptionError
from cirkit_ir.region_graph.algorithms._builder import GraphBuilder
from cirkit_ir.region_graph.algorithms._checks import positive_int, variable_list
from cirkit_ir.region_graph.algorithms._checks import seed as check_seed
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import RegionNode
from cirkit_ir.symbolic.scope import Scope


def linear_tree(
    num_variables: int,
    num_repetitions: int = 1,
    randomize: bool = False,
    seed: int = 42,
    ordering: Sequence[int] | None = None,
) -> RegionGraph:
    """A root with `num_repetitions` chains; each step splits {v} off the remaining variables.

    Args:
        num_variables: the number of variables.
        num_repetitions: the number of chains, i.e. of partitions of the root.
        randomize: shuffle the variable order before each chain (the shuffles compound, as in
            cirkit's LinearTree), with a NumPy `RandomState(seed)`.
        seed: the seed used when `randomize` is set.
        ordering: the order variables are peeled off in; None is 0, 1, 2, ...

    Raises:
        OptionError: a non-positive count, an ordering that is not a permutation, or (with
            `randomize`) a seed that is not an integer in 0..2**32 - 1.
    """
    num_variables = positive_int(num_variables, "linear_tree num_variables")
    num_repetitions = positive_int(num_repetitions, "linear_tree num_repetitions")
    if ordering is None:
        order = list(range(num_variables))
    else:
        order = variable_list(ordering, "linear_tree ordering")
    if sorted(order) != list(range(num_variables)):
        raise OptionError(
            f"linear_tree ordering must be a permutation of 0..{num_variables - 1}, got {order!r}"
        )
    if not isinstance(randomize, bool):
        raise OptionError(f"linear_tree randomize must be True or False, got {randomize!r}")
    builder = GraphBuilder()
    root = builder.region(range(num_variables))
    random_state = (
        np.random.RandomState(check_seed(seed, "linear_tree seed")) if randomize else None
    )
    for _ in range(num_repetitions if num_variables > 1 else 0):
        if random_state is not None:
            random_state.shuffle(order)
        region = root
        for variable in order[:-1]:
            leaf = RegionNode([variable])
            rest = RegionNode(region.scope - Scope([variable]))
            builder.partition(region, [leaf, rest])
            builder.nodes.extend([leaf, rest])
            region = rest
    return builder.build([root])
