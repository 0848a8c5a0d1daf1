"""HTML pages -> blocks: only the part of the page that is the page (<main>, an <article> or
<body>, minus navigation and other chrome), walked without recursion."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, CData, NavigableString, PageElement, Tag

from bot.kb.documents import Block, BlockKind, RawDocument
from bot.kb.parsing.common import Parsed, collapse, decode_text

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
_CELL_STOP = frozenset({"td", "th", "tr", "table"})
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_TITLE_SUFFIX = re.compile(r"^(.*?\S)\s+[|\-–—·:]\s+[^|\-–—·:]+$")
_LANGUAGE_CLASS = re.compile(r"^(?:language|lang|highlight|brush)-(\w[\w+#-]*)$")


def parse_html(raw: RawDocument, charset: str | None) -> Parsed:
    declared = _META_CHARSET.search(raw.data[:4096])
    hint = declared.group(1).decode("ascii", "replace").lower() if declared else charset
    soup = BeautifulSoup(decode_text(raw.data, hint), "html.parser")
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
        title = collapse(soup.title.get_text())
        match = _TITLE_SUFFIX.match(title)
        if match:
            title = match.group(1)
        if title:
            return title
    h1 = soup.find("h1")
    return collapse(h1.get_text(" ")) if h1 is not None else ""


def _content_root(soup: BeautifulSoup) -> Tag:
    """<main>, else the only <article>, else <body>: the part of a page that is the page."""
    main = soup.find("main")
    if isinstance(main, Tag) and collapse(main.get_text()):
        return main
    articles = [a for a in soup.find_all("article") if isinstance(a, Tag)]
    if len(articles) == 1 and collapse(articles[0].get_text()):
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
                self.emit(Block(BlockKind.TEXT, collapse(caption.get_text(" "))))
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
        lines = (collapse(line) for line in "".join(self.buffer).split("\n"))
        self.buffer.clear()
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(Block(BlockKind.TEXT, text))


def _is_text(node: PageElement) -> bool:
    return type(node) in _TEXT_NODES


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
    return collapse("".join(parts)), nested


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
                    lines.append(f"{indent}- {collapse(str(child))}")
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
                rows.append([collapse(str(node))])
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


def html_fragment_text(fragment: str) -> str:
    """Raw HTML inside Markdown (a <details> block, a comment): just its text."""
    soup = BeautifulSoup(fragment, "html.parser")
    for element in soup.find_all(["script", "style"]):
        element.extract()
    return collapse(soup.get_text(" "))
