"""What a platform's fake saw, turned into one outcome per question, and the figures from them.

Every question carries a marker (`q-<n>`) and the fake model's answer to it starts with
`ans-<n>` and ends with `done.`, so an answer is found by its text whatever the target did
with it (placeholder then edits, a native stream, one post) and on whichever platform. Each
platform's driver (benchmarks/load/slack.py, teams.py, discord.py) turns its fake's records into
the same two lists: the bot's messages as they are now, and its writes with the fake's own
arrival stamps (`time.monotonic()` in this process), so no polling delay is in the times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tests.fakes.openai_server import RecordedRequest

ANSWER_END = "done."
_QUESTION_MARK = re.compile(r"q-(\d+)")
_ANSWER_MARK = re.compile(r"ans-(\d+)")


def question_text(number: int) -> str:
    """A question that no cache has seen: the marker makes each one unique."""
    return f"How do I rotate my API key? q-{number}"


def answer_text(number: int, tokens: int) -> str:
    """The scripted answer to question `number`: `tokens` stream pieces (words)."""
    return " ".join([f"ans-{number}", *["tok"] * max(0, tokens - 2), ANSWER_END])


def asked(body: dict[str, Any] | None) -> int | None:
    """The number of the question a chat request answers: its last user message's marker."""
    for message in reversed((body or {}).get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            found = _QUESTION_MARK.findall(content if isinstance(content, str) else str(content))
            return int(found[-1]) if found else None
    return None


def responder(tokens: int) -> Any:
    """A FakeOpenAI responder answering the last user message's marked question."""

    def respond(body: dict[str, Any]) -> str:
        number = asked(body)
        return "unmarked question " + ANSWER_END if number is None else \
            answer_text(number, tokens)

    return respond


@dataclass(frozen=True)
class ModelTime:
    """The model's own time for one answer as the fake measured it, from the request's arrival:
    to its first piece of text, and to the end of the stream (seconds). The scripted times
    plus what the fake's sleeps overshot, which is the model's, not the hub's."""

    first: float
    last: float
    requested_at: float = 0.0  # time.monotonic() in this process: when the request arrived


def model_times(streams: Iterable[RecordedRequest]) -> dict[int, ModelTime]:
    """Question number -> the model's time for its answer (the first stream that ended)."""
    times: dict[int, ModelTime] = {}
    for request in streams:
        number = asked(request.json)
        if number is None or number in times or request.first_piece_at is None \
                or request.ended_at is None:
            continue
        times[number] = ModelTime(request.first_piece_at - request.received_at,
                                  request.ended_at - request.received_at, request.received_at)
    return times


@dataclass
class Question:
    number: int
    thread: str  # where its answer is expected: the driver's key for the thread/conversation
    sent: float = 0.0  # time.monotonic() just before it was sent
    status: int | None = None  # the target's HTTP answer (Discord: 200 once dispatched)
    payload: dict[str, Any] = field(default_factory=dict)  # what the driver sends to ask it


class Shown(NamedTuple):
    """One of the bot's messages as it is now."""

    message: str  # its id, unique across the run (the driver's choice of key)
    text: str


@dataclass(frozen=True)
class Write:
    """One request of the bot's that writes a message, as the platform's fake saw it arrive."""

    at: float  # the fake's arrival stamp, time.monotonic()
    message: str | None  # the message it writes to (an edit, an append); None for a new post
    text: str  # the text it carries
    opens: str | None = None  # the thread it opens a message in (a placeholder, a stream...)
    appended: bool = False  # the text is a piece added to the message, not the whole of it


@dataclass
class Outcome:
    question: Question
    acknowledged: float | None = None  # first bot write in its thread (placeholder, stream)
    first: float | None = None  # first write carrying any of the answer's text
    last: float | None = None  # last write to the answer's message(s)
    answers: int = 0  # complete answers posted for it: 1 is right, 0 lost, >1 duplicated


def complete_answers(messages: Iterable[Shown]) -> dict[int, list[str]]:
    """Question number -> the id of every bot message now holding its whole answer."""
    found: dict[int, list[str]] = {}
    for message in messages:
        if ANSWER_END not in message.text:
            continue
        for number in {int(n) for n in _ANSWER_MARK.findall(message.text)}:
            found.setdefault(number, []).append(message.message)
    return found


def outcomes(messages: Iterable[Shown], writes: Iterable[Write],
             questions: list[Question]) -> list[Outcome]:
    """One outcome per question, from the bot's messages as they are now and its writes."""
    writes = list(writes)
    answers = complete_answers(messages)
    owner = {where: number for number, places in answers.items() for where in places}
    by_number = {q.number: Outcome(q, answers=len(answers.get(q.number, [])))
                 for q in questions}
    for write in writes:
        number = owner.get(write.message) if write.message is not None else None
        if number is None:
            marks = _ANSWER_MARK.findall(write.text)
            number = int(marks[-1]) if marks else None
        outcome = by_number.get(number) if number is not None else None
        if outcome is None:
            continue
        if outcome.last is None or write.at > outcome.last:
            outcome.last = write.at
        # Visible answer text: anything in the write but the placeholder's own words.
        carries_answer = bool(_ANSWER_MARK.search(write.text)) or (
            write.appended and write.text.strip() != "")
        if carries_answer and (outcome.first is None or write.at < outcome.first):
            outcome.first = write.at
    _acknowledgements(writes, questions, by_number)
    return [by_number[q.number] for q in questions]


def _acknowledgements(writes: list[Write], questions: list[Question],
                      by_number: dict[int, Outcome]) -> None:
    """Set each outcome's `acknowledged`: the first message the bot opened in the question's
    thread once it was asked (a placeholder, a stream, or the answer itself). Where two
    questions of one thread are in flight at once this may pick the other's; the run spreads
    questions over enough threads for that to be rare."""
    opened: dict[str, list[float]] = {}
    for write in writes:
        if write.opens is not None:
            opened.setdefault(write.opens, []).append(write.at)
    for question in questions:
        times = [t for t in opened.get(question.thread, []) if t >= question.sent]
        if times:
            by_number[question.number].acknowledged = min(times)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def distribution(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99 and max, in milliseconds (values are seconds)."""
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {"n": len(values), "p50": ms(percentile(values, 50)),
            "p95": ms(percentile(values, 95)), "p99": ms(percentile(values, 99)),
            "max": ms(max(values) if values else None)}
