"""The typed graph IR: ops, the `Graph` container, lowering, verification and text form."""

from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph, Operand, Use
from cirkit_ir.ir.lower import lower
from cirkit_ir.ir.types import SEMIRINGS, CircuitType, ParamType

__all__ = ["SEMIRINGS", "CircuitType", "FoldMap", "Graph", "Operand", "ParamType", "Use", "lower"]
