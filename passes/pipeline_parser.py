r"""Pipeline strings, MLIR style: `lower-semiring{semiring=lse-sum},fuse,fold`.

Grammar (whitespace is allowed around every token):

    pipeline := [pass (',' pass)*]
    pass     := NAME ['{' [option ((',' | ' ') option)*] '}'] ['(' pipeline ')']
    option   := KEY '=' (value (',' value)* | '[' [value (',' value)*] ']')
    value    := WORD | '"' quoted '"'                 WORD: letters, digits and -_.+:/

A run of values after `key=` goes on until the next `key=`: `integrate{variables=1,5 fast=true}`
and `integrate{variables=[1,5],fast=true}` give `variables` two values. Inside quotes, `\"`, `\\`,
`\n`, `\t`, `\r`, `\xNN`, `\uNNNN` and `\UNNNNNNNN` are escapes.

Parsing happens in two steps, syntax then meaning, and every error carries the character
position it is about, so that the message can put a caret under it.
"""

from __future__ import annotations

import string

import attrs

from cirkit_ir.errors import OptionError, PipelineSyntaxError, UnknownPassError
from cirkit_ir.passes.options import (
    BARE_CHARS,
    UNESCAPES,
    OptionType,
    is_none_word,
    option_types,
    parse_element,
)
from cirkit_ir.passes.pass_base import Pass, PipelinePass, option_name
from cirkit_ir.passes.registry import registered_passes

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


@attrs.frozen
class Word:
    """One value as written: its text (unquoted), whether it was quoted, and where it starts."""

    text: str
    position: int
    quoted: bool = False


@attrs.frozen
class OptionSpec:
    """`key=value` as written: the key, its position, and the values (several for a list,
    `bracketed` when written `[...]`)."""

    key: str
    key_position: int
    values: tuple[Word, ...]
    value_position: int
    bracketed: bool = False


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

    def value(self, key: str) -> Word:
        start = self.pos
        if self.peek() == '"':
            return Word(self.quoted(), start, quoted=True)
        while self.pos < len(self.text) and self.text[self.pos] in BARE_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.error(f"expected a value for option '{key}', found {self.describe_here()}")
        return Word(self.text[start : self.pos], start)

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == '"':
                return "".join(chars)
            chars.append(self.escape() if c == "\\" and self.pos < len(self.text) else c)
        raise self.error("unterminated string: a '\"' is missing", start)

    def escape(self) -> str:
        """The character a backslash escape stands for (the cursor is after the backslash)."""
        c = self.text[self.pos]
        self.pos += 1
        digits = _HEX_DIGITS.get(c)
        if digits is None:
            return UNESCAPES.get(c, c)
        code = self.text[self.pos : self.pos + digits]
        if len(code) != digits or any(d not in string.hexdigits for d in code):
            raise self.error(f"'\\{c}' takes {digits} hex digits", self.pos - 2)
        self.pos += digits
        try:
            return chr(int(code, 16))
        except ValueError:
            raise self.error(f"'\\{c}{code}' is no character", self.pos - digits - 2) from None

    def at_key(self) -> bool:
        """A `key=` starts here (so a run of list values has ended)."""
        end = self.pos
        while end < len(self.text) and self.text[end] in _NAME_CHARS:
            end += 1
        while end < len(self.text) and self.text[end].isspace():
            end += 1
        return end > self.pos and self.text[end : end + 1] == "="


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
        options.append(_option_values(reader, key, key_position))
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


def _option_values(reader: _Reader, key: str, key_position: int) -> OptionSpec:
    """The values after `key=`: `[v, ...]`, or a run `v, v, ...` up to the next `key=`."""
    position = reader.pos
    if reader.peek() == "[":
        reader.pos += 1
        reader.skip_space()
        values: list[Word] = []
        while reader.peek() != "]":
            if not reader.peek():
                raise reader.error(
                    f"expected ']' to close the list of option '{key}' opened at column"
                    f" {position + 1}"
                )
            if values:
                if reader.peek() != ",":
                    raise reader.error(
                        f"expected ',' or ']' in the list of option '{key}', found"
                        f" {reader.describe_here()}"
                    )
                reader.pos += 1
                reader.skip_space()
            values.append(reader.value(key))
            reader.skip_space()
        reader.pos += 1
        return OptionSpec(key, key_position, tuple(values), position, bracketed=True)
    values = [reader.value(key)]
    while True:
        after_value = reader.pos
        reader.skip_space()
        if reader.peek() != ",":
            break
        reader.pos += 1
        reader.skip_space()
        if reader.peek() in ("}", "") or reader.at_key():
            break
        values.append(reader.value(key))
    reader.pos = after_value  # the separator is the caller's to read
    return OptionSpec(key, key_position, tuple(values), position)


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
    kinds = option_types(cls)
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
        values[field.name] = _convert(option, kinds[field.name], spec.name, field.name, text)
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


def _convert(option: OptionSpec, kind: OptionType, pass_name: str, field: str, text: str) -> object:
    """The value of an option as written, of its declared type; PipelineSyntaxError pointing
    at the value (or the list item) that is wrong."""
    words = option.values
    position = option.value_position
    try:
        if kind.optional and not option.bracketed and len(words) == 1:
            if is_none_word(words[0].text, words[0].quoted):
                return None
        if kind.container is None:
            if option.bracketed or len(words) != 1:
                spelled = ",".join(w.text for w in words)
                raise OptionError(f"expected {kind.describe()}, got the list [{spelled}]")
            return parse_element(kind.element, words[0].text)
        items = []
        for word in words:
            position = word.position
            items.append(parse_element(kind.element, word.text))
        return kind.container(items)
    except OptionError as error:
        detail = str(error)
        if "expected" not in detail:
            detail += f" (expected {kind.describe()})"
        raise PipelineSyntaxError(
            f"bad value for option '{option_name(field)}' of pass '{pass_name}': {detail}",
            text,
            position,
        ) from None
