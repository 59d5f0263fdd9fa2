"""libcirkit's names for the region graphs of `cirkit_ir.region_graph`
(`cirkit.templates.region_graph`): ``QuadTree((C, H, W), num_patch_splits=2)`` is
`quad_tree`, and so on; the arguments are the same."""

from cirkit_ir.region_graph import PartitionNode, RegionGraph, RegionGraphNode, RegionNode
from cirkit_ir.region_graph import chow_liu_tree as ChowLiuTree
from cirkit_ir.region_graph import fully_factorized as FullyFactorized
from cirkit_ir.region_graph import linear_tree as LinearTree
from cirkit_ir.region_graph import poon_domingos as PoonDomingos
from cirkit_ir.region_graph import quad_graph as QuadGraph
from cirkit_ir.region_graph import quad_tree as QuadTree
from cirkit_ir.region_graph import random_binary_tree as RandomBinaryTree

__all__ = [
    "ChowLiuTree",
    "FullyFactorized",
    "LinearTree",
    "PartitionNode",
    "PoonDomingos",
    "QuadGraph",
    "QuadTree",
    "RandomBinaryTree",
    "RegionGraph",
    "RegionGraphNode",
    "RegionNode",
]
