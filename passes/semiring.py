"""`lower-semiring`: say how every circuit op computes (sum-product, lse-sum, complex-lse-sum,
max-sum, max-product).

The semiring is an attribute of each circuit op, so a dump shows how every op computes and
re-lowering to another semiring only changes tags. Parameters stay as the user wrote them:
input ops read them in whatever space their `param` names, and `fuse` rewrites
categorical(probs=softmax(x)) into categorical(logits=x), which is stable in every semiring.
"""

from __future__ import annotations

import enum

import attrs

from cirkit_ir.errors import OptionError
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import CircuitOp
from cirkit_ir.passes.pass_base import Pass
from cirkit_ir.passes.registry import register_pass


class Semiring(str, enum.Enum):
    """How sums and products compute: on values, on logs, or on complex logs."""

    SUM_PRODUCT = "sum-product"
    LSE_SUM = "lse-sum"
    COMPLEX_LSE_SUM = "complex-lse-sum"
    # Max semirings: a sum keeps its largest term (MAP / MPE). `MAPQuery` evaluates them on
    # a compiled circuit (its `graph` is the circuit's IR lowered to 'max-sum'); codegen
    # compiles no forward for them.
    MAX_SUM = "max-sum"  # logs: products add, sums take the max
    MAX_PRODUCT = "max-product"  # values: products multiply, sums take the max

    @property
    def is_log(self) -> bool:
        """Values are (possibly complex) logs."""
        return self not in (Semiring.SUM_PRODUCT, Semiring.MAX_PRODUCT)

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
    """Sets `semiring` on every circuit op.

    A kernel that `select-kernels` chose for another semiring is dropped with it."""

    semiring: Semiring = attrs.field(default=Semiring.LSE_SUM, converter=as_semiring)

    def apply(self, graph: Graph) -> bool:
        value = self.semiring.value
        # Ops are immutable values, and an unfolded graph holds thousands of equal ones (every
        # dense op of a layer width, say): each distinct op is rebuilt once and shared.
        lowered: dict[CircuitOp, CircuitOp] = {}
        changed = False
        for node, op in list(graph.ops()):
            if isinstance(op, CircuitOp) and op.semiring != value:
                new = lowered.get(op)
                if new is None:
                    # A kernel was chosen for the old semiring: `select-kernels` chooses anew.
                    new = lowered[op] = op.replace(semiring=value, kernel=None)
                graph.replace_op(node, new)
                changed = True
        return changed
