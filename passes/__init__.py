"""Passes over the cirkit-ir graph, a pass manager for MLIR-style pipelines, and a pattern
rewriter for writing new rules.

    from passes import PassManager
    graph = PassManager.parse("lower-semiring{semiring=lse-sum},fuse,fold").run(graph)

User passes join with `register_pass`, exactly like the built-in ones.
"""

from passes.canonicalize import Canonicalize
from passes.dce import DeadCodeElimination
from passes.default import default_pipeline
from passes.fixed_point import FixedPoint
from passes.fold import Fold
from passes.fuse import Fuse
from passes.instruments import (
    OpStatistics,
    PassInstrument,
    PassStatistics,
    PassStep,
    PassTiming,
    PrintIR,
    VerifyEach,
)
from passes.manager import PassManager
from passes.pass_base import Pass, PipelinePass
from passes.pipeline_parser import parse_pipeline
from passes.registry import get_pass, register_pass, registered_passes
from passes.rewriter import PatternRewriter, RewritePattern, apply_patterns_greedily
from passes.semiring import LowerSemiring, Semiring

__all__ = [
    "Canonicalize",
    "DeadCodeElimination",
    "FixedPoint",
    "Fold",
    "Fuse",
    "LowerSemiring",
    "OpStatistics",
    "Pass",
    "PassInstrument",
    "PassManager",
    "PassStatistics",
    "PassStep",
    "PassTiming",
    "PatternRewriter",
    "PipelinePass",
    "PrintIR",
    "RewritePattern",
    "Semiring",
    "VerifyEach",
    "apply_patterns_greedily",
    "default_pipeline",
    "get_pass",
    "parse_pipeline",
    "register_pass",
    "registered_passes",
]
