"""The typed graph IR: ops, the `Graph` container, lowering, verification and text form."""

from cirkit_ir.ir.dot import render, to_dot
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph, Operand, Use
from cirkit_ir.ir.lower import lower
from cirkit_ir.ir.matcher import match_chain
from cirkit_ir.ir.parser import parse_ir
from cirkit_ir.ir.printer import print_ir
from cirkit_ir.ir.types import SEMIRINGS, CircuitType, ParamType
from cirkit_ir.ir.verify import verify

__all__ = [
    "SEMIRINGS",
    "CircuitType",
    "FoldMap",
    "Graph",
    "Operand",
    "ParamType",
    "Use",
    "lower",
    "match_chain",
    "parse_ir",
    "print_ir",
    "render",
    "to_dot",
    "verify",
]

# Registers the PIC parameter ops (`pic-input-net`, `pic-inner-net`) for the text form.
from cirkit_ir.ir import pic_ops as _pic_ops  # noqa: E402, F401
