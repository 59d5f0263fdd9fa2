"""`differentiate{variables=...}`: the mixed partial derivative of the circuit in some
(default: all) continuous variables, once each.

In a smooth and decomposable circuit every monomial holds exactly one input function of each
variable, so the circuit is linear in the inputs over any one variable: its derivative in
that variable replaces each of those inputs by its derivative. The derivative of an input op
is its rule in a registry keyed by op class (`derivative_rule`): an op with the same
parameter slots, which reads the same parameters. Inputs without a rule (discrete ones) are
refused with a `PropertyError`.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from cirkit_ir.errors import PropertyError
from cirkit_ir.ir import ops
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import InputOp
from cirkit_ir.passes.input_rewrite import copy_param_edges, replace_input_folds, sub_location
from cirkit_ir.passes.integrate import (
    check_smooth_decomposable,
    check_variables,
    input_nodes,
    lookup_rule,
    touched_folds,
)
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass

DerivativeRule = Callable[[InputOp], InputOp]
"""An input op -> the op computing its derivative, reading the same parameter slots."""

_DERIVATIVES: dict[type, DerivativeRule] = {}


def derivative_rule(*op_classes: type[InputOp]) -> Callable[[DerivativeRule], DerivativeRule]:
    """Registers the derivative of input ops of `op_classes` (and their subclasses)."""

    def register(rule: DerivativeRule) -> DerivativeRule:
        for cls in op_classes:
            _DERIVATIVES[cls] = rule
        return rule

    return register


@derivative_rule(ops.GaussianOp)
def _gaussian(op: InputOp) -> InputOp:
    if op.num_channels != 1:
        raise PropertyError(
            f"differentiate: a gaussian over {op.num_channels} channels has a gradient, not"
            " one derivative; differentiate single-channel circuits"
        )
    return ops.GaussianDerivativeOp(
        op.variables, op.num_channels, op.num_units, semiring=op.semiring
    )


@register_pass("differentiate")
@attrs.frozen
class Differentiate(Pass):
    """Differentiates once in each of `variables` (all variables when none are given)."""

    variables: tuple[int, ...] | None = None

    def run(self, graph: Graph, context: PassContext) -> bool:
        chosen = check_variables(graph, self.variables, "differentiate")
        check_smooth_decomposable(graph, "differentiate")
        plans = []
        for node in input_nodes(graph):
            op = graph.op(node)
            assert isinstance(op, InputOp)
            folds = touched_folds(op, chosen)
            if folds:
                rule = lookup_rule(
                    _DERIVATIVES,
                    op,
                    "derivative (only continuous inputs such as gaussians have one)",
                    "differentiate in continuous variables only, or register a rule with"
                    " passes.derivative_rule",
                )
                inner = op.folded([(op, f) for f in folds])
                plans.append((node, folds, rule(inner)))  # type: ignore[arg-type]
        for node, folds, derivative in plans:
            replace_input_folds(graph, node, folds, _op_of(derivative))
            context.statistics["input folds differentiated"] += len(folds)
        return bool(plans)


def _op_of(derivative: InputOp):
    def build(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
        new = graph.add_op(derivative, location=sub_location(graph, node, folds))
        copy_param_edges(graph, node, new, folds)
        return new

    return build
