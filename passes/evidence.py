"""`evidence{variables=..., values=...}`: the circuit conditioned on observed values.

Each input fold over an observed variable becomes an `evidence` op: the same distribution,
reading the same parameters, evaluated at the observation instead of at the data (a constant
of the data). The observations are a fixed tensor that the graph holds; `values` lists them
variable by variable, `num_channels` per variable (one value each for single-channel data).
"""

from __future__ import annotations

import math

import attrs
import torch

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import EvidenceOp, InputOp, TensorOp
from cirkit_ir.passes.input_rewrite import copy_param_edges, replace_input_folds, sub_location
from cirkit_ir.passes.integrate import check_variables, input_nodes, touched_folds
from cirkit_ir.passes.pass_base import Pass, PassContext
from cirkit_ir.passes.registry import register_pass
from cirkit_ir.symbolic.initializers import ConstantTensorInitializer


@register_pass("evidence")
@attrs.frozen
class Evidence(Pass):
    """Conditions on `values` observed for `variables` (channels of a variable in a row)."""

    variables: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    def run(self, graph: Graph, context: PassContext) -> bool:
        chosen = check_variables(graph, self.variables, "evidence")
        observed = self._observations(graph)
        plans = []
        for node in input_nodes(graph):
            op = graph.op(node)
            assert isinstance(op, InputOp)
            folds = touched_folds(op, chosen)
            if folds:
                _check_range(op, folds, observed)
                plans.append((node, folds))
        for node, folds in plans:
            replace_input_folds(graph, node, folds, _evidence_of(observed))
            context.statistics["input folds observed"] += len(folds)
        return bool(plans)

    def _observations(self, graph: Graph) -> dict[int, tuple[float, ...]]:
        """Variable -> its observed value per channel."""
        channels = graph.declared_variables()[1]
        expected = len(self.variables) * channels
        if len(self.values) != expected:
            per = "" if channels == 1 else f" ({channels} channels per variable, in a row)"
            raise OptionError(
                f"evidence: {len(self.variables)} variables need {expected} values{per}, got"
                f" {len(self.values)}"
            )
        for variable, value in zip(
            (v for v in self.variables for _ in range(channels)), self.values, strict=True
        ):
            if not math.isfinite(value):
                raise OptionError(
                    f"evidence: the value {value!r} observed for variable {variable} is not a"
                    " finite number"
                )
        return {
            v: tuple(self.values[i * channels : (i + 1) * channels])
            for i, v in enumerate(self.variables)
        }


def _check_range(op: InputOp, folds: tuple[int, ...], observed: dict[int, tuple]) -> None:
    top = op.max_value()
    if top is None:
        return
    for f in folds:
        variable = op.variables[f]
        for value in observed[variable]:
            if not 0 <= round(value) <= top:
                raise OptionError(
                    f"evidence: the value {value:g} observed for variable {variable} is out of"
                    f" range: its {op.name} input accepts 0..{top}"
                )


def _evidence_of(observed: dict[int, tuple[float, ...]]):
    def build(graph: Graph, node: int, folds: tuple[int, ...]) -> int:
        op = graph.op(node)
        assert isinstance(op, InputOp)
        inner = op.folded([(op, f) for f in folds])
        assert isinstance(inner, InputOp)
        evidence = EvidenceOp(inner, semiring=op.semiring)
        values = torch.tensor([observed[v] for v in inner.variables], dtype=torch.float64)
        tensor = TensorOp(
            ConstantTensorInitializer(values.tolist()),  # the observation shows in dumps
            learnable=False,
            shape=tuple(values.shape),
            sources=[graph.new_source() for _ in folds],
        )
        observation = graph.add_op(tensor)
        new = graph.add_op(
            evidence, params={"observation": observation}, location=sub_location(graph, node, folds)
        )
        copy_param_edges(graph, node, new, folds)
        return new

    return build
