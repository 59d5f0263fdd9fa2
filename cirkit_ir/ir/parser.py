"""Reads the IR text form (see `printer.py`) back into a `Graph`.

``parse_ir(print_ir(g)) == g`` and ``print_ir(parse_ir(t)) == t`` for printed text `t`.
Text written by hand may number its values in any order (and use names like ``%x``), as long
as every value is defined before it is used; printing it again gives the canonical text.
Errors raise `IRParseError` with the line and column (1-based) and a caret under the spot.

Grammar (EBNF; spaces and tabs separate tokens, ``#`` starts a comment)::

    text       ::= { line "\\n" }
    line       ::= [ definition | return ] [ comment ]
    definition ::= VALUE "=" OPNAME "(" [ slot { "," slot } ] ")"
                   [ "[" IDENT "=" slot { "," IDENT "=" slot } "]" ]
                   [ "{" attr { "," attr } "}" ] ":" TYPE
    slot       ::= "_" | piece { "++" piece }
    piece      ::= VALUE [ "[" folds [ "->" folds ] "]" ]
    folds      ::= [ INT ":" INT [ ":" INT ] | INT { "," INT } ]
    attr       ::= IDENT "=" value
    value      ::= "none" | "true" | "false" | INT | FLOAT | STRING | IDENT
                 | INT ":" INT [ ":" INT ] | "[" [ INT { "," INT } ] "]"       (index tuples)
                 | IDENT "(" [ attr { "," attr } ] ")"                           (initializer)
                 | OPNAME "{" [ attr { "," attr } ] "}"                          (nested op)
    return     ::= "return" [ output { "," output } ]
    output     ::= VALUE [ "[" folds "]" ]
    TYPE       ::= DIM { "x" DIM } [ "xcomplex" ]        DIM ::= INT | "?"
    VALUE      ::= "%" [A-Za-z0-9_.]+
    IDENT      ::= [A-Za-z_][A-Za-z0-9_-]*               (op names, slots, bare strings)
    FLOAT      ::= decimal with "." or an exponent, "inf", "-inf", "nan"
    STRING     ::= a JSON string literal

Meaning: a piece without ``->`` reads the listed producer folds (all of them, in order, when
there is no bracket) and feeds the next consumer folds of its slot, starting from fold 0; with
``->`` it names the consumer folds itself. The pieces of one slot use one form or the other.
The type gives what attributes leave out: the fold count of inner and constant ops
(``F x ? x units``) and the shape of parameter ops; it must agree with the op built.
"""

from __future__ import annotations

import json
import re

import attrs

from cirkit_ir.errors import IRParseError
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph
from cirkit_ir.ir.ops import OPS_BY_NAME, CircuitOp, Op, ParamOp
from cirkit_ir.symbolic.initializers import INITIALIZERS

_TOKEN = re.compile(
    r"""[ \t]*(?:
      (?P<value>%[A-Za-z0-9_.]+)
    | (?P<arrow>->)
    | (?P<concat>\+\+)
    | (?P<float>[-+]?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+
                     |inf\b|nan\b))
    | (?P<int>[-+]?\d+)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<ident>[A-Za-z_][A-Za-z0-9_\-]*)
    | (?P<punct>[=()\[\]{},:])
    | (?P<end>\#.*|$)
    | (?P<bad>.)
    )""",
    re.X,
)
_TYPE = re.compile(r"[ \t]*((?:\d+|\?)(?:x(?:\d+|\?))*?)(xcomplex)?[ \t]*(?:#.*)?$")

# One parsed piece: (producer node, producer folds or None for all, consumer folds or None
# for implicit, column).
Piece = tuple[int, tuple[int, ...] | None, tuple[int, ...] | None, int]


