"""A small accumulator that region-graph algorithms fill in node order, then freeze."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import PartitionNode, RegionGraphNode, RegionNode
from cirkit_ir.symbolic.scope import Scope


class GraphBuilder:
    """Collects nodes in creation order, since that order fixes the graph's node order."""

    def __init__(self) -> None:
        self.nodes: list[RegionGraphNode] = []
        self.in_nodes: dict[RegionGraphNode, list[RegionGraphNode]] = {}

    def region(self, variables: Scope | Iterable[int]) -> RegionNode:
        region = RegionNode(variables)
        self.nodes.append(region)
        return region

    def partition(self, region: RegionNode, inputs: Sequence[RegionNode]) -> PartitionNode:
        """Add a partition of `region` into `inputs` (kept in the given order)."""
        partition = PartitionNode(region.scope)
        self.nodes.append(partition)
        self.in_nodes.setdefault(region, []).append(partition)
        self.in_nodes[partition] = list(inputs)
        return partition

    def merge(self, inputs: Sequence[RegionNode]) -> RegionNode:
        """A new region over the union of `inputs`, with one partition into them."""
        region = self.region(Scope.union(*(r.scope for r in inputs)))
        self.partition(region, inputs)
        return region

    def build(self, outputs: Sequence[RegionNode]) -> RegionGraph:
        return RegionGraph(self.nodes, self.in_nodes, outputs)
