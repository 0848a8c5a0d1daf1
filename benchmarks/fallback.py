"""Time to the first token of an answer when the primary model fails and the fallback answers.

Starts the fake model server (every model's time to first byte `--model-delay`), builds a hub in
this process (SQLite, the primary `gpt-4o` and one fallback `gpt-4o-mini`, a short model timeout)
and times, from `Engine.handle` to the first piece of text streamed to the user, new questions
while the primary
  (a) answers every request with a 500 (the SDK retries twice with its own backoff, then the
      fallback answers),
  (b) does not answer at all (hangs past the model timeout),
  (c) is already known to be broken (its circuit breaker is open: it is not asked),
  (d) is healthy (the baseline).
Prints p50/p95 per case and writes them to benchmarks/results/fallback.json.

    .venv/bin/python -m benchmarks.fallback [--runs 50] [--model-delay 0.2] [--model-timeout 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bot.app import Hub
from bot.config import Settings
from bot.llm import Breaker
from bot.model import Author, ConversationKey, Message, Reply
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

PRIMARY, FALLBACK = "gpt-4o", "gpt-4o-mini"
RESULTS = Path(__file__).parent / "results" / "fallback.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class FirstToken:
    """A reply channel that notes when the first piece of the answer reaches the user."""

    started: float = field(default_factory=time.perf_counter)
    first: float | None = None
    final: Reply | None = None

    async def post(self, reply: Reply) -> None:
        return None

    async def stream(self) -> FirstToken:
        return self

    async def append(self, text: str) -> None:
        if self.first is None and text:
            self.first = time.perf_counter() - self.started

    async def finish(self, reply: Reply) -> None:
        self.final = reply


def question(text: str) -> Message:
    return Message(key=ConversationKey("bench", "w1", "c1", uuid.uuid4().hex),
                   id=uuid.uuid4().hex, author=Author(id="u1", display_name="Ada"), text=text)


def chat_models(fake: FakeOpenAI, since: int) -> list[str]:
    return [str((r.json or {}).get("model")) for r in fake.requests[since:]
            if r.path == "/v1/chat/completions"]


async def measure(hub: Hub, fake: FakeOpenAI, name: str, runs: int,
                  before_each: Callable[[], None] = lambda: None) -> dict[str, Any]:
    times: list[float] = []
    primary_calls: list[int] = []
    answered_by: dict[str, int] = {}
    for i in range(runs):
        before_each()
        since = len(fake.requests)
        channel = FirstToken()
        await hub.engine.handle(question(f"How do I rotate my API key? ({name} {i})"), channel)
        if channel.first is None:
            raise SystemExit(f"{name}: run {i} got no answer: {channel.final}")
        times.append(channel.first)
        models = chat_models(fake, since)
        primary_calls.append(models.count(PRIMARY))
        answered_by[models[-1]] = answered_by.get(models[-1], 0) + 1
    ms = [t * 1000 for t in times]
    return {"case": name, "runs": runs, "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1), "mean_ms": round(statistics.fmean(ms), 1),
            "min_ms": round(min(ms), 1), "max_ms": round(max(ms), 1),
            "primary_requests_per_question": round(statistics.fmean(primary_calls), 2),
            "answered_by": answered_by}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with FakeOpenAI() as fake, tempfile.TemporaryDirectory() as data:
        fake.default_delay = args.model_delay
        config = Path(data) / "bench.yaml"
        # Every question is a new one from the same user: lift the rate limits.
        config.write_text(f"limits:\n  model_timeout_seconds: {args.model_timeout}\n"
                          "  rate:\n    user: {per_minute: 100000, burst: 100000}\n"
                          "    channel: {per_minute: 100000, burst: 100000}\n"
                          "    workspace: {per_minute: 100000, burst: 100000}\n",
                          encoding="utf-8")
        values: dict[str, Any] = {
            "data_dir": Path(data), "openai_api_key": fake.api_key,
            "openai_base_url": fake.base_url, "chat_model": PRIMARY,
            "fallback_models": FALLBACK, "embedding_model": "none", "config_file": config}
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        hub = await Hub.create(settings)
        try:
            assert hub.model is not None
            primary = hub.model.targets[0]
            await measure(hub, fake, "warm-up", 5)  # imports, connections, the first query
            results = [await measure(hub, fake, "(d) healthy primary (baseline)", args.runs)]

            # 500s without Retry-After, as the API sends them: the SDK's own backoff applies.
            fake.model_faults[PRIMARY] = ScriptedReply(status=500, delay=0.001)
            primary.breaker = Breaker(threshold=10**9)  # (a) measures every retry, never skips
            results.insert(0, await measure(hub, fake, "(a) primary answers 500", args.runs))

            fake.model_faults[PRIMARY] = ScriptedReply(delay=args.model_timeout * 5)
            primary.breaker = Breaker(threshold=10**9)
            results.insert(1, await measure(hub, fake, "(b) primary times out", args.runs))

            # The shipped breaker (3 failures in a row), with a cooldown longer than the runs
            # so that no half-open probe lands among them; tripped by real failures.
            fake.model_faults[PRIMARY] = ScriptedReply(status=500, delay=0.001)
            primary.breaker = Breaker(threshold=3, cooldown=3600)
            await measure(hub, fake, "trip the breaker", 3)

            def still_open() -> None:
                assert primary.breaker.open, "the breaker closed during case (c)"

            results.insert(2, await measure(hub, fake, "(c) primary known broken (breaker open)",
                                            args.runs, still_open))
        finally:
            await hub.close()
    return {"benchmark": "fallback time to first token", "machine": platform.machine(),
            "python": platform.python_version(), "runs": args.runs,
            "model_delay_s": args.model_delay, "model_timeout_s": args.model_timeout,
            "primary": PRIMARY, "fallback": FALLBACK, "cases": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="questions per case")
    parser.add_argument("--model-delay", type=float, default=0.2,
                        help="every model's time to first byte on the fake server, seconds")
    parser.add_argument("--model-timeout", type=float, default=2.0,
                        help="limits.model_timeout_seconds (the shipped default is 60)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only

    report = asyncio.run(run(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"time to first token, n={args.runs} per case, model time to first byte "
          f"{args.model_delay * 1000:.0f} ms, model timeout {args.model_timeout:g} s")
    for case in report["cases"]:
        print(f"  {case['case']:<42} p50 {case['p50_ms']:8.1f} ms   p95 {case['p95_ms']:8.1f} ms"
              f"   primary requests/question {case['primary_requests_per_question']:g}"
              f"   answered by {case['answered_by']}")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
