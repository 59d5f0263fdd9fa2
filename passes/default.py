"""The pipeline that `PipelineContext(semiring=..., fold=..., optimize=...)` runs."""

from __future__ import annotations

from cirkit_ir.passes.semiring import as_semiring


def default_pipeline(semiring: str = "lse-sum", fold: bool = True, optimize: bool = True) -> str:
    """The pass pipeline for the compilation flags, as a string a user can edit and rerun.

    Folding comes first: it shrinks thousands of ops to a few dozen, so the passes after it
    (semiring lowering, fusion) have little to visit. Fusion commutes with folding, so the
    result is the one fusing first would give.
    """
    steps = []
    if fold:
        steps.append("fold")
    steps.append(f"lower-semiring{{semiring={as_semiring(semiring).value}}}")
    if optimize:
        steps.append("fuse")
    steps.append("dce")
    return ",".join(steps)
