"""The stable JSON format of region graphs, so graphs can be saved, shared and reloaded.

Version 1 of the format is one JSON object::

    {
      "format": "cirkit-ir/region-graph",
      "version": 1,
      "regions": [[0, 1, 2, 3], [0, 1], [2, 3], [0], [1], [2], [3]],
      "partitions": [{"output": 0, "inputs": [1, 2]}, {"output": 1, "inputs": [3, 4]}, ...],
      "outputs": [0]
    }

- ``regions``: one entry per region, in the graph's region order; an entry is the region's
  scope as a sorted list of variable ids. A region is referred to by its index in this list.
- ``partitions``: one entry per partition, in the graph's partition order; ``output`` is the
  index of the region the partition belongs to (its scope is that region's scope) and
  ``inputs`` the indices of its input regions, in order. A region's partitions appear in the
  order the region lists them.
- ``outputs``: the indices of the output regions, in order.

Loading rebuilds nodes as all regions followed by all partitions. When every region lists
its partitions in the order of the partition list (true of every graph the algorithms build),
everything comes back unchanged: regions, partitions, each node's ordered inputs, outputs and
the topological ordering. Otherwise a region's partitions swap places in the partition list so
that the region's own order, which is what the circuit depends on, is kept.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

from cirkit_ir.errors import StructureError
from cirkit_ir.region_graph.nodes import PartitionNode, RegionGraphNode, RegionNode

if TYPE_CHECKING:
    from cirkit_ir.region_graph.graph import RegionGraph

FORMAT = "cirkit-ir/region-graph"
VERSION = 1

GraphParts = tuple[
    list[RegionGraphNode], dict[RegionGraphNode, list[RegionGraphNode]], list[RegionNode]
]
"""What a document decodes to: the arguments of `RegionGraph`."""


def encode(graph: RegionGraph) -> dict[str, Any]:
    """The graph as a JSON-ready object of the format above."""
    index = {region: i for i, region in enumerate(graph.regions)}
    # Keep the list's slots of each region's partitions, but fill them in the region's order.
    queues = {region: deque(graph.partition_inputs(region)) for region in graph.regions}
    ordered = [queues[graph.partition_output(p)].popleft() for p in graph.partitions]
    return {
        "format": FORMAT,
        "version": VERSION,
        "regions": [list(region.scope) for region in graph.regions],
        "partitions": [
            {
                "output": index[graph.partition_output(partition)],
                "inputs": [index[region] for region in graph.region_inputs(partition)],
            }
            for partition in ordered
        ],
        "outputs": [index[region] for region in graph.outputs],
    }


def decode(document: Mapping[str, Any]) -> GraphParts:
    """The nodes, inputs and outputs described by a document, checked for shape."""
    if not isinstance(document, Mapping):
        raise StructureError("a region graph document must be a JSON object")
    if document.get("format") != FORMAT:
        raise StructureError(
            f"not a region graph document: 'format' is {document.get('format')!r}, "
            f"expected {FORMAT!r}"
        )
    if document.get("version") != VERSION:
        raise StructureError(
            f"unsupported region graph format version {document.get('version')!r}; "
            f"this cirkit-ir reads version {VERSION}"
        )
    regions = [
        RegionNode(_int_list(scope, f"regions[{i}]"))
        for i, scope in enumerate(_list(document, "regions"))
    ]
    nodes: list[RegionGraphNode] = list(regions)
    in_nodes: dict[RegionGraphNode, list[RegionGraphNode]] = {}
    for i, entry in enumerate(_list(document, "partitions")):
        where = f"partitions[{i}]"
        if not isinstance(entry, Mapping) or "output" not in entry or "inputs" not in entry:
            raise StructureError(f"{where} must be an object with 'output' and 'inputs'")
        region = regions[_index(entry["output"], len(regions), f"{where}.output")]
        partition = PartitionNode(region.scope)
        nodes.append(partition)
        in_nodes.setdefault(region, []).append(partition)
        inputs = _int_list(entry["inputs"], f"{where}.inputs")
        in_nodes[partition] = [regions[_index(j, len(regions), f"{where}.inputs")] for j in inputs]
    outputs = [
        regions[_index(j, len(regions), "outputs")]
        for j in _int_list(_list(document, "outputs"), "outputs")
    ]
    return nodes, in_nodes, outputs


def dumps(graph: RegionGraph, *, indent: int | None = None) -> str:
    return json.dumps(encode(graph), indent=indent)


def loads(source: str | bytes | Mapping[str, Any]) -> GraphParts:
    if isinstance(source, Mapping):
        return decode(source)
    if not isinstance(source, str | bytes | bytearray):
        raise StructureError(
            f"a region graph document is JSON text or its parsed dict, got"
            f" {type(source).__name__}; to read a file, use RegionGraph.load(path)"
        )
    try:
        document = json.loads(source)
    except json.JSONDecodeError as error:
        raise StructureError(f"region graph JSON does not parse: {error}") from error
    return decode(document)


def save(graph: RegionGraph, path: str | PathLike[str]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(dumps(graph))
        file.write("\n")


def load(path: str | PathLike[str]) -> GraphParts:
    with open(path, encoding="utf-8") as file:
        return loads(file.read())


def _list(document: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise StructureError(f"region graph document needs a list under {key!r}")
    return value


def _int_list(value: object, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise StructureError(f"{where} must be a list of non-negative integers, got {value!r}")
    return value


def _index(value: object, size: int, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StructureError(f"{where} must be a region index, got {value!r}")
    if not 0 <= value < size:
        raise StructureError(f"{where} refers to region {value}, but there are only {size}")
    return value
