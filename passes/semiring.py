"""`lower-semiring`: say how every circuit op computes (sum-product, lse-sum, complex-lse-sum).

Besides tagging ops, lowering to a log semiring makes categorical inputs read log-probabilities
(a `log` op after their `probs` parameter, `param='log_probs'`), so that `fuse` can turn
log(softmax) into a stable log-softmax. Lowering back to sum-product undoes that exactly
(dropping the `log`, or turning the fused log-softmax back into a softmax), so re-lowering a
graph to another semiring is always possible.
"""

from __future__ import annotations

import enum

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import (
    CategoricalOp,
    CircuitOp,
    EvidenceOp,
    ExpOp,
    LogOp,
    LogSoftmaxOp,
    SoftmaxOp,
)
from passes.edges import slot_edges, through
from passes.pass_base import Pass
from passes.registry import register_pass


class Semiring(str, enum.Enum):
    """How sums and products compute: on values, on logs, or on complex logs."""

    SUM_PRODUCT = "sum-product"
    LSE_SUM = "lse-sum"
    COMPLEX_LSE_SUM = "complex-lse-sum"

    @property
    def is_log(self) -> bool:
        """Values are logs: inputs should hand over log-probabilities."""
        return self is not Semiring.SUM_PRODUCT

    def __str__(self) -> str:
        return self.value


def as_semiring(value: object) -> Semiring:
    """A `Semiring` from itself or its name; OptionError listing the names otherwise."""
    if isinstance(value, Semiring):
        return value
    for semiring in Semiring:
        if value == semiring.value:
            return semiring
    raise OptionError.choose("semiring", value, [s.value for s in Semiring])


@register_pass("lower-semiring")
@attrs.frozen
class LowerSemiring(Pass):
    """Sets `semiring` on every circuit op; log semirings make categoricals read log-probs."""

    semiring: Semiring = attrs.field(default=Semiring.LSE_SUM, converter=as_semiring)

    def apply(self, graph: Graph) -> bool:
        value = self.semiring.value
        log = self.semiring.is_log
        changed = False
        for node, data in list(graph.nx._node.items()):
            op = data["op"]
            if not isinstance(op, CircuitOp):
                continue
            new = op if op.semiring == value else op.replace(semiring=value)
            new = _categorical_space(graph, node, new, log)
            if new is not op:
                graph.replace_op(node, new)
                changed = True
        return changed


def _categorical_space(graph: Graph, node: int, op: CircuitOp, log: bool) -> CircuitOp:
    """`op` reading log-probabilities (log) or probabilities (not log), rewiring its slot."""
    dist = op.distribution if isinstance(op, EvidenceOp) else op
    if not isinstance(dist, CategoricalOp):
        return op
    if log and dist.param == "probs":
        _to_log(graph, node, op.param_shapes()["probs"])
        dist = dist.replace(param="log_probs")
    elif not log and dist.param == "log_probs":
        _to_linear(graph, node, op.param_shapes()["log_probs"])
        dist = dist.replace(param="probs")
    else:
        return op
    return op.replace(distribution=dist) if isinstance(op, EvidenceOp) else dist


def _to_log(graph: Graph, node: int, shape: tuple[int, ...]) -> None:
    edges = slot_edges(graph, node, "probs")
    log = graph.add_op(LogOp(shape=shape))
    for producer, fold_map in edges:
        graph.disconnect(producer, node, "probs")
        graph.connect(producer, log, 0, fold_map)
    graph.connect(log, node, "log_probs", FoldMap.identity(shape[0]))


def _to_linear(graph: Graph, node: int, shape: tuple[int, ...]) -> None:
    """Undoes `_to_log` (and its fused form) where it can, else inserts an `exp`."""
    edges = slot_edges(graph, node, "log_probs")
    for producer, _ in edges:
        graph.disconnect(producer, node, "log_probs")
    if len(edges) == 1 and _unused(graph, edges[0][0]):
        producer, fold_map = edges[0]
        op = graph.op(producer)
        if isinstance(op, LogOp):
            for source, composed in through(slot_edges(graph, producer, 0), fold_map):
                graph.connect(source, node, "probs", composed)
            graph.erase(producer)
            return
        if isinstance(op, LogSoftmaxOp):
            graph.replace_op(producer, SoftmaxOp(axis=op.axis, shape=op.shape))
            graph.connect(producer, node, "probs", fold_map)
            return
    exp = graph.add_op(ExpOp(shape=shape))
    for producer, fold_map in edges:
        graph.connect(producer, exp, 0, fold_map)
    graph.connect(exp, node, "probs", FoldMap.identity(shape[0]))


def _unused(graph: Graph, node: int) -> bool:
    """No edge reads `node` any more (its one use was just disconnected), nor an output."""
    return not graph.nx._succ[node] and not graph.is_output(node)
