"""`integrate{variables=...}`: the circuit with some (default: all) variables summed or
integrated out.

In a smooth and decomposable circuit every monomial holds exactly one input function of each
variable, so integrating a variable out replaces each input over it by its integral: a
constant per unit. The pass does just that: the input folds over integrated variables become
a `constant` op whose value is built from the input's own parameters by parameter ops (so the
integrated circuit trains the same tensors), computed in the graph's semiring by the
constant's kernel.

An op's integral is its rule in a registry keyed by op class (`integral_rule`), so a user's
input op registers its own beside its declaration, exactly like the built-in ones below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from cirkit_ir.errors import OptionError, PropertyError
from cirkit_ir.ir import ops
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import ConstantOp, InputOp, ParamOp, TensorOp
from cirkit_ir.passes.input_rewrite import (
    replace_input_folds,
    restrict,
    sub_location,
)
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass
from cirkit_ir.symbolic.initializers import ConstantInitializer

IntegralRule = Callable[[Graph, int, tuple[int, ...]], int]
"""(graph, input node, folds) -> a parameter node of shape (len(folds), units): the integral
of each of those folds of the input, per unit, in linear space."""

_INTEGRALS: dict[type, IntegralRule] = {}


def integral_rule(*op_classes: type[InputOp]) -> Callable[[IntegralRule], IntegralRule]:
    """Registers the integral of input ops of `op_classes` (and their subclasses)."""

    def register(rule: IntegralRule) -> IntegralRule:
        for cls in op_classes:
            _INTEGRALS[cls] = rule
        return rule

    return register


def lookup_rule(rules: dict[type, Any], op: object, what: str, hint: str) -> Any:
    """The rule for `op`'s class or its nearest registered base; `PropertyError` if none."""
    for cls in type(op).__mro__:
        if cls in rules:
            return rules[cls]
    raise PropertyError(f"{type(op).__name__} ('{op.name}') has no {what}; {hint}")  # type: ignore[attr-defined]


# -- building blocks for rules ------------------------------------------------------------------


def slot_reduction(
    graph: Graph, node: int, slot: str, folds: tuple[int, ...], *reductions: str
) -> int:
    """Folds `folds` of parameter slot `slot` of `node`, reduced over the last axis once per
    kind in `reductions` ('sum', 'prod', 'lse'), as a new chain of parameter ops."""
    op = graph.op(node)
    shape = op.param_shapes()[slot]  # type: ignore[attr-defined]
    shape = (len(folds), *shape[1:])
    first, *rest = reductions
    shape = shape[:-1]
    current = graph.add_op(ops.ReduceOp(shape=shape, kind=first))
    for producer, edge_slot, fold_map in graph.in_edges(node):
        if edge_slot == slot:
            kept = restrict(fold_map, folds)
            if len(kept):
                graph.connect(producer, current, 0, kept)
    for kind in rest:
        shape = shape[:-1]
        current = graph.add_op(ops.ReduceOp(shape=shape, kind=kind), [current])
    return current


def then(graph: Graph, node: int, param_op: type[ParamOp]) -> int:
    """An elementwise `param_op` (exp, log, ...) applied to parameter node `node`."""
    shape = graph.op(node).shape  # type: ignore[attr-defined]
    return graph.add_op(param_op(shape=shape), [node])


def constant_tensor(graph: Graph, shape: tuple[int, ...], value: float) -> int:
    """A fixed (not learnable) tensor of `value`s, folds first, with fresh sources."""
    sources = [graph.new_source() for _ in range(shape[0])]
    return graph.add_op(
        TensorOp(ConstantInitializer(value), learnable=False, shape=shape, sources=sources)
    )


