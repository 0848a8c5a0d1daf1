"""Rate limits per user, channel and workspace, and a cap on concurrent model calls.

Why token buckets: a person typing three quick follow-ups is normal and should pass (the
burst), while a script or a loop between two bots must not run up the model bill (the
sustained rate). One bucket per user, per channel and per workspace, so a single noisy user,
a busy channel and a whole tenant are each held to their own budget.

Why Redis: with several workers behind a load balancer each would otherwise grant the full
budget, multiplying the limit by the number of workers. With `REDIS_URL` set the buckets and
the model-call slots live in Redis and are shared; without it they are kept in this process.

Why degrade instead of fail: a rate limiter guards the bot, it must never be the reason the
bot stops answering. When Redis is unreachable or errors, a call falls back to the in-process
buckets (limits then hold per worker rather than per deployment), the outage is logged once,
`health()` says "degraded", and Redis is tried again after `REDIS_RETRY_SECONDS`, not on
every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

log = structlog.get_logger(__name__)

# A killed worker cannot release its model-call slots; their leases lapse after this long.
# Live holders renew well before then, so a slow model call does not lose its slot.
LEASE_SECONDS = 120.0
# After a Redis failure, serve from memory this long before trying Redis again.
REDIS_RETRY_SECONDS = 5.0
# Bound on in-process state (buckets and refusal markers), least recently used dropped first.
MAX_MEMORY_KEYS = 100_000
# Polling for a free model slot in Redis: first and longest pause between attempts.
SLOT_POLL_MIN_SECONDS = 0.01
SLOT_POLL_MAX_SECONDS = 0.2
# A rate limiter sits on every message: a hung Redis must cost at most this long before the
# call degrades to memory, not the client's default of several seconds with ten retries.
REDIS_TIMEOUT_SECONDS = 1.0

SCOPES = ("user", "channel", "workspace")


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: `burst` messages at once, refilled at `per_minute` sustained.

    The burst lets a person send a few quick messages; the rate stops a loop or a script.
    """

    per_minute: float   # sustained
    burst: int          # bucket size

    def __post_init__(self) -> None:
        # A zero rate would never refill (division by zero in retry_after); a bucket smaller
        # than one token could never admit a message. Both are configuration mistakes.
        if not self.per_minute > 0:
            raise ValueError(f"Rate.per_minute must be positive, got {self.per_minute!r}")
        if self.burst < 1:
            raise ValueError(f"Rate.burst must be at least 1, got {self.burst!r}")

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one message, with what the caller needs to answer politely."""

    allowed: bool
    retry_after: float = 0.0   # seconds until the limiting bucket has a token
    scope: str = ""            # which limit refused: "user", "channel", "workspace"
    # True only for the first refusal of this key within its refusal window, so the user is
    # told once when to retry instead of getting a reply to every message they send.
    notify: bool = False


ALLOWED = Decision(allowed=True)


def _part(value: str) -> str:
    """Escape the separators so that distinct (platform, workspace, id) tuples never share a
    key: without it user "a:b" in workspace "w" and user "b" in workspace "w:a" would."""
    return value.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def _bucket_keys(platform: str, workspace: str, channel: str, user: str) -> tuple[str, str, str]:
    """Keys of the user, channel and workspace buckets, without the prefix.

    The scope is part of the key because a channel and a user may share an id (Discord DMs).
    The `{platform:workspace}` hash tag keeps one message's keys in one Redis Cluster slot,
    which a multi-key script needs.
    """
    tenant = f"{{{_part(platform)}:{_part(workspace)}}}"
    return (f"rl:user:{tenant}:{_part(user)}",
            f"rl:channel:{tenant}:{_part(channel)}",
            f"rl:workspace:{tenant}")


# ---------------------------------------------------------------------------------------------
# In-process backend
# ---------------------------------------------------------------------------------------------

class _MemoryBuckets:
    """Token buckets and refusal markers in this process, with the same semantics as the Redis
    script. Memory stays bounded: a bucket idle long enough to be full again is dropped (an
    absent bucket *is* a full one, so that loses nothing), and beyond `max_keys` the least
    recently used entries go."""

    SWEEP_PER_CALL = 32  # amortised clean-up; the cap bounds memory regardless

    def __init__(self, clock: Callable[[], float], max_keys: int) -> None:
        self._clock = clock
        self._max_keys = max_keys
        # key -> [tokens, updated_at, full_at]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        # key -> time until which a refusal of that key has already been announced
        self._notified: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets) + len(self._notified)

    def check(self, keys: Sequence[str], rates: Sequence[Rate]) -> Decision:
        now = self._clock()
        self._sweep(now)
        levels: list[float] = []
        worst, worst_index = 0.0, -1
        for index, (key, rate) in enumerate(zip(keys, rates, strict=True)):
            state = self._buckets.get(key)
            tokens = float(rate.burst) if state is None else min(
                float(rate.burst), state[0] + max(0.0, now - state[1]) * rate.per_second)
            levels.append(tokens)
            if tokens < 1.0:
                wait = (1.0 - tokens) / rate.per_second
                if wait > worst:
                    worst, worst_index = wait, index
        if worst_index >= 0:
            # Refused: no bucket is touched, so a message stopped by one limit does not spend
            # the budget of the others.
            return Decision(allowed=False, retry_after=worst, scope=SCOPES[worst_index],
                            notify=self._first_refusal(keys[worst_index], now, worst))
        for key, rate, tokens in zip(keys, rates, levels, strict=True):
            left = tokens - 1.0
            self._buckets[key] = [left, now, now + (rate.burst - left) / rate.per_second]
            self._buckets.move_to_end(key)
        self._trim(self._buckets)
        return ALLOWED

    def _first_refusal(self, key: str, now: float, window: float) -> bool:
        until = self._notified.get(key)
        if until is not None and until > now:
            return False
        self._notified[key] = now + window
        self._notified.move_to_end(key)
        self._trim(self._notified)
        return True

    def _sweep(self, now: float) -> None:
        """Drop entries at the old end that no longer matter: buckets full again, markers past
        their window. Stops at the first live one; the key cap is the hard bound."""
        for _ in range(self.SWEEP_PER_CALL):
            oldest = next(iter(self._buckets.items()), None)
            if oldest is None or oldest[1][2] > now:
                break
            del self._buckets[oldest[0]]
        for _ in range(self.SWEEP_PER_CALL):
            marker = next(iter(self._notified.items()), None)
            if marker is None or marker[1] > now:
                break
            del self._notified[marker[0]]

    def _trim(self, store: OrderedDict[str, Any]) -> None:
        while len(store) > self._max_keys:
            store.popitem(last=False)


# ---------------------------------------------------------------------------------------------
# Redis backend
# ---------------------------------------------------------------------------------------------

# KEYS: user, channel, workspace buckets, then their three "refusal announced" markers.
# ARGV: per-second rate and burst for each bucket, in the same order.
# Returns {allowed, retry_after as a string (Lua numbers become integers in replies),
#          1-based index of the limiting bucket, notify}.
# Time comes from Redis so that workers with skewed clocks agree on one bucket.
# Numbers are written with string.format: Lua's tostring keeps only 14 digits.
_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local worst, worst_i = 0, 0
for i = 1, 3 do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens, ts = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
  elseif now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
  end
  levels[i] = tokens
  if tokens < 1 then
    local wait = (1 - tokens) / rate
    if wait > worst then worst, worst_i = wait, i end
  end
end
if worst_i > 0 then
  local ms = math.max(1, math.ceil(worst * 1000))
  local fresh = redis.call('SET', KEYS[3 + worst_i], '1', 'NX', 'PX', ms)
  return {0, string.format('%.17g', worst), worst_i, fresh and 1 or 0}
end
for i = 1, 3 do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local left = levels[i] - 1
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', left),
             'ts', string.format('%.6f', now))
  redis.call('PEXPIRE', KEYS[i], math.max(1, math.ceil((burst - left) / rate * 1000)))
end
return {1, '0', 0, 0}
"""

