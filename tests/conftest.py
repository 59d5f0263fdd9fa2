"""Shared test configuration: hypothesis profiles, and the seed circuit as session fixtures.

``HYPOTHESIS_PROFILE=ci`` (what ``.ci/run`` sets) runs enough examples to matter, with a fixed
derandomized sequence so CI is reproducible; ``dev`` (the default) runs a few, randomly, for a
quick local loop; ``thorough`` is for hunting bugs by hand. Property tests scale their own
example counts from the profile's ``max_examples`` (see tests/test_properties.py).

The seed notebook's circuit (4163 layers) is built and lowered once per session, not once per
test file: it is among the slowest things the tests build.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from ir_cases import seed_like

from cirkit_ir.ir import Graph, lower
from cirkit_ir.ir.printer import print_ir
from cirkit_ir.symbolic import Circuit

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

settings.register_profile("ci", max_examples=150, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=15, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def seed_circuit() -> Circuit:
    """The seed notebook's circuit: 28x28 images, quad graph, 4 categorical and 4 tucker units.

    Shared by every test that asks for it: a symbolic circuit is not changed after
    construction (compiling and evaluating only read it).
    """
    return seed_like((1, 28, 28))


@pytest.fixture(scope="session")
def seed_graph(seed_circuit: Circuit) -> Iterator[Graph]:
    """The seed circuit lowered, shared by every test that asks for it.

    A graph is mutable and passes change it in place: run them on ``seed_graph.clone()``.
    The check at the end of the session catches a test that changed the shared graph.
    """
    graph = lower(seed_circuit)
    text = print_ir(graph)
    yield graph
    assert print_ir(graph) == text, (
        "a test changed the shared seed_graph fixture; run passes on seed_graph.clone()"
    )
