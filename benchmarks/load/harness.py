"""Drive one target through one platform's fake at a fixed open-loop rate and measure its answers.

For each target a fresh fake model (set time to first byte and per-token delay) and the
platform's fake start in this process; the target starts as a subprocess pointed at them. The
platform's driver (benchmarks/load/driver.py) asks the questions the platform's way (Slack:
signed `app_mention` events POSTed to `/slack/events`; Teams: signed Bot Framework activities
POSTed to `/api/messages`; Discord: MESSAGE_CREATE events on the gateway the target is
connected to) and reads back the bot's writes. A short warm-up (imports, connections, the
platform's first calls) is answered first and left out. Then the questions go on a fixed
schedule, whatever the target's pace (open loop: a slow target gets no relief), spread over
`conversations` threads: each thread's first question starts it, the next ones are asked in it.

Hub-added latency is the observed time less the model's own scripted time. The fake sends its
first piece of text one token interval after its time to first byte, and ends the stream one
interval after the last piece: the model's own time to the first piece is `ttft + interval`,
to the end of the answer `ttft + (tokens + 1) * interval`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import measure, storage, targets
from benchmarks.load.driver import Driver, driver_for
from tests.fakes.openai_server import FakeOpenAI

RESULTS = Path(__file__).resolve().parents[1] / "results"  # gitignored
WARM_UP = 5  # questions answered before the measured run
WARM_UP_NUMBERS = 1_000_000  # warm-up questions are numbered from here, apart from the run's
SETTLE = 2.0  # seconds to keep watching after the last answer, for late duplicates
# Seconds without a new answer before the rest count as lost: longer than the hub's inbox
# lease (60 s) and sweep (10 s), so that a question it retries is late, not lost.
STALL = 90.0
LOST_EXAMPLES = 5  # lost questions whose threads go into the JSON, to see what happened


@dataclass
class LoadSettings:
    rate: float  # questions per second
    duration: float  # seconds of sending
    ttft: float  # the fake model's time to first byte, seconds
    token_interval: float  # seconds between the fake model's pieces
    answer_tokens: int  # pieces per answer
    conversations: int  # threads the questions are spread over
    native_streaming: bool = True  # bothub only: Slack's chat streaming (product default)
    platform: str = "slack"  # whose fake the questions come through: slack, teams or discord
    storage: str = "sqlite"  # bothub only: sqlite, or postgres (PostgreSQL + Redis)

    @property
    def model_first(self) -> float:
        return self.ttft + self.token_interval

    @property
    def model_last(self) -> float:
        return self.ttft + (self.answer_tokens + 1) * self.token_interval


def run_target(name: str, settings: LoadSettings) -> dict[str, Any]:
    """Start the fakes and target `name`, load it, stop everything; the target's figures."""
    with FakeOpenAI() as model, driver_for(settings.platform) as driver, \
            storage.provisioned(settings.storage if name == "bothub" else "sqlite") as stored, \
            tempfile.TemporaryDirectory(prefix=f"load-{name}-") as workdir:
        model.default_delay = settings.ttft
        model.default_chunk_delay = settings.token_interval
        model.responder = measure.responder(settings.answer_tokens)
        target = targets.start(name, Path(workdir), {**driver.env(), **stored}, model,
                               native_streaming=settings.native_streaming)
        try:
            figures = asyncio.run(_load(target, driver, model, settings))
            figures["peak_rss_mb"] = _mb(target.peak_rss_bytes())
            if target.process.poll() is not None:
                figures["exited"] = target.process.returncode
        finally:
            target.stop()
            RESULTS.mkdir(parents=True, exist_ok=True)
            suffix = "" if settings.platform == "slack" else f"-{settings.platform}"
            suffix += "" if settings.storage == "sqlite" else f"-{settings.storage}"
            shutil.copyfile(target.log, RESULTS / f"load-{name}{suffix}.log")
    return figures


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


async def _load(target: targets.Target, driver: Driver, model: FakeOpenAI,
                settings: LoadSettings) -> dict[str, Any]:
    await driver.open(target.url)
    try:
        warm = [driver.question(WARM_UP_NUMBERS + i, None) for i in range(WARM_UP)]
        await asyncio.gather(*(driver.send(q) for q in warm))
        await _wait_answered(driver, warm, settings.model_last + 60)
        model_calls_before = len(model.chat_requests())
        cpu_before, own_before = target.cpu_seconds(), time.process_time()

        total = max(1, round(settings.rate * settings.duration))
        questions: list[measure.Question] = []
        sends: list[asyncio.Task[None]] = []
        started = time.monotonic()
        rss_samples: list[list[float]] = []
        sampler = asyncio.create_task(_sample_memory(target, questions, settings.conversations,
                                                     rss_samples))
        for i in range(total):
            delay = started + i / settings.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            question = driver.question(i, i % settings.conversations)
            questions.append(question)
            sends.append(asyncio.create_task(driver.send(question)))
        sent_span = time.monotonic() - started
        await asyncio.gather(*sends)
        await _wait_answered(driver, questions, settings.model_last * 3 + STALL)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        cpu = target.cpu_seconds() - cpu_before  # and the idle wait at the end: little
        own = time.process_time() - own_before  # this process: the fakes and the sender
    finally:
        await driver.close()
    model_calls = len(model.chat_requests()) - model_calls_before
    results = measure.outcomes(driver.messages(), driver.writes(), questions)
    figures = _figures(results, settings, sent_span, model_calls,
                       measure.model_times(model.chat_streams()))
    figures["cpu_ms_per_question"] = round(cpu * 1000 / len(questions), 1)
    figures["rss_samples"] = rss_samples
    # The harness shares the machine: when it needs a core of its own, figures at that rate
    # are the machine's, not the target's alone.
    figures["harness_cpu_ms_per_question"] = round(own * 1000 / len(questions), 1)
    lost = [o.question for o in results if o.answers == 0][:LOST_EXAMPLES]
    figures["lost_examples"] = [
        {"question": q.number, "http_status": q.status, "bot_wrote": driver.thread_texts(q)}
        for q in lost]
    return figures


