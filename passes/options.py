"""Pass options as text: a pass field's declared type, and its values spelled and read back.

Options are typed by the pass's attrs field annotations, so a pass declares an option once
and the pipeline parser, the printer and the error messages all follow from it. An option's
type is one of

    bool, int, float, str, an `enum.Enum` subclass, `typing.Literal[...]`   (an element)
    tuple[E, ...] or list[E] of an element                                  (a list option)
    T | None of either                                                      (`none` allowed)

and `register_pass` refuses any other, so that every pass prints as text that parses back to
an equal pass. In a pipeline a list option is written `[1,5]` or, bare, `1,5`; the printer
writes brackets.
"""

from __future__ import annotations

import enum
import functools
import string
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

import attrs

from cirkit_ir.errors import OptionError

BARE_CHARS = frozenset(string.ascii_letters + string.digits + "-_.+:/")
"""The characters of a value written without quotes; any other value is quoted."""

NONE_WORDS = ("none", "null")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_SCALARS = (bool, int, float, str)
_CONTAINERS = (tuple, list)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
UNESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
"""Escapes inside a quoted value beyond `\\"` and `\\\\` (`\\xNN`, `\\uNNNN` and `\\UNNNNNNNN`
spell other unprintable characters), so that every pipeline prints on one line."""

SUPPORTED = (
    "bool, int, float, str, an enum.Enum, a Literal[...], tuple[X, ...] or list[X] of those,"
    " or any of these | None"
)


@attrs.frozen
class OptionType:
    """An option's declared type taken apart: what one value is (`element`), whether the
    option holds several (`container`: tuple or list) and whether it may be None."""

    element: Any
    container: type | None = None
    optional: bool = False

    @classmethod
    def of(cls, tp: Any) -> OptionType:
        """The option type of an annotation; OptionError saying why, for one that a pipeline
        cannot spell."""
        optional = False
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            arms = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(arms) != 1:
                raise OptionError(f"{describe_type(tp)} is a union of several types")
            optional, tp, origin = True, arms[0], typing.get_origin(arms[0])
        if tp in _CONTAINERS:
            raise OptionError(f"{describe_type(tp)} does not say the type of its items")
        container = origin if origin in _CONTAINERS else None
        if container is not None:
            args = typing.get_args(tp)
            if container is tuple and (len(args) != 2 or args[1] is not Ellipsis):
                raise OptionError(f"{describe_type(tp)} is a fixed-length tuple; use tuple[X, ...]")
            if container is list and len(args) != 1:
                raise OptionError(f"{describe_type(tp)} has more than one item type")
            tp = args[0]
        _check_element(tp)
        return cls(tp, container, optional)

    def describe(self) -> str:
        """A short human spelling, for error messages: `a list of int or none`."""
        text = describe_type(self.element)
        if self.container is not None:
            text = f"a list of {text}"
        return f"{text} or none" if self.optional else text


def _check_element(tp: Any) -> None:
    if tp in _SCALARS or isinstance(tp, type) and issubclass(tp, enum.Enum):
        return
    if typing.get_origin(tp) is Literal:
        spellings = [_spell(choice) for choice in typing.get_args(tp)]
        if len(set(spellings)) != len(spellings):
            raise OptionError(f"{describe_type(tp)} has two choices spelled alike")
        return
    raise OptionError(f"{describe_type(tp)} is not a type of option values")


@functools.cache
def option_types(cls: type) -> dict[str, OptionType]:
    """The option type of each option field of a pass class (`cls.option_fields()`), read
    once per class; OptionError naming the field whose type a pipeline cannot spell."""
    types_: dict[str, OptionType] = {}
    for field in cls.option_fields():  # type: ignore[attr-defined]
        tp = _annotation(cls, field)
        try:
            types_[field.name] = OptionType.of(tp)
        except OptionError as error:
            raise OptionError(
                f"option {field.name!r} of pass {cls.__qualname__}: {error}, which a pipeline"
                f" string cannot spell (options are {SUPPORTED}). Keep state that is not an"
                " option in a field with init=False, and hand results to the pass manager"
                " with context.publish()"
            ) from None
    return types_


def _annotation(cls: type, field: attrs.Attribute) -> Any:
    """The field's annotation, resolved (a string under postponed evaluation). Without one,
    or one that does not resolve, the type of its default; None when there is neither."""
    tp = field.type
    if isinstance(tp, str):
        try:
            attrs.resolve_types(cls)
            tp = attrs.fields_dict(cls)[field.name].type
        except Exception:  # noqa: BLE001 - an unresolvable annotation falls back to the default
            tp = None
    if tp is None or isinstance(tp, str):
        default = field.default
        tp = type(default) if default is not None and type(default) in _SCALARS else None
    return tp


def describe_type(tp: Any) -> str:
    """A short human spelling of a type, for error messages."""
    if tp is None:
        return "an unannotated field"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(_spell(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


# -- reading ------------------------------------------------------------------------------------


def is_none_word(text: str, quoted: bool) -> bool:
    """A bare `none` (or `null`): None for an optional option. Quoted, it is a string."""
    return not quoted and text.lower() in NONE_WORDS


def parse_element(tp: Any, text: str) -> Any:
    """One value of element type `tp` from its text; OptionError saying what was expected."""
    if typing.get_origin(tp) is Literal:
        for choice in typing.get_args(tp):
            if _spell(choice) == text:
                return choice
        raise OptionError.choose("value", text, [_spell(c) for c in typing.get_args(tp)])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        # Values first, then names: a member's name may be another member's value.
        for member in tp:
            if str(member.value) == text:
                return member
        for member in tp:
            if member.name.lower() == text.lower():
                return member
        raise OptionError.choose("value", text, [m.value for m in tp])
    return _PARSERS[tp](text)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise OptionError(f"expected a bool (true or false), got {text!r}")


def _parse_int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise OptionError(f"expected an int, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"expected a float, got {text!r}") from None


_PARSERS: dict[type, Callable[[str], Any]] = {
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
    str: str,
}


# -- writing ------------------------------------------------------------------------------------


def format_option(value: object, kind: OptionType) -> str:
    """The pipeline spelling of an option value (what the parser reads back to `value`)."""
    if value is None:
        return "none"
    if kind.container is not None and isinstance(value, tuple | list):
        return "[" + ",".join(_format_element(v, False) for v in value) + "]"
    return _format_element(value, kind.optional)


def _format_element(value: object, optional: bool) -> str:
    text = _spell(value)
    bare = bool(text) and all(c in BARE_CHARS for c in text)
    if bare and not (optional and is_none_word(text, False)):
        return text
    return '"' + "".join(_escape(c) for c in text) + '"'


def _spell(value: object) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape(c: str) -> str:
    escaped = _ESCAPES.get(c)
    if escaped is not None:
        return escaped
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
