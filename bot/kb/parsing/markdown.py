"""Markdown (CommonMark plus tables) -> blocks; YAML front matter is dropped but supplies the
title, else the first level-1 heading does."""

from __future__ import annotations

import re
from collections.abc import Iterable

import yaml
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from bot.kb.documents import Block, BlockKind, RawDocument
from bot.kb.parsing.common import Parsed, collapse, decode_text, normalise_newlines
from bot.kb.parsing.html import html_fragment_text

# maxNesting bounds recursion; the commonmark preset's 20 silently drops the rest of a document
# nested deeper than that (ten levels of list), so allow more.
_MARKDOWN = MarkdownIt("commonmark", {"maxNesting": 100}).enable("table")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_KEY = re.compile(r"\A\s*[A-Za-z_][\w-]*\s*:")
_FRONT_MATTER_TITLE = re.compile(r"^title\s*:\s*[\"']?(.*?)[\"']?\s*$", re.MULTILINE)


def parse_markdown(raw: RawDocument, charset: str | None) -> Parsed:
    text = normalise_newlines(decode_text(raw.data, charset))
    front_title, body = _split_front_matter(text)
    root = SyntaxTreeNode(_MARKDOWN.parse(body))
    blocks = list(_markdown_blocks(root.children))
    first_h1 = next(
        (b.text for b in blocks if b.kind is BlockKind.HEADING and b.level == 1), ""
    )
    return front_title or first_h1, blocks


def _split_front_matter(text: str) -> tuple[str, str]:
    """YAML front matter is metadata, not content: strip it, keep its title.

    A leading '---' is also a thematic break, so only a block that parses as a YAML mapping (or
    at least starts like one) counts as front matter."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return "", text
    header = match.group(1) or ""
    rest = text[match.end():]
    try:
        meta = yaml.safe_load(header)
    except yaml.YAMLError:
        meta = None
        if not _FRONT_MATTER_KEY.match(header):
            return "", text
        title_match = _FRONT_MATTER_TITLE.search(header)
        return (title_match.group(1).strip() if title_match else ""), rest
    if isinstance(meta, dict):
        title = meta.get("title")
        return (collapse(str(title)) if isinstance(title, str | int | float) else ""), rest
    if meta is None:
        return "", rest  # an empty front matter block
    return "", text


def _markdown_blocks(nodes: Iterable[SyntaxTreeNode]) -> Iterable[Block]:
    for node in nodes:
        kind = node.type
        if kind == "heading":
            yield Block(BlockKind.HEADING, _inline_of(node, links=False), level=int(node.tag[1:]))
        elif kind == "paragraph":
            yield Block(BlockKind.TEXT, _inline_of(node))
        elif kind in {"fence", "code_block"}:
            yield Block(BlockKind.CODE, _markdown_code(node))
        elif kind in {"bullet_list", "ordered_list"}:
            yield Block(BlockKind.LIST, "\n".join(_markdown_list_lines(node, 0)))
        elif kind == "table":
            yield Block(BlockKind.TABLE, "\n".join(_markdown_table_rows(node)))
        elif kind == "blockquote":
            yield Block(BlockKind.TEXT, "\n".join(_markdown_lines(node.children)))
        elif kind == "html_block":
            yield Block(BlockKind.TEXT, html_fragment_text(node.content))
        # hr and anything unknown carry no text


def _markdown_code(node: SyntaxTreeNode) -> str:
    code = node.content.rstrip("\n")
    language = node.info.strip().split()[0] if node.type == "fence" and node.info.strip() else ""
    return f"```{language}\n{code}\n```" if language else code


def _markdown_lines(nodes: Iterable[SyntaxTreeNode]) -> list[str]:
    """Any block content as plain lines: what a list item or a blockquote contains."""
    lines: list[str] = []
    for node in nodes:
        kind = node.type
        if kind in {"bullet_list", "ordered_list"}:
            lines += _markdown_list_lines(node, 0)
        elif kind == "table":
            lines += _markdown_table_rows(node)
        elif kind == "blockquote":
            lines += _markdown_lines(node.children)
        elif kind in {"fence", "code_block"}:
            lines += _markdown_code(node).split("\n")
        elif kind in {"paragraph", "heading"}:
            lines += _inline_of(node).split("\n")
        elif kind == "html_block":
            lines.append(html_fragment_text(node.content))
    return [line for line in lines if line.strip()]


def _markdown_list_lines(node: SyntaxTreeNode, depth: int) -> list[str]:
    ordered = node.type == "ordered_list"
    number = int(str(node.attrs.get("start", 1))) if ordered else 0
    indent = "  " * depth
    lines: list[str] = []
    for item in node.children:
        marker = f"{number}." if ordered else "-"
        number += 1
        first = True
        for child in item.children:
            if child.type in {"bullet_list", "ordered_list"}:
                lines += _markdown_list_lines(child, depth + 1)
                continue
            for line in _markdown_lines([child]):
                if first:
                    lines.append(f"{indent}{marker} {line}")
                    first = False
                else:  # a second paragraph or a code block inside the item
                    lines.append(f"{indent}{' ' * (len(marker) + 1)}{line}")
    return lines


def _markdown_table_rows(node: SyntaxTreeNode) -> list[str]:
    rows: list[str] = []
    for section in node.children:  # thead, tbody
        for row in section.children:
            cells = [_inline_of(cell).replace("\n", " ") for cell in row.children]
            if any(cells):
                rows.append(" | ".join(cells))
    return rows


def _inline_of(node: SyntaxTreeNode, *, links: bool = True) -> str:
    """The text of a heading/paragraph/cell: markup dropped, link targets kept in brackets
    (a support answer is better for 'see https://…' than for 'see here')."""
    inline = next((child for child in node.children if child.type == "inline"), None)
    return _inline_text(inline, links).strip() if inline is not None else ""


def _inline_text(node: SyntaxTreeNode, links: bool) -> str:
    parts: list[str] = []
    for child in node.children:
        kind = child.type
        if kind == "text":
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "code_inline":
            parts.append(f"`{child.content}`")
        elif kind == "html_inline":
            if re.fullmatch(r"<br\s*/?>", child.content.strip(), re.IGNORECASE):
                parts.append("\n")
        elif kind == "link":
            label = _inline_text(child, links)
            href = str(child.attrs.get("href", ""))
            if links and re.match(r"(https?:|mailto:)", href) and href not in label:
                label = f"{label} ({href.removeprefix('mailto:')})" if label else href
            parts.append(label)
        elif kind == "image":
            parts.append(_inline_text(child, links) or str(child.attrs.get("alt", "")))
        elif child.children:
            parts.append(_inline_text(child, links))
        else:
            parts.append(child.content)
    return "".join(parts)
