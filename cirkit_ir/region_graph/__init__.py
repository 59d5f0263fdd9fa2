"""Region graphs: the variable hierarchies that circuit templates are built over."""

from cirkit_ir.region_graph.algorithms import (
    chow_liu_tree,
    fully_factorized,
    linear_tree,
    poon_domingos,
    quad_graph,
    quad_tree,
    random_binary_tree,
    tree_to_region_graph,
)
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import PartitionNode, RegionGraphNode, RegionNode

__all__ = [
    "PartitionNode",
    "RegionGraph",
    "RegionGraphNode",
    "RegionNode",
    "chow_liu_tree",
    "fully_factorized",
    "linear_tree",
    "poon_domingos",
    "quad_graph",
    "quad_tree",
    "random_binary_tree",
    "tree_to_region_graph",
]
