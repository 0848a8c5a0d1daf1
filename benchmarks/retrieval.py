"""Knowledge-base figures: query latency at 100k chunks, and a sync of an unchanged 10k-document KB.

    .venv/bin/python -m benchmarks.retrieval [--chunks 100000] [--dims 1536] [--documents 10000]
        [--queries 300] [--keep DIR] [--output benchmarks/results/retrieval.json]

Query latency: 100k synthetic chunks with random unit vectors (text-embedding-3-small's 1536
dimensions by default) go into a real LanceDB table through `ChunkIndex`, which builds the
full-text index, a bitmap index on `source` and an IVF-HNSW vector index; then hybrid (vector +
BM25, RRF) and full-text queries are timed, with their latency percentiles and the process's CPU
time per query. Query embedding time is not included (it is the model's).

Building that table takes minutes, so `--keep DIR` keeps it in DIR and a later run with the same
DIR, chunks and dims reuses it: the table and the queries are the same either way (both come
from fixed seeds). A reused table first goes through `ChunkIndex.finish` again, as at the end of
a sync, so that it has every index the current code builds; the build figures printed are then
those recorded when DIR was built.

Unchanged sync: 10k Markdown files are synced once through the real pipeline (full-text only,
so no embedding server is needed), then synced again unchanged: the second run hashes every
file, finds nothing to do, and is what a nightly sync of a stable KB costs. `--documents 0`
skips it.

Prints the figures and writes them to benchmarks/results/retrieval.json (`--output`); other
scripts call `run()`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from bot.app import Hub
from bot.config import Settings
from bot.kb.documents import Chunk
from bot.kb.index import ChunkIndex

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"  # gitignored
SOURCES = ("s0", "s1", "s2")  # a channel that may see three of four sources
WARMUP = 10  # after the index's own warm-up, the first queries are left out too
BUILT_MARK = "benchmark.json"  # in a --keep folder: what was built there, written once complete
BUILD_FORMAT = 1  # bump when the synthetic table changes, so that old kept tables are rebuilt

WORDS = tuple(
    [
        "account",
        "billing",
        "invoice",
        "refund",
        "password",
        "security",
        "token",
        "api",
        "key",
        "webhook",
        "export",
        "import",
        "project",
        "task",
        "board",
        "sprint",
        "calendar",
        "integration",
        "slack",
        "github",
        "okta",
        "saml",
        "scim",
        "seat",
        "plan",
        "upgrade",
        "downgrade",
        "trial",
        "mobile",
        "offline",
        "sync",
        "conflict",
        "error",
        "timeout",
        "retry",
        "limit",
        "quota",
        "archive",
        "trash",
        "restore",
        "delete",
        "permission",
        "role",
        "owner",
        "admin",
        "guest",
        "member",
        "notification",
        "digest",
        "email",
        "report",
        "dashboard",
        "filter",
        "label",
        "priority",
        "deadline",
        "reminder",
        "comment",
        "mention",
        "attachment",
        "upload",
        "storage",
        "backup",
        "region",
        "residency",
        "encryption",
        "audit",
        "log",
        "session",
        "device",
    ]
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _stats(times: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(times), "p95_ms": percentile(times, 95),
            "p99_ms": percentile(times, 99), "mean_ms": statistics.fmean(times)}


async def build_table(folder: Path, chunks: int, dims: int) -> dict[str, float]:
    """Fill a chunk table in `folder` through `ChunkIndex` and build its indexes, as a sync
    would; the seeds are fixed, so every build of the same size holds the same rows."""
    rng = random.Random(7)
    np_rng = np.random.default_rng(7)
    index = ChunkIndex(str(folder), "benchmark:random")
    started = time.perf_counter()
    batch = 5000
    for start in range(0, chunks, batch):
        rows = [
            Chunk(
                source=f"s{i % 4}",
                doc_id=f"doc-{i // 5}",
                index=i % 5,
                title=f"Document {i // 5}",
                url="",
                section=sentence(rng, 3),
                text=" ".join(sentence(rng, 12) for _ in range(6)),
            )
            for i in range(start, min(chunks, start + batch))
        ]
        vectors = np_rng.standard_normal((len(rows), dims), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        await index.replace_documents([], rows, vectors.tolist())
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    await index.finish()
    return {"load_s": loaded, "index_build_s": time.perf_counter() - started}


def _kept_build(folder: Path, wanted: dict[str, int]) -> dict[str, float] | None:
    """The build figures recorded in `folder` if it holds a complete build of `wanted`; else
    clears the way for a new build (only our own table folder and mark are removed)."""
    mark = folder / BUILT_MARK
    if mark.exists():
        built = json.loads(mark.read_text(encoding="utf-8"))
        if {k: built.get(k) for k in wanted} == wanted:
            return dict(built["build"])
        mark.unlink()
    shutil.rmtree(folder / "lancedb", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return None


async def kept_table(folder: Path, chunks: int, dims: int) -> dict[str, Any]:
    """The build figures of the table in `folder`, building it first unless a complete build
    of the same size is already there (the mark is written only after the indexes are)."""
    wanted = {"format": BUILD_FORMAT, "chunks": chunks, "dims": dims}
    built = _kept_build(folder, wanted)
    if built is not None:
        kept = ChunkIndex(str(folder / "lancedb"), "benchmark:random")
        if await kept.count() == chunks:
            # as the next sync would: adds any index this version of `finish` builds that
            # the kept table lacks, so a kept table is searched as a new build would be
            started = time.perf_counter()
            await kept.finish()
            return {**built, "reused": True, "refinish_s": time.perf_counter() - started}
        (folder / BUILT_MARK).unlink()
        _kept_build(folder, wanted)
    build = await build_table(folder / "lancedb", chunks, dims)
    (folder / BUILT_MARK).write_text(json.dumps({**wanted, "build": build}, indent=2) + "\n",
                                     encoding="utf-8")
    return {**build, "reused": False}


def query_set(dims: int, queries: int) -> list[tuple[str, list[float]]]:
    """Five random words and a random unit vector per query, from their own seeds, so that a
    built and a reused table are asked the same questions."""
    rng = random.Random(8)
    np_rng = np.random.default_rng(8)
    asked = []
    for _ in range(WARMUP + queries):
        text = " ".join(rng.choice(WORDS) for _ in range(5))
        vector = np_rng.standard_normal(dims, dtype=np.float32)
        vector /= np.linalg.norm(vector)
        asked.append((text, vector.tolist()))
    return asked


async def query_latency(chunks: int, dims: int, queries: int,
                        keep: Path | None) -> dict[str, Any]:
    with ExitStack() as stack:
        folder = keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        results: dict[str, Any] = {"chunks": chunks, "dims": dims, "queries": queries,
                                   "sources_visible": f"{len(SOURCES)} of 4",
                                   **await kept_table(folder, chunks, dims)}
        index = ChunkIndex(str(folder / "lancedb"), "benchmark:random")
        await index.warm(SOURCES)  # what `bothub serve` does once its knowledge base is ready
        asked = query_set(dims, queries)
        for mode in ("hybrid", "fulltext"):
            times = []
            for n, (text, vector) in enumerate(asked):
                if n == WARMUP:
                    cpu = time.process_time()
                t = time.perf_counter()
                hits = await index.search(text, vector if mode == "hybrid" else None, SOURCES, 10)
                if n >= WARMUP:
                    times.append((time.perf_counter() - t) * 1000)
                assert hits
            # CPU time of every thread of this process (LanceDB's included): what a query costs
            # the machine, and less swayed than latency by other work on a shared one
            results[mode] = {**_stats(times),
                             "cpu_ms_per_query": (time.process_time() - cpu) * 1000 / queries}
        return results


async def unchanged_sync(documents: int) -> dict[str, float]:
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        kb = root / "kb"
        for n in range(documents):
            path = kb / f"section-{n % 50}" / f"doc-{n}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            body = "\n\n".join(
                f"## {sentence(rng, 3)}\n\n{sentence(rng, 25)} {sentence(rng, 25)}"
                for _ in range(3)
            )
            path.write_text(f"# Document {n}\n\n{body}\n", encoding="utf-8")
        settings = Settings(
            _env_file=None,
            data_dir=root / "data",
            kb_dir=kb,  # type: ignore[call-arg]
            embedding_model="none",
        )
        hub = await Hub.create(settings)
        try:
            started = time.perf_counter()
            first = await hub.knowledge.sync(source="docs")
            initial = time.perf_counter() - started
            started = time.perf_counter()
            second = await hub.knowledge.sync(source="docs")
            again = time.perf_counter() - started
        finally:
            await hub.close()
        assert first is not None and second is not None
        assert second.report.unchanged == documents and second.report.chunks_embedded == 0
        return {
            "documents": documents,
            "initial_sync_s": initial,
            "unchanged_sync_s": again,
            "chunks": await ChunkIndex(str(root / "data" / "lancedb"), None).count(),
        }


async def measure(chunks: int, dims: int, documents: int, keep: Path | None,
                  queries: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "retrieval", "cpus": os.cpu_count(), "python": platform.python_version(),
        "lancedb": version("lancedb"),
        "query": await query_latency(chunks, dims, queries, keep),
    }
    if documents > 0:
        report["sync"] = await unchanged_sync(documents)
    return report


def run(chunks: int = 100_000, dims: int = 1536, documents: int = 10_000,
        keep: Path | None = None, *, queries: int = 300) -> dict[str, Any]:
    """The figures as a dict (what is also written as JSON), for `python -m benchmarks`.
    `keep`: a folder to keep the chunk table in and reuse it from; `documents=0` skips the sync.
    Starts its own event loop, so call it from synchronous code."""
    return asyncio.run(measure(chunks, dims, documents, keep, queries))


def summary(report: dict[str, Any]) -> list[str]:
    query = report["query"]
    reused = " (table reused from --keep; when it was built:)" if query["reused"] else ":"
    lines = [f"{query['chunks']:,} chunks x {query['dims']} dims{reused} loaded in "
             f"{query['load_s']:.1f} s, indexes built in {query['index_build_s']:.1f} s"]
    for mode in ("hybrid", "fulltext"):
        figures = query[mode]
        lines.append(f"  {mode:8} query: p50 {figures['p50_ms']:.1f} ms, p95 "
                     f"{figures['p95_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
                     f"CPU {figures['cpu_ms_per_query']:.1f} ms/query (n={query['queries']}, "
                     f"{query['sources_visible']} sources visible)")
    if "sync" in report:
        sync = report["sync"]
        lines.append(f"{sync['documents']:,} documents ({sync['chunks']:,} chunks): first sync "
                     f"{sync['initial_sync_s']:.1f} s, unchanged re-sync "
                     f"{sync['unchanged_sync_s']:.2f} s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=300, help="timed queries per kind")
    parser.add_argument("--documents", type=int, default=10_000,
                        help="documents in the unchanged-sync figure; 0 skips it")
    parser.add_argument("--keep", type=Path,
                        help="keep the chunk table in this folder, and reuse it if built there")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    report = run(args.chunks, args.dims, args.documents, args.keep, queries=args.queries)
    for line in summary(report):
        print(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