MEMORY_EVERY = 1.0  # seconds between samples of the target's resident memory


async def _sample_memory(target: targets.Target, questions: list[measure.Question],
                         conversations: int, samples: list[list[float]]) -> None:
    """Append [conversations opened so far, RSS in MB] every MEMORY_EVERY seconds, and once
    more when cancelled: how memory grows as conversations accumulate."""
    try:
        while True:
            _sample(target, questions, conversations, samples)
            await asyncio.sleep(MEMORY_EVERY)
    finally:
        _sample(target, questions, conversations, samples)


def _sample(target: targets.Target, questions: list[measure.Question], conversations: int,
            samples: list[list[float]]) -> None:
    rss = target.rss_bytes()
    if rss is not None:
        samples.append([min(len(questions), conversations), round(rss / 2**20, 1)])


async def _wait_answered(driver: Driver, questions: list[measure.Question],
                         stall: float) -> None:
    """Until every question has a complete answer, or none has come for `stall` seconds (an
    overloaded target drains slowly: late is not lost), then SETTLE more seconds."""
    wanted = {q.number for q in questions}
    seen, progress = -1, time.monotonic()
    while time.monotonic() - progress < stall:
        shown = await asyncio.to_thread(driver.messages)
        done = measure.complete_answers(shown)
        if wanted <= done.keys():
            break
        if len(done) != seen:
            seen, progress = len(done), time.monotonic()
        await asyncio.sleep(0.5)
    await asyncio.sleep(SETTLE)


def _figures(outcomes: list[measure.Outcome], settings: LoadSettings, sent_span: float,
             model_calls: int, model_times: dict[int, measure.ModelTime]) -> dict[str, Any]:
    """Hub-added time is each answer's observed time less its model's own, as the fake model
    measured it (the scripted one where it has no record, such as an answer from the cache)."""
    nominal = measure.ModelTime(settings.model_first, settings.model_last)
    acknowledged = [o.acknowledged - o.question.sent for o in outcomes
                    if o.acknowledged is not None]
    first = [o.first - o.question.sent for o in outcomes if o.first is not None]
    last = [o.last - o.question.sent for o in outcomes
            if o.last is not None and o.answers >= 1]
    own = [model_times.get(o.question.number, nominal) for o in outcomes]
    measured = [model_times[o.question.number] for o in outcomes
                if o.question.number in model_times]
    # Where the hub-added time goes: before the model is asked, and after its first piece.
    before_model = [model_times[o.question.number].requested_at - o.question.sent
                    for o in outcomes if o.question.number in model_times]
    added_first = [o.first - o.question.sent - m.first for o, m in zip(outcomes, own, strict=True)
                   if o.first is not None]
    added_last = [o.last - o.question.sent - m.last for o, m in zip(outcomes, own, strict=True)
                  if o.last is not None and o.answers >= 1]
    answered = [o for o in outcomes if o.answers >= 1]
    ends = [o.last for o in answered if o.last is not None]
    n = len(outcomes)
    return {
        "questions": n,
        "rate_asked": settings.rate,
        "rate_sent": round((n - 1) / sent_span, 1) if n > 1 and sent_span > 0 else None,
        "rate_answered": (round(len(ends) / (max(ends) - min(o.question.sent for o in outcomes)),
                                1) if ends else None),
        "not_acked": sum(1 for o in outcomes if o.question.status != 200),
        "answered": len(answered),
        "lost": sum(1 for o in outcomes if o.answers == 0),
        "duplicated": sum(1 for o in outcomes if o.answers > 1),
        "model_calls_per_question": round(model_calls / n, 2) if n else None,
        "observed_acknowledged_ms": measure.distribution(acknowledged),
        "observed_first_ms": measure.distribution(first),
        "observed_last_ms": measure.distribution(last),
        "added_first_ms": measure.distribution(added_first),
        "added_last_ms": measure.distribution(added_last),
        "mean_added_first_ms": (round(statistics.fmean(added_first) * 1000, 1)
                                if added_first else None),
        "hub_before_model_ms": measure.distribution(before_model),
        "model_first_ms": measure.distribution([m.first for m in measured]),
        "model_last_ms": measure.distribution([m.last for m in measured]),
        "cpus": os.cpu_count(),
    }
