"""`gc_paused()`: Python's cyclic garbage collector off for the length of a block.

Compiling (lowering, the passes, codegen) allocates tens of thousands of small objects and
frees almost none of them until it is done. Every few hundred allocations the cyclic collector
runs and rescans the growing heap, finding nothing to free: left on, it can take a third to a
half of compile time. Reference counting still frees what goes out of scope while it is off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """Disables the cyclic garbage collector inside the block (when `pause`).

    Nesting-safe: on exit, normal or by an exception, the collector is enabled again only if
    it was enabled on entry, so an inner block never turns it back on under an outer one (or
    under a caller that had turned it off on purpose). `pause=False` makes the block a no-op,
    for callers that let users opt out.
    """
    if not pause:
        yield
        return
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
