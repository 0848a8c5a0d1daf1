"""Raw bytes -> a Document of structured blocks (headings, paragraphs, lists, code, tables).

Chunking cuts at the seams this module finds, and citations name the headings it keeps, so
structure matters more than pretty text. Every failure is a `DocumentError` with a short reason
for the sync report: one unreadable file must never stop a sync, and "encrypted PDF" tells an
admin what to fix where a traceback would not.

Documents are data, never instructions: text that reads like a command to the model is parsed
like any other paragraph (the prompt, not the parser, is where that is handled).
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

import yaml
from bs4 import BeautifulSoup, CData, NavigableString, PageElement, Tag
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from pypdf import PdfReader

from bot.kb.documents import Block, BlockKind, Document, DocumentError, RawDocument

__all__ = ["parse"]

NOT_TEXT = "not text: looks like binary data"
EMPTY = "empty"

_Parsed = tuple[str, list[Block]]  # (title, or "" to fall back to the hint / file name; blocks)

# --------------------------------------------------------------------------------------------
# entry point


def parse(raw: RawDocument) -> Document:
    """Parse one raw document; raise DocumentError (and nothing else) when it cannot be indexed."""
    content_type, charset = _split_content_type(raw.content_type)
    kind = _KINDS.get(content_type)
    if kind is None:
        raise DocumentError(f"unsupported type {content_type or '(none)'}")
    if not raw.data.strip():
        raise DocumentError(EMPTY)
    try:
        title, blocks = _PARSERS[kind](raw, charset)
    except DocumentError:
        raise
    except Exception as exc:  # a parser bug or a pathological file must not abort the sync
        raise DocumentError(f"could not parse {kind}: {_describe(exc)}") from exc
    kept = tuple(block for block in blocks if block.text.strip())
    if not kept:
        raise DocumentError(EMPTY)
    return Document(
        source=raw.source,
        doc_id=raw.doc_id,
        url=raw.url,
        title=title or raw.title_hint.strip() or _title_from_name(raw.doc_id),
        content_hash=raw.content_hash,
        blocks=kept,
    )


_KINDS = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
}


def _split_content_type(value: str) -> tuple[str, str | None]:
    """'text/html; charset=ISO-8859-1' -> ('text/html', 'iso-8859-1'); a charset is only a hint."""
    media, _, params = value.partition(";")
    charset = None
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", params, re.IGNORECASE)
    if match:
        charset = match.group(1).lower()
    return media.strip().lower(), charset


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _title_from_name(doc_id: str) -> str:
    """'guides/reset-password.md' -> 'Reset password': better than no title in a citation."""
    path = urlsplit(doc_id).path if "://" in doc_id else doc_id
    parts = [part for part in re.split(r"[\\/]", unquote(path)) if part]
    if not parts:
        return urlsplit(doc_id).netloc or doc_id or "Untitled"
    name = parts[-1]
    stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
    if stem.lower() in {"index", "readme"} and len(parts) > 1:
        stem = parts[-2]
    words = " ".join(re.sub(r"[-_+]+", " ", stem).split())
    return words[:1].upper() + words[1:] if words else "Untitled"


# --------------------------------------------------------------------------------------------
# text decoding

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_C1_OR_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_NON_ASCII_DECODED = re.compile(r"[^\x00-\x7f\ufffd]")


def _decode_text(data: bytes, hint: str | None = None) -> str:
    """Bytes -> str, or DocumentError when the bytes are not text (an image renamed .md).

    UTF-8 first (a stray bad byte or two is tolerated: one corrupt character should not cost a
    whole document); then a declared charset; then cp1252/latin-1 for legacy files, but only
    when the result still looks like prose, so random bytes are rejected rather than indexed as
    mojibake."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return _require_text(data.decode("utf-16"))
        except UnicodeDecodeError:
            raise DocumentError(NOT_TEXT) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\x00" in data:
        raise DocumentError(NOT_TEXT)
    try:
        return _require_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    lenient = data.decode("utf-8", errors="replace")
    errors = lenient.count("\ufffd")
    tiny = errors <= max(2, len(data) // 1000)
    if tiny and _NON_ASCII_DECODED.search(lenient):
        return _require_text(lenient)  # real UTF-8 with a damaged byte or two
    declared = hint and hint.replace("_", "-") not in {"utf-8", "utf8"}
    if declared:  # a charset the server or the page declared: trust it unless it fails
        try:
            return _require_text(data.decode(str(hint)))
        except (UnicodeDecodeError, LookupError, DocumentError):
            pass
    for codec in ("cp1252", "latin-1"):  # cp1252 leaves five bytes undefined; latin-1 none
        try:
            legacy = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if _looks_like_legacy_text(data, legacy):
            return legacy
        break  # the best legacy reading looks like noise; latin-1 would not do better
    if tiny:
        return _require_text(lenient)
    raise DocumentError(NOT_TEXT)


def _require_text(text: str) -> str:
    if len(_CONTROL.findall(text)) * 100 > len(text) + 100:  # > ~1 % control characters
        raise DocumentError(NOT_TEXT)
    return text


def _looks_like_legacy_text(data: bytes, text: str) -> bool:
    high = sum(1 for byte in data if byte >= 0x80)
    return high * 10 <= len(data) * 3 and len(_C1_OR_CONTROL.findall(text)) * 100 <= len(text)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _collapse(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# markdown

# maxNesting bounds recursion; the commonmark preset's 20 silently drops the rest of a document
# nested deeper than that (ten levels of list), so allow more.
_MARKDOWN = MarkdownIt("commonmark", {"maxNesting": 100}).enable("table")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_KEY = re.compile(r"\A\s*[A-Za-z_][\w-]*\s*:")
_FRONT_MATTER_TITLE = re.compile(r"^title\s*:\s*[\"']?(.*?)[\"']?\s*$", re.MULTILINE)


def _parse_markdown(raw: RawDocument, charset: str | None) -> _Parsed:
    text = _normalise_newlines(_decode_text(raw.data, charset))
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
        return (_collapse(str(title)) if isinstance(title, str | int | float) else ""), rest
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
            yield Block(BlockKind.TEXT, _html_fragment_text(node.content))
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
            lines.append(_html_fragment_text(node.content))
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


# --------------------------------------------------------------------------------------------
# plain text

_LIST_LINE = re.compile(r"^\s*(?:[-*+•·]|\d{1,3}[.)])\s+\S")
_UNDERLINE = re.compile(r"^\s*(?:=+|-+)\s*$")


def _parse_text(raw: RawDocument, charset: str | None) -> _Parsed:
    text = _normalise_newlines(_decode_text(raw.data, charset)).expandtabs(4)
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


# --------------------------------------------------------------------------------------------
# HTML

# Page chrome, not content. <header> inside the chosen <main>/<article> is kept: there it
# usually holds the page's own heading rather than site navigation.
_DROP = frozenset({
    "script", "style", "noscript", "nav", "footer", "header", "aside", "form", "svg", "iframe",
    "template", "button", "select", "canvas", "object", "embed", "head", "dialog",
})
_HEADING_LEVEL = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset({
    "p", "div", "section", "article", "main", "blockquote", "li", "dd", "dt", "dl", "figure",
    "figcaption", "address", "details", "summary", "fieldset", "center", "hr", "body", "html",
    "caption", "td", "th", "tr", "thead", "tbody", "tfoot", "legend", "hgroup", "search",
})
_LISTS = frozenset({"ul", "ol", "menu"})
_STRUCTURE = _BLOCK_TAGS | _LISTS | {"pre", "table"} | set(_HEADING_LEVEL)
_TEXT_NODES = (NavigableString, CData)  # not comments, doctypes or processing instructions


def _is_text(node: PageElement) -> bool:
    return type(node) in _TEXT_NODES
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_TITLE_SUFFIX = re.compile(r"^(.*?\S)\s+[|\-–—·:]\s+[^|\-–—·:]+$")
_LANGUAGE_CLASS = re.compile(r"^(?:language|lang|highlight|brush)-(\w[\w+#-]*)$")


def _parse_html(raw: RawDocument, charset: str | None) -> _Parsed:
    declared = _META_CHARSET.search(raw.data[:4096])
    hint = declared.group(1).decode("ascii", "replace").lower() if declared else charset
    soup = BeautifulSoup(_decode_text(raw.data, hint), "html.parser")
    title = _html_title(soup)
    root = _content_root(soup)
    drop = _DROP - {"header"} if root.name in {"main", "article"} else _DROP
    # extract(), not decompose(): a dropped element may sit inside one already dropped, and
    # bs4's `decomposed` check searches the whole subtree (quadratic on deep pages).
    for element in root.find_all(True):
        if element.name in drop or _hidden(element):
            element.extract()
    return title, _HtmlBlocks().walk(root)


def _html_title(soup: BeautifulSoup) -> str:
    if soup.title is not None:
        title = _collapse(soup.title.get_text())
        match = _TITLE_SUFFIX.match(title)
        if match:
            title = match.group(1)
        if title:
            return title
    h1 = soup.find("h1")
    return _collapse(h1.get_text(" ")) if h1 is not None else ""


def _content_root(soup: BeautifulSoup) -> Tag:
    """<main>, else the only <article>, else <body>: the part of a page that is the page."""
    main = soup.find("main")
    if isinstance(main, Tag) and _collapse(main.get_text()):
        return main
    articles = [a for a in soup.find_all("article") if isinstance(a, Tag)]
    if len(articles) == 1 and _collapse(articles[0].get_text()):
        return articles[0]
    body = soup.find("body")
    return body if isinstance(body, Tag) else soup


def _hidden(tag: Tag) -> bool:
    if tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true":
        return True
    style = str(tag.get("style", "")).replace(" ", "").lower()
    return "display:none" in style or "visibility:hidden" in style


def _classes(tag: Tag) -> list[str]:
    value = tag.get("class")
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


class _HtmlBlocks:
    """Walks a page into blocks without recursion: html.parser nests every unclosed <p> or <li>
    inside the previous one, so broken pages can be thousands of levels deep."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.buffer: list[str] = []

    def walk(self, root: Tag) -> list[Block]:
        stack: list[tuple[PageElement, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self.flush()
            elif _is_text(node):
                self.buffer.append(re.sub(r"\s+", " ", str(node)))  # source newlines are spaces
            elif isinstance(node, Tag):
                stack += self.visit(node)
        self.flush()
        return self.blocks

    def visit(self, tag: Tag) -> list[tuple[PageElement, bool]]:
        """Handle one element; return what still has to be walked (in reverse order)."""
        name = (tag.name or "").lower()
        if name in _HEADING_LEVEL:
            # An unclosed <h2> swallows the rest of its parent: only its own words are the
            # heading, the blocks inside it are walked as blocks.
            text, inside = _own_text(tag, _STRUCTURE)
            if text:
                self.emit(Block(BlockKind.HEADING, text, _HEADING_LEVEL[name]))
            return [(element, False) for element in reversed(inside)]
        elif name == "pre":
            self.emit(Block(BlockKind.CODE, _html_code(tag)))
        elif name in _LISTS:
            self.emit(Block(BlockKind.LIST, "\n".join(_html_list_lines(tag))))
        elif name == "table":
            caption = tag.find("caption")
            if caption is not None:
                self.emit(Block(BlockKind.TEXT, _collapse(caption.get_text(" "))))
            self.emit(Block(BlockKind.TABLE, "\n".join(_html_table_rows(tag))))
        elif name == "br":
            self.buffer.append("\n")
        elif name == "code":
            self.buffer.append(f"`{tag.get_text()}`")
        elif name == "img":
            alt = tag.get("alt")
            if alt and isinstance(alt, str):
                self.buffer.append(f" {alt} ")
        else:
            children = [(child, False) for child in reversed(tag.contents)]
            if name in _BLOCK_TAGS:
                self.flush()
                return [(tag, True), *children]
            return children
        return []

    def emit(self, block: Block) -> None:
        self.flush()
        self.blocks.append(block)

    def flush(self) -> None:
        """Inline text collected since the last block becomes a paragraph: bare text in a <div>
        is content too."""
        if not self.buffer:
            return
        lines = (_collapse(line) for line in "".join(self.buffer).split("\n"))
        self.buffer.clear()
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(Block(BlockKind.TEXT, text))


def _html_code(pre: Tag) -> str:
    code = pre.get_text().strip("\n").rstrip()
    language = ""
    candidates = [pre, *[c for c in pre.find_all("code", limit=1) if isinstance(c, Tag)]]
    for tag in candidates:
        for css_class in _classes(tag):
            match = _LANGUAGE_CLASS.match(css_class)
            if match:
                language = match.group(1)
    return f"```{language}\n{code}\n```" if language and code else code


def _own_text(tag: Tag, stop: frozenset[str]) -> tuple[str, list[Tag]]:
    """Text of `tag` minus nested elements named in `stop`, which are returned (in document
    order) for the caller to render on their own."""
    parts: list[str] = []
    nested: list[Tag] = []
    stack: list[PageElement] = list(reversed(tag.contents))
    while stack:
        node = stack.pop()
        if _is_text(node):
            parts.append(str(node))
        elif isinstance(node, Tag):
            if node.name in stop:
                nested.append(node)
                parts.append(" ")
            elif node.name == "br" or node.name in _BLOCK_TAGS:
                parts.append(" ")
                stack += reversed(node.contents)
            else:
                stack += reversed(node.contents)
    return _collapse("".join(parts)), nested


def _html_list_lines(root: Tag) -> list[str]:
    """Items as '- item' (or '1. item') lines, nested lists indented. An <li> nested directly in
    an <li> (an unclosed tag) is treated as its sibling."""
    lines: list[str] = []
    stack: list[tuple[Tag, int, str]] = [(root, 0, "-")]  # element, depth, its item marker
    while stack:
        tag, depth, marker = stack.pop()
        indent = "  " * min(depth, 10)
        if tag.name in _LISTS:
            start = str(tag.get("start", "1")).strip()
            number = int(start) if start.isdigit() else 1
            todo: list[tuple[Tag, int, str]] = []
            for child in tag.children:
                if isinstance(child, Tag) and child.name == "li":
                    todo.append((child, depth, f"{number}." if tag.name == "ol" else "-"))
                    number += 1
                elif isinstance(child, Tag) and child.name in _LISTS:
                    todo.append((child, depth + 1, "-"))
                elif isinstance(child, Tag):  # invalid (<ul><p>…) but its text is content
                    todo.append((child, depth, "-"))
                elif _is_text(child) and str(child).strip():
                    lines.append(f"{indent}- {_collapse(str(child))}")
            stack += reversed(todo)
            continue
        text, nested = _own_text(tag, _LISTS | {"li"})
        if text:
            lines.append(f"{indent}{marker} {text}")
        stack += reversed([(n, depth + 1 if n.name in _LISTS else depth, "-") for n in nested])
    return lines


def _html_table_rows(table: Tag) -> list[str]:
    """Rows as 'a | b | c'. Rows of nested tables follow their outer row rather than vanish.

    One pass that carries the current row down the tree: with unclosed <tr>/<td> every row is
    nested in the previous one, and asking each row for its cells would be quadratic."""
    rows: list[list[str]] = []
    # (node, index of its row or -1, whether a cell already took its text)
    stack = [(child, -1, False) for child in reversed(table.contents)]
    while stack:
        node, row, in_cell = stack.pop()
        if _is_text(node):
            if not in_cell and str(node).strip():  # stray text (or an unclosed <p> after rows)
                rows.append([_collapse(str(node))])
            continue
        if not isinstance(node, Tag) or node.name == "caption":
            continue
        if node.name == "tr":
            rows.append([])
            row, in_cell = len(rows) - 1, False
        elif node.name in {"td", "th"}:
            if row < 0:  # a cell outside any row
                rows.append([])
                row = len(rows) - 1
            rows[row].append(_own_text(node, _CELL_STOP)[0])
            in_cell = True
        elif node.name == "table":
            in_cell = False
        stack += [(child, row, in_cell) for child in reversed(node.contents)]
    lines = [" | ".join(cells) for cells in rows if any(cells)]
    if not lines:  # a table without cells (broken markup): keep its text
        text, _ = _own_text(table, frozenset({"caption"}))
        return [text] if text else []
    return lines


_CELL_STOP = frozenset({"td", "th", "tr", "table"})


def _html_fragment_text(fragment: str) -> str:
    """Raw HTML inside Markdown (a <details> block, a comment): just its text."""
    soup = BeautifulSoup(fragment, "html.parser")
    for element in soup.find_all(["script", "style"]):
        element.extract()
    return _collapse(soup.get_text(" "))


# --------------------------------------------------------------------------------------------
# PDF


def _parse_pdf(raw: RawDocument, charset: str | None) -> _Parsed:
    try:
        reader = PdfReader(io.BytesIO(raw.data))
        encrypted = reader.is_encrypted
    except Exception as exc:
        raise DocumentError(f"corrupt PDF: {_describe(exc)}") from exc
    if encrypted:
        try:  # some PDFs are "encrypted" with an empty user password just to set permissions
            decrypted = bool(reader.decrypt(""))
        except Exception:  # wrong password, or AES without the optional crypto dependency
            decrypted = False
        if not decrypted:
            raise DocumentError("encrypted PDF")
    try:
        pages = list(reader.pages)
    except Exception as exc:
        raise DocumentError(f"corrupt PDF: {_describe(exc)}") from exc
    if not pages:
        raise DocumentError("corrupt PDF: no pages")
    blocks: list[Block] = []
    unreadable = 0
    for page in pages:
        try:
            text = page.extract_text() or ""
        except Exception:  # one broken page should not cost the others
            unreadable += 1
            continue
        blocks += [Block(BlockKind.TEXT, p) for p in _pdf_paragraphs(text)]
    if not blocks:
        if unreadable == len(pages):
            raise DocumentError("corrupt PDF: no page could be read")
        raise DocumentError("PDF has no text (scanned?)")
    return _pdf_title(reader), blocks


def _pdf_paragraphs(text: str) -> list[str]:
    """Page text -> paragraphs: PDFs break lines for layout, so a paragraph's lines are joined
    (and a word hyphenated across a line end is mended).

    pypdf rarely yields blank lines between paragraphs, so a line clearly shorter than the
    page's full lines also ends one: that is how a paragraph's last line or a heading looks."""
    text = _normalise_newlines(text)
    widths = sorted(len(line.strip()) for line in text.split("\n") if line.strip())
    full = widths[int(len(widths) * 0.9)] if len(widths) >= 3 else 0
    paragraphs = []
    for chunk in re.split(r"\n[ \t]*\n", text):
        current: list[str] = []
        for line in (line.strip() for line in chunk.split("\n")):
            if line:
                current.append(line)
            if current and (not line or len(line) < full * 0.75):
                paragraphs.append(_join_pdf_lines(current))
                current = []
        if current:
            paragraphs.append(_join_pdf_lines(current))
    return [p for p in paragraphs if p]


def _join_pdf_lines(lines: list[str]) -> str:
    joined = lines[0]
    for line in lines[1:]:
        if re.search(r"[a-zäöüß]-$", joined) and line[:1].islower():
            joined = joined[:-1] + line
        else:
            joined = f"{joined} {line}"
    return _collapse(joined)


def _pdf_title(reader: PdfReader) -> str:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a damaged info dictionary only costs the title
        return ""
    title = _collapse(str(title)) if title else ""
    title = re.sub(r"^Microsoft (?:Word|PowerPoint) - ", "", title)
    return "" if title.lower() in {"untitled", "title"} else title


_PARSERS: dict[str, Callable[[RawDocument, str | None], _Parsed]] = {
    "markdown": _parse_markdown,
    "text": _parse_text,
    "html": _parse_html,
    "pdf": _parse_pdf,
}
