"""Downloading the files people attach: with the workspace's bot token, from Slack only."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from adapters.http import download
from bot.model import FetchBytes

SLACK_HOSTS = ("slack.com", "slack-edge.com")


def fetcher(token: str, extra_hosts: Iterable[str]) -> FileFetcher:
    return FileFetcher(token, frozenset(extra_hosts))


class FileFetcher:
    """`fetcher(url)` gives the engine a lazy download; the token never leaves Slack's hosts
    (or the host of SLACK_API_URL, for Slack-compatible servers)."""

    def __init__(self, token: str, extra_hosts: frozenset[str]) -> None:
        self._token = token
        self._hosts = extra_hosts

    def __call__(self, url: str) -> FetchBytes:
        async def fetch() -> bytes:
            return await self.download(url)

        return fetch

    def allowed(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        return host in self._hosts or any(host == h or host.endswith("." + h)
                                          for h in SLACK_HOSTS)

    async def download(self, url: str) -> bytes:
        if not self.allowed(url):
            raise PermissionError(f"not sending the bot token to {urlsplit(url).hostname!r}")
        return await download(url, platform="Slack", bearer=self._token)