def ones(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
    """The integral of a normalized distribution: 1 per fold and unit."""
    return constant_tensor(graph, (len(folds), graph.op(node).num_units), 1.0)  # type: ignore[attr-defined]


# -- the built-in rules -------------------------------------------------------------------------


@integral_rule(ops.CategoricalOp)
def _categorical(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
    """Probabilities: their sum (exact for unnormalized tables), multiplied over channels;
    logits: 1 (the kernel normalizes them); log-probabilities: the sum of their exps."""
    op = graph.op(node)
    assert isinstance(op, ops.CategoricalOp)
    if op.param == "probs":
        return slot_reduction(graph, node, "probs", folds, "sum", "prod")
    if op.param == "log_probs":
        return then(graph, slot_reduction(graph, node, "log_probs", folds, "lse", "sum"), ops.ExpOp)
    return ones(graph, node, folds)


@integral_rule(ops.EmbeddingOp)
def _embedding(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
    """The table's sum over states, multiplied over channels."""
    return slot_reduction(graph, node, "weight", folds, "sum", "prod")


@integral_rule(ops.BinomialOp, ops.GaussianOp)
def _normalized(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
    return ones(graph, node, folds)


# -- the pass -----------------------------------------------------------------------------------


def input_nodes(graph: Graph) -> list[int]:
    return [n for n, op in graph.ops() if isinstance(op, InputOp)]


def check_variables(graph: Graph, variables: tuple[int, ...] | None, what: str) -> set[int]:
    """The chosen variables (all the input ops read when None); `OptionError` for variables
    that no input op reads, or listed twice."""
    known = {v for n in input_nodes(graph) for v in graph.op(n).variables}  # type: ignore[attr-defined]
    if variables is None:
        return known
    if len(set(variables)) != len(variables):
        twice = sorted({v for v in variables if variables.count(v) > 1})
        raise OptionError(f"{what}: variables {twice} are listed more than once")
    unknown = sorted(set(variables) - known)
    if unknown:
        raise OptionError(
            f"{what}: the circuit has no input over variables {unknown}; its variables are"
            f" {_span(sorted(known))}"
        )
    return set(variables)


def _span(variables: list[int]) -> str:
    if variables and variables == list(range(variables[0], variables[-1] + 1)):
        return f"{variables[0]}..{variables[-1]}"
    return str(variables)


def check_smooth_decomposable(graph: Graph, what: str) -> None:
    """Replacing inputs one by one is exact only on smooth, decomposable circuits."""
    from cirkit_ir.properties import is_decomposable, is_smooth, scope_view

    view = scope_view(graph)
    for ok, name in ((is_smooth(view), "smooth"), (is_decomposable(view), "decomposable")):
        if not ok:
            raise PropertyError(
                f"{what} needs a smooth and decomposable circuit, and this one is not {name}"
            )


def touched_folds(op: InputOp, chosen: set[int]) -> tuple[int, ...]:
    return tuple(f for f, v in enumerate(op.variables) if v in chosen)


@register_pass("integrate")
@attrs.frozen
class Integrate(Pass):
    """Integrates `variables` out (all variables when none are given)."""

    variables: tuple[int, ...] | None = None

    def run(self, graph: Graph, context: PassContext) -> bool:
        chosen = check_variables(graph, self.variables, "integrate")
        check_smooth_decomposable(graph, "integrate")
        plans = []
        for node in input_nodes(graph):
            op = graph.op(node)
            folds = touched_folds(op, chosen)  # type: ignore[arg-type]
            if folds:
                rule = lookup_rule(
                    _INTEGRALS, op, "integral rule", "register one with passes.integral_rule"
                )
                plans.append((node, folds, rule))
        for node, folds, rule in plans:
            replace_input_folds(graph, node, folds, _constant_of(rule))
            context.statistics["input folds integrated"] += len(folds)
        return bool(plans)


def _constant_of(rule: IntegralRule):
    def build(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
        op = graph.op(node)
        value = rule(graph, node, folds)
        constant = ConstantOp(op.num_units, num_folds=len(folds), semiring=op.semiring)  # type: ignore[attr-defined]
        return graph.add_op(
            constant, params={"value": value}, location=sub_location(graph, node, folds)
        )

    return build


__all__ = ["IntegralRule", "Integrate", "integral_rule"]
