"""Structural checks run when a region graph is built, so malformed graphs fail early.

Each check raises `StructureError` naming the offending node and saying how to fix it; a graph
that passes is bipartite, acyclic, rooted in its outputs, smooth and decomposable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cirkit_ir.errors import StructureError
from cirkit_ir.region_graph.nodes import PartitionNode, RegionGraphNode, RegionNode
from cirkit_ir.symbolic.scope import Scope


def check_region_graph(
    nodes: Sequence[RegionGraphNode],
    in_nodes: Mapping[RegionGraphNode, Sequence[RegionGraphNode]],
    out_nodes: Mapping[RegionGraphNode, Sequence[RegionGraphNode]],
    outputs: Sequence[RegionGraphNode],
) -> None:
    """Raise `StructureError` at the first violation of the region-graph invariants."""
    _check_membership(nodes, in_nodes, outputs)
    for node in nodes:
        inputs = in_nodes.get(node, ())
        if isinstance(node, PartitionNode):
            _check_partition(node, inputs, out_nodes.get(node, ()))
        else:
            _check_region(node, inputs)
    listed = set(outputs)
    for node in nodes:
        if isinstance(node, RegionNode) and not out_nodes.get(node) and node not in listed:
            raise StructureError(
                f"region {node} feeds no partition and is not an output; "
                "add it to outputs or remove it from nodes"
            )
    _check_acyclic(nodes, in_nodes, out_nodes)


def _check_membership(
    nodes: Sequence[RegionGraphNode],
    in_nodes: Mapping[RegionGraphNode, Sequence[RegionGraphNode]],
    outputs: Sequence[RegionGraphNode],
) -> None:
    seen: set[RegionGraphNode] = set()
    for node in nodes:
        if not isinstance(node, (RegionNode, PartitionNode)):
            raise StructureError(
                f"region graph nodes must be RegionNode or PartitionNode, got {node!r} "
                f"of type {type(node).__name__}"
            )
        if node in seen:
            raise StructureError(f"node {node} is listed twice in nodes; list each node once")
        seen.add(node)
    for node, inputs in in_nodes.items():
        for named in (node, *inputs):
            if named not in seen:
                raise StructureError(f"in_nodes names {named!r}, which is not in nodes; add it")
    if not outputs:
        raise StructureError("a region graph needs at least one output region")
    for node in outputs:
        if node not in seen:
            raise StructureError(f"output {node!r} is not in nodes; add it to nodes")
        if not isinstance(node, RegionNode):
            raise StructureError(f"output {node} is a partition; outputs must be regions")
    if len(set(outputs)) != len(outputs):
        raise StructureError("outputs lists a region twice; list each output once")


def _check_partition(
    node: PartitionNode, inputs: Sequence[RegionGraphNode], users: Sequence[RegionGraphNode]
) -> None:
    if not inputs:
        raise StructureError(
            f"partition {node} has no inputs, but leaves must be regions; "
            "give it the regions it splits its scope into"
        )
    covered: set[int] = set()
    for region in inputs:
        if not isinstance(region, RegionNode):
            raise StructureError(
                f"partition {node} has input {region}, but a partition's inputs must be regions"
            )
        shared = covered.intersection(region.scope.variables)
        if shared:
            raise StructureError(
                f"inputs of partition {node} overlap on variables {sorted(shared)}; "
                "the input regions of a partition must have pairwise disjoint scopes"
            )
        covered |= region.scope.variables
    if Scope(covered) != node.scope:
        raise StructureError(
            f"inputs of partition {node} cover {Scope(covered)} instead of the partition's "
            "scope; the input regions' scopes must add up to the partition's scope"
        )
    if len(users) != 1:
        raise StructureError(
            f"partition {node} feeds {len(users)} regions; "
            "each partition must be an input of exactly one region"
        )


def _check_region(node: RegionNode, inputs: Sequence[RegionGraphNode]) -> None:
    for partition in inputs:
        if not isinstance(partition, PartitionNode):
            raise StructureError(
                f"region {node} has input {partition}, but a region's inputs must be partitions"
            )
        if partition.scope != node.scope:
            raise StructureError(
                f"region {node} has partition {partition} over a different scope; "
                "every partition of a region must have the region's scope"
            )


def _check_acyclic(
    nodes: Sequence[RegionGraphNode],
    in_nodes: Mapping[RegionGraphNode, Sequence[RegionGraphNode]],
    out_nodes: Mapping[RegionGraphNode, Sequence[RegionGraphNode]],
) -> None:
    pending = {node: len(in_nodes.get(node, ())) for node in nodes}
    ready = [node for node, count in pending.items() if count == 0]
    while ready:
        node = ready.pop()
        for user in out_nodes.get(node, ()):
            pending[user] -= 1
            if pending[user] == 0:
                ready.append(user)
    stuck = next((node for node in nodes if pending[node] > 0), None)
    if stuck is not None:
        raise StructureError(
            f"the region graph has a cycle through {stuck}; a node cannot depend on itself"
        )
