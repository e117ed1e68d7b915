"""Security claims of the README, each checked locally: moto for the handlers, the template as data.

The handler fixtures are the fuzzers' (``tests/fuzz/fuzz_world.py``): moto's table, versioned
bucket and state machine with the functions' environment, and two owners' seeded jobs.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[2]
for shared in (TESTS_DIR / "unit" / "handlers", TESTS_DIR / "fuzz"):
    if str(shared) not in sys.path:
        sys.path.insert(0, str(shared))

from fuzz_world import fuzz_world  # noqa: E402,F401
