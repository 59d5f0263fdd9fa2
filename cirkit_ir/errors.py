"""Every exception a user of cirkit-ir can cause, in one place.

Each names what was wrong and what to do about it. All derive from `CirkitIRError`, so
``except CirkitIRError`` catches any user mistake and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable


class CirkitIRError(Exception):
    """Base class of every error that a user mistake can raise."""


class OptionError(CirkitIRError, ValueError):
    """An option (template, pipeline flag, pass option, layer argument) has a bad value."""

    @classmethod
    def choose(cls, what: str, value: object, allowed: Iterable[object]) -> OptionError:
        """The error for a value outside a closed set, listing the allowed values."""
        listed = ", ".join(repr(a) for a in allowed)
        return cls(f"unknown {what} {value!r}; expected one of: {listed}")


class StructureError(CirkitIRError, ValueError):
    """A symbolic circuit or region graph is malformed (units, arity, scopes, cycles)."""


class PropertyError(CirkitIRError, ValueError):
    """A circuit lacks a structural property (smooth, decomposable) that an operation needs."""


class VerificationError(CirkitIRError):
    """An IR graph failed verification; the message names the node (and pass) at fault."""

    def __init__(self, message: str, node: object = None, pass_name: str | None = None):
        self.node = node
        self.pass_name = pass_name
        where = f" (after pass '{pass_name}')" if pass_name else ""
        super().__init__(f"{message}{where}")


class IRParseError(CirkitIRError, ValueError):
    """IR text that does not parse; the message gives the line and column."""


class PipelineSyntaxError(CirkitIRError, ValueError):
    """A malformed pipeline string, or an unknown pass or option; the message points at it."""

    def __init__(self, message: str, pipeline: str | None = None, position: int | None = None):
        self.pipeline = pipeline
        self.position = position
        if pipeline is not None and position is not None:
            message = f"{message}\n  {pipeline}\n  {' ' * position}^"
        super().__init__(message)


class UnknownPassError(PipelineSyntaxError):
    """A pipeline names a pass that is not registered."""


class ConvergenceError(CirkitIRError, RuntimeError):
    """Rewrite patterns or a fixed-point pipeline kept changing the graph past their limit."""


class InputError(CirkitIRError, ValueError):
    """A batch handed to a compiled circuit has a bad shape, dtype, device or value."""


def check_value_range(variable: int, lo: float, hi: float, top: int) -> None:
    """Raises the `InputError` for discrete data of `variable` whose smallest and largest
    values `lo`, `hi` leave 0..top: one wording for the compiled circuit and the reference."""
    if lo < 0:
        raise InputError(
            f"variable {variable} has the negative value {lo:g}; its values must be in 0..{top}"
        )
    if hi > top:
        raise InputError(
            f"variable {variable} has the value {hi:g}, out of range: its input layer accepts"
            f" 0..{top}"
        )


class CompilationError(CirkitIRError):
    """The backend cannot compile a graph (for example, no semiring has been lowered)."""


class SerializationError(CirkitIRError, ValueError):
    """A saved circuit or graph cannot be loaded (or an object cannot be saved): a newer or
    unknown format, a missing member or tensor, a truncated or changed file."""

    @classmethod
    def unknown(
        cls, what: str, value: object, allowed: Iterable[object], path: object
    ) -> SerializationError:
        listed = ", ".join(repr(a) for a in allowed)
        return cls(f"{path}: the manifest names the unknown {what} {value!r} (known: {listed})")


class NumericalError(CirkitIRError, FloatingPointError):
    """A forward computed NaN: a parameter (or a value computed from it) is NaN or infinite
    where it must be finite. The message names the layer, the parameter, the fold and the
    index at fault, and what to do (a smaller learning rate, another parameterization)."""


class LearningError(CirkitIRError, ValueError):
    """Training was asked of a circuit, data or method that cannot do it (EM on a parameter
    without a closed-form M-step, data out of the circuit's range, a loss that turned NaN)."""


class KernelError(CompilationError):
    """An op's `kernel=` annotation names a kernel that the backend does not have for the op,
    or one that cannot compute it (another semiring, arity, ...); the message names the op and
    the kernels that can."""
