"""The pass registry: pipeline names to pass classes, ours and users' alike.

Registration is the only thing that makes a pass reachable from a pipeline string, so user
passes go through exactly the same door as the built-in ones, and the same checks: options of
types a pipeline can spell, and `preserves` naming analysis classes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

import attrs

from cirkit_ir.errors import OptionError, UnknownPassError
from cirkit_ir.passes.options import option_types
from cirkit_ir.passes.pass_base import Pass

_PASSES: dict[str, type[Pass]] = {}


def register_pass(name: str) -> Callable[[type[Pass]], type[Pass]]:
    """Class decorator: registers a `Pass` subclass under `name` and sets its `name`.

    A class that is not an attrs class yet is made a frozen one, so that its annotated
    fields become its options. An option whose type a pipeline cannot spell (a dict, a bare
    list) is an OptionError naming the field. Registering another class under a taken name is
    an error; registering the same class again (a module reload) is not.
    """
    if not isinstance(name, str) or not _valid_name(name):
        raise OptionError(
            f"pass names are letters, digits, '-', '_' and '.', starting with a letter;"
            f" got {name!r}"
        )

    def register(cls: type[Pass]) -> type[Pass]:
        if not (isinstance(cls, type) and issubclass(cls, Pass)):
            raise OptionError(
                f"register_pass({name!r}) decorates Pass subclasses, got {cls!r}; derive the"
                " class from cirkit_ir.passes.Pass"
            )
        if "__attrs_attrs__" not in cls.__dict__:
            cls = attrs.frozen(cls)
        option_types(cls)
        _check_preserves(cls)
        previous = _PASSES.get(name)
        if previous is not None and _qualname(previous) != _qualname(cls):
            raise OptionError(
                f"a pass named {name!r} is already registered ({_qualname(previous)});"
                " pick another name"
            )
        cls.name = name
        _PASSES[name] = cls
        return cls

    return register


def get_pass(name: str) -> type[Pass]:
    """The pass class registered under `name`; `UnknownPassError` listing the known names
    if none."""
    try:
        return _PASSES[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        known = ", ".join(sorted(_PASSES))
        raise UnknownPassError(f"no pass named {name!r}; registered passes: {known}") from None


def registered_passes() -> dict[str, type[Pass]]:
    """A copy of the registry, by name."""
    return dict(sorted(_PASSES.items()))


def check_pass_names(names: Iterable[str], what: str) -> None:
    """OptionError for a name in `names` that is no registered pass (a typo), listing close
    matches. A nested pass is named by its path, `fixed-point/fuse`; 'all' is every pass."""
    for name in names:
        for part in name.split("/"):
            if part == "all" or part in _PASSES:
                continue
            close = difflib.get_close_matches(part, [*_PASSES, "all"], n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise OptionError(
                f"{what} names {part!r}, which is not a registered pass; {hint}registered"
                f" passes: {', '.join(sorted(_PASSES))} ('all' for every pass)"
            )


def _check_preserves(cls: type[Pass]) -> None:
    preserves = cls.preserves
    if not (isinstance(preserves, tuple) and all(isinstance(k, type) for k in preserves)):
        raise OptionError(
            f"{cls.__qualname__}.preserves must be a tuple of analysis classes, got {preserves!r}"
        )


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalpha() and all(c.isalnum() or c in "-_." for c in name)
