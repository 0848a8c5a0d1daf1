"""Redis (only when REDIS_URL is set): a PING with the asyncio client the rate limiter and the
answer cache use."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from bot.check.context import Check, Context
from bot.check.findings import Finding, failed, first_line, ok, public_url, skipped

PART = "redis"
DOWN_FIX = ("start Redis or correct REDIS_URL; without REDIS_URL, rate limits and the answer "
            "cache are kept per process (fine for one worker)")


def checks(context: Context) -> list[Check]:
    return [Check(PART, check_redis, DOWN_FIX)]


async def check_redis(context: Context) -> list[Finding]:
    url = context.settings.redis_url
    if not url:
        return [skipped(PART, "not configured: rate limits and the answer cache are per "
                              "process", "set REDIS_URL when running more than one worker")]
    shown = public_url(url)
    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=context.timeout,
                                         socket_timeout=context.timeout,
                                         client_name="bothub-check")
    except ValueError as exc:
        return [failed(PART, f"REDIS_URL is not a Redis URL: {first_line(exc)}",
                       "write it as redis://[:password@]host:6379/0 (rediss:// for TLS)")]
    try:
        await client.ping()
        info = await client.info("server")
    except AuthenticationError:
        if client.connection_pool.connection_kwargs.get("password") is None:
            return [failed(PART, f"Redis at {shown} wants a password",
                           "add it to REDIS_URL: redis://:PASSWORD@host:6379/0")]
        return [failed(PART, f"Redis at {shown} rejected the password",
                       "correct the password in REDIS_URL")]
    except ResponseError as exc:
        return [failed(PART, f"Redis at {shown}: {first_line(exc)}", DOWN_FIX)]
    except TimeoutError:  # an OSError too: the runner reports it, as for every part
        raise
    except (RedisError, OSError) as exc:
        return [failed(PART, f"cannot reach Redis at {shown}: {first_line(exc)}", DOWN_FIX)]
    finally:
        await client.aclose()
    version = info.get("redis_version", "?") if isinstance(info, dict) else "?"
    return [ok(PART, f"Redis {version} at {shown} answers PING")]
