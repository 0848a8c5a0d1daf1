"""Chunking: sections are never mixed, every chunk fits the token budget, and oversized blocks
are cut at natural boundaries with a little overlap."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest

from bot.kb.chunking import chunk_document
from bot.kb.documents import Block, BlockKind, Chunk, Document
from bot.tokens import count_tokens
from tests.kb.conftest import SAMPLE, parse_sample

H = BlockKind.HEADING
T = BlockKind.TEXT


def doc(*blocks: Block, title: str = "Guide") -> Document:
    return Document(source="kb", doc_id="guide.md", url="https://kb.example/guide",
                    title=title, content_hash="0" * 64, blocks=blocks)


def heading(text: str, level: int) -> Block:
    return Block(H, text, level)


def text(value: str) -> Block:
    return Block(T, value)


def sentences(prefix: str, count: int) -> list[str]:
    return [f"{prefix} sentence number {i} talks about topic {i * 7} in some detail." for i in
            range(count)]


def sample_docs() -> list[Document]:
    docs = []
    for path in sorted(p for p in SAMPLE.rglob("*") if p.is_file()):
        docs.append(parse_sample(str(path.relative_to(SAMPLE))))
    return docs


def assert_within(chunks: list[Chunk], max_tokens: int) -> None:
    for chunk in chunks:
        assert count_tokens(chunk.text) <= max_tokens, (chunk.section, chunk.text)


# -- sections ---------------------------------------------------------------------------------


def test_section_paths_nest_and_reset() -> None:
    chunks = chunk_document(doc(
        text("Before any heading."),
        heading("Billing", 1), text("About billing."),
        heading("Refunds", 2), text("About refunds."),
        heading("Exceptions", 3), text("About exceptions."),
        heading("Invoices", 2), text("About invoices."),
        heading("Security", 1), text("About security."),
        heading("Deep jump", 3), text("Skipped a level."),
    ))
    assert [(c.section, c.text) for c in chunks] == [
        ("", "Before any heading."),
        ("Billing", "Billing\n\nAbout billing."),
        ("Billing › Refunds", "Refunds\n\nAbout refunds."),
        ("Billing › Refunds › Exceptions", "Exceptions\n\nAbout exceptions."),
        ("Billing › Invoices", "Invoices\n\nAbout invoices."),
        ("Security", "Security\n\nAbout security."),
        ("Security › Deep jump", "Deep jump\n\nSkipped a level."),
    ]


def test_sections_are_never_mixed() -> None:
    blocks: list[Block] = []
    for name in ("Alpha", "Beta", "Gamma"):
        blocks.append(heading(name, 2))
        blocks += [text(s) for s in sentences(name, 12)]
    chunks = chunk_document(doc(*blocks), max_tokens=120, overlap_tokens=30)
    assert len(chunks) > 3
    for chunk in chunks:
        name = chunk.section
        others = {"Alpha", "Beta", "Gamma"} - {name}
        assert not any(other in chunk.text for other in others), chunk
        assert name in chunk.text


def test_a_heading_without_content_makes_no_chunk() -> None:
    chunks = chunk_document(doc(heading("Guide", 1), heading("Setup", 2), text("Do this.")))
    assert [(c.section, c.text) for c in chunks] == [("Guide › Setup", "Setup\n\nDo this.")]


def test_a_document_of_only_headings_still_has_chunks() -> None:
    chunks = chunk_document(doc(heading("Guide", 1), heading("Coming soon", 2)))
    assert [(c.section, c.text) for c in chunks] == [
        ("Guide", "Guide"), ("Guide › Coming soon", "Coming soon")]


def test_small_blocks_of_a_section_are_packed_together() -> None:
    chunks = chunk_document(doc(heading("FAQ", 1), text("One."), text("Two."),
                                Block(BlockKind.LIST, "- a\n- b")))
    assert [c.text for c in chunks] == ["FAQ\n\nOne.\n\nTwo.\n\n- a\n- b"]


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [40, 80, 200, 350])
def test_max_tokens_is_respected_on_the_sample(max_tokens: int) -> None:
    for document in sample_docs():
        chunks = chunk_document(document, max_tokens=max_tokens, overlap_tokens=max_tokens // 5)
        assert chunks
        assert_within(chunks, max_tokens)


def test_oversized_paragraph_is_split_at_sentences_with_overlap() -> None:
    parts = sentences("Fact", 40)
    chunks = chunk_document(doc(heading("Big", 1), text(" ".join(parts))),
                            max_tokens=100, overlap_tokens=30)
    assert len(chunks) >= 5
    assert_within(chunks, 100)
    assert chunks[0].text.startswith("Big\n\nFact sentence number 0 ")
    for chunk in chunks:  # cut only between sentences
        assert chunk.text.rstrip().endswith(".")
    for before, after in pairwise(chunks):
        first_sentence = re.match(r"Fact sentence number \d+ [^.]*\.", after.text)
        assert first_sentence is not None
        assert first_sentence.group(0) in before.text  # consecutive pieces overlap
        overlap = before.text[before.text.index(first_sentence.group(0)):]
        assert 10 <= count_tokens(overlap) <= 30
    everything = " ".join(c.text for c in chunks)
    assert all(part in everything for part in parts)


def test_no_overlap_across_blocks_or_sections() -> None:
    big_a = " ".join(sentences("Apple", 30))
    big_b = " ".join(sentences("Banana", 30))
    chunks = chunk_document(doc(heading("A", 2), text(big_a), text(big_b),
                                heading("C", 2), text(" ".join(sentences("Cherry", 30)))),
                            max_tokens=120, overlap_tokens=40)
    banana = [c for c in chunks if "Banana" in c.text]
    assert sum("Banana sentence number 0 " in c.text for c in chunks) == 1
    assert all("Apple" not in c.text for c in banana[1:])  # Banana's pieces overlap Banana only
    cherry = [c for c in chunks if c.section == "C"]
    assert cherry[0].text.startswith("C\n\nCherry sentence number 0 ")
    assert all("Apple" not in c.text and "Banana" not in c.text for c in cherry)


def test_overlap_zero_means_pieces_partition_the_text() -> None:
    parts = sentences("Fact", 30)
    chunks = chunk_document(doc(text(" ".join(parts))), max_tokens=80, overlap_tokens=0)
    assert " ".join(c.text for c in chunks) == " ".join(parts)


def test_code_block_is_kept_whole_when_it_fits() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(25)) + "\n```"
    chunks = chunk_document(doc(heading("Setup", 1), text(" ".join(sentences("Intro", 8))),
                                Block(BlockKind.CODE, code), text("After the code.")),
                            max_tokens=count_tokens(code) + 20)
    assert sum(code in c.text for c in chunks) == 1
    assert not any("value_3 =" in c.text and code not in c.text for c in chunks)


def test_oversized_code_block_is_split_at_lines_and_keeps_its_fence() -> None:
    lines = [f"    result_{i} = client.call('endpoint_{i}', retries={i % 5})" for i in range(80)]
    code = "```python\ndef main():\n" + "\n".join(lines) + "\n```"
    chunks = chunk_document(doc(Block(BlockKind.CODE, code)), max_tokens=120, overlap_tokens=20)
    assert len(chunks) > 3
    assert_within(chunks, 120)
    for chunk in chunks:
        assert chunk.text.startswith("```python\n") and chunk.text.endswith("\n```")
        body = chunk.text.split("\n")[1:-1]
        assert all(line in ["def main():", *lines] for line in body)  # whole lines only
    covered = {line for c in chunks for line in c.text.split("\n")}
    assert set(lines) <= covered


def test_oversized_table_repeats_its_header_row() -> None:
    rows = ["Plan | Seats | Price"] + [f"Plan {i} | {i * 5} | ${i * 8}" for i in range(60)]
    chunks = chunk_document(doc(Block(BlockKind.TABLE, "\n".join(rows))), max_tokens=80)
    assert len(chunks) > 2
    assert_within(chunks, 80)
    assert all(c.text.startswith("Plan | Seats | Price\n") for c in chunks)


def test_oversized_list_is_split_at_lines() -> None:
    items = [f"- Step {i}: open the settings page and change option {i}" for i in range(50)]
    chunks = chunk_document(doc(Block(BlockKind.LIST, "\n".join(items))), max_tokens=90)
    assert_within(chunks, 90)
    for chunk in chunks:
        assert all(line in items for line in chunk.text.split("\n"))


@pytest.mark.parametrize("line", [
    "x" * 30_000,
    "".join(f"{i:05x}" for i in range(8_000)),
    " ".join(f"word{i}" for i in range(6_000)),
], ids=["one-char", "hex", "words-no-sentences"])
def test_a_huge_single_line_is_hard_cut(line: str) -> None:
    chunks = chunk_document(doc(text(line)), max_tokens=200, overlap_tokens=0)
    assert len(chunks) > 3
    assert_within(chunks, 200)
    joiner = " " if " " in line else ""
    assert joiner.join(c.text for c in chunks) == line

    overlapping = chunk_document(doc(text(line)), max_tokens=200, overlap_tokens=40)
    assert_within(overlapping, 200)
    assert line.startswith(overlapping[0].text)
    assert line.endswith(overlapping[-1].text)
    for before, after in pairwise(overlapping):
        shared = after.text[:40]
        assert shared in before.text[-400:]  # each piece starts with the end of the last one
        assert shared in line


def test_cjk_text_is_split_at_full_stops() -> None:
    sentence = "ワークスペースの設定を開いて、メンバーを招待してください。"
    chunks = chunk_document(doc(text(sentence * 40)), max_tokens=80, overlap_tokens=0)
    assert len(chunks) > 2
    assert_within(chunks, 80)
    assert "".join(c.text for c in chunks) == sentence * 40
    assert all(c.text.endswith("。") for c in chunks)


def test_tiny_max_tokens_is_rejected() -> None:
    with pytest.raises(ValueError):
        chunk_document(doc(text("x")), max_tokens=4)


# -- bookkeeping ------------------------------------------------------------------------------


def test_indices_and_metadata() -> None:
    blocks = [heading("Guide", 1), *[text(s) for s in sentences("Body", 30)]]
    chunks = chunk_document(doc(*blocks, title="The guide"), max_tokens=60)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert {(c.source, c.doc_id, c.url, c.title) for c in chunks} == {
        ("kb", "guide.md", "https://kb.example/guide", "The guide")}
    assert len({c.key for c in chunks}) == len(chunks)


def test_empty_documents_have_no_chunks() -> None:
    assert chunk_document(doc()) == []
    assert chunk_document(doc(text("   "), Block(BlockKind.CODE, "\n\n"))) == []


def test_chunking_is_deterministic() -> None:
    for document in sample_docs():
        assert chunk_document(document, max_tokens=90) == chunk_document(document, max_tokens=90)


def test_every_sample_file_produces_chunks() -> None:
    documents = sample_docs()
    assert len(documents) >= 14
    for document in documents:
        chunks = chunk_document(document)
        assert chunks, document.doc_id
        assert all(c.text.strip() for c in chunks)
        assert_within(chunks, 350)
        assert [c.index for c in chunks] == list(range(len(chunks)))


def test_sample_sections_point_at_the_right_text() -> None:
    chunks = {c.section: c for d in sample_docs() if d.doc_id == "billing-and-plans.md"
              for c in chunk_document(d)}
    refunds = chunks["Billing and plans › Refunds"]
    assert "within 14 days" in refunds.text
    assert "Failed payments" not in refunds.text
