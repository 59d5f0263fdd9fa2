"""Tests of region graphs: validation, serialization, drawing, and every algorithm.

Small cases are checked against structures worked out by hand. A partition is written
"scope = input | input | ...", each scope as its variables separated by spaces; pixel
(row, col) of a W-wide image is variable row * W + col.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import numpy as np
import pytest
import torch

from cirkit_ir.errors import InputError, OptionError, StructureError
from cirkit_ir.region_graph import (
    PartitionNode,
    RegionGraph,
    RegionNode,
    chow_liu_tree,
    fully_factorized,
    linear_tree,
    poon_domingos,
    quad_graph,
    quad_tree,
    random_binary_tree,
)
from cirkit_ir.region_graph.algorithms import tree_to_region_graph
from cirkit_ir.symbolic.scope import Scope

# ---- helpers -------------------------------------------------------------------------------


def text(scope: Scope) -> str:
    return " ".join(map(str, scope))


def region_texts(graph: RegionGraph) -> list[str]:
    return [text(region.scope) for region in graph.regions]


def partition_texts(graph: RegionGraph) -> list[str]:
    return [
        text(p.scope) + " = " + " | ".join(text(r.scope) for r in graph.region_inputs(p))
        for p in graph.partitions
    ]


def structure(graph: RegionGraph) -> tuple[object, ...]:
    """Everything about a graph except node identity, by region/partition indices."""
    regions = {r: i for i, r in enumerate(graph.regions)}
    partitions = {p: i for i, p in enumerate(graph.partitions)}

    def name(node: RegionNode | PartitionNode) -> str:
        return f"r{regions[node]}" if isinstance(node, RegionNode) else f"p{partitions[node]}"

    return (
        [list(r.scope) for r in graph.regions],
        [(list(p.scope), [regions[r] for r in graph.region_inputs(p)]) for p in graph.partitions],
        [[partitions[p] for p in graph.partition_inputs(r)] for r in graph.regions],
        [regions[r] for r in graph.outputs],
        [name(node) for node in graph.topological_ordering()],
    )


def layer_depth(graph: RegionGraph) -> int:
    """Longest path, in layers, of the tucker circuit built over the graph.

    One input layer per leaf region; per partition a kronecker and a dense layer; one mixing
    layer over a region's partitions when it has more than one.
    """
    depth: dict[RegionNode | PartitionNode, int] = {}
    for node in graph.topological_ordering():
        if isinstance(node, PartitionNode):
            depth[node] = 2 + max(depth[r] for r in graph.region_inputs(node))
        else:
            partitions = graph.partition_inputs(node)
            mixing = 1 if len(partitions) > 1 else 0
            depth[node] = max((depth[p] for p in partitions), default=0) + mixing
    return 1 + max(depth[r] for r in graph.outputs)


ALGORITHMS: dict[str, Callable[[], RegionGraph]] = {
    "quad-tree-2": lambda: quad_tree((5, 6), 2),
    "quad-tree-4": lambda: quad_tree((5, 6), 4),
    "quad-graph": lambda: quad_graph((5, 6)),
    "poon-domingos": lambda: poon_domingos((6, 5), [2, [1, 3]]),
    "random-binary-tree": lambda: random_binary_tree(13, num_repetitions=3, seed=3),
    "linear-tree": lambda: linear_tree(6, num_repetitions=2, randomize=True),
    "fully-factorized": lambda: fully_factorized(5, num_repetitions=2),
    "chow-liu": lambda: chow_liu_tree(np.random.default_rng(0).integers(0, 3, size=(50, 7))),
}


# ---- quad-tree and quad-graph: counts over 28x28 -----------------------------------------


def test_quad_graph_28x28_counts() -> None:
    graph = quad_graph((28, 28))
    assert len(graph.regions) == 2085
    assert len(graph.partitions) == 1560
    mixed = [r for r in graph.regions if len(graph.partition_inputs(r)) == 2]
    assert len(mixed) == 259
    assert graph.outputs[0] in mixed
    assert all(len(graph.partition_inputs(r)) <= 2 for r in graph.regions)
    assert graph.num_variables == 784
    assert graph.scope == Scope(range(784))
    assert len(graph.inputs) == 784
    assert not graph.is_structured_decomposable


def test_quad_tree_28x28_counts() -> None:
    two = quad_tree((28, 28), num_patch_splits=2)
    assert (len(two.regions), len(two.partitions)) == (1567, 783)
    four = quad_tree((28, 28), num_patch_splits=4)
    assert (len(four.regions), len(four.partitions)) == (1049, 265)
    for graph in (two, four):
        assert graph.num_variables == 784
        assert graph.is_structured_decomposable
        assert all(len(graph.partition_inputs(r)) <= 1 for r in graph.regions)


def test_quad_graph_28x28_tucker_depth_is_26_layers() -> None:
    # 28 -> 14 -> 7 -> 4 -> 2 -> 1 is five levels; at each, a full 2x2 block costs
    # (kronecker, dense) for a half, again for the whole block, then a mixing: 5 layers.
    assert layer_depth(quad_graph((28, 28))) == 1 + 5 * 5


def test_quad_tree_28x28_tucker_depths() -> None:
    assert layer_depth(quad_tree((28, 28), 2)) == 1 + 5 * 4  # two partitions per level
    assert layer_depth(quad_tree((28, 28), 4)) == 1 + 5 * 2  # one partition per level


# ---- quad-tree and quad-graph: small images by hand ---------------------------------------

LEAVES_2x2 = ["0", "1", "2", "3"]


def test_quad_tree_2_on_2x2() -> None:
    graph = quad_tree((2, 2), 2)
    assert region_texts(graph) == [*LEAVES_2x2, "0 1", "2 3", "0 1 2 3"]
    assert partition_texts(graph) == ["0 1 = 0 | 1", "2 3 = 2 | 3", "0 1 2 3 = 0 1 | 2 3"]
    assert [text(r.scope) for r in graph.outputs] == ["0 1 2 3"]
    assert [text(r.scope) for r in graph.inputs] == LEAVES_2x2


@pytest.mark.parametrize(
    "build",
    [
        lambda shape: quad_tree(shape, 2),
        lambda shape: quad_tree(shape, 4),
        quad_graph,
        lambda shape: poon_domingos(shape, 1),
    ],
)
def test_image_shapes_are_cirkits_channels_height_width(build) -> None:
    """(C, H, W) as libcirkit takes it: pixel (i, j) of channel c is variable c*H*W + i*W + j,
    and a region holds its pixels in every channel; (1, H, W) is the same graph as (H, W)."""
    assert structure(build((1, 2, 3))) == structure(build((2, 3)))
    graph = build((2, 2, 3))
    assert graph.scope == Scope(range(12))
    leaves = {text(region.scope) for region in graph.inputs}
    assert leaves == {"0 6", "1 7", "2 8", "3 9", "4 10", "5 11"}
    one_channel = build((2, 3))
    assert [len(r.scope) for r in graph.regions] == [2 * len(r.scope) for r in one_channel.regions]


def test_quad_tree_4_on_2x2() -> None:
    graph = quad_tree((2, 2), 4)
    assert region_texts(graph) == [*LEAVES_2x2, "0 1 2 3"]
    assert partition_texts(graph) == ["0 1 2 3 = 0 | 1 | 2 | 3"]


def test_quad_graph_on_2x2() -> None:
    graph = quad_graph((2, 2))
    assert region_texts(graph) == [*LEAVES_2x2, "0 1", "2 3", "0 1 2 3", "0 2", "1 3"]
    assert partition_texts(graph) == [
        "0 1 = 0 | 1",
        "2 3 = 2 | 3",
        "0 1 2 3 = 0 1 | 2 3",
        "0 2 = 0 | 2",
        "1 3 = 1 | 3",
        "0 1 2 3 = 0 2 | 1 3",
    ]
    root = graph.outputs[0]
    splits = [[text(r.scope) for r in graph.region_inputs(p)] for p in graph.partition_inputs(root)]
    assert splits == [["0 1", "2 3"], ["0 2", "1 3"]]  # top/bottom first, then left/right


# 3x3:  0 1 2 / 3 4 5 / 6 7 8. The first round makes a 2x2 grid: block {0 1 3 4}, the
# border pairs {2 5} and {6 7}, and {8} alone; the second round merges those four.
LEAVES_3x3 = [str(v) for v in range(9)]


def test_quad_tree_2_on_3x3() -> None:
    graph = quad_tree((3, 3), 2)
    assert region_texts(graph) == [
        *LEAVES_3x3,
        "0 1",
        "3 4",
        "0 1 3 4",
        "2 5",
        "6 7",
        "0 1 2 3 4 5",
        "6 7 8",
        "0 1 2 3 4 5 6 7 8",
    ]
    assert partition_texts(graph) == [
        "0 1 = 0 | 1",
        "3 4 = 3 | 4",
        "0 1 3 4 = 0 1 | 3 4",
        "2 5 = 2 | 5",
        "6 7 = 6 | 7",
        "0 1 2 3 4 5 = 0 1 3 4 | 2 5",
        "6 7 8 = 6 7 | 8",
        "0 1 2 3 4 5 6 7 8 = 0 1 2 3 4 5 | 6 7 8",
    ]


def test_quad_tree_4_on_3x3() -> None:
    graph = quad_tree((3, 3), 4)
    assert region_texts(graph) == [*LEAVES_3x3, "0 1 3 4", "2 5", "6 7", "0 1 2 3 4 5 6 7 8"]
    assert partition_texts(graph) == [
        "0 1 3 4 = 0 | 1 | 3 | 4",
        "2 5 = 2 | 5",
        "6 7 = 6 | 7",
        "0 1 2 3 4 5 6 7 8 = 0 1 3 4 | 2 5 | 6 7 | 8",
    ]


def test_quad_graph_on_3x3() -> None:
    graph = quad_graph((3, 3))
    assert region_texts(graph) == [
        *LEAVES_3x3,
        "0 1",
        "3 4",
        "0 1 3 4",
        "0 3",
        "1 4",
        "2 5",
        "6 7",
        "0 1 2 3 4 5",
        "6 7 8",
        "0 1 2 3 4 5 6 7 8",
        "0 1 3 4 6 7",
        "2 5 8",
    ]
    assert partition_texts(graph) == [
        "0 1 = 0 | 1",
        "3 4 = 3 | 4",
        "0 1 3 4 = 0 1 | 3 4",
        "0 3 = 0 | 3",
        "1 4 = 1 | 4",
        "0 1 3 4 = 0 3 | 1 4",
        "2 5 = 2 | 5",
        "6 7 = 6 | 7",
        "0 1 2 3 4 5 = 0 1 3 4 | 2 5",
        "6 7 8 = 6 7 | 8",
        "0 1 2 3 4 5 6 7 8 = 0 1 2 3 4 5 | 6 7 8",
        "0 1 3 4 6 7 = 0 1 3 4 | 6 7",
        "2 5 8 = 2 5 | 8",
        "0 1 2 3 4 5 6 7 8 = 0 1 3 4 6 7 | 2 5 8",
    ]
    assert [len(graph.partition_inputs(r)) for r in graph.regions].count(2) == 2


# 4x5:   0  1  2  3  4
#        5  6  7  8  9
#       10 11 12 13 14
#       15 16 17 18 19
# Round 1 (2x3 grid): blocks Q00 {0 1 5 6}, Q01 {2 3 7 8}, border pair {4 9}, then
# Q10 {10 11 15 16}, Q11 {12 13 17 18}, border pair {14 19}.
# Round 2 (1x2 grid): the four blocks merge into L; {4 9} and {14 19} into a column.
# Round 3: L and the column merge into the root.
LEAVES_4x5 = [str(v) for v in range(20)]
L_4x5 = "0 1 2 3 5 6 7 8 10 11 12 13 15 16 17 18"
ROOT_4x5 = " ".join(map(str, range(20)))


def test_quad_tree_4_on_4x5() -> None:
    graph = quad_tree((4, 5), 4)
    assert region_texts(graph) == [
        *LEAVES_4x5,
        "0 1 5 6",
        "2 3 7 8",
        "4 9",
        "10 11 15 16",
        "12 13 17 18",
        "14 19",
        L_4x5,
        "4 9 14 19",
        ROOT_4x5,
    ]
    assert partition_texts(graph) == [
        "0 1 5 6 = 0 | 1 | 5 | 6",
        "2 3 7 8 = 2 | 3 | 7 | 8",
        "4 9 = 4 | 9",
        "10 11 15 16 = 10 | 11 | 15 | 16",
        "12 13 17 18 = 12 | 13 | 17 | 18",
        "14 19 = 14 | 19",
        f"{L_4x5} = 0 1 5 6 | 2 3 7 8 | 10 11 15 16 | 12 13 17 18",
        "4 9 14 19 = 4 9 | 14 19",
        f"{ROOT_4x5} = {L_4x5} | 4 9 14 19",
    ]


def test_quad_tree_2_on_4x5() -> None:
    graph = quad_tree((4, 5), 2)
    assert partition_texts(graph) == [
        "0 1 = 0 | 1",
        "5 6 = 5 | 6",
        "0 1 5 6 = 0 1 | 5 6",
        "2 3 = 2 | 3",
        "7 8 = 7 | 8",
        "2 3 7 8 = 2 3 | 7 8",
        "4 9 = 4 | 9",
        "10 11 = 10 | 11",
        "15 16 = 15 | 16",
        "10 11 15 16 = 10 11 | 15 16",
        "12 13 = 12 | 13",
        "17 18 = 17 | 18",
        "12 13 17 18 = 12 13 | 17 18",
        "14 19 = 14 | 19",
        "0 1 2 3 5 6 7 8 = 0 1 5 6 | 2 3 7 8",
        "10 11 12 13 15 16 17 18 = 10 11 15 16 | 12 13 17 18",
        f"{L_4x5} = 0 1 2 3 5 6 7 8 | 10 11 12 13 15 16 17 18",
        "4 9 14 19 = 4 9 | 14 19",
        f"{ROOT_4x5} = {L_4x5} | 4 9 14 19",
    ]
    assert len(graph.regions) == 20 + 19


def test_quad_graph_on_4x5() -> None:
    graph = quad_graph((4, 5))
    assert partition_texts(graph) == [
        "0 1 = 0 | 1",
        "5 6 = 5 | 6",
        "0 1 5 6 = 0 1 | 5 6",
        "0 5 = 0 | 5",
        "1 6 = 1 | 6",
        "0 1 5 6 = 0 5 | 1 6",
        "2 3 = 2 | 3",
        "7 8 = 7 | 8",
        "2 3 7 8 = 2 3 | 7 8",
        "2 7 = 2 | 7",
        "3 8 = 3 | 8",
        "2 3 7 8 = 2 7 | 3 8",
        "4 9 = 4 | 9",
        "10 11 = 10 | 11",
        "15 16 = 15 | 16",
        "10 11 15 16 = 10 11 | 15 16",
        "10 15 = 10 | 15",
        "11 16 = 11 | 16",
        "10 11 15 16 = 10 15 | 11 16",
        "12 13 = 12 | 13",
        "17 18 = 17 | 18",
        "12 13 17 18 = 12 13 | 17 18",
        "12 17 = 12 | 17",
        "13 18 = 13 | 18",
        "12 13 17 18 = 12 17 | 13 18",
        "14 19 = 14 | 19",
        "0 1 2 3 5 6 7 8 = 0 1 5 6 | 2 3 7 8",
        "10 11 12 13 15 16 17 18 = 10 11 15 16 | 12 13 17 18",
        f"{L_4x5} = 0 1 2 3 5 6 7 8 | 10 11 12 13 15 16 17 18",
        "0 1 5 6 10 11 15 16 = 0 1 5 6 | 10 11 15 16",
        "2 3 7 8 12 13 17 18 = 2 3 7 8 | 12 13 17 18",
        f"{L_4x5} = 0 1 5 6 10 11 15 16 | 2 3 7 8 12 13 17 18",
        "4 9 14 19 = 4 9 | 14 19",
        f"{ROOT_4x5} = {L_4x5} | 4 9 14 19",
    ]
    assert len(graph.regions) == 20 + 5 * 4 + 2 + 5 + 1 + 1
    # The root has one partition: its block is a border pair, not a full 2x2 block.
    assert len(graph.partition_inputs(graph.outputs[0])) == 1


def test_quad_on_single_pixel_and_single_row() -> None:
    pixel = quad_graph((1, 1))
    assert region_texts(pixel) == ["0"] and pixel.partitions == ()
    row = quad_tree((1, 3), 2)
    assert partition_texts(row) == ["0 1 = 0 | 1", "0 1 2 = 0 1 | 2"]


@pytest.mark.parametrize("shape", [(0, 3), (3,), (2, 2, 2, 2), (0, 2, 2), "ab", (2.0, 2)])
def test_quad_rejects_bad_shapes(shape: object) -> None:
    with pytest.raises(OptionError, match="quad_graph"):
        quad_graph(shape)  # type: ignore[arg-type]


def test_quad_tree_rejects_bad_split_count() -> None:
    with pytest.raises(OptionError, match="num_patch_splits 3; expected one of: 2, 4"):
        quad_tree((4, 4), 3)


# ---- poon-domingos ------------------------------------------------------------------------


def test_poon_domingos_on_2x2_by_hand() -> None:
    graph = poon_domingos((2, 2), delta=1)
    # The whole image is cut at row 1 and at column 1; each half is then cut once more.
    assert region_texts(graph) == ["0 1 2 3", "0 1", "2 3", "0 2", "1 3", "0", "1", "2", "3"]
    assert partition_texts(graph) == [
        "0 1 2 3 = 0 1 | 2 3",
        "0 1 2 3 = 0 2 | 1 3",
        "0 1 = 0 | 1",
        "2 3 = 2 | 3",
        "0 2 = 0 | 2",
        "1 3 = 1 | 3",
    ]


def test_poon_domingos_max_depth_zero_cuts_only_the_image() -> None:
    graph = poon_domingos((2, 2), delta=1, max_depth=0)
    assert partition_texts(graph) == ["0 1 2 3 = 0 1 | 2 3", "0 1 2 3 = 0 2 | 1 3"]
    assert [text(r.scope) for r in graph.inputs] == ["0 1", "2 3", "0 2", "1 3"]


def test_poon_domingos_per_axis_delta() -> None:
    # 2x4 image, rows cut every 1 pixel, columns every 2: cut points row 1, column 2.
    #   0 1 2 3
    #   4 5 6 7
    graph = poon_domingos((2, 4), delta=[[1, 2]])
    assert partition_texts(graph) == [
        "0 1 2 3 4 5 6 7 = 0 1 2 3 | 4 5 6 7",
        "0 1 2 3 4 5 6 7 = 0 1 4 5 | 2 3 6 7",
        "0 1 2 3 = 0 1 | 2 3",
        "4 5 6 7 = 4 5 | 6 7",
        "0 1 4 5 = 0 1 | 4 5",
        "2 3 6 7 = 2 3 | 6 7",
    ]
    assert [text(r.scope) for r in graph.inputs] == ["0 1", "2 3", "4 5", "6 7"]


def test_poon_domingos_28x28_with_delta_4_has_4x4_leaves() -> None:
    graph = poon_domingos((28, 28), delta=4)
    assert len(graph.inputs) == 49
    assert all(len(r.scope) == 16 for r in graph.inputs)
    assert graph.num_variables == 784


@pytest.mark.parametrize("delta", [0.5, [[1, 2, 3]], "4", [], [True], float("nan")])
def test_poon_domingos_rejects_bad_delta(delta: object) -> None:
    with pytest.raises(OptionError, match="delta"):
        poon_domingos((4, 4), delta=delta)  # type: ignore[arg-type]


# ---- random binary trees, linear trees, fully factorized ---------------------------------


def test_random_binary_tree_is_deterministic_given_the_seed() -> None:
    first = random_binary_tree(16, num_repetitions=2, seed=7)
    again = random_binary_tree(16, num_repetitions=2, seed=7)
    other = random_binary_tree(16, num_repetitions=2, seed=8)
    assert structure(first) == structure(again)
    assert structure(first) != structure(other)


def test_random_binary_tree_shape() -> None:
    graph = random_binary_tree(8, num_repetitions=2)
    # Each full-depth tree over 8 variables has 7 partitions and 14 non-root regions.
    assert (len(graph.regions), len(graph.partitions)) == (1 + 2 * 14, 2 * 7)
    assert len(graph.partition_inputs(graph.outputs[0])) == 2
    assert sorted(len(r.scope) for r in graph.inputs) == [1] * 16
    assert all(len(graph.region_inputs(p)) == 2 for p in graph.partitions)
    shallow = random_binary_tree(10, depth=1)
    assert sorted(len(r.scope) for r in shallow.inputs) == [5, 5]
    odd = random_binary_tree(5, depth=1)
    assert [len(r.scope) for r in odd.inputs] == [2, 3]  # round(5 / 2) = 2 goes first


def test_random_binary_tree_rejects_bad_depth() -> None:
    with pytest.raises(OptionError, match="between 0 and 3"):
        random_binary_tree(8, depth=4)
    with pytest.raises(OptionError, match="num_variables must be a positive integer"):
        random_binary_tree(0)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "7", None])
def test_random_binary_tree_and_linear_tree_reject_bad_seeds(seed: object) -> None:
    with pytest.raises(OptionError, match=r"random_binary_tree seed must be an integer in 0\.\."):
        random_binary_tree(4, seed=seed)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"linear_tree seed must be an integer in 0\.\."):
        linear_tree(4, randomize=True, seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ordering, message",
    [
        (3, "must be a list of variable ids, got 3"),
        ("012", "must be a list of variable ids"),
        (["a", "b", "c"], "must hold integer variable ids, got 'a'"),
        ([0.0, 1.0, 2.0], "must hold integer variable ids, got 0.0"),
        ([0, 0, 1], r"must be a permutation of 0\.\.2, got \[0, 0, 1\]"),
    ],
)
def test_linear_tree_rejects_bad_orderings(ordering: object, message: str) -> None:
    with pytest.raises(OptionError, match="linear_tree ordering " + message):
        linear_tree(3, ordering=ordering)  # type: ignore[arg-type]


def test_linear_tree_rejects_a_non_bool_randomize() -> None:
    with pytest.raises(OptionError, match="randomize must be True or False, got 'yes'"):
        linear_tree(3, randomize="yes")  # type: ignore[arg-type]


def test_linear_tree_by_hand() -> None:
    graph = linear_tree(3)
    assert region_texts(graph) == ["0 1 2", "0", "1 2", "1", "2"]
    assert partition_texts(graph) == ["0 1 2 = 0 | 1 2", "1 2 = 1 | 2"]
    reordered = linear_tree(3, ordering=[2, 0, 1])
    assert partition_texts(reordered) == ["0 1 2 = 2 | 0 1", "0 1 = 0 | 1"]


def test_linear_tree_randomized_repetitions() -> None:
    graph = linear_tree(5, num_repetitions=3, randomize=True, seed=1)
    assert len(graph.partition_inputs(graph.outputs[0])) == 3
    assert len(graph.partitions) == 3 * 4
    assert structure(graph) == structure(linear_tree(5, 3, randomize=True, seed=1))
    with pytest.raises(OptionError, match="permutation"):
        linear_tree(3, ordering=[0, 0, 1])


def test_fully_factorized_by_hand() -> None:
    graph = fully_factorized(3, num_repetitions=2)
    assert region_texts(graph) == ["0 1 2", "0", "1", "2", "0", "1", "2"]
    assert partition_texts(graph) == ["0 1 2 = 0 | 1 | 2"] * 2
    single = fully_factorized(1)
    assert region_texts(single) == ["0"] and single.partitions == ()


# ---- chow-liu trees -----------------------------------------------------------------------


def _markov_chain(order: list[int], samples: int, flip: float, seed: int) -> np.ndarray:
    """Binary data where each variable in `order` copies the previous one, flipped rarely."""
    rng = np.random.default_rng(seed)
    data = np.zeros((samples, len(order)), dtype=np.int64)
    data[:, order[0]] = rng.integers(0, 2, samples)
    for previous, variable in zip(order, order[1:], strict=False):
        flips = rng.random(samples) < flip
        data[:, variable] = np.where(flips, 1 - data[:, previous], data[:, previous])
    return data


def _edges(parents: np.ndarray) -> set[frozenset[int]]:
    return {frozenset((v, int(p))) for v, p in enumerate(parents) if p >= 0}


def test_chow_liu_recovers_a_chain() -> None:
    order = [3, 0, 5, 1, 4, 2]
    data = _markov_chain(order, samples=3000, flip=0.1, seed=0)
    parents = chow_liu_tree(data, as_region_graph=False, root=3)
    assert isinstance(parents, np.ndarray)
    assert parents.tolist() == [3, 5, 4, -1, 1, 0]  # each variable's predecessor in the chain
    assert _edges(parents) == {frozenset(e) for e in zip(order, order[1:], strict=False)}
    # Without a root, the middle of the chain is chosen (the nearest to every end).
    centered = chow_liu_tree(torch.tensor(data), as_region_graph=False)
    assert int(np.flatnonzero(centered == -1)[0]) in (5, 1)
    assert _edges(centered) == _edges(parents)


def test_chow_liu_gaussian_recovers_a_star() -> None:
    rng = np.random.default_rng(1)
    hub = rng.normal(size=2000)
    data = np.stack([hub + 0.3 * rng.normal(size=2000) for _ in range(4)], axis=1)
    data = np.concatenate([data[:, :2], hub[:, None], data[:, 2:]], axis=1)  # hub is variable 2
    parents = chow_liu_tree(torch.tensor(data), input_type="gaussian", as_region_graph=False)
    assert parents.tolist() == [2, 2, -1, 2, 2]


def test_chow_liu_region_graph() -> None:
    data = _markov_chain([0, 1, 2], samples=2000, flip=0.05, seed=2)
    graph = chow_liu_tree(data, root=0)
    assert isinstance(graph, RegionGraph)
    # Chain 0 -> 1 -> 2: partitions {0 1 2} = {0} | {1 2} and {1 2} = {1} | {2}.
    assert partition_texts(graph) == ["0 1 2 = 0 | 1 2", "1 2 = 1 | 2"]
    assert [text(r.scope) for r in graph.outputs] == ["0 1 2"]


def test_tree_to_region_graph_by_hand() -> None:
    # 0 is the root with children 1 and 2; 3 is a child of 1.
    graph = tree_to_region_graph([-1, 0, 0, 1])
    assert region_texts(graph) == ["0", "0 1 2 3", "1", "1 3", "2", "3"]
    assert partition_texts(graph) == ["0 1 2 3 = 0 | 1 3 | 2", "1 3 = 1 | 3"]
    assert [text(r.scope) for r in graph.outputs] == ["0 1 2 3"]
    assert isinstance(graph.nodes[0], PartitionNode) and isinstance(graph.nodes[1], PartitionNode)
    with pytest.raises(StructureError, match="cycle"):
        tree_to_region_graph([1, 0, -1])


def test_chow_liu_rejects_bad_arguments() -> None:
    data = np.zeros((4, 3), dtype=np.int64)
    with pytest.raises(OptionError, match="input_type 'poisson'"):
        chow_liu_tree(data, input_type="poisson")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="root"):
        chow_liu_tree(data, root=3)
    with pytest.raises(InputError, match="non-negative integers"):
        chow_liu_tree(data - 1)
    with pytest.raises(InputError, match=r"\(N, D\) matrix"):
        chow_liu_tree(np.zeros(5))


@pytest.mark.parametrize(
    "parents, message",
    [
        (None, "must be a list of variable ids, got None"),
        (["a"], "must hold integer variable ids, got 'a'"),
        ([-1, 0.5], "must hold integer variable ids, got 0.5"),
    ],
)
def test_tree_to_region_graph_rejects_non_integer_parents(parents: object, message: str) -> None:
    with pytest.raises(OptionError, match="tree_to_region_graph parents " + message):
        tree_to_region_graph(parents)  # type: ignore[arg-type]
    assert tree_to_region_graph(np.array([-1, 0])).num_variables == 2  # NumPy ints are fine


# ---- every algorithm ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_is_smooth_decomposable_and_ordered(name: str) -> None:
    graph = ALGORITHMS[name]()
    assert graph.is_smooth
    assert graph.is_decomposable
    seen: set[object] = set()
    for node in graph.topological_ordering():
        assert all(input_node in seen for input_node in graph.node_inputs(node))
        seen.add(node)
    assert len(seen) == len(graph.nodes)
    assert all(not graph.node_inputs(r) for r in graph.inputs)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_round_trips_through_json(name: str, tmp_path) -> None:
    graph = ALGORITHMS[name]()
    assert structure(RegionGraph.from_json(graph.to_json())) == structure(graph)
    path = tmp_path / "graph.json"
    graph.save(path)
    assert structure(RegionGraph.load(path)) == structure(graph)


def test_structured_decomposability_by_algorithm() -> None:
    assert quad_tree((4, 4), 2).is_structured_decomposable
    assert linear_tree(4).is_structured_decomposable
    assert not poon_domingos((2, 2), delta=1).is_structured_decomposable
    assert not linear_tree(4, num_repetitions=2, randomize=True).is_structured_decomposable


# ---- the graph itself ---------------------------------------------------------------------


def small_graph() -> tuple[list[RegionNode], list[PartitionNode], RegionGraph]:
    """{0 1 2} = {0} | {1 2}, and {1 2} = {1} | {2}."""
    r012, r0, r12, r1, r2 = (RegionNode(s) for s in ([0, 1, 2], [0], [1, 2], [1], [2]))
    p012, p12 = PartitionNode([0, 1, 2]), PartitionNode([1, 2])
    graph = RegionGraph(
        [r012, p012, r0, r12, p12, r1, r2],
        {r012: [p012], p012: [r0, r12], r12: [p12], p12: [r1, r2]},
        [r012],
    )
    return [r012, r0, r12, r1, r2], [p012, p12], graph


def test_graph_accessors() -> None:
    (r012, r0, r12, r1, r2), (p012, p12), graph = small_graph()
    assert graph.regions == (r012, r0, r12, r1, r2)
    assert graph.partitions == (p012, p12)
    assert graph.inputs == (r0, r1, r2)
    assert graph.outputs == (r012,)
    assert graph.region_inputs(p012) == [r0, r12]
    assert graph.partition_inputs(r012) == [p012]
    assert graph.partition_inputs(r0) == []
    assert graph.node_inputs(p12) == [r1, r2]
    assert graph.node_outputs(r12) == [p012]
    assert graph.node_outputs(r012) == []
    assert graph.partition_output(p12) is r12
    assert graph.scope == Scope([0, 1, 2]) and graph.num_variables == 3
    assert graph.topological_ordering() == [r0, r1, r2, p12, r12, p012, r012]
    with pytest.raises(StructureError, match="is not a PartitionNode of this region graph"):
        graph.region_inputs(r0)  # type: ignore[arg-type]
    with pytest.raises(StructureError, match="is not a RegionNode"):
        graph.partition_inputs(RegionNode([0]))


def test_topological_ordering_of_quad_tree_2x2() -> None:
    graph = quad_tree((2, 2), 2)
    names = [
        ("p" if isinstance(n, PartitionNode) else "r") + text(n.scope).replace(" ", "")
        for n in graph.topological_ordering()
    ]
    assert names == ["r0", "r1", "r2", "r3", "p01", "p23", "r01", "r23", "p0123", "r0123"]


def test_nodes_compare_by_identity() -> None:
    assert RegionNode([0, 1]) != RegionNode([0, 1])
    assert RegionNode([1, 0]).scope == Scope([0, 1])
    assert repr(PartitionNode([2, 0])) == "PartitionNode({0, 2})"
    with pytest.raises(StructureError, match="non-empty scope"):
        RegionNode([])


# ---- validity errors, one per rule --------------------------------------------------------


def test_partition_input_must_be_a_region() -> None:
    root, inner = PartitionNode([0, 1]), PartitionNode([0, 1])
    region = RegionNode([0, 1])
    with pytest.raises(
        StructureError, match=r"partition .* has input PartitionNode.*must be regions"
    ):
        RegionGraph([region, root, inner], {region: [root], root: [inner]}, [region])


def test_region_input_must_be_a_partition() -> None:
    region, leaf = RegionNode([0]), RegionNode([0])
    with pytest.raises(StructureError, match=r"region .* has input RegionNode.*must be partitions"):
        RegionGraph([region, leaf], {region: [leaf]}, [region])


def test_partition_inputs_must_be_disjoint() -> None:
    root, part = RegionNode([0, 1, 2]), PartitionNode([0, 1, 2])
    left, right = RegionNode([0, 1]), RegionNode([1, 2])
    with pytest.raises(StructureError, match=r"overlap on variables \[1\]"):
        RegionGraph([root, part, left, right], {root: [part], part: [left, right]}, [root])


def test_partition_inputs_must_cover_its_scope() -> None:
    root, part = RegionNode([0, 1, 2]), PartitionNode([0, 1, 2])
    left, right = RegionNode([0]), RegionNode([1])
    with pytest.raises(StructureError, match=r"cover Scope\(\{0, 1\}\) instead"):
        RegionGraph([root, part, left, right], {root: [part], part: [left, right]}, [root])


def test_region_partitions_must_share_its_scope() -> None:
    root, part = RegionNode([0, 1, 2]), PartitionNode([0, 1])
    left, right = RegionNode([0]), RegionNode([1])
    with pytest.raises(StructureError, match="over a different scope"):
        RegionGraph([root, part, left, right], {root: [part], part: [left, right]}, [root])


def test_graph_must_be_acyclic() -> None:
    region, part = RegionNode([0, 1]), PartitionNode([0, 1])
    with pytest.raises(StructureError, match=r"cycle through"):
        RegionGraph([region, part], {region: [part], part: [region]}, [region])


def test_leaves_must_be_regions() -> None:
    region, part = RegionNode([0]), PartitionNode([0])
    with pytest.raises(StructureError, match="has no inputs, but leaves must be regions"):
        RegionGraph([region, part], {region: [part]}, [region])


def test_outputs_must_exist() -> None:
    region = RegionNode([0])
    with pytest.raises(StructureError, match="is not in nodes"):
        RegionGraph([region], {}, [RegionNode([0])])
    with pytest.raises(StructureError, match="at least one output"):
        RegionGraph([region], {}, [])


def test_outputs_must_be_regions() -> None:
    region, part, leaf = RegionNode([0]), PartitionNode([0]), RegionNode([0])
    with pytest.raises(StructureError, match="outputs must be regions"):
        RegionGraph([region, part, leaf], {region: [part], part: [leaf]}, [part])  # type: ignore[list-item]


def test_partition_must_feed_exactly_one_region() -> None:
    first, second, part, leaf = (
        RegionNode([0]),
        RegionNode([0]),
        PartitionNode([0]),
        RegionNode([0]),
    )
    with pytest.raises(StructureError, match="feeds 2 regions"):
        RegionGraph(
            [first, second, part, leaf],
            {first: [part], second: [part], part: [leaf]},
            [first, second],
        )


def test_unused_regions_must_be_outputs() -> None:
    root, stray = RegionNode([0]), RegionNode([1])
    with pytest.raises(StructureError, match=r"RegionNode\(\{1\}\) feeds no partition"):
        RegionGraph([root, stray], {}, [root])


def test_nodes_listed_once_and_known() -> None:
    region = RegionNode([0])
    with pytest.raises(StructureError, match="listed twice"):
        RegionGraph([region, region], {}, [region])
    with pytest.raises(StructureError, match="not in nodes"):
        RegionGraph([region], {region: [PartitionNode([0])]}, [region])


def test_region_graph_arguments_must_be_collections() -> None:
    region = RegionNode([0])
    with pytest.raises(OptionError, match=r"outputs must be a list of nodes, .*wrap it in a list"):
        RegionGraph([region], {}, region)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="in_nodes must map each node"):
        RegionGraph([region], [(region, [])], [region])  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"in_nodes\[RegionNode\(\{0\}\)\] must be a list"):
        RegionGraph([region], {region: None}, [region])  # type: ignore[dict-item]
    with pytest.raises(OptionError, match="nodes must be a list of nodes"):
        RegionGraph(region, {}, [region])  # type: ignore[arg-type]


@pytest.mark.parametrize("variables", ["01", None, 3, ["a"], [-1]])
def test_region_scopes_must_be_variable_ids(variables: object) -> None:
    with pytest.raises(StructureError, match="scope is a collection of variable ids|non-negative"):
        RegionNode(variables)  # type: ignore[arg-type]


def test_from_json_rejects_what_is_not_json_text() -> None:
    with pytest.raises(StructureError, match="JSON text or its parsed dict, got int"):
        RegionGraph.from_json(3)  # type: ignore[arg-type]


# ---- serialization details ----------------------------------------------------------------


def test_json_format_is_documented_shape() -> None:
    _, _, graph = small_graph()
    assert json.loads(graph.to_json()) == {
        "format": "cirkit-ir/region-graph",
        "version": 1,
        "regions": [[0, 1, 2], [0], [1, 2], [1], [2]],
        "partitions": [{"output": 0, "inputs": [1, 2]}, {"output": 2, "inputs": [3, 4]}],
        "outputs": [0],
    }


def test_json_keeps_a_regions_partition_order() -> None:
    # The root lists its partitions in the opposite order from the node list.
    root, r0, r1 = RegionNode([0, 1]), RegionNode([0]), RegionNode([1])
    first, second = PartitionNode([0, 1]), PartitionNode([0, 1])
    graph = RegionGraph(
        [root, first, second, r0, r1],
        {root: [second, first], first: [r0, r1], second: [r1, r0]},
        [root],
    )
    loaded = RegionGraph.from_json(graph.to_json())
    # The list of partitions is reordered within the root's partitions to follow the root.
    assert partition_texts(loaded) == ["0 1 = 1 | 0", "0 1 = 0 | 1"]
    splits = [
        [text(r.scope) for r in loaded.region_inputs(p)]
        for p in loaded.partition_inputs(loaded.outputs[0])
    ]
    assert splits == [["1", "0"], ["0", "1"]]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"format": "other", "version": 1}, "not a region graph document"),
        ({"format": "cirkit-ir/region-graph", "version": 9}, "unsupported .* version 9"),
        (
            {
                "format": "cirkit-ir/region-graph",
                "version": 1,
                "regions": [[0]],
                "partitions": [],
                "outputs": [3],
            },
            "refers to region 3, but there are only 1",
        ),
        (
            {
                "format": "cirkit-ir/region-graph",
                "version": 1,
                "regions": [[-1]],
                "partitions": [],
                "outputs": [0],
            },
            r"regions\[0\] must be a list of non-negative integers",
        ),
    ],
)
def test_json_errors(document: dict[str, object], message: str) -> None:
    with pytest.raises(StructureError, match=message):
        RegionGraph.from_json(document)
    with pytest.raises(StructureError, match="does not parse"):
        RegionGraph.from_json("{not json")


# ---- drawing ------------------------------------------------------------------------------


def test_to_dot_has_one_node_per_region_and_partition() -> None:
    graph = quad_graph((3, 3))
    dot = graph.to_dot()
    assert dot.startswith("digraph RegionGraph {") and dot.rstrip().endswith("}")
    assert dot.count("shape=box") == len(graph.regions) == 21
    assert dot.count("shape=circle") == len(graph.partitions) == 14
    assert dot.count("->") == sum(len(graph.node_inputs(n)) for n in graph.nodes)
    assert 'r0 [shape=box, label="{0}"]' in dot
    assert "peripheries=2" in dot  # the output is marked


def test_render_without_graphviz_raises_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="install Graphviz"):
        quad_tree((2, 2)).render(tmp_path / "graph.svg")
    with pytest.raises(OptionError, match="'bmp'"):
        quad_tree((2, 2)).render(tmp_path / "graph.bmp")
    quad_tree((2, 2)).render(tmp_path / "graph.dot")
    assert (tmp_path / "graph.dot").read_text(encoding="utf-8") == quad_tree((2, 2)).to_dot()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_render_with_graphviz(tmp_path) -> None:
    quad_tree((2, 2)).render(tmp_path / "graph.svg")
    assert "<svg" in (tmp_path / "graph.svg").read_text(encoding="utf-8")
