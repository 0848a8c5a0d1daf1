"""Documents -> chunks: passages small enough to embed and quote, that remember their section.

A chunk never spans two sections, so a citation's "Billing › Refunds" is true of all its text
and retrieval does not blend the refund policy into the paragraph about invoices. Inside a
section, whole blocks are packed together; only a block too large for one chunk is cut, at
sentence (or line) boundaries, with a little overlap so a fact straddling the cut is still
whole in one of the pieces.

Every block, sentence and line is counted once; piece sizes are sums of those counts plus one
token per join, an upper bound for a tokenizer that splits on whitespace and punctuation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.kb.documents import Block, BlockKind, Chunk, Document
from bot.tokens import count_tokens

__all__ = ["SECTION_SEPARATOR", "chunk_document"]

SECTION_SEPARATOR = " › "
BLOCK_JOINER = "\n\n"
JOIN_TOKENS = 1  # what a joiner ("\n\n", "\n", " ") may add to a sum of separate counts
MIN_MAX_TOKENS = 16

# A sentence ends at . ! ? … (plus closing quotes/brackets) before whitespace, or at CJK
# full stops, which are not followed by a space.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?P<space>\s+)|[。！？][」』”’）)]*(?P<cjk>\s*)")
_FENCE_OPEN = re.compile(r"^(`{3,}|~{3,})[^\n]*$")


@dataclass(frozen=True, slots=True)
class _Unit:
    """A sentence, a line or a hard-cut slice: the smallest thing an oversized block is cut
    into. `joiner` is what separated it from the unit before it in the original text."""

    text: str
    tokens: int
    joiner: str = "\n"


def chunk_document(doc: Document, *, max_tokens: int = 350, overlap_tokens: int = 50
                   ) -> list[Chunk]:
    """Cut a parsed document into chunks of at most `max_tokens` tokens, in document order.

    A section's first chunk starts with its heading (so the words of the heading are searchable
    with its text); the heading path itself goes into `Chunk.section`, not into the text. A
    heading with nothing under it makes no chunk of its own."""
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}, got {max_tokens}")
    overlap_tokens = max(0, min(overlap_tokens, max_tokens // 2))
    chunks = _Chunker(doc, max_tokens, overlap_tokens, keep_bare_headings=False).run()
    if not chunks and any(block.text.strip() for block in doc.blocks):
        # Nothing but headings: better a chunk per heading than a document that vanishes.
        chunks = _Chunker(doc, max_tokens, overlap_tokens, keep_bare_headings=True).run()
    return chunks


class _Chunker:
    def __init__(self, doc: Document, max_tokens: int, overlap_tokens: int, *,
                 keep_bare_headings: bool) -> None:
        self.doc = doc
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.keep_bare_headings = keep_bare_headings
        self.chunks: list[Chunk] = []
        self.section = ""
        self.parts: list[str] = []  # the open chunk's blocks
        self.tokens = 0
        self.bare_heading = False  # the open chunk holds only its section's heading

    def run(self) -> list[Chunk]:
        path: list[tuple[int, str]] = []
        for block in self.doc.blocks:
            if block.kind is BlockKind.HEADING:
                text = " ".join(block.text.split())
                if not text:
                    continue
                level = block.level if 1 <= block.level <= 6 else 1
                while path and path[-1][0] >= level:
                    path.pop()
                path.append((level, text))
                self.start_section(SECTION_SEPARATOR.join(t for _, t in path), text)
            else:
                text = _clean(block)
                if text:
                    self.add(text, block.kind)
        self.flush()
        return self.chunks

    # -- packing whole blocks -----------------------------------------------------------------

    def start_section(self, section: str, heading: str) -> None:
        self.flush()
        self.section = section
        tokens = count_tokens(heading)
        if tokens > self.max_tokens:  # absurd, but a heading must not break the size limit
            self.add(heading, BlockKind.TEXT)
            return
        self.parts, self.tokens, self.bare_heading = [heading], tokens, True

    def add(self, text: str, kind: BlockKind) -> None:
        tokens = count_tokens(text)
        if tokens <= self.max_tokens:
            if self.parts and self.tokens + JOIN_TOKENS + tokens > self.max_tokens:
                self.flush()
            self.tokens += tokens + (JOIN_TOKENS if self.parts else 0)
            self.parts.append(text)
            self.bare_heading = False
            return
        lead: list[_Unit] = []
        if self.parts and (self.bare_heading or self.tokens <= self.max_tokens // 4):
            # A heading (and a short intro like "Do this:") belongs with what it introduces.
            lead = [_Unit(BLOCK_JOINER.join(self.parts), self.tokens)]
            self.parts, self.tokens, self.bare_heading = [], 0, False
        else:
            self.flush()
        pieces = _split_block(text, kind, self.max_tokens, self.overlap_tokens, lead)
        for piece_text, _ in pieces[:-1]:
            self.emit(piece_text)
        # The last piece stays open: the section's next small blocks may still fit after it.
        self.parts, self.tokens = [pieces[-1][0]], pieces[-1][1]

    def flush(self) -> None:
        if self.parts and (not self.bare_heading or self.keep_bare_headings):
            self.emit(BLOCK_JOINER.join(self.parts))
        self.parts, self.tokens, self.bare_heading = [], 0, False

    def emit(self, text: str) -> None:
        self.chunks.append(Chunk(
            source=self.doc.source,
            doc_id=self.doc.doc_id,
            index=len(self.chunks),
            title=self.doc.title,
            url=self.doc.url,
            section=self.section,
            text=text,
        ))


def _clean(block: Block) -> str:
    if block.kind is BlockKind.CODE:  # indentation is meaning in code: only trim blank edges
        return block.text.strip("\n").rstrip()
    return block.text.strip()


# -- cutting one oversized block ----------------------------------------------------------------


def _split_block(text: str, kind: BlockKind, max_tokens: int, overlap: int,
                 lead: list[_Unit]) -> list[tuple[str, int]]:
    """Pieces of one block, each within max_tokens, consecutive ones sharing ~overlap tokens.

    Code keeps its fence on every piece and a table its header row, so each piece still reads
    as what it is."""
    prefix, body, suffix = _wrapper(text, kind)
    wrap_tokens = 0
    if prefix or suffix:
        wrap_tokens = count_tokens(prefix) + count_tokens(suffix) + 2 * JOIN_TOKENS
        if wrap_tokens > max_tokens // 3:  # a giant header row: not worth repeating
            prefix, body, suffix, wrap_tokens = "", text, "", 0
    budget = max_tokens - wrap_tokens
    overlap = min(overlap, budget // 3)
    unit_limit = budget - overlap - JOIN_TOKENS
    if lead:  # the section heading rides on the first piece, outside the wrapper
        unit_limit = min(unit_limit, budget - lead[0].tokens - JOIN_TOKENS)
    if lead and unit_limit < MIN_MAX_TOKENS // 2:  # the heading nearly fills a chunk alone
        rest = _split_block(text, kind, max_tokens, overlap, [])
        return [(lead[0].text, lead[0].tokens), *rest]
    units = _units(body, kind, max(1, unit_limit))
    first_budget = budget - (lead[0].tokens + JOIN_TOKENS if lead else 0)
    pieces = []
    for number, group in enumerate(_pack(units, budget, overlap, first_budget=first_budget)):
        text_, tokens = _render(group)
        if prefix or suffix:
            text_ = "\n".join(part for part in (prefix, text_, suffix) if part)
            tokens += wrap_tokens
        if number == 0 and lead:
            text_ = f"{lead[0].text}{BLOCK_JOINER}{text_}"
            tokens += lead[0].tokens + JOIN_TOKENS
        pieces.append((text_, tokens))
    return pieces


def _wrapper(text: str, kind: BlockKind) -> tuple[str, str, str]:
    """(prefix, body, suffix): the fence lines of fenced code, the header row of a table."""
    lines = text.split("\n")
    if kind is BlockKind.CODE and len(lines) >= 3 and _FENCE_OPEN.match(lines[0]):
        fence = _FENCE_OPEN.match(lines[0])
        if fence and lines[-1].strip() == fence.group(1):
            return lines[0], "\n".join(lines[1:-1]), lines[-1]
    if kind is BlockKind.TABLE and len(lines) >= 3:
        return lines[0], "\n".join(lines[1:]), ""
    return "", text, ""


def _units(text: str, kind: BlockKind, limit: int) -> list[_Unit]:
    """Lines (code, lists, tables) or sentences (prose), each within `limit` tokens."""
    units: list[_Unit] = []
    blank_lines = 0
    for line in text.split("\n"):
        if not line.strip():
            blank_lines += 1
            continue
        joiner = "\n" * (blank_lines + 1)
        blank_lines = 0
        if kind is BlockKind.CODE:
            units += _fit(_Unit(line.rstrip(), count_tokens(line.rstrip()), joiner), limit)
            continue
        line = line.rstrip()
        if kind in {BlockKind.LIST, BlockKind.TABLE}:
            tokens = count_tokens(line)
            if tokens <= limit:
                units.append(_Unit(line, tokens, joiner))
                continue
        for sentence, sentence_joiner in _sentences(line):
            joined = joiner if sentence_joiner is None else sentence_joiner
            units += _fit(_Unit(sentence, count_tokens(sentence), joined), limit)
    return units


def _sentences(line: str) -> list[tuple[str, str | None]]:
    """(sentence, joiner before it); the first sentence's joiner is the caller's (None)."""
    found: list[tuple[str, str | None]] = []
    start: int = 0
    joiner: str | None = None
    for match in _SENTENCE_END.finditer(line):
        group = "space" if match.group("space") is not None else "cjk"
        end = match.start(group)
        if end > start:
            found.append((line[start:end], joiner))
            joiner = " " if match.group(group) else ""  # CJK full stops need no space
            start = match.end()
    if start < len(line):
        found.append((line[start:], joiner))
    return found


def _fit(unit: _Unit, limit: int) -> list[_Unit]:
    """A unit within `limit`, or its hard-cut slices: a minified line, a sentence with no end."""
    if unit.tokens <= limit:
        return [unit]
    slices: list[_Unit] = []
    rest, joiner = unit.text, unit.joiner
    while rest:
        cut = _fitting_prefix(rest, limit)
        if cut < len(rest):
            space = rest.rfind(" ", 0, cut + 1)
            if space > cut // 2:  # prefer a word boundary in the second half of the slice
                piece, next_rest, next_joiner = rest[:space], rest[space:].lstrip(), " "
            else:
                piece, next_rest, next_joiner = rest[:cut], rest[cut:], ""
        else:
            piece, next_rest, next_joiner = rest, "", ""
        tokens = count_tokens(piece)
        if tokens > limit:  # tokenizer not monotonic at this boundary: take the verified cut
            piece, next_rest, next_joiner = rest[:cut], rest[cut:], ""
            tokens = count_tokens(piece)
        slices.append(_Unit(piece, tokens, joiner))
        rest, joiner = next_rest, next_joiner
    return slices


def _fitting_prefix(text: str, limit: int) -> int:
    """The longest prefix length whose count is within `limit`, found by galloping then
    bisecting, so a megabyte-long line costs O(pieces × log) counts of piece-sized strings."""
    low = min(len(text), max(1, limit // 4))  # a token is at least one byte; a char <= 4 bytes
    if low == len(text) and count_tokens(text) <= limit:
        return low
    high = low
    while True:
        high = min(len(text), high * 2)
        if count_tokens(text[:high]) > limit:
            break
        low = high
        if high == len(text):
            return high
    while high - low > 1:
        middle = (low + high) // 2
        if count_tokens(text[:middle]) <= limit:
            low = middle
        else:
            high = middle
    return low


def _pack(units: list[_Unit], budget: int, overlap: int, *, first_budget: int
          ) -> list[list[_Unit]]:
    """Greedy packing; each new group starts with the previous group's last ~overlap tokens."""
    groups: list[list[_Unit]] = []
    group: list[_Unit] = []
    tokens = 0
    fresh = 0  # units in the group that are not overlap carried from the previous group
    limit = first_budget
    for unit in units:
        cost = unit.tokens + (JOIN_TOKENS if group else 0)
        if fresh and tokens + cost > limit:
            groups.append(group)
            limit = budget
            group = _overlap_tail(group, overlap)
            while group and _cost(group) + JOIN_TOKENS + unit.tokens > limit:
                group = group[1:]
            tokens, fresh = _cost(group), 0
            cost = unit.tokens + (JOIN_TOKENS if group else 0)
        group.append(unit)
        tokens += cost
        fresh += 1
    if fresh:
        groups.append(group)
    return groups