class _Line:
    """A cursor over one line's tokens, so that each error knows its column."""

    def __init__(self, text: str, lineno: int) -> None:
        self.text = text
        self.lineno = lineno
        # (kind, text, start, end), read on demand: a cached op's attributes are never read.
        self.tokens: list[tuple[str, str, int, int]] = []
        self.index = 0
        self._scan = _TOKEN.scanner(text).match
        self._more()

    def _more(self) -> None:
        """Reads the next few tokens (the end token repeats forever)."""
        tokens = self.tokens
        for _ in range(10):
            m = self._scan()
            if m is None:  # the scanner stops after an empty match at the end
                tokens.append(("end", "", len(self.text), len(self.text)))
                return
            kind = m.lastgroup
            tokens.append((kind, m.group(kind), m.start(kind), m.end()))  # type: ignore[arg-type]

    @property
    def pos(self) -> int:
        """Where the next token starts (0-based)."""
        return self.peek()[2]

    def error(self, message: str, column: int | None = None) -> IRParseError:
        col = (self.pos if column is None else column) + 1
        error = IRParseError(
            f"line {self.lineno}, column {col}: {message}\n  {self.text}\n  {' ' * (col - 1)}^"
        )
        error.line = self.lineno  # type: ignore[attr-defined]
        error.column = col  # type: ignore[attr-defined]
        return error

    def peek(self) -> tuple[str, str, int]:
        """(kind, text, start column) of the next token."""
        if self.index >= len(self.tokens) - 1:
            self._more()
        return self.tokens[self.index][:3]

    def next(self) -> tuple[str, str, int]:
        if self.index >= len(self.tokens) - 1:
            self._more()
        token = self.tokens[self.index]
        if token[0] != "end":
            self.index += 1
        return token[:3]

    def skip_to(self, pos: int) -> None:
        """Moves past everything before `pos` (after reading the type from the raw text)."""
        self.tokens = self.tokens[: self.index]
        self._scan = _TOKEN.scanner(self.text, pos).match
        self._more()

    def expect(self, text: str, what: str | None = None) -> int:
        kind, found, start = self.next()
        if found != text or kind not in ("punct", "arrow", "ident"):
            found = _describe(kind, found)
            raise self.error(f"expected '{text}'{what or ''}, found {found}", start)
        return start

    def accept(self, text: str) -> bool:
        if self.index >= len(self.tokens) - 1:
            self._more()
        token = self.tokens[self.index]
        if token[1] == text and token[0] in ("punct", "arrow", "concat"):
            self.index += 1
            return True
        return False

    def integer(self) -> int:
        kind, text, start = self.next()
        if kind != "int":
            raise self.error(f"expected an integer, found {_describe(kind, text)}", start)
        return int(text)


def _describe(kind: str, text: str) -> str:
    return "the end of the line" if kind == "end" else f"'{text}'"


