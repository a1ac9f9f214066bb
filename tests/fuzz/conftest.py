"""Hypothesis profiles for the property-based tests of the parsers of outside input.

``ci`` (chosen when ``CI`` is set, as in ``.ci/run``): thousands of cases per parser, no example database (nothing
is written into the checkout), and the reproduction blob printed with any failure. ``dev`` (otherwise): a few
hundred cases per test, for a quick run; its database stays in ``.hypothesis/`` (ignored by git), so a failure
found once is tried first the next time. ``HYPOTHESIS_PROFILE=ci`` (or ``dev``, or ``thorough``) picks one by hand.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The suite-wide autouse fixture (a private HOME per test) is function-scoped: sharing it between the examples of
# one test is what we want, since no parser here reads HOME except through an explicit argument.
_SHARED = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}

settings.register_profile("ci", max_examples=1000, database=None, print_blob=True, **_SHARED)
settings.register_profile("dev", max_examples=200, **_SHARED)
settings.register_profile("thorough", max_examples=20000, **_SHARED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
