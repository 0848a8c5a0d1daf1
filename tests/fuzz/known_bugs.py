"""Bugs the fuzz found, each reproduced by an xfail(strict) test in `test_known_bugs.py`.

While a bug is open the fuzz tolerates a 500 for exactly the requests that trigger it (each
predicate below mirrors the failing code path) and fails on any other 5xx. When a fix lands,
its xfail test passes, strict xfail turns that into a failure, and the fix removes the marker
and the predicate here together.

None is open: every bug found so far is fixed, and its reproduction in `test_known_bugs.py`
is now an ordinary regression test. A new one adds its `BUG_...` reason here, a predicate in
`make_known_bug` (a 500) or `explained_crash` (a logged crash), and an `@bug(...)` test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fuzz.world import Crash, ServerLog


def make_known_bug(signing_secret: str, log: ServerLog) -> Any:
    """The predicate a `World` asks about a 500: which known bug explains it, if any. `log`
    says where the server raised the exception behind the 500 (`log.unhandled`); Slack's
    predicates need the signing secret to tell signed requests from the others."""

    def known_bug(method: str, target: str, headers: Mapping[str, Any],
                  body: bytes) -> str | None:
        return None

    return known_bug


def explained_crash(crash: Crash) -> str | None:
    """A crash the server logged that a known bug explains."""
    return None
