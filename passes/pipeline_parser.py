"""Pipeline strings, MLIR style: `lower-semiring{semiring=lse-sum},fuse,fold`.

Grammar (whitespace is allowed around every token):

    pipeline := [pass (',' pass)*]
    pass     := NAME ['{' [option ((',' | ' ') option)*] '}'] ['(' pipeline ')']
    option   := KEY '=' (WORD | '"' quoted '"')      WORD: letters, digits and -_.+:/

Parsing happens in two steps, syntax then meaning, and every error carries the character
position it is about, so that the message can put a caret under it.
"""

from __future__ import annotations

import attrs

from cirkit_ir.errors import OptionError, PipelineSyntaxError, UnknownPassError
from cirkit_ir.passes.options import describe_type, field_type, parse_value
from cirkit_ir.passes.pass_base import Pass, PipelinePass, option_name
from cirkit_ir.passes.registry import registered_passes

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_WORD_CHARS = _NAME_CHARS | frozenset("+:/")


@attrs.frozen
class OptionSpec:
    """`key=value` as written, with the positions of both."""

    key: str
    key_position: int
    value: str
    value_position: int


@attrs.frozen
class PassSpec:
    """A pass as written: its name, options and nested pipeline (None when absent)."""

    name: str
    position: int
    options: tuple[OptionSpec, ...] = ()
    nested: tuple[PassSpec, ...] | None = None
    nested_position: int = -1


