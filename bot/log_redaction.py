"""Keeping secrets out of log lines.

The engine redacts what users paste before anything is stored, but log lines have other
sources: an SDK's debug line that prints a request's headers, an exception whose message quotes
a connection URL, a field someone logged in a hurry. Logs are shipped to collectors and pasted
into bug reports, so every line, from structlog or the standard library, passes through
`SecretScrubber` just before it is rendered (see `bot.logging`):

1. the secrets this deployment is configured with (`register_secrets`, fed by
   `configured_secrets`) are replaced wherever they appear, whatever they look like;
2. anything else that looks like a credential is replaced by `bot.redaction.redact_secrets`;
3. values under keys that name a credential (`authorization`, `password`, `*_token`, ...) are
   replaced outright, because a short or unusual token under such a key fits no pattern.

It runs on every log line, so it is built for speed: one precompiled alternation for the
configured values, short strings skipped, recurring strings that were found clean remembered,
and fields that never carry secrets (timestamp, level, logger name) left alone. A typical line
costs a few microseconds; one with a new free-text value, some tens.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

from bot.redaction import redact_secrets

# Shorter configured values are not registered: replacing every "test" or "admin" in every log
# line would make the logs unreadable, and such a value is no secret worth the name. (A short
# password inside a URL is still caught with its URL by the pattern detectors.)
MIN_SECRET_LENGTH = 6
# Below this length no pattern in `bot.redaction` can match a credential worth hiding.
MIN_PATTERN_LENGTH = 8
# Nested structures deeper than this are rendered by repr() and scrubbed as text (cycles too).
MAX_DEPTH = 12
# The pattern detectors cost tens of microseconds per string, and most strings in log lines
# recur (event names, model names, paths, states). Strings found clean are remembered, up to
# this many of at most `CLEAN_CACHE_CHARS` each; only clean strings, so the cache never holds
# a secret.
CLEAN_CACHE_SIZE = 4096
CLEAN_CACHE_CHARS = 256

CONFIGURED_PLACEHOLDER = "[redacted a configured secret]"
KEY_PLACEHOLDER = "[redacted]"

_SKIP_KEYS = frozenset({"timestamp", "level", "logger", "logger_name"})
_SENSITIVE_KEY = re.compile(
    r"(?:proxy_)?authorization|(?:set_)?cookie|x_api_key|api_?key|passw(?:or)?d|secret|token"
    r"|\w+_(?:token|secret|password|api_key)")
_PRIMITIVES = (int, float, bool, type(None))


class _Fallback(Protocol):
    api_key_env: str | None


class _Behaviour(Protocol):
    @property
    def fallbacks(self) -> Iterable[_Fallback]: ...


def _is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and _SENSITIVE_KEY.fullmatch(
        key.lower().replace("-", "_")) is not None


def _forms(value: str) -> Iterator[str]:
    """A secret as it may appear in a log line: as is, URL-quoted, and escaped inside a JSON
    string or a Python repr (a dict of headers is rendered with repr)."""
    yield value
    yield quote(value, safe="")
    yield json.dumps(value)[1:-1]
    yield repr(value)[1:-1]


class SecretScrubber:
    """A structlog processor that removes secrets from every value of an event dict.

    Thread-safe: registering builds a new pattern and swaps it in, so a line being logged on
    another thread sees either the old set or the new one, never a half-built one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._exact: re.Pattern[str] | None = None
        self._shortest = sys.maxsize
        self._clean: dict[str, None] = {}

    def register(self, values: Iterable[str | None]) -> None:
        """Add configured secret values; blanks and values under `MIN_SECRET_LENGTH` are
        ignored. Registering is cumulative: a rotated secret stays hidden in later lines."""
        fresh = {form for value in values if value and len(value.strip()) >= MIN_SECRET_LENGTH
                 for form in _forms(value)}
        with self._lock:
            secrets = self._secrets | fresh
            if secrets == self._secrets:
                return
            ordered = sorted(secrets, key=len, reverse=True)  # the longest form wins
            self._exact = re.compile("|".join(re.escape(secret) for secret in ordered))
            self._shortest = len(ordered[-1])
            self._secrets = frozenset(secrets)
            self._clean = {}  # clean before may hold a newly registered secret

    def hide_configured(self, text: str) -> str:
        """`text` without the configured secret values (what no pattern can recognise: a
        password of plain words), for chat text on its way to the model, the database or a
        user."""
        exact = self._exact
        if exact is None or len(text) < self._shortest:
            return text
        return exact.sub(CONFIGURED_PLACEHOLDER, text)

    def scrub_text(self, text: str) -> str:
        """`text` without configured secrets and without anything that looks like one."""
        clean = self._clean
        if text in clean:
            return text
        original = text
        exact = self._exact
        if exact is not None and len(text) >= self._shortest:
            text = exact.sub(CONFIGURED_PLACEHOLDER, text)
        if len(text) >= MIN_PATTERN_LENGTH:
            text = redact_secrets(text).text
        if text == original and len(text) <= CLEAN_CACHE_CHARS:
            if len(clean) >= CLEAN_CACHE_SIZE:
                clean.clear()
            clean[text] = None
        return text

    def scrub(self, value: Any, depth: int = 0) -> Any:
        """A copy of `value` with secrets removed. Containers are rebuilt, never changed in
        place: they belong to the code that logged them. Other objects are replaced by their
        scrubbed repr() only when it held a secret, so ordinary values render as before."""
        if isinstance(value, str):
            scrubbed = self.scrub_text(value)
            return value if scrubbed == value else scrubbed
        if isinstance(value, _PRIMITIVES):
            return value
        if depth < MAX_DEPTH:
            if isinstance(value, dict):
                return {self.scrub(key, depth + 1): self._field(key, item, depth + 1)
                        for key, item in value.items()}
            if type(value) in (list, tuple, set, frozenset):
                return type(value)(self.scrub(item, depth + 1) for item in value)
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not lose the log line
            return f"<unrepresentable {type(value).__name__}>"
        scrubbed = self.scrub_text(text)
        return value if scrubbed == text else scrubbed

    def _field(self, key: object, value: Any, depth: int) -> Any:
        if isinstance(value, (str, bytes)) and value and _is_sensitive_key(key):
            return KEY_PLACEHOLDER
        return self.scrub(value, depth)

    def __call__(self, _logger: Any, _method: str, event_dict: Any) -> Any:
        return {key: value if key in _SKIP_KEYS else self._field(key, value, 0)
                for key, value in event_dict.items()}


scrubber = SecretScrubber()


def register_secrets(values: Iterable[str | None]) -> None:
    """Hide these values in every later log line (the process-wide scrubber)."""
    scrubber.register(values)


def _url_passwords(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:  # a malformed port: find the userinfo by hand
        head = url.split("://", 1)[-1].split("/", 1)[0]
        userinfo = head.rpartition("@")[0]
        password = userinfo.partition(":")[2] if ":" in userinfo else None
    return [password, unquote(password)] if password else []


def configured_secrets(settings: BaseModel, behaviour: _Behaviour | None = None) -> list[str]:
    """Every secret value in the settings: each `SecretStr` field (so a secret added to
    `Settings` later is covered without touching this), the password of each URL setting
    (DATABASE_URL, REDIS_URL, ...) and, given the YAML behaviour, the keys of its fallback
    models (read from the environment variables it names)."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
        elif isinstance(value, str) and "://" in value:
            values.extend(_url_passwords(value))
    if behaviour is not None:
        values.extend(os.environ.get(fallback.api_key_env, "")
                      for fallback in behaviour.fallbacks if fallback.api_key_env)
    return [value for value in values if value]
