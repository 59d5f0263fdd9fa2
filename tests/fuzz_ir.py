"""Fuzzing the IR parser and verifier with mutated printed IR.

`mutate(text, draw)` applies one hostile edit to printed IR, choosing with `draw(n)` (an int in
0..n-1): hypothesis draws in `tests/test_reliability.py`, `random` here. A parse and verify
of the result must end, within a second, in success or an exception from `cirkit_ir.errors`.

Run ``python tests/fuzz_ir.py [--mutants N] [--seed S]`` for the counts by outcome; anything
counted under 'other' or 'slow' is a bug, and the first few are printed.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ir_cases import (  # noqa: E402
    folded_graph,
    four_variable_circuit,
    hadamard_circuit,
    quad_tree_2x2,
    stacked_graph,
    tiny_circuit,
    zoo_graph,
)

from cirkit_ir.errors import CirkitIRError, IRParseError, VerificationError  # noqa: E402
from cirkit_ir.ir import lower, verify  # noqa: E402
from cirkit_ir.ir.parser import parse_ir  # noqa: E402
from cirkit_ir.ir.printer import print_ir  # noqa: E402
from cirkit_ir.passes import PassManager, default_pipeline  # noqa: E402

Draw = Callable[[int], int]

HOSTILE_NUMBERS = (
    "0",
    "-1",
    "-99",
    "7",
    "100000000000",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "\u0661\u0662",
    "\uff11",
    "1_000",
    "0x10",
    "00",
    "+3",
    "1000000000",
)
HOSTILE_SNIPPETS = (
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ",",
    ":",
    "x",
    "?",
    "%",
    "@",
    '"',
    "'",
    "\\",
    "\n",
    " : 1000000000x?x1",
    "sources=0:100000000000",
    "axis=-99",
    "%99999999",
    "%-1",
    "return",
    "graph {}",
    "\u0000",
    "\u00e9",
    "0:0:0",
    "1:5:0",
    "x" * 200,
)


@cache
def templates() -> tuple[str, ...]:
    """Printed IR of several graphs: lowered circuits, folded graphs, an optimized pipeline."""
    graphs = [lower(c) for c in (tiny_circuit(), four_variable_circuit(), hadamard_circuit())]
    graphs += [folded_graph(), stacked_graph(), zoo_graph()]
    optimized = lower(quad_tree_2x2())
    PassManager.parse(default_pipeline("lse-sum", fold=True, optimize=True)).run(optimized)
    graphs.append(optimized)
    return tuple(print_ir(g) for g in graphs)


_NUMBER = re.compile(r"-?\d+")
_TOKEN = re.compile(r"%\d+|-?\d+(?:\.\d+)?|\w+|[^\s\w]")


def mutate(text: str, draw: Draw) -> str:
    """One hostile edit of `text`."""
    kind = draw(8)
    if kind == 0:  # a number made hostile
        spans = [m.span() for m in _NUMBER.finditer(text)]
        if spans:
            a, b = spans[draw(len(spans))]
            return text[:a] + HOSTILE_NUMBERS[draw(len(HOSTILE_NUMBERS))] + text[b:]
    if kind == 1:  # a snippet inserted
        at = draw(len(text) + 1)
        return text[:at] + HOSTILE_SNIPPETS[draw(len(HOSTILE_SNIPPETS))] + text[at:]
    if kind == 2:  # a span deleted
        at = draw(len(text) + 1)
        return text[:at] + text[at + 1 + draw(20) :]
    lines = text.split("\n")
    if kind == 3:  # a line duplicated
        i = draw(len(lines))
        return "\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
    if kind == 4:  # two lines swapped
        i, j = draw(len(lines)), draw(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if kind == 5:  # a line dropped
        del lines[draw(len(lines))]
        return "\n".join(lines)
    tokens = [m.span() for m in _TOKEN.finditer(text)]
    if not tokens:
        return text
    a, b = tokens[draw(len(tokens))]
    if kind == 6:  # a token replaced by another token of the text
        c, d = tokens[draw(len(tokens))]
        return text[:a] + text[c:d] + text[b:]
    return text[:a] + text[a:b] * (2 + draw(3)) + text[b:]  # a token repeated


def outcome(text: str) -> tuple[str, float, BaseException | None]:
    """('ok' | 'parse' | 'verify' | 'error' | 'other', seconds, the exception)."""
    start = time.perf_counter()
    try:
        verify(parse_ir(text))
        kind, error = "ok", None
    except IRParseError as e:
        kind, error = "parse", e
    except VerificationError as e:
        kind, error = "verify", e
    except CirkitIRError as e:
        kind, error = "error", e
    except Exception as e:  # noqa: BLE001 - what the fuzzer is looking for
        kind, error = "other", e
    return kind, time.perf_counter() - start, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="500 mutants")
    args = parser.parse_args(argv)
    count = 500 if args.quick else args.mutants
    rng = random.Random(args.seed)
    draw: Draw = lambda n: rng.randrange(n)  # noqa: E731
    counts: Counter[str] = Counter()
    shown = 0
    slowest = 0.0
    retimed = 0
    start = time.perf_counter()
    for _ in range(count):
        base = templates()[draw(len(templates()))]
        text = base
        for _ in range(1 + draw(3)):
            text = mutate(text, draw)
        kind, seconds, error = outcome(text)
        slowest = max(slowest, seconds)
        if seconds > 1.0:  # timed again: a collector pause is not the parser's
            retimed += 1
            seconds = outcome(text)[1]
            if seconds > 1.0:
                kind = "slow"
        counts[kind] += 1
        if kind in ("other", "slow") and shown < 5:
            shown += 1
            print(f"--- {kind} ({seconds:.2f} s): {type(error).__name__}: {error}\n{text}\n")
    took = time.perf_counter() - start
    print(f"{count} mutants in {took:.1f} s (slowest {slowest:.3f} s, {retimed} timed again):")
    for kind in ("ok", "parse", "verify", "error", "other", "slow"):
        print(f"  {kind:7s} {counts[kind]}")
    return 1 if counts["other"] or counts["slow"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
