"""Reading the admin pages' query and path parameters by hand, so that junk gets a page that
says what is wrong instead of a validation error in JSON (or a crash on a huge number)."""

from __future__ import annotations

MAX_ID_DIGITS = 18  # fits a signed 64-bit id; longer is junk, not a very large id
MAX_PAGE = 10_000


def parse_id(text: str | None) -> int | None:
    """A positive row id from `text`, or None when it is not one ("12", not "1e3", "-1", "²")."""
    if not text or len(text) > MAX_ID_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value > 0 else None


def parse_page(text: str | None) -> int:
    """A 1-based page number; anything else is page 1, and no page is past `MAX_PAGE`."""
    if not text or len(text) > 6 or not (text.isascii() and text.isdigit()):
        return 1
    return min(max(1, int(text)), MAX_PAGE)


def choice(text: str | None, allowed: tuple[str, ...], default: str) -> str:
    """`text` when it is one of `allowed`, else `default`."""
    return text if text in allowed else default
