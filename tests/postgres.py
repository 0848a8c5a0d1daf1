"""A throwaway PostgreSQL database, for the tests and for the benchmarks' PostgreSQL runs."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn

import psycopg


@contextlib.contextmanager
def throwaway_database(admin_url: str, prefix: str,
                       unreachable: Callable[[str], NoReturn]) -> Iterator[str]:
    """The URL of a new, empty database on the server at `admin_url`, dropped afterwards with
    whatever it holds, so no user of it sees another's rows. A server that cannot be reached
    is reported through `unreachable` (a test fails, a benchmark stops)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unreachable(f"PostgreSQL is not reachable at {admin_url}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
