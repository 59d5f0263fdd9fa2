"""Reads the IR text form (see `printer.py`) back into a `Graph`.

``parse_ir(print_ir(g)) == g`` and ``print_ir(parse_ir(t)) == t`` for printed text `t`.
Text written by hand may number its values in any order (and use names like ``%x``), as long
as every value is defined before it is used; printing it again gives the canonical text.
Errors raise `IRParseError` with the line and column (1-based) and a caret under the spot.

Grammar (EBNF; spaces and tabs separate tokens, ``#`` and ``//`` start a comment, so the
headers that pass instruments print above their dumps are skipped)::

    text       ::= { line "\\n" }
    line       ::= [ header | definition | return ] [ comment ]
    header     ::= "graph" "{" [ attr { "," attr } ] "}"      (num_variables, num_channels)
    definition ::= VALUE "=" OPNAME "(" [ slot { "," slot } ] ")"
                   [ "[" IDENT "=" slot { "," IDENT "=" slot } "]" ]
                   [ "{" attr { "," attr } "}" ] ":" TYPE [ location ]
    location   ::= "loc" "(" attr { "," attr } ")"             (layers, slot)
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
    INT        ::= [-+]? [0-9]+                          (ASCII digits, within int64)
    FLOAT      ::= decimal with "." or an exponent, "inf", "-inf", "nan"
    STRING     ::= a JSON string literal

Names: a value spelled ``%N`` (digits) becomes node N, so that printing the parsed graph
gives the same names; other names (``%x``) get ids after the largest ``%N``.

Meaning: a piece without ``->`` reads the listed producer folds (all of them, in order, when
there is no bracket) and feeds the next consumer folds of its slot, starting from fold 0; with
``->`` it names the consumer folds itself. The pieces of one slot use one form or the other.
The type gives what attributes leave out: the fold count of inner and constant ops
(``F x ? x units``) and the shape of parameter ops; it must agree with the op built.

Hostile text is refused quickly, before anything large is built: every integer must fit in
int64, every index list, range and fold count is at most `MAX_FOLDS` long, fold indices are
checked against their producer, and whatever an op constructor or the graph raises is turned
into an `IRParseError` at its line.
"""

from __future__ import annotations

import json
import re

import attrs

from cirkit_ir.errors import CirkitIRError, IRParseError
from cirkit_ir.ir.fold_map import FoldMap
from cirkit_ir.ir.graph import Graph, Location
from cirkit_ir.ir.op_def import is_folds_field, lookup_op, registered_ops
from cirkit_ir.ir.ops import CircuitOp, Op, ParamOp
from cirkit_ir.symbolic.initializers import INITIALIZERS

_TOKEN = re.compile(
    r"""[ \t]*(?:
      (?P<value>%[A-Za-z0-9_.]+)
    | (?P<arrow>->)
    | (?P<concat>\+\+)
    | (?P<float>[-+]?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?
                     |[0-9]+[eE][-+]?[0-9]+|inf\b|nan\b))
    | (?P<int>[-+]?[0-9]+)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<ident>[A-Za-z_][A-Za-z0-9_\-]*)
    | (?P<punct>[=()\[\]{},:])
    | (?P<end>\#.*|//.*|$)
    | (?P<bad>.)
    )""",
    re.X | re.ASCII,
)
_TYPE = re.compile(
    r"[ \t]*((?:[0-9]+|\?)(?:x(?:[0-9]+|\?))*?)(xcomplex)?(?=[ \t]*(?:loc\(|\#|//|$))", re.ASCII
)
_NUMBERED = re.compile(r"^[ \t]*%([0-9]+)[ \t]*=", re.M | re.ASCII)

