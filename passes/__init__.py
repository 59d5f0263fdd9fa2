"""Passes over the cirkit-ir graph, a pass manager for MLIR-style pipelines, and a pattern
rewriter for writing new rules.

    from cirkit_ir.passes import PassManager
    graph = PassManager.parse("lower-semiring{semiring=lse-sum},fuse,fold").run(graph)

User passes join with `register_pass`, exactly like the built-in ones.
"""

from cirkit_ir.passes.canonicalize import Canonicalize
from cirkit_ir.passes.conjugate import Conjugate
from cirkit_ir.passes.dce import DeadCodeElimination
from cirkit_ir.passes.default import default_pipeline
from cirkit_ir.passes.differentiate import Differentiate, derivative_rule
from cirkit_ir.passes.evidence import Evidence
from cirkit_ir.passes.fixed_point import FixedPoint
from cirkit_ir.passes.fold import Fold
from cirkit_ir.passes.fuse import Fuse
from cirkit_ir.passes.instruments import (
    OpStatistics,
    PassInstrument,
    PassStatistics,
    PassStep,
    PassTiming,
    PrintIR,
    VerifyEach,
    ir_dump_header,
)
from cirkit_ir.passes.integrate import Integrate, integral_rule
from cirkit_ir.passes.manager import DEFAULT_VERIFY, PassManager, PassRecord
from cirkit_ir.passes.pass_base import Pass, PassContext, PipelinePass
from cirkit_ir.passes.pipeline_parser import parse_pipeline
from cirkit_ir.passes.registry import get_pass, register_pass, registered_passes
from cirkit_ir.passes.rewriter import PatternRewriter, RewritePattern, apply_patterns_greedily
from cirkit_ir.passes.select_kernels import SelectKernels
from cirkit_ir.passes.semiring import LowerSemiring, Semiring

__all__ = [
    "DEFAULT_VERIFY",
    "Canonicalize",
    "Conjugate",
    "DeadCodeElimination",
    "Differentiate",
    "Evidence",
    "FixedPoint",
    "Integrate",
    "Fold",
    "Fuse",
    "LowerSemiring",
    "OpStatistics",
    "Pass",
    "PassInstrument",
    "PassContext",
    "PassManager",
    "PassRecord",
    "PassStatistics",
    "PassStep",
    "PassTiming",
    "PatternRewriter",
    "PipelinePass",
    "PrintIR",
    "RewritePattern",
    "SelectKernels",
    "Semiring",
    "VerifyEach",
    "apply_patterns_greedily",
    "default_pipeline",
    "derivative_rule",
    "get_pass",
    "integral_rule",
    "ir_dump_header",
    "parse_pipeline",
    "register_pass",
    "registered_passes",
]
