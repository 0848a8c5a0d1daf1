"""Rate limits: token buckets per user, channel and workspace, the cap on concurrent model calls,
and falling back to memory when Redis is down. In-process tests step an injected clock; Redis
tests run against the real server at REDIS_URL, each under its own key prefix."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from bot import ratelimit
from bot.ratelimit import Decision, Rate, RateLimiter

REDIS_URL = os.environ.get("BOTHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"
# One token a second; the three scopes differ in size so each can be made the one that refuses.
RATES: dict[str, Rate] = {"user": Rate(60, 3), "channel": Rate(60, 5), "workspace": Rate(60, 8)}
WHO = {"platform": "slack", "workspace": "T1", "channel": "C1", "user": "U1"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingLog:
    """Stands in for the module's structlog logger (whose configuration may be cached)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.events if name == event]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recorder = RecordingLog()
    monkeypatch.setattr(ratelimit, "log", recorder)
    return recorder


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own, and its keys deleted afterwards."""
    value = f"test-ratelimit:{uuid.uuid4().hex}:"
    yield value
    keys = [key async for key in redis_client.scan_iter(match=f"{value}*")]
    if keys:
        await redis_client.delete(*keys)


Factory = Callable[..., RateLimiter]


@pytest.fixture
async def make_limiter(clock: FakeClock) -> AsyncIterator[Factory]:
    """Build limiters (in-process by default) with RATES and the fake clock; closes them all."""
    made: list[RateLimiter] = []

    def make(**overrides: Any) -> RateLimiter:
        options: dict[str, Any] = {**RATES, "max_concurrent_model_calls": 2, "clock": clock}
        options.update(overrides)
        limiter = RateLimiter(**options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, make_limiter: Factory) -> Factory:
    """The same behaviour on both backends (only the Redis one needs a prefix)."""
    if request.param == "memory":
        return make_limiter
    prefix: str = request.getfixturevalue("prefix")
    return lambda **overrides: make_limiter(redis_url=REDIS_URL, prefix=prefix, **overrides)


async def send(limiter: RateLimiter, count: int = 1, **who: str) -> list[Decision]:
    return [await limiter.check(**{**WHO, **who}) for _ in range(count)]


def allowed(decisions: list[Decision]) -> list[bool]:
    return [decision.allowed for decision in decisions]


# --- rates ---------------------------------------------------------------------------------


def test_rate_rejects_a_bucket_that_could_never_admit_or_refill() -> None:
    with pytest.raises(ValueError, match="per_minute"):
        Rate(0, 3)
    with pytest.raises(ValueError, match="burst"):
        Rate(60, 0)


# --- in-process, with a stepped clock ------------------------------------------------------


async def test_user_is_refused_after_the_burst_and_told_once_when_to_retry(
        make_limiter: Factory, clock: FakeClock) -> None:
    limiter = make_limiter()

    first = await send(limiter, 4)
    assert allowed(first) == [True, True, True, False]
    assert first[3] == Decision(allowed=False, retry_after=1.0, scope="user", notify=True)

    [again] = await send(limiter)
    assert again == Decision(allowed=False, retry_after=1.0, scope="user", notify=False)
    clock.advance(0.5)
    [later] = await send(limiter)
    assert later == Decision(allowed=False, retry_after=0.5, scope="user", notify=False)

    clock.advance(0.5)  # a token is back
    assert allowed(await send(limiter, 1)) == [True]


async def test_the_next_refusal_after_the_window_notifies_again(
        make_limiter: Factory, clock: FakeClock) -> None:
    limiter = make_limiter()
    await send(limiter, 3)
    assert [d.notify for d in await send(limiter, 2)] == [True, False]

    clock.advance(1.0)
    decisions = await send(limiter, 2)
    assert allowed(decisions) == [True, False]
    assert decisions[1].notify


async def test_a_refused_user_does_not_affect_other_users(make_limiter: Factory) -> None:
    limiter = make_limiter()
    assert allowed(await send(limiter, 4, user="U1")) == [True, True, True, False]
    assert allowed(await send(limiter, 1, user="U2")) == [True]


async def test_memory_stays_bounded(make_limiter: Factory, clock: FakeClock,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_MEMORY_KEYS", 10)
    limiter = make_limiter(workspace=Rate(60, 1000), channel=Rate(60, 1000))
    for n in range(50):
        await limiter.check(**{**WHO, "user": f"U{n}"})
    buckets = limiter._memory._buckets
    assert len(buckets) <= 10
    assert any(key.endswith(":U49") for key in buckets)  # the most recent survive

    clock.advance(3600)  # every bucket is full again: dropping them loses nothing
    await limiter.check(**{**WHO, "user": "U-new"})
    assert len(buckets) == 3


async def test_model_slot_in_process_admits_at_most_n(make_limiter: Factory) -> None:
    limiter = make_limiter(max_concurrent_model_calls=2)
    gate = asyncio.Event()
    inside: list[int] = []

    async def call(n: int) -> None:
        async with limiter.model_slot():
            inside.append(n)
            await gate.wait()

    tasks = [asyncio.create_task(call(n)) for n in range(4)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(inside) == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(inside) == [0, 1, 2, 3]


# --- both backends ---------------------------------------------------------------------------


async def test_channel_limit_counts_every_user_in_the_channel(backend: Factory) -> None:
    limiter = backend()
    decisions = [await limiter.check(**{**WHO, "user": f"U{n}"}) for n in range(6)]
    assert allowed(decisions) == [True] * 5 + [False]
    assert decisions[5].scope == "channel"
    assert decisions[5].notify
    assert decisions[5].retry_after == pytest.approx(1.0, abs=0.1)
    assert allowed(await send(limiter, 1, channel="C2", user="U9")) == [True]


async def test_workspace_limit_counts_every_channel(backend: Factory) -> None:
    limiter = backend()
    decisions = [await limiter.check(**{**WHO, "channel": f"C{n}", "user": f"U{n}"})
                 for n in range(9)]
    assert allowed(decisions) == [True] * 8 + [False]
    assert decisions[8].scope == "workspace"
    # The same workspace id on another platform, or another workspace, is another tenant.
    assert allowed(await send(limiter, 1, platform="discord")) == [True]
    assert allowed(await send(limiter, 1, workspace="T2")) == [True]


async def test_a_refused_message_spends_no_tokens_of_the_other_buckets(backend: Factory) -> None:
    limiter = backend(user=Rate(60, 1), channel=Rate(60, 2))
    assert allowed(await send(limiter, 6, user="U1")) == [True] + [False] * 5
    # U1's five refusals left the channel's second token in place.
    assert allowed(await send(limiter, 1, user="U2")) == [True]
    [third] = await send(limiter, 1, user="U3")
    assert (third.allowed, third.scope) == (False, "channel")


async def test_the_longest_wait_decides_retry_after(backend: Factory) -> None:
    limiter = backend(user=Rate(60, 1), channel=Rate(6, 1))
    await send(limiter)
    [refused] = await send(limiter)
    assert refused.scope == "channel"  # both are empty; the channel refills in 10 s, user in 1
    assert refused.retry_after == pytest.approx(10.0, abs=0.1)


async def test_a_user_and_a_channel_with_the_same_id_are_different_buckets(
        backend: Factory) -> None:
    limiter = backend(user=Rate(60, 1), channel=Rate(60, 3))
    assert allowed(await send(limiter, 1, channel="D1", user="D1")) == [True]
    assert allowed(await send(limiter, 2, channel="D1", user="U2")) == [True, False]


# --- Redis ---------------------------------------------------------------------------------


def redis_limiter(make_limiter: Factory, prefix: str, **overrides: Any) -> RateLimiter:
    return make_limiter(redis_url=REDIS_URL, prefix=prefix, **overrides)


async def test_redis_user_limit_retry_after_and_notify_once(
        make_limiter: Factory, prefix: str, redis_client: aioredis.Redis) -> None:
    limiter = redis_limiter(make_limiter, prefix)
    decisions = await send(limiter, 5)
    assert allowed(decisions) == [True, True, True, False, False]
    assert decisions[3].scope == "user"
    assert 0.9 < decisions[3].retry_after <= 1.0
    assert [d.notify for d in decisions[3:]] == [True, False]
    assert allowed(await send(limiter, 1, user="U2")) == [True]
    assert await limiter.health() == {"backend": "redis", "state": "ok"}
    # The state really is in Redis, under the prefix, and expires once the bucket is full.
    keys = {key.decode() async for key in redis_client.scan_iter(match=f"{prefix}*")}
    user_key = next(key for key in keys if key.startswith(f"{prefix}rl:user:") and
                    key.endswith(":U1"))
    assert 0 < await redis_client.pttl(user_key) <= 3000
    assert 0 < await redis_client.pttl(user_key + ":notice") <= 1000


async def test_redis_notifies_again_after_the_refusal_window(
        make_limiter: Factory, prefix: str) -> None:
    limiter = redis_limiter(make_limiter, prefix, user=Rate(600, 1))  # a token per 0.1 s
    first = await send(limiter, 3)
    assert allowed(first) == [True, False, False]
    assert [d.notify for d in first[1:]] == [True, False]

    await asyncio.sleep(first[2].retry_after + 0.02)
    second = await send(limiter, 2)
    assert allowed(second) == [True, False]
    assert second[1].notify


async def test_two_workers_share_one_bucket_and_one_notice(
        make_limiter: Factory, prefix: str) -> None:
    worker_a = redis_limiter(make_limiter, prefix)
    worker_b = redis_limiter(make_limiter, prefix)
    decisions = [await worker.check(**WHO)
                 for worker in (worker_a, worker_b, worker_a, worker_b, worker_a)]
    assert allowed(decisions) == [True, True, True, False, False]
    assert [d.notify for d in decisions[3:]] == [True, False]


async def test_redis_falls_back_to_eval_when_the_script_is_not_cached(
        make_limiter: Factory, prefix: str, monkeypatch: pytest.MonkeyPatch,
        events: RecordingLog) -> None:
    # A sha Redis has never seen gets NOSCRIPT, as after a restart or SCRIPT FLUSH.
    monkeypatch.setattr(ratelimit._TAKE, "sha", "0" * 40)
    limiter = redis_limiter(make_limiter, prefix)
    assert allowed(await send(limiter, 4)) == [True, True, True, False]
    assert await limiter.health() == {"backend": "redis", "state": "ok"}
    assert events.events == []


async def test_model_slot_caps_concurrency_across_two_workers(
        make_limiter: Factory, prefix: str, redis_client: aioredis.Redis) -> None:
    workers = [redis_limiter(make_limiter, prefix, max_concurrent_model_calls=2)
               for _ in range(2)]
    key = f"{prefix}model_slots"
    running = 0
    peak = 0
    leases: list[int] = []

    async def call(worker: RateLimiter) -> None:
        nonlocal running, peak
        async with worker.model_slot():
            running += 1
            peak = max(peak, running)
            leases.append(await redis_client.zcard(key))
            await asyncio.sleep(0.05)
            running -= 1

    await asyncio.gather(*(call(workers[n % 2]) for n in range(4)))
    assert peak == 2
    assert max(leases) == 2  # the slots were Redis leases, not each worker's own semaphore
    assert await redis_client.zcard(key) == 0


async def test_model_slots_of_a_killed_worker_come_back_after_their_lease(
        make_limiter: Factory, prefix: str, redis_client: aioredis.Redis) -> None:
    limiter = redis_limiter(make_limiter, prefix, max_concurrent_model_calls=2)
    key = f"{prefix}model_slots"
    seconds, micros = await redis_client.time()
    now = seconds + micros / 1e6
    await redis_client.zadd(key, {"live-lease": now + 60, "dead-lease": now - 1})

    async with asyncio.timeout(1):
        async with limiter.model_slot():
            assert await redis_client.zcard(key) == 2  # the lapsed lease was reclaimed

    await redis_client.zadd(key, {"other-live-lease": now + 60})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1), limiter.model_slot():
            pass
    # Giving up while waiting leaves no lease behind.
    assert set(await redis_client.zrange(key, 0, -1)) == {b"live-lease", b"other-live-lease"}


async def test_a_lease_granted_as_the_waiter_is_cancelled_is_given_back(
        make_limiter: Factory, prefix: str, redis_client: aioredis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_acquire = ratelimit._ACQUIRE

    async def granted_then_cancelled(client: aioredis.Redis, keys: list[str],
                                     args: list[Any]) -> Any:
        await real_acquire(client, keys, args)  # Redis ran the script...
        raise asyncio.CancelledError  # ...but the caller was cancelled before the reply

    monkeypatch.setattr(ratelimit, "_ACQUIRE", granted_then_cancelled)
    limiter = redis_limiter(make_limiter, prefix)
    with pytest.raises(asyncio.CancelledError):
        async with limiter.model_slot():
            pytest.fail("the slot was never granted to the caller")
    assert await redis_client.zcard(f"{prefix}model_slots") == 0


async def test_a_held_model_slot_renews_its_lease(
        make_limiter: Factory, prefix: str, redis_client: aioredis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "LEASE_SECONDS", 0.15)  # renewed every 0.05 s
    limiter = redis_limiter(make_limiter, prefix, max_concurrent_model_calls=1)
    key = f"{prefix}model_slots"
    async with limiter.model_slot():
        [lease] = await redis_client.zrange(key, 0, -1)
        assert isinstance(lease, bytes)
        granted = await redis_client.zscore(key, lease)
        assert granted is not None
        renewed = granted
        for _ in range(100):  # renewals come every 0.05 s; a loaded machine may be slower
            await asyncio.sleep(0.02)
            renewed = await redis_client.zscore(key, lease) or 0.0
            if renewed > granted:
                break
        assert renewed > granted
    assert await redis_client.zcard(key) == 0


# --- Redis down ----------------------------------------------------------------------------


async def test_unreachable_redis_degrades_to_memory_without_raising(
        make_limiter: Factory, clock: FakeClock, events: RecordingLog) -> None:
    limiter = make_limiter(redis_url=DEAD_REDIS_URL)

    decisions = await send(limiter, 5)
    assert allowed(decisions) == [True, True, True, False, False]
    assert decisions[3] == Decision(allowed=False, retry_after=1.0, scope="user", notify=True)
    assert await limiter.health() == {"backend": "redis", "state": "degraded",
                                      "error": "ConnectionError"}
    async with limiter.model_slot():
        pass
    clock.advance(ratelimit.REDIS_RETRY_SECONDS)  # tried again, still down: still no raise
    assert allowed(await send(limiter, 1, user="U2")) == [True]
    assert len(events.named("ratelimit.redis_unavailable")) == 1  # logged once, not per call


async def test_memory_backend_reports_healthy(make_limiter: Factory) -> None:
    assert await make_limiter().health() == {"backend": "memory", "state": "ok"}


async def test_a_redis_error_degrades_too(make_limiter: Factory, prefix: str,
                                          redis_client: aioredis.Redis,
                                          events: RecordingLog) -> None:
    limiter = redis_limiter(make_limiter, prefix)
    await send(limiter)
    # Something else wrote a string where the workspace bucket lives: the script fails.
    workspace_key = f"{prefix}rl:workspace:{{slack:T1}}"
    assert await redis_client.exists(workspace_key)
    await redis_client.set(workspace_key, "not a hash")

    assert allowed(await send(limiter, 2)) == [True, True]
    health = await limiter.health()
    assert health["state"] == "degraded"
    assert health["error"] == "ResponseError"
    assert events.named("ratelimit.redis_unavailable")[0]["error"] == "ResponseError"


async def test_a_killed_connection_reconnects_without_degrading(
        make_limiter: Factory, prefix: str, redis_client: aioredis.Redis) -> None:
    name = f"ratelimit-test-{uuid.uuid4().hex[:12]}"
    limiter = make_limiter(redis_url=f"{REDIS_URL}?client_name={name}", prefix=prefix)
    assert allowed(await send(limiter, 1)) == [True]
    clients = [c for c in await redis_client.client_list() if c.get("name") == name]
    assert clients
    for client in clients:
        await redis_client.client_kill_filter(_id=client["id"])

    assert allowed(await send(limiter, 3)) == [True, True, False]  # the same Redis bucket
    assert await limiter.health() == {"backend": "redis", "state": "ok"}


class TcpProxy:
    """A TCP relay to the test Redis that can be taken down and brought back on its port,
    so a limiter loses its Redis after it was constructed and working."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{urlsplit(REDIS_URL).path.lstrip('/') or 0}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.create_task(self._relay(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    relay = TcpProxy(REDIS_URL)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