MAX_INT = 2**63 - 1
"""Integers in IR text fit in int64 (what torch indexes with)."""
MAX_FOLDS = 1 << 22
"""The longest index list, range or fold count the parser builds (4M: far beyond any circuit,
far below what hangs)."""

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
        return self.bounded(text, start)

    def bounded(self, text: str, start: int) -> int:
        """The int spelled `text`, or an error if it does not fit in int64."""
        if len(text.lstrip("+-")) > 19 or abs(int(text)) > MAX_INT:
            raise self.error(f"the integer {text} does not fit in int64", start)
        return int(text)

    def index_range(self, first: int, start: int) -> tuple[int, ...]:
        """`first:stop[:step]` (after `first`), as indices; bounded before it is built."""
        stop = self.integer()
        step = self.integer() if self.accept(":") else 1
        if step <= 0:
            raise self.error(f"a range needs a positive step, got {step}", start)
        size = len(range(first, stop, step))
        if size > MAX_FOLDS:
            raise self.error(f"a range of {size} indices is longer than {MAX_FOLDS}", start)
        return tuple(range(first, stop, step))

    def index_list(self, first: int, start: int) -> tuple[int, ...]:
        """`first, b, c, ...` (after `first`), bounded in length."""
        items = [first]
        while self.accept(","):
            items.append(self.integer())
            if len(items) > MAX_FOLDS:
                raise self.error(f"an index list longer than {MAX_FOLDS}", start)
        return tuple(items)


def _describe(kind: str, text: str) -> str:
    return "the end of the line" if kind == "end" else f"'{text}'"


