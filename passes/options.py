"""Pass options as text: parsing a pipeline's `key=value` into a field's type and back.

Options are typed by the pass's attrs field annotations, so a pass declares an option once
and the pipeline parser, the printer and the error messages all follow from it. Supported:
bool, int, float, str, `enum.Enum` subclasses, `typing.Literal[...]` and `X | None`.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any, Literal, Union

import attrs

from cirkit_ir.errors import OptionError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


def field_type(cls: type, field: attrs.Attribute) -> Any:
    """The resolved annotation of `field` (a string under postponed evaluation), or None."""
    if not isinstance(field.type, str):
        return field.type
    try:
        attrs.resolve_types(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation falls back to the default
        return None
    resolved = attrs.fields_dict(cls)[field.name].type
    return None if isinstance(resolved, str) else resolved


def describe_type(tp: Any) -> str:
    """A short human spelling of an option type, for error messages."""
    if tp is None:
        return "value"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def parse_value(tp: Any, text: str, default: Any = None) -> Any:
    """`text` converted to `tp`; raises OptionError saying what was expected."""
    if tp is None:
        tp = type(default) if default is not None else str
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        arms = typing.get_args(tp)
        if type(None) in arms and text.lower() in _NONE:
            return None
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return parse_value(arm, text)
            except OptionError:
                continue
        raise OptionError(f"expected {describe_type(tp)}, got {text!r}")
    if origin is Literal:
        for choice in typing.get_args(tp):
            if str(choice) == text:
                return choice
        raise OptionError.choose("value", text, typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if str(member.value) == text or member.name.lower() == text.lower():
                return member
        raise OptionError.choose("value", text, [m.value for m in tp])
    if tp is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise OptionError(f"expected a bool (true or false), got {text!r}")
    if tp is int:
        try:
            return int(text, 0)
        except ValueError:
            raise OptionError(f"expected an int, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise OptionError(f"expected a float, got {text!r}") from None
    if tp is str:
        return text
    raise OptionError(f"options of type {describe_type(tp)} cannot be given in a pipeline")


def format_value(value: object) -> str:
    """The pipeline spelling of an option value (the inverse of `parse_value`)."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str) and (not value or any(c in value for c in ',{}() \t"')):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
