"""Region-graph algorithms: each function builds and returns a validated `RegionGraph`."""

from cirkit_ir.region_graph.algorithms.chow_liu import chow_liu_tree, tree_to_region_graph
from cirkit_ir.region_graph.algorithms.fully_factorized import fully_factorized
from cirkit_ir.region_graph.algorithms.linear_tree import linear_tree
from cirkit_ir.region_graph.algorithms.poon_domingos import poon_domingos
from cirkit_ir.region_graph.algorithms.quad_graph import quad_graph
from cirkit_ir.region_graph.algorithms.quad_tree import quad_tree
from cirkit_ir.region_graph.algorithms.random_binary_tree import random_binary_tree

__all__ = [
    "chow_liu_tree",
    "fully_factorized",
    "linear_tree",
    "poon_domingos",
    "quad_graph",
    "quad_tree",
    "random_binary_tree",
    "tree_to_region_graph",
]
