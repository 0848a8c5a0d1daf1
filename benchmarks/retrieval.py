"""Knowledge-base figures: query latency at 100k chunks, and a sync of an unchanged 10k-document KB.

    .venv/bin/python -m benchmarks.retrieval [--chunks 100000] [--dims 1536] [--documents 10000]

Query latency: 100k synthetic chunks with random unit vectors (text-embedding-3-small's 1536
dimensions by default) go into a real LanceDB table through `ChunkIndex`, which builds the
full-text index and an IVF-HNSW vector index; then hybrid (vector + BM25, RRF)
and full-text queries are timed. Query embedding time is not included (it is the model's).

Unchanged sync: 10k Markdown files are synced once through the real pipeline (full-text only,
so no embedding server is needed), then synced again unchanged: the second run hashes every
file, finds nothing to do, and is what a nightly sync of a stable KB costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bot.app import Hub
from bot.config import Settings
from bot.kb.documents import Chunk
from bot.kb.index import ChunkIndex

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


async def query_latency(chunks: int, dims: int, queries: int) -> dict[str, float]:
    rng = random.Random(7)
    np_rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as folder:
        index = ChunkIndex(folder, "benchmark:random")
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
        indexed = time.perf_counter() - started
        sources = ("s0", "s1", "s2")  # a channel that may see three of four sources
        results: dict[str, float] = {"load_s": loaded, "index_build_s": indexed}
        for mode in ("hybrid", "fulltext"):
            times = []
            for n in range(queries + 10):
                text = " ".join(rng.choice(WORDS) for _ in range(5))
                vector = np_rng.standard_normal(dims, dtype=np.float32)
                vector /= np.linalg.norm(vector)
                t = time.perf_counter()
                hits = await index.search(
                    text, vector.tolist() if mode == "hybrid" else None, sources, 10
                )
                if n >= 10:  # the first queries warm caches
                    times.append((time.perf_counter() - t) * 1000)
                assert hits
            results[f"{mode}_p50_ms"] = statistics.median(times)
            results[f"{mode}_p99_ms"] = percentile(times, 99)
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    latency = await query_latency(args.chunks, args.dims, args.queries)
    print(
        f"{args.chunks:,} chunks x {args.dims} dims: loaded in {latency['load_s']:.1f} s, "
        f"indexes built in {latency['index_build_s']:.1f} s"
    )
    for mode in ("hybrid", "fulltext"):
        print(
            f"  {mode:8} query: p50 {latency[f'{mode}_p50_ms']:.1f} ms, "
            f"p99 {latency[f'{mode}_p99_ms']:.1f} ms (n={args.queries})"
        )
    sync = await unchanged_sync(args.documents)
    print(
        f"{args.documents:,} documents ({sync['chunks']:,} chunks): first sync "
        f"{sync['initial_sync_s']:.1f} s, unchanged re-sync {sync['unchanged_sync_s']:.2f} s"
    )
    if args.json:
        args.json.write_text(json.dumps({"query": latency, "sync": sync}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
