"""Chow-Liu trees learned from data, and their hierarchical region graphs (HCLTs).

See Chow and Liu, "Approximating discrete probability distributions with dependence trees",
IEEE Trans. Information Theory 1968, and Liu and Van den Broeck, "Tractable regularization of
probabilistic circuits", NeurIPS 2021, for turning the tree into a region graph.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import networkx as nx
import numpy as np

from cirkit_ir.errors import InputError, OptionError, StructureError
from cirkit_ir.region_graph.algorithms._builder import GraphBuilder
from cirkit_ir.region_graph.algorithms._checks import variable_list
from cirkit_ir.region_graph.graph import RegionGraph
from cirkit_ir.region_graph.nodes import PartitionNode, RegionNode
from cirkit_ir.symbolic.scope import Scope

INPUT_TYPES = ("categorical", "gaussian")

SMOOTHING = 0.01
"""Laplace pseudo-count added to every joint cell when estimating categorical MI."""


def chow_liu_tree(
    data: Any,
    input_type: Literal["categorical", "gaussian"] = "categorical",
    num_categories: int | None = None,
    as_region_graph: bool = True,
    root: int | None = None,
) -> RegionGraph | np.ndarray:
    """Learn the maximum-mutual-information spanning tree over the columns of `data`.

    Args:
        data: an (N, D) NumPy array or torch tensor, one row per sample.
        input_type: "categorical" (non-negative integer values; smoothed empirical MI) or
            "gaussian" (real values; MI of a bivariate Gaussian, -log(1 - rho^2) / 2).
        num_categories: the number of categories; None takes the largest value plus one.
        as_region_graph: return the HCLT region graph (see `tree_to_region_graph`); else the
            tree as an int64 array of parents, -1 at the root.
        root: the variable to root the tree at; None picks the one whose farthest variable
            is nearest, with edges weighted by MI + 1 (ties go to the lowest id).

    Raises:
        OptionError: an unknown input type, or a bad num_categories or root.
        InputError: data that is not a non-empty matrix of the right kind of values.
    """
    matrix = _as_matrix(data)
    num_variables = matrix.shape[1]
    if input_type == "categorical":
        mutual_info = categorical_mutual_information(matrix, num_categories)
    elif input_type == "gaussian":
        mutual_info = gaussian_mutual_information(matrix)
    else:
        raise OptionError.choose("chow_liu_tree input_type", input_type, INPUT_TYPES)
    if root is not None and (
        isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < num_variables
    ):
        raise OptionError(
            f"chow_liu_tree root must be a variable id in 0..{num_variables - 1}, got {root!r}"
        )
    parents = _spanning_tree_parents(mutual_info, root)
    return tree_to_region_graph(parents) if as_region_graph else parents


def categorical_mutual_information(
    data: np.ndarray, num_categories: int | None = None
) -> np.ndarray:
    """The (D, D) matrix of smoothed empirical mutual information, zero on the diagonal.

    Joint tables get `SMOOTHING` per cell and marginals `SMOOTHING * K` per category, both
    normalised by N + K^2 * SMOOTHING, so the marginals stay those of the joints.
    """
    if not np.all(np.isfinite(data)) or np.any(data < 0) or np.any(data != np.floor(data)):
        raise InputError("categorical chow_liu_tree data must hold non-negative integers")
    values = data.astype(np.int64)
    largest = int(values.max()) if values.size else 0
    if num_categories is None:
        num_categories = largest + 1
    elif (
        isinstance(num_categories, bool)
        or not isinstance(num_categories, int)
        or (num_categories <= largest)
    ):
        raise OptionError(
            f"chow_liu_tree num_categories must be an integer above the largest value "
            f"{largest}, got {num_categories!r}"
        )
    num_samples, num_variables = values.shape
    k = num_categories
    joint_counts = np.zeros((num_variables * k, num_variables * k))
    for start in range(0, num_samples, 4096):
        chunk = values[start : start + 4096]
        one_hot = np.zeros((chunk.shape[0], num_variables, k))
        np.put_along_axis(one_hot, chunk[:, :, None], 1.0, axis=2)
        flat = one_hot.reshape(chunk.shape[0], num_variables * k)
        joint_counts += flat.T @ flat
    counts = joint_counts.reshape(num_variables, k, num_variables, k).transpose(0, 2, 1, 3)
    total = num_samples + k * k * SMOOTHING
    diagonal = np.arange(num_variables)
    marginals = (counts[diagonal, diagonal][:, np.arange(k), np.arange(k)] + k * SMOOTHING) / total
    joints = (counts + SMOOTHING) / total
    joints[diagonal, diagonal] = marginals[:, :, None] * np.eye(k)
    outers = marginals[:, None, :, None] * marginals[None, :, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joints > 0, joints * (np.log(joints) - np.log(outers)), 0.0)
    mutual_info = terms.sum(axis=(2, 3))
    np.fill_diagonal(mutual_info, 0.0)
    return mutual_info


def gaussian_mutual_information(data: np.ndarray) -> np.ndarray:
    """The (D, D) mutual information of jointly Gaussian columns, zero on the diagonal."""
    if data.shape[0] < 2:
        raise InputError("gaussian chow_liu_tree data needs at least two samples")
    if not np.all(np.isfinite(data)):
        raise InputError("gaussian chow_liu_tree data must be finite")
    values = data.astype(np.float64)
    centered = values - values.mean(axis=0)
    covariance = centered.T @ centered
    variance = np.diag(covariance)
    inv_std = np.where(variance > 0, 1.0 / np.sqrt(np.where(variance > 0, variance, 1.0)), 0.0)
    correlation = covariance * inv_std[:, None] * inv_std[None, :]
    squared = np.minimum(correlation**2, 1.0 - np.finfo(np.float64).eps)
    mutual_info = -0.5 * np.log1p(-squared)
    np.fill_diagonal(mutual_info, 0.0)
    return mutual_info


def tree_to_region_graph(parents: Sequence[int] | np.ndarray) -> RegionGraph:
    """The region graph of a rooted tree (HCLT), built as cirkit's tree2rg builds it.

    Every variable is a leaf region. A variable v with children gets a partition, and a region
    over it, with scope v plus all its descendants; the partition's inputs are v's leaf region
    and each child's region (its own region if it has children, else its leaf), in increasing
    variable order. Node order: the partitions by variable, then per variable its leaf region
    followed by its region. The outputs are the roots' regions (several for a forest).

    Args:
        parents: parents[v] is the parent of variable v, or -1 for a root.

    Raises:
        OptionError: `parents` is not a list of integers.
        StructureError: a parent that is not a variable, or a cycle.
    """
    parent = variable_list(parents, "tree_to_region_graph parents")
    num_variables = len(parent)
    if num_variables == 0:
        raise StructureError("a tree needs at least one variable")
    children: list[list[int]] = [[] for _ in range(num_variables)]
    for v, p in enumerate(parent):
        if not -1 <= p < num_variables or p == v:
            raise StructureError(f"variable {v} has parent {p}, which is not another variable")
        if p >= 0:
            children[p].append(v)
    roots = [v for v, p in enumerate(parent) if p == -1]
    reached = _descendants_first(roots, children)
    if len(reached) != num_variables:
        raise StructureError("the parents array has a cycle; every variable must reach a root")

    subtree: list[Scope] = [Scope([v]) for v in range(num_variables)]
    for v in reached:  # Children come before parents here.
        subtree[v] = Scope.union(subtree[v], *(subtree[c] for c in children[v]))
    builder = GraphBuilder()
    partitions = {v: PartitionNode(subtree[v]) for v in range(num_variables) if children[v]}
    builder.nodes.extend(partitions.values())
    leaves: list[RegionNode] = []
    regions: list[RegionNode] = []
    for v in range(num_variables):
        leaves.append(builder.region([v]))
        regions.append(builder.region(subtree[v]) if children[v] else leaves[v])
    for v, partition in partitions.items():
        builder.in_nodes[regions[v]] = [partition]
        builder.in_nodes[partition] = [
            leaves[v] if u == v else regions[u] for u in sorted([v, *children[v]])
        ]
    return builder.build([regions[r] for r in roots])


def _descendants_first(roots: list[int], children: list[list[int]]) -> list[int]:
    """Every variable reachable from the roots, each after all of its descendants."""
    order: list[int] = []
    queue = deque(roots)
    while queue:
        v = queue.popleft()
        order.append(v)
        queue.extend(children[v])
    return order[::-1]


def _spanning_tree_parents(mutual_info: np.ndarray, root: int | None) -> np.ndarray:
    num_variables = mutual_info.shape[0]
    graph = nx.Graph()
    graph.add_nodes_from(range(num_variables))
    for i in range(num_variables):
        for j in range(i + 1, num_variables):
            # The shift keeps weights positive, as the distances used to pick the root need.
            graph.add_edge(i, j, weight=float(mutual_info[i, j]) + 1.0)
    tree = nx.maximum_spanning_tree(graph, algorithm="kruskal")
    if root is None:
        farthest = [
            max(nx.single_source_dijkstra_path_length(tree, v, weight="weight").values())
            for v in range(num_variables)
        ]
        root = int(np.argmin(farthest))
    parents = np.full(num_variables, -1, dtype=np.int64)
    for parent, child in nx.bfs_edges(tree, root):
        parents[child] = parent
    return parents


def _as_matrix(data: Any) -> np.ndarray:
    if hasattr(data, "detach") and hasattr(data, "cpu"):
        data = data.detach().cpu().numpy()
    matrix = np.asarray(data)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(
            f"chow_liu_tree data must be an (N, D) matrix with N, D >= 1, got shape {matrix.shape}"
        )
    if not (np.issubdtype(matrix.dtype, np.integer) or np.issubdtype(matrix.dtype, np.floating)):
        raise InputError(f"chow_liu_tree data must hold numbers, got dtype {matrix.dtype}")
    return matrix
