"""Logic circuits as probabilistic circuits (libcirkit's `templates.logic`).

>>> from cirkit_ir.templates.logic import SDD
>>> sdd = SDD.from_text("sdd 3\\nL 1 0 1\\nL 2 2 2\\nD 0 1 1 1 2\\n")   # x0 AND x1
>>> circuit = sdd.build_circuit()
"""

from cirkit_ir.templates.logic.graph import (
    BottomNode,
    ConjunctionNode,
    DisjunctionNode,
    LiteralNode,
    LogicalCircuit,
    LogicalCircuitNode,
    LogicalInputNode,
    NegatedLiteralNode,
    TopNode,
    default_literal_input_factory,
)
from cirkit_ir.templates.logic.sdd import SDD

__all__ = [
    "SDD",
    "BottomNode",
    "ConjunctionNode",
    "DisjunctionNode",
    "LiteralNode",
    "LogicalCircuit",
    "LogicalCircuitNode",
    "LogicalInputNode",
    "NegatedLiteralNode",
    "TopNode",
    "default_literal_input_factory",
]
