"""Where the hub under load keeps its state: SQLite (the embedded default) or PostgreSQL + Redis
(the production shape: several workers share both).

For PostgreSQL each run gets a database of its own, created empty and dropped afterwards, so a
run never sees another's rows. Redis gets a database index of its own that is emptied before and
after the run: the hub's answer cache lives there, and the harness asks the same numbered
questions on every run, so answers left from an earlier run would come back from the cache
without the model's stream and falsify the timings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NoReturn

import redis

from tests.postgres import throwaway_database

STORAGES = ("sqlite", "postgres")
POSTGRES_ADMIN_URL = os.environ.get("BOTHUB_BENCH_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/test")
# Database 13: away from the 0 the test suite uses, so a run beside the tests cannot empty theirs.
REDIS_URL = os.environ.get("BOTHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


@contextlib.contextmanager
def provisioned(storage: str) -> Iterator[dict[str, str]]:
    """The environment that points `bothub serve` at `storage`, ready for the run and cleaned
    up after it. SQLite needs nothing: the hub's data directory is the run's own."""
    if storage == "sqlite":
        yield {}
        return
    if storage != "postgres":
        raise ValueError(f"unknown storage {storage!r}; one of {', '.join(STORAGES)}")
    with throwaway_database(POSTGRES_ADMIN_URL, "bothub_load", _postgres_unreachable) \
            as database_url, _redis_database() as redis_url:
        yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


def _postgres_unreachable(problem: str) -> NoReturn:
    raise SystemExit(f"{problem} (set BOTHUB_BENCH_POSTGRES_URL)")


@contextlib.contextmanager
def _redis_database() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis is not reachable at {REDIS_URL} "
                         f"(set BOTHUB_BENCH_REDIS_URL): {exc}") from None
    try:
        yield REDIS_URL
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()
