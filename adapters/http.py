"""What the adapters' HTTP routes share."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import Request

MAX_DOWNLOAD = 32 * 1024 * 1024  # the engine's own limits are lower; this guards memory


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None past `limit` bytes: a huge upload is refused without being held."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class NotJson(ValueError):
    """A request body that is not JSON: malformed, not UTF-8, nested too deeply for the
    parser, or holding a number Python refuses to read (an integer past 4300 digits)."""


def parse_json(body: bytes | str) -> Any:
    """The JSON value in a request body; `NotJson` (a ValueError) for anything that is not
    JSON the routes can use. Answer that with a 400: json.loads raises RecursionError for deep
    nesting and plain ValueError for huge integers, which a bare `except JSONDecodeError`
    would let through as a 500."""
    try:
        return json.loads(body)
    except RecursionError:
        raise NotJson("the JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise NotJson("the body is not UTF-8") from None
    except ValueError as exc:  # JSONDecodeError, and the integer digit limit
        raise NotJson(f"the body is not JSON: {str(exc)[:100]}") from None


async def download(url: str, *, platform: str, bearer: str | None = None,
                   follow_redirects: bool = False) -> bytes:
    """A file a user attached, at most `MAX_DOWNLOAD` bytes; the caller decides whether the
    bot's token may go to that host."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with httpx.AsyncClient(timeout=30, follow_redirects=follow_redirects) as http, \
            http.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:  # Slack redirects a bad token to a login page
            raise PermissionError(f"{platform} answered {response.status_code} for a file")
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > MAX_DOWNLOAD:
                raise ValueError("file larger than the download limit")
        return bytes(data)