def _overlap_tail(group: list[_Unit], overlap: int) -> list[_Unit]:
    """Whole trailing units within `overlap` tokens; if even the last unit is larger, the last
    words of it."""
    if overlap <= 0:
        return []
    tail: list[_Unit] = []
    tokens = 0
    for unit in reversed(group):
        cost = unit.tokens + (JOIN_TOKENS if tail else 0)
        if tokens + cost > overlap:
            break
        tail.insert(0, unit)
        tokens += cost
    if tail:
        return tail
    words = _last_words(group[-1].text, overlap)
    return [_Unit(words, count_tokens(words), "")] if words else []


def _last_words(text: str, limit: int) -> str:
    tail = text[-limit * 4:]  # about four characters per token in prose
    space = tail.find(" ")
    if len(tail) < len(text) and 0 <= space < len(tail) // 2:
        tail = tail[space + 1:]
    while tail and count_tokens(tail) > limit:
        tail = tail[max(1, len(tail) // 5):].lstrip()
    return tail


def _cost(units: list[_Unit]) -> int:
    return sum(unit.tokens for unit in units) + JOIN_TOKENS * max(0, len(units) - 1)


def _render(units: list[_Unit]) -> tuple[str, int]:
    text = units[0].text + "".join(unit.joiner + unit.text for unit in units[1:])
    return text, _cost(units)