class _Parser:
    def __init__(self) -> None:
        self.graph = Graph()
        self.values: dict[str, int] = {}
        self.returned = False
        # Printed text repeats ops and fold maps a lot; both are immutable, so share them.
        self.op_cache: dict[tuple[str, str], Op] = {}
        self.fold_maps: dict[tuple[tuple[int, ...], tuple[int, ...]], FoldMap] = {}

    # -- pieces of lines ----------------------------------------------------------------------

    def folds(self, line: _Line) -> tuple[int, ...]:
        """Index lists inside operand brackets: empty, `a:b[:s]`, or `a, b, ...`."""
        kind, _, _ = line.peek()
        if kind != "int":
            return ()
        first = line.integer()
        if line.accept(":"):
            stop = line.integer()
            step = line.integer() if line.accept(":") else 1
            if step <= 0:
                raise line.error(f"a fold range needs a positive step, got {step}")
            return tuple(range(first, stop, step))
        items = [first]
        while line.accept(","):
            items.append(line.integer())
        return tuple(items)

    def reference(self, line: _Line) -> tuple[int, int]:
        kind, text, start = line.next()
        if kind != "value":
            raise line.error(f"expected a value like %3, found {_describe(kind, text)}", start)
        node = self.values.get(text)
        if node is None:
            raise line.error(f"use of undefined value {text}", start)
        return node, start

    def piece(self, line: _Line) -> Piece:
        node, start = self.reference(line)
        producer = consumer = None
        if line.accept("["):
            producer = self.folds(line)
            if line.accept("->"):
                consumer = self.folds(line)
            line.expect("]", " to close the fold list")
        return node, producer, consumer, start

    def slot(self, line: _Line) -> list[Piece] | None:
        kind, text, _ = line.peek()
        if kind == "ident" and text == "_":
            line.next()
            return None
        pieces = [self.piece(line)]
        while line.accept("++"):
            pieces.append(self.piece(line))
        return pieces

    def value(self, line: _Line) -> object:
        kind, text, start = line.next()
        if kind == "int":
            if line.accept(":"):
                stop = line.integer()
                step = line.integer() if line.accept(":") else 1
                return tuple(range(int(text), stop, step))
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "string":
            return json.loads(text)
        if kind == "punct" and text == "[":
            items: list[int] = []
            if not line.accept("]"):
                items.append(line.integer())
                while line.accept(","):
                    items.append(line.integer())
                line.expect("]", " to close the list")
            return tuple(items)
        if kind == "ident":
            if text in ("none", "true", "false"):
                return {"none": None, "true": True, "false": False}[text]
            if line.accept("("):
                return self.initializer(line, text, start)
            if line.accept("{"):
                fields = self.attributes(line, "}")
                return self.build(line, text, start, fields)
            return text
        raise line.error(f"expected a value, found {_describe(kind, text)}", start)

    def attributes(self, line: _Line, close: str) -> dict[str, tuple[object, int]]:
        """`name=value, ...` up to `close`: name -> (value, column)."""
        fields: dict[str, tuple[object, int]] = {}
        if line.accept(close):
            return fields
        while True:
            kind, name, start = line.next()
            if kind != "ident":
                raise line.error(
                    f"expected an attribute name, found {_describe(kind, name)}", start
                )
            if name in fields:
                raise line.error(f"attribute '{name}' given twice", start)
            line.expect("=", f" after '{name}'")
            fields[name] = (self.value(line), start)
            if line.accept(close):
                return fields
            line.expect(",", f" or '{close}'")

    def initializer(self, line: _Line, name: str, start: int) -> object:
        cls = INITIALIZERS.get(name)
        if cls is None:
            raise line.error(
                f"unknown initializer '{name}'; expected one of: {', '.join(INITIALIZERS)}", start
            )
        fields = self.attributes(line, ")")
        try:
            return cls(**{k: v for k, (v, _) in fields.items()})
        except (TypeError, ValueError) as error:
            raise line.error(f"bad {name} initializer: {error}", start) from None

    def build(
        self,
        line: _Line,
        name: str,
        start: int,
        fields: dict[str, tuple[object, int]],
        extra: dict[str, object] | None = None,
    ) -> Op:
        cls = OPS_BY_NAME.get(name)
        if cls is None:
            raise line.error(f"unknown op '{name}'", start)
        known = {getattr(f, "alias", None) or f.name for f in attrs.fields(cls)}
        for key, (_, column) in fields.items():
            if extra and key in extra:
                raise line.error(f"'{key}' of {name} comes from the result type", column)
            if key not in known:
                raise line.error(f"{name} has no attribute '{key}'", column)
        kwargs = {k: v for k, (v, _) in fields.items()}
        kwargs.update(extra or {})
        try:
            op = cls(**kwargs)
            op.validate()
        except (TypeError, ValueError) as error:
            raise line.error(f"cannot build {name}: {error}", start) from None
        return op

    # -- lines --------------------------------------------------------------------------------

    def definition(self, line: _Line) -> None:
        _, result, result_start = line.next()
        if result in self.values:
            raise line.error(f"value {result} is defined twice", result_start)
        line.expect("=", f" after {result}")
        kind, name, name_start = line.next()
        if kind != "ident":
            raise line.error(f"expected an op name, found {_describe(kind, name)}", name_start)
        if name not in OPS_BY_NAME:
            raise line.error(
                f"unknown op '{name}'; expected one of: {', '.join(OPS_BY_NAME)}", name_start
            )
        line.expect("(", f" after the op name '{name}'")
        slots: list[tuple[int | str, list[Piece] | None]] = []
        if not line.accept(")"):
            while True:
                slots.append((len(slots), self.slot(line)))
                if line.accept(")"):
                    break
                line.expect(",", " or ')'")
        if line.accept("["):
            while True:
                kind, slot, start = line.next()
                if kind != "ident":
                    raise line.error(
                        f"expected a parameter slot name, found {_describe(kind, slot)}", start
                    )
                line.expect("=", f" after '{slot}'")
                slots.append((slot, self.slot(line)))
                if line.accept("]"):
                    break
                line.expect(",", " or ']'")
        key = (name, line.text[line.pos :])
        op = self.op_cache.get(key)
        if op is None:
            op = self.op(line, name, name_start)
            self.op_cache[key] = op
        else:
            line.skip_to(len(line.text))
        node = self.graph.add_op(op)
        self.values[result] = node
        for slot, pieces in slots:
            if pieces is not None:
                self.connect(line, node, slot, pieces)

    def op(self, line: _Line, name: str, name_start: int) -> Op:
        """The op from the attributes and the type (the rest of the line)."""
        fields = self.attributes(line, "}") if line.accept("{") else {}
        line.expect(":", " before the result type")
        type_start = line.pos
        m = _TYPE.match(line.text, line.pos)
        if m is None:
            raise line.error("expected a result type like 784x?x4 or 784x4x16", type_start)
        type_start = m.start(1)
        line.skip_to(m.end())
        dims = m.group(1).split("x")
        type_text = m.group(1) + (m.group(2) or "")
        cls = OPS_BY_NAME[name]
        extra: dict[str, object] = {}
        if issubclass(cls, ParamOp):
            if "?" in dims:
                raise line.error("a parameter op's type is a shape, without '?'", type_start)
            extra["shape"] = tuple(int(d) for d in dims)
        elif issubclass(cls, CircuitOp):
            if len(dims) != 3 or dims[1] != "?" or "?" in (dims[0], dims[2]):
                raise line.error("a circuit op's type is FOLDSx?xUNITS", type_start)
            if any((getattr(f, "alias", None) or f.name) == "num_folds" for f in attrs.fields(cls)):
                extra["num_folds"] = int(dims[0])
        op = self.build(line, name, name_start, fields, extra)
        if str(op.result_type) != type_text:
            raise line.error(
                f"the type {type_text} does not match the op, whose type is {op.result_type}",
                type_start,
            )
        return op

    def connect(self, line: _Line, node: int, slot: int | str, pieces: list[Piece]) -> None:
        explicit = [consumer is not None for _, _, consumer, _ in pieces]
        if any(explicit) and not all(explicit):
            raise line.error(
                "the pieces of one slot are all implicit (%N[folds]) or all explicit"
                " (%N[folds -> folds])",
                pieces[explicit.index(not explicit[0])][3],
            )
        cursor = 0
        for producer, produced, consumer, start in pieces:
            if produced is None:
                produced = tuple(range(self.graph.op(producer).num_folds))
            if consumer is None:
                consumer = tuple(range(cursor, cursor + len(produced)))
                cursor += len(produced)
            if len(consumer) != len(produced):
                raise line.error(
                    f"{len(produced)} producer folds for {len(consumer)} consumer folds", start
                )
            fold_map = self.fold_maps.get((consumer, produced))
            if fold_map is None:
                fold_map = self.fold_maps[consumer, produced] = FoldMap(consumer, produced)
            self.graph.connect(producer, node, slot, fold_map)

    def outputs(self, line: _Line) -> None:
        if self.returned:
            raise line.error("a second return line", 0)
        self.returned = True
        line.next()  # 'return'
        outputs: list[tuple[int, int]] = []
        if line.peek()[0] == "end":
            self.graph.outputs = outputs
            return
        while True:
            node, _ = self.reference(line)
            if line.accept("["):
                folds = self.folds(line)
                line.expect("]", " to close the fold list")
            else:
                folds = tuple(range(self.graph.op(node).num_folds))
            outputs.extend((node, f) for f in folds)
            if line.peek()[0] == "end":
                break
            line.expect(",", " between outputs")
        self.graph.outputs = outputs

    def line(self, text: str, lineno: int) -> None:
        line = _Line(text, lineno)
        kind, word, start = line.peek()
        if kind == "end":
            return
        if kind == "ident" and word == "return":
            self.outputs(line)
        elif kind == "value":
            if self.returned:
                raise line.error("definitions must come before the return line", start)
            self.definition(line)
        else:
            raise line.error(f"expected a definition (%N = ...) or 'return', found '{word}'", start)
        kind, word, start = line.next()
        if kind != "end":
            raise line.error(f"unexpected '{word}' at the end of the line", start)


def parse_ir(text: str) -> Graph:
    """The graph that `text` describes (see the module docstring for the grammar)."""
    parser = _Parser()
    for lineno, line in enumerate(text.splitlines(), start=1):
        parser.line(line, lineno)
    return parser.graph
