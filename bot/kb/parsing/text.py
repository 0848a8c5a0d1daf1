"""Plain text -> blocks: paragraphs split at blank lines, with headings and lists recognised from
how they are laid out."""

from __future__ import annotations

import re

from bot.kb.documents import Block, BlockKind, RawDocument
from bot.kb.parsing.common import Parsed, decode_text, normalise_newlines

_LIST_LINE = re.compile(r"^\s*(?:[-*+•·]|\d{1,3}[.)])\s+\S")
_UNDERLINE = re.compile(r"^\s*(?:=+|-+)\s*$")


def parse_text(raw: RawDocument, charset: str | None) -> Parsed:
    text = normalise_newlines(decode_text(raw.data, charset)).expandtabs(4)
    paragraphs = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        lines = [line.rstrip() for line in paragraph.split("\n")]
        lines = [line for line in lines if line.strip()]
        if lines:
            paragraphs.append(lines)
    title = ""
    if len(paragraphs) > 1:
        first = paragraphs[0]
        if len(first) == 2 and _UNDERLINE.match(first[1]):  # "Title\n====="
            first = first[:1]
        if len(first) == 1 and len(first[0].strip()) < 80:
            title = first[0].strip()
            paragraphs = paragraphs[1:]
    blocks = []
    for number, lines in enumerate(paragraphs):
        heading = _text_heading(lines) if number + 1 < len(paragraphs) else None
        if heading is not None:
            blocks.append(heading)
        elif _is_list(lines):
            blocks.append(Block(BlockKind.LIST, _dedent("\n".join(lines))))
        else:
            blocks.append(Block(BlockKind.TEXT, _dedent("\n".join(lines))))
    return title, blocks


def _text_heading(lines: list[str]) -> Block | None:
    """A short line standing alone before more text ("3.4.0 - 2025-01-28", "Refunds"), or one
    underlined with === / ---, reads as a heading; keeping it as one lets chunking keep a
    changelog entry's version with its items."""
    if len(lines) == 2 and _UNDERLINE.match(lines[1]):
        level = 1 if lines[1].strip().startswith("=") else 2
        return Block(BlockKind.HEADING, lines[0].strip(), level)
    if len(lines) != 1:
        return None
    line = lines[0].strip()
    if len(line) > 60 or _LIST_LINE.match(line) or line[-1] in ".,;:!?…)\"'。":
        return None
    return Block(BlockKind.HEADING, line, 2) if re.search(r"\w", line) else None


def _is_list(lines: list[str]) -> bool:
    """Every line an item ("- x", "2. y") or an indented continuation of the one before."""
    return bool(_LIST_LINE.match(lines[0])) and all(
        _LIST_LINE.match(line) or line[:1].isspace() for line in lines[1:]
    )


def _dedent(text: str) -> str:
    lines = text.split("\n")
    margin = min(len(line) - len(line.lstrip()) for line in lines)
    return "\n".join(line[margin:] for line in lines)