class _Parser:
    def __init__(self, first_free_id: int) -> None:
        self.graph = Graph()
        self.values: dict[str, int] = {}
        self.returned = False
        self.next_free_id = first_free_id  # for values not spelled %N
        self.seen_header = False
        # Printed text repeats ops and fold maps a lot; both are immutable, so share them.
        # (op, where its location starts, counted from the end of the line)
        self.op_cache: dict[tuple[str, str], tuple[Op, int]] = {}
        self.fold_maps: dict[tuple[tuple[int, ...], tuple[int, ...]], FoldMap] = {}

    # -- pieces of lines ----------------------------------------------------------------------

    def folds(self, line: _Line) -> tuple[int, ...]:
        """Index lists inside operand brackets: empty, `a:b[:s]`, or `a, b, ...`."""
        kind, _, start = line.peek()
        if kind != "int":
            return ()
        first = line.integer()
        if line.accept(":"):
            return line.index_range(first, start)
        return line.index_list(first, start)

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
            first = line.bounded(text, start)
            if line.accept(":"):
                return line.index_range(first, start)
            return first
        if kind == "float":
            return float(text)
        if kind == "string":
            return json.loads(text)
        if kind == "punct" and text == "[":
            items: tuple[int, ...] = ()
            if not line.accept("]"):
                items = line.index_list(line.integer(), start)
                line.expect("]", " to close the list")
            return items
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
        except (TypeError, ValueError, OverflowError) as error:
            raise line.error(f"bad {name} initializer: {error}", start) from None

    def build(
        self,
        line: _Line,
        name: str,
        start: int,
        fields: dict[str, tuple[object, int]],
        extra: dict[str, object] | None = None,
    ) -> Op:
        cls = lookup_op(name)
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
        except (TypeError, ValueError, OverflowError) as error:
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
        if lookup_op(name) is None:
            raise line.error(
                f"unknown op '{name}'; expected one of: {', '.join(registered_ops())}", name_start
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
        cached = self.op_cache.get(key)
        if cached is None:
            op = self.op(line, name, name_start)
            self.op_cache[key] = (op, line.pos - len(line.text))
        else:
            op = cached[0]
            line.skip_to(len(line.text) + cached[1])
        location = self.location(line)
        node = self.graph.add_op(
            op, location=location, node=self.node_id(line, result, result_start)
        )
        self.values[result] = node
        for slot, pieces in slots:
            if pieces is not None:
                self.connect(line, node, slot, pieces)

    def node_id(self, line: _Line, name: str, start: int) -> int:
        """`%N` is node N; other names take the next id after every `%N` of the text."""
        digits = name[1:]
        if digits.isdigit() and digits.isascii():
            return line.bounded(digits, start + 1)
        node = self.next_free_id
        self.next_free_id += 1
        return node

    def location(self, line: _Line) -> Location | None:
        """An optional `loc(layers=..., slot=...)` after the type."""
        kind, word, start = line.peek()
        if not (kind == "ident" and word == "loc"):
            return None
        line.next()
        line.expect("(", " after 'loc'")
        fields = self.attributes(line, ")")
        unknown = set(fields) - {"layers", "slot"}
        if unknown:
            raise line.error(f"loc takes layers= and slot=, not {sorted(unknown)}", start)
        layers, _ = fields.get("layers", ((), start))
        slot, _ = fields.get("slot", (None, start))
        if isinstance(layers, int) and not isinstance(layers, bool):
            layers = (layers,)
        if not isinstance(layers, tuple) or not (slot is None or isinstance(slot, str)):
            raise line.error("loc(layers=[i, ...], slot=name): an index list and a name", start)
        return Location(layers, slot)

    def header(self, line: _Line) -> None:
        """`graph {num_variables=D, num_channels=C}`: the data the circuit reads."""
        _, _, start = line.next()  # 'graph'
        if self.values or self.returned or self.seen_header:
            raise line.error("the graph header comes first, once", start)
        self.seen_header = True
        line.expect("{", " after 'graph'")
        for key, (value, column) in self.attributes(line, "}").items():
            if key not in ("num_variables", "num_channels"):
                raise line.error(
                    f"the graph header declares num_variables and num_channels, not '{key}'",
                    column,
                )
            least = 0 if key == "num_variables" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise line.error(f"{key} must be an int >= {least}, got {value!r}", column)
            setattr(self.graph, key, value)

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
        sizes = [None if d == "?" else line.bounded(d, type_start) for d in dims]
        if sizes[0] is not None and sizes[0] > MAX_FOLDS:
            raise line.error(f"{sizes[0]} folds: more than the {MAX_FOLDS} allowed", type_start)
        cls = lookup_op(name)
        extra: dict[str, object] = {}
        if issubclass(cls, ParamOp):
            if "?" in dims:
                raise line.error("a parameter op's type is a shape, without '?'", type_start)
            extra["shape"] = tuple(sizes)
        elif issubclass(cls, CircuitOp):
            if len(dims) != 3 or dims[1] != "?" or "?" in (dims[0], dims[2]):
                raise line.error("a circuit op's type is FOLDSx?xUNITS", type_start)
            if any(is_folds_field(f) for f in attrs.fields(cls)):
                extra["num_folds"] = sizes[0]
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
        folds = self.graph.op(node).num_folds
        for producer, produced, consumer, start in pieces:
            available = self.graph.op(producer).num_folds
            if produced is None:
                produced = tuple(range(available))
            elif any(not 0 <= p < available for p in produced):
                bad = next(p for p in produced if not 0 <= p < available)
                raise line.error(
                    f"fold {bad} of {self.graph.describe(producer)}, which has {available} fold(s)",
                    start,
                )
            if consumer is None:
                consumer = tuple(range(cursor, cursor + len(produced)))
                cursor += len(produced)
            if any(not 0 <= c < folds for c in consumer):
                raise line.error(
                    f"the slot reads into fold {max(consumer)}, but the op has {folds} fold(s)",
                    start,
                )
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
            node, start = self.reference(line)
            available = self.graph.op(node).num_folds
            if line.accept("["):
                folds = self.folds(line)
                line.expect("]", " to close the fold list")
                if any(not 0 <= f < available for f in folds):
                    raise line.error(
                        f"output folds out of range: {self.graph.describe(node)} has"
                        f" {available} fold(s)",
                        start,
                    )
            else:
                folds = tuple(range(available))
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
        elif kind == "ident" and word == "graph":
            self.header(line)
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
    if not isinstance(text, str):
        raise IRParseError(f"parse_ir takes IR text (a str), got {type(text).__name__}")
    numbered = [int(n) for n in _NUMBERED.findall(text) if len(n) <= 19]
    parser = _Parser(first_free_id=max(numbered, default=-1) + 1)
    for lineno, line in enumerate(text.splitlines(), start=1):
        try:
            parser.line(line, lineno)
        except CirkitIRError as error:
            if isinstance(error, IRParseError):
                raise
            raise _line_error(line, lineno, str(error)) from None
        except (
            ValueError,
            TypeError,
            OverflowError,
            IndexError,
            KeyError,
            RecursionError,
        ) as error:
            # A constructor or a graph method refused what the text built: still the text's
            # fault, reported at its line.
            raise _line_error(line, lineno, f"{type(error).__name__}: {error}") from None
    return parser.graph


def _line_error(text: str, lineno: int, message: str) -> IRParseError:
    return _Line(text, lineno).error(message, len(text) - len(text.lstrip()))
