"""Shared test configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (what ``.ci/run`` sets) runs enough examples to matter, with a fixed
derandomized sequence so CI is reproducible; ``dev`` (the default) runs a few, randomly, for a
quick local loop; ``thorough`` is for hunting bugs by hand. Property tests scale their own
example counts from the profile's ``max_examples`` (see tests/test_properties.py).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

settings.register_profile("ci", max_examples=150, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=15, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