async def test_redis_lost_mid_way_degrades_then_recovers_without_hammering(
        make_limiter: Factory, clock: FakeClock, prefix: str, proxy: TcpProxy,
        redis_client: aioredis.Redis, events: RecordingLog) -> None:
    limiter = make_limiter(redis_url=proxy.url, prefix=prefix)
    assert allowed(await send(limiter, 3)) == [True, True, True]
    assert await limiter.health() == {"backend": "redis", "state": "ok"}

    await proxy.stop()
    # Redis held U1's bucket; memory starts full, so U1 is served again: no raise.
    assert allowed(await send(limiter, 1)) == [True]
    assert await limiter.health() == {"backend": "redis", "state": "degraded",
                                      "error": "ConnectionError"}

    await proxy.start()
    attempts = proxy.connections
    clock.advance(ratelimit.REDIS_RETRY_SECONDS - 0.1)
    await send(limiter, 3, user="U2")
    assert (await limiter.health())["state"] == "degraded"
    assert proxy.connections == attempts  # waited out, not retried on every call

    clock.advance(0.1)
    assert allowed(await send(limiter, 1, user="U3")) == [True]
    assert proxy.connections > attempts
    assert await limiter.health() == {"backend": "redis", "state": "ok"}
    assert await redis_client.exists(f"{prefix}rl:user:{{slack:T1}}:U3")
    assert [name for _, name, _ in events.events] == ["ratelimit.redis_unavailable",
                                                       "ratelimit.redis_recovered"]