class _Reader:
    """A cursor over the pipeline text that raises positioned syntax errors."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, position: int | None = None) -> PipelineSyntaxError:
        return PipelineSyntaxError(message, self.text, self.pos if position is None else position)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def describe_here(self) -> str:
        return repr(self.peek()) if self.peek() else "the end of the pipeline"

    def name(self, what: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _NAME_CHARS:
            self.pos += 1
        word = self.text[start : self.pos]
        if not word:
            raise self.error(f"expected {what}, found {self.describe_here()}")
        if not word[0].isalpha():
            raise self.error(f"{what} must start with a letter, got {word!r}", start)
        return word

    def value(self, key: str) -> str:
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _WORD_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.error(f"expected a value for option '{key}', found {self.describe_here()}")
        return self.text[start : self.pos]

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if c == '"':
                return "".join(chars)
            chars.append(c)
        raise self.error("unterminated string: a '\"' is missing", start)


def parse_pipeline_specs(text: str) -> tuple[PassSpec, ...]:
    """The syntax tree of a pipeline string; PipelineSyntaxError at the first mistake."""
    if not isinstance(text, str):
        raise PipelineSyntaxError(
            f"a pipeline is a string of pass names, like 'fold,fuse', got"
            f" {type(text).__name__} {text!r}"
        )
    reader = _Reader(text)
    specs = _pipeline(reader, closing=None)
    if reader.pos < len(text):
        raise reader.error(
            f"expected ',' or the end of the pipeline, found {reader.describe_here()}"
        )
    return specs


def _pipeline(reader: _Reader, closing: str | None) -> tuple[PassSpec, ...]:
    reader.skip_space()
    specs: list[PassSpec] = []
    if reader.peek() in ("", closing):
        return ()
    while True:
        reader.skip_space()
        specs.append(_pass(reader))
        reader.skip_space()
        if reader.peek() != ",":
            return tuple(specs)
        reader.pos += 1
        reader.skip_space()
        if reader.peek() in ("", closing):
            raise reader.error(f"expected a pass name after ',', found {reader.describe_here()}")


def _pass(reader: _Reader) -> PassSpec:
    position = reader.pos
    name = reader.name("a pass name")
    reader.skip_space()
    options: tuple[OptionSpec, ...] = ()
    if reader.peek() == "{":
        options = _options(reader)
        reader.skip_space()
    nested = None
    nested_position = -1
    if reader.peek() == "(":
        nested_position = reader.pos
        reader.pos += 1
        nested = _pipeline(reader, closing=")")
        reader.skip_space()
        if reader.peek() != ")":
            raise reader.error(
                f"expected ',' or ')' to close the nested pipeline opened at column"
                f" {nested_position + 1}, found {reader.describe_here()}"
            )
        reader.pos += 1
    return PassSpec(name, position, options, nested, nested_position)


def _options(reader: _Reader) -> tuple[OptionSpec, ...]:
    opened = reader.pos
    reader.pos += 1
    options: list[OptionSpec] = []
    reader.skip_space()
    if reader.peek() == "}":
        reader.pos += 1
        return ()
    while True:
        reader.skip_space()
        if not reader.peek():
            raise reader.error(f"expected '}}' to close the options opened at column {opened + 1}")
        key_position = reader.pos
        key = reader.name("an option name")
        reader.skip_space()
        if reader.peek() != "=":
            raise reader.error(f"expected '=' after option '{key}', found {reader.describe_here()}")
        reader.pos += 1
        reader.skip_space()
        value_position = reader.pos
        value = reader.value(key)
        options.append(OptionSpec(key, key_position, value, value_position))
        before_space = reader.pos
        reader.skip_space()
        c = reader.peek()
        if c == "}":
            reader.pos += 1
            return tuple(options)
        if c == ",":
            reader.pos += 1
            continue
        if c and reader.pos > before_space and c in _NAME_CHARS:
            continue  # MLIR style: options separated by spaces
        if not c:
            raise reader.error(f"expected '}}' to close the options opened at column {opened + 1}")
        raise reader.error(
            f"expected ',' or '}}' after option '{key}', found {reader.describe_here()}"
        )


def parse_pipeline(text: str) -> list[Pass]:
    """The passes of a pipeline string, options converted to their declared types."""
    return [_build(spec, text) for spec in parse_pipeline_specs(text)]


def _build(spec: PassSpec, text: str) -> Pass:
    registry = registered_passes()
    cls = registry.get(spec.name)
    if cls is None:
        known = ", ".join(registry) or "(none)"
        raise UnknownPassError(
            f"unknown pass '{spec.name}'; registered passes: {known}", text, spec.position
        )
    fields = {option_name(f.name): f for f in cls.option_fields()}
    fields.update({f.name: f for f in cls.option_fields()})
    values: dict[str, object] = {}
    for option in spec.options:
        field = fields.get(option.key)
        if field is None:
            names = ", ".join(option_name(f.name) for f in cls.option_fields())
            hint = f"its options are: {names}" if names else "it takes no options"
            raise PipelineSyntaxError(
                f"unknown option '{option.key}' for pass '{spec.name}'; {hint}",
                text,
                option.key_position,
            )
        if field.name in values:
            raise PipelineSyntaxError(
                f"option '{option.key}' of pass '{spec.name}' is given twice",
                text,
                option.key_position,
            )
        tp = field_type(cls, field)
        try:
            values[field.name] = parse_value(tp, option.value, _default(field))
        except OptionError as error:
            detail = str(error)
            if "expected" not in detail:
                detail += f" (expected {describe_type(tp)})"
            raise PipelineSyntaxError(
                f"bad value for option '{option_name(field.name)}' of pass '{spec.name}': {detail}",
                text,
                option.value_position,
            ) from None
    if spec.nested is not None:
        if not issubclass(cls, PipelinePass):
            raise PipelineSyntaxError(
                f"pass '{spec.name}' does not take a nested pipeline", text, spec.nested_position
            )
        values["passes"] = tuple(_build(s, text) for s in spec.nested)
    elif issubclass(cls, PipelinePass):
        raise PipelineSyntaxError(
            f"pass '{spec.name}' runs a nested pipeline: write {spec.name}(pass,pass,...)",
            text,
            spec.position + len(spec.name),
        )
    try:
        return cls(**values)
    except (OptionError, ValueError, TypeError) as error:
        position = spec.position
        for option in spec.options:
            field = fields[option.key]
            if field.name in str(error) or option_name(field.name) in str(error):
                position = option.value_position
                break
        raise PipelineSyntaxError(
            f"bad options for pass '{spec.name}': {error}", text, position
        ) from None


def _default(field: attrs.Attribute) -> object:
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return None
    return default