# KEYS: the lease set. ARGV: capacity, lease seconds, lease id. Returns 1 if leased.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + lease), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
  return 1
end
return 0
"""

# KEYS: the lease set. ARGV: lease seconds, lease id. Extends a lease still held; 0 if lost.
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', string.format('%.6f', now + lease), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
return 1
"""


class _Script:
    """A Lua script run by EVALSHA, falling back to EVAL (which also caches it) on NOSCRIPT,
    as after a Redis restart or SCRIPT FLUSH. Sends the body only when Redis lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: aioredis.Redis, keys: Sequence[str],
                       args: Sequence[str | int | float]) -> Any:
        try:
            return await cast(Awaitable[Any],
                              client.evalsha(self.sha, len(keys), *keys, *args))
        except NoScriptError:
            return await cast(Awaitable[Any],
                              client.eval(self.source, len(keys), *keys, *args))


_TAKE = _Script(_TAKE_LUA)
_ACQUIRE = _Script(_ACQUIRE_LUA)
_RENEW = _Script(_RENEW_LUA)


# ---------------------------------------------------------------------------------------------
# The limiter
# ---------------------------------------------------------------------------------------------

class RateLimiter:
    """Per-user, per-channel and per-workspace token buckets plus a cap on concurrent model
    calls, in Redis when `redis_url` is given (shared by all workers), in-process otherwise.

    `clock` (monotonic seconds) drives the in-process buckets and the Redis retry hold-off;
    tests inject one to step time. Redis buckets use Redis's own clock.
    """

    def __init__(self, *, user: Rate, channel: Rate, workspace: Rate,
                 max_concurrent_model_calls: int, redis_url: str | None = None,
                 prefix: str = "bothub:", clock: Callable[[], float] | None = None) -> None:
        if max_concurrent_model_calls < 1:
            raise ValueError("max_concurrent_model_calls must be at least 1, "
                             f"got {max_concurrent_model_calls!r}")
        self._rates = (user, channel, workspace)
        self._capacity = max_concurrent_model_calls
        self._prefix = prefix
        self._clock = clock or time.monotonic
        self._memory = _MemoryBuckets(self._clock, MAX_MEMORY_KEYS)
        self._semaphore = asyncio.Semaphore(max_concurrent_model_calls)
        self._redis: aioredis.Redis | None = None
        if redis_url:
            # Fail fast and retry once (a dropped connection reconnects transparently); a
            # longer wait would stall every message while Redis is down.
            self._redis = aioredis.Redis.from_url(
                redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 1),
                client_name="bothub-ratelimit")
        self._error: str | None = None   # type of the last Redis failure while degraded
        self._retry_at = 0.0             # clock() after which Redis is tried again
        self._slots_key = f"{prefix}model_slots"

    # -- rate limits ----------------------------------------------------------------------

    async def check(self, *, platform: str, workspace: str, channel: str,
                    user: str) -> Decision:
        """Take one token from the user, channel and workspace buckets, all or none.

        All or none because a message refused by one limit was not handled, so it must not
        eat into the other budgets (a user hammering their own limit would otherwise starve
        their channel). Refused decisions name the limiting scope and when to retry: the
        longest wait among the empty buckets, since the message needs a token from each.
        """
        keys = _bucket_keys(platform, workspace, channel, user)
        if self._redis is not None and self._redis_due():
            prefixed = [self._prefix + key for key in keys]
            args: list[str | int | float] = []
            for rate in self._rates:
                args += [repr(rate.per_second), rate.burst]
            try:
                reply = await _TAKE(self._redis, [*prefixed, *(k + ":notice" for k in prefixed)],
                                    args)
                decision = _parse_take(reply)
            except Exception as exc:
                self._failed(exc)
            else:
                self._succeeded()
                return decision
        return self._memory.check(keys, self._rates)

    # -- model-call slots -----------------------------------------------------------------

    def model_slot(self) -> AbstractAsyncContextManager[None]:
        """Wait for one of `max_concurrent_model_calls` slots and hold it for the block.

        The cap protects the model provider's concurrency limit and the deployment's cost
        across all workers. In Redis a slot is a lease in a sorted set scored by expiry, so a
        killed worker's slots come back after `LEASE_SECONDS`; a live holder renews its lease.
        """
        return self._slot()

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        lease = uuid.uuid4().hex
        if await self._acquire_redis_slot(lease):
            renewer = asyncio.create_task(self._renew(lease))
            try:
                yield
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                await self._release(lease)
            return
        async with self._semaphore:
            yield

    async def _acquire_redis_slot(self, lease: str) -> bool:
        """True once a Redis lease is held; False to use the in-process semaphore instead
        (no Redis, or it failed). Polls with a growing, jittered pause: Redis has no
        blocking wait on a sorted-set count, and jitter keeps workers from polling in step."""
        delay = SLOT_POLL_MIN_SECONDS
        while self._redis is not None and self._redis_due():
            try:
                got = await _ACQUIRE(self._redis, [self._slots_key],
                                     [self._capacity, repr(LEASE_SECONDS), lease])
            except asyncio.CancelledError:
                # The script may have run before the cancellation reached us.
                await self._release(lease)
                raise
            except Exception as exc:
                self._failed(exc)
                return False
            self._succeeded()
            if int(got) == 1:
                return True
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, SLOT_POLL_MAX_SECONDS)
        return False

    async def _renew(self, lease: str) -> None:
        """Extend the lease while the model call runs, so only a dead worker's lease lapses."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            if self._redis is None:
                return
            try:
                held = await _RENEW(self._redis, [self._slots_key], [repr(LEASE_SECONDS), lease])
            except Exception as exc:
                self._failed(exc)
                continue
            if not int(held):
                log.warning("ratelimit.model_slot_lease_lost", lease=lease)
                return

    async def _release(self, lease: str) -> None:
        """Give the slot back; if Redis is unreachable the lease lapses on its own."""
        if self._redis is None:
            return
        try:
            await cast(Awaitable[Any], self._redis.zrem(self._slots_key, lease))
        except Exception as exc:
            self._failed(exc)

    # -- health and shutdown --------------------------------------------------------------

    async def health(self) -> dict[str, object]:
        """For /healthz: which backend, and whether Redis is reachable.

        Pings Redis (unless a failure is being waited out) so an idle worker still notices an
        outage or a recovery, not only one that is handling messages.
        """
        if self._redis is None:
            return {"backend": "memory", "state": "ok"}
        if self._redis_due():
            try:
                await cast(Awaitable[Any], self._redis.ping())
            except Exception as exc:
                self._failed(exc)
            else:
                self._succeeded()
        if self._error is not None:
            return {"backend": "redis", "state": "degraded", "error": self._error}
        return {"backend": "redis", "state": "ok"}

    async def close(self) -> None:
        """Close the Redis connections (held slots lapse with their leases)."""
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    # -- degrade and recover ----------------------------------------------------------------

    def _redis_due(self) -> bool:
        """Whether to use Redis for this call. While degraded, one call per
        `REDIS_RETRY_SECONDS` probes Redis; the others go straight to memory, so an outage
        does not add a connection timeout to every message."""
        if self._error is None:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + REDIS_RETRY_SECONDS
        return True

    def _failed(self, exc: Exception) -> None:
        if self._error is None:
            log.warning("ratelimit.redis_unavailable", error=type(exc).__name__,
                        detail=str(exc)[:200], fallback="memory",
                        retry_in_seconds=REDIS_RETRY_SECONDS)
        self._error = type(exc).__name__
        self._retry_at = self._clock() + REDIS_RETRY_SECONDS

    def _succeeded(self) -> None:
        if self._error is not None:
            log.info("ratelimit.redis_recovered", after=self._error)
            self._error = None


def _parse_take(reply: Any) -> Decision:
    allowed, retry_after, index, notify = reply
    if int(allowed):
        return ALLOWED
    return Decision(allowed=False, retry_after=float(retry_after),
                    scope=SCOPES[int(index) - 1], notify=bool(int(notify)))


__all__ = ["LEASE_SECONDS", "Decision", "Rate", "RateLimiter"]
