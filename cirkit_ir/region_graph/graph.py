"""The region graph: which sets of variables a circuit models, and how each is split.

A region graph alternates regions (sets of variables) and partitions (a split of a region's
variables into disjoint sub-regions). Templates turn it into a symbolic circuit: one block of
units per region, one product per partition and a mixing wherever a region has several
partitions. The order of a partition's inputs is kept, because it decides how layers fold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from os import PathLike
from typing import Any

from cirkit_ir.errors import OptionError, StructureError
from cirkit_ir.region_graph import dot, serialization
from cirkit_ir.region_graph.nodes import PartitionNode, RegionGraphNode, RegionNode
from cirkit_ir.region_graph.validation import check_region_graph
from cirkit_ir.symbolic.scope import Scope
from cirkit_ir.validators import short_repr


def _node_tuple(nodes: object, what: str, key: object = None) -> tuple[RegionGraphNode, ...]:
    """`nodes` as a tuple, if it is a collection (a lone node is a common slip: it would fail
    as 'not iterable' deep inside). The validation checks what the items are. `key` names
    the entry of `what` (a mapping) that `nodes` came from."""
    if isinstance(nodes, RegionNode | PartitionNode | str) or not isinstance(nodes, Iterable):
        where = what if key is None else f"{what}[{short_repr(key)}]"
        hint = "; wrap it in a list" if isinstance(nodes, RegionNode | PartitionNode) else ""
        raise OptionError(f"{where} must be a list of nodes, got {short_repr(nodes)}{hint}")
    return tuple(nodes)


class RegionGraph:
    """An immutable, validated region graph.

    Args:
        nodes: every node, in a stable order (it fixes `regions`, `partitions` and the
            topological ordering).
        in_nodes: each node's ordered inputs: a partition's input regions, a region's
            partitions. Leaf regions may be missing or map to an empty list.
        outputs: the root regions.

    Raises:
        OptionError: `nodes` or `outputs` is not a list of nodes, or `in_nodes` not a mapping
            of node lists.
        StructureError: the graph is not bipartite, acyclic, smooth or decomposable, a leaf is
            a partition, a partition does not feed exactly one region, or a region is neither
            used nor an output.
    """

    def __init__(
        self,
        nodes: Iterable[RegionGraphNode],
        in_nodes: Mapping[RegionGraphNode, Sequence[RegionGraphNode]],
        outputs: Iterable[RegionNode],
    ) -> None:
        self._nodes: tuple[RegionGraphNode, ...] = _node_tuple(nodes, "nodes")
        if not isinstance(in_nodes, Mapping):
            raise OptionError(
                "in_nodes must map each node to the list of its input nodes, got"
                f" {type(in_nodes).__name__}"
            )
        self._in: dict[RegionGraphNode, tuple[RegionGraphNode, ...]] = {
            node: _node_tuple(inputs, "in_nodes", node) for node, inputs in in_nodes.items()
        }
        self._outputs: tuple[RegionNode, ...] = _node_tuple(outputs, "outputs")  # type: ignore[assignment]
        users: dict[RegionGraphNode, list[RegionGraphNode]] = {}
        for node in self._nodes:
            for input_node in self._in.get(node, ()):
                users.setdefault(input_node, []).append(node)
        self._out = {node: tuple(users_of) for node, users_of in users.items()}
        check_region_graph(self._nodes, self._in, self._out, self._outputs)

    # ---- nodes --------------------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[RegionGraphNode, ...]:
        """Every node, in construction order."""
        return self._nodes

    @cached_property
    def regions(self) -> tuple[RegionNode, ...]:
        return tuple(node for node in self._nodes if isinstance(node, RegionNode))

    @cached_property
    def partitions(self) -> tuple[PartitionNode, ...]:
        return tuple(node for node in self._nodes if isinstance(node, PartitionNode))

    @cached_property
    def inputs(self) -> tuple[RegionNode, ...]:
        """The leaf regions: the ones without partitions, where input layers go."""
        return tuple(region for region in self.regions if not self._in.get(region))

    @property
    def outputs(self) -> tuple[RegionNode, ...]:
        return self._outputs

    def node_inputs(self, node: RegionGraphNode) -> list[RegionGraphNode]:
        """The ordered inputs of a node (empty for a leaf region)."""
        self._require(node, (RegionNode, PartitionNode))
        return list(self._in.get(node, ()))

    def node_outputs(self, node: RegionGraphNode) -> list[RegionGraphNode]:
        """The nodes that take this node as an input, in node order."""
        self._require(node, (RegionNode, PartitionNode))
        return list(self._out.get(node, ()))

    def region_inputs(self, partition: PartitionNode) -> list[RegionNode]:
        """The ordered regions a partition splits its scope into."""
        self._require(partition, (PartitionNode,))
        return [node for node in self._in[partition] if isinstance(node, RegionNode)]

    def partition_inputs(self, region: RegionNode) -> list[PartitionNode]:
        """The partitions a region mixes over (empty for a leaf region)."""
        self._require(region, (RegionNode,))
        return [node for node in self._in.get(region, ()) if isinstance(node, PartitionNode)]

    def partition_output(self, partition: PartitionNode) -> RegionNode:
        """The one region a partition belongs to."""
        self._require(partition, (PartitionNode,))
        (region,) = self._out[partition]
        assert isinstance(region, RegionNode)
        return region

    def _require(self, node: object, kinds: tuple[type, ...]) -> None:
        if not isinstance(node, kinds) or not self._contains(node):
            wanted = " or ".join(kind.__name__ for kind in kinds)
            raise StructureError(f"{node!r} is not a {wanted} of this region graph")

    def _contains(self, node: object) -> bool:
        return node in self._node_index

    @cached_property
    def _node_index(self) -> dict[RegionGraphNode, int]:
        return {node: index for index, node in enumerate(self._nodes)}

    def topological_ordering(self) -> list[RegionGraphNode]:
        """Every node, each after all of its inputs.

        Deterministic: a first-in-first-out walk that starts from the leaves in node order and
        releases a node's users in node order once all their inputs have been visited.
        """
        return list(self._topological_ordering)

    @cached_property
    def _topological_ordering(self) -> tuple[RegionGraphNode, ...]:
        pending = {node: len(self._in.get(node, ())) for node in self._nodes}
        queue = deque(node for node in self._nodes if pending[node] == 0)
        ordering: list[RegionGraphNode] = []
        while queue:
            node = queue.popleft()
            ordering.append(node)
            for user in self._out.get(node, ()):
                pending[user] -= 1
                if pending[user] == 0:
                    queue.append(user)
        return tuple(ordering)

    # ---- structural properties ----------------------------------------------------------------

    @cached_property
    def scope(self) -> Scope:
        """The variables the graph models: the union of its outputs' scopes."""
        return Scope.union(*(region.scope for region in self._outputs))

    @property
    def num_variables(self) -> int:
        return len(self.scope)

    @cached_property
    def is_smooth(self) -> bool:
        """Whether every region mixes only partitions over its own scope."""
        return all(
            partition.scope == region.scope
            for region in self.regions
            for partition in self.partition_inputs(region)
        )

    @cached_property
    def is_decomposable(self) -> bool:
        """Whether every partition splits its scope into disjoint, covering input regions."""
        for partition in self.partitions:
            scopes = [region.scope for region in self._in[partition]]
            if sum(map(len, scopes)) != len(partition.scope):
                return False
            if Scope.union(*scopes) != partition.scope:
                return False
        return True

    @cached_property
    def is_structured_decomposable(self) -> bool:
        """Smooth, decomposable, and all partitions of a scope split it the same way (the
        inputs' order does not matter; see `cirkit_ir.properties`)."""
        from cirkit_ir.properties import is_structured_decomposable

        return is_structured_decomposable(self)

    @cached_property
    def is_omni_compatible(self) -> bool:
        """Every partition splits its scope into single variables (`cirkit_ir.properties`)."""
        from cirkit_ir.properties import is_omni_compatible

        return is_omni_compatible(self)

    @cached_property
    def properties(self):  # -> cirkit_ir.properties.StructuralProperties
        """Smooth, decomposable, structured-decomposable, omni-compatible (libcirkit's names)."""
        from cirkit_ir.properties import structural_properties

        return structural_properties(self)

    # ---- serialization and drawing ------------------------------------------------------------

    def to_json(self, *, indent: int | None = None) -> str:
        """The graph as JSON text in the format of `cirkit_ir.region_graph.serialization`."""
        return serialization.dumps(self, indent=indent)

    @classmethod
    def from_json(cls, source: str | bytes | Mapping[str, Any]) -> RegionGraph:
        """Rebuild a graph from JSON text (or its parsed object) written by `to_json`."""
        nodes, in_nodes, outputs = serialization.loads(source)
        return cls(nodes, in_nodes, outputs)

    def save(self, path: str | PathLike[str]) -> None:
        """Write the graph to a JSON file (UTF-8)."""
        serialization.save(self, path)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> RegionGraph:
        """Read a graph written by `save`."""
        nodes, in_nodes, outputs = serialization.load(path)
        return cls(nodes, in_nodes, outputs)

    def to_dot(self) -> str:
        """Graphviz text: regions as boxes, partitions as circles, edges from input to user."""
        return dot.to_dot(self)

    def render(self, path: str | PathLike[str]) -> None:
        """Draw the graph with Graphviz's `dot`, in the format named by the file's suffix."""
        dot.render(self, path)

    def __repr__(self) -> str:
        return (
            f"RegionGraph({len(self.regions)} regions, {len(self.partitions)} partitions, "
            f"{self.num_variables} variables)"
        )
